// The one retry rule for plugin calls: RETRY is tried again after a Backoff delay until the call
// succeeds or fails otherwise, the retries are used up, or the pipeline stops.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>
#include <utility>

#include "core/settings.hpp"
#include "pipeline/backoff.hpp"
#include "pipeline/stage_error.hpp"

namespace sluice::pipeline {

class Retrier {
 public:
  using Stopping = std::function<bool()>;

  // `stopping` ends the waits early (the pipeline is stopping); never stops when empty.
  Retrier(const core::RetrySettings& settings, Stopping stopping)
      : settings_(settings), stopping_(std::move(stopping)) {}

  struct Result {
    StageResult error;     // nullopt: the call succeeded; its `attempts` counts every call made
    bool stopped = false;  // given up because the pipeline stops, not because retries ran out
  };

  // Calls `attempt()` (returning a StageResult) until it returns nullopt or an error that is not
  // RETRY, or the backoff is used up; waits out each delay unless stopping.
  template <typename Attempt>
  Result run(Attempt&& attempt) const {
    Backoff backoff(settings_);
    for (;;) {
      StageResult error = attempt();
      if (!error || error->status != SLUICE_RETRY) {
        if (error) error->attempts = backoff.attempts() + 1;
        return {std::move(error), false};
      }
      std::chrono::milliseconds delay;
      const bool more = backoff.next(delay);
      error->attempts = backoff.attempts();
      if (!more) return {std::move(error), false};
      if (!sleep(delay)) return {std::move(error), true};
    }
  }

  // Sleeps `d` in short steps; false (at once) when stopping.
  bool sleep(std::chrono::milliseconds d) const {
    const auto until = std::chrono::steady_clock::now() + d;
    for (;;) {
      if (stopping()) return false;
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return true;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(20), until - now));
    }
  }

  bool stopping() const { return stopping_ && stopping_(); }

 private:
  core::RetrySettings settings_;
  Stopping stopping_;
};

}  // namespace sluice::pipeline
