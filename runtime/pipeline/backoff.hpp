// Exponential backoff with full jitter, bounded by attempts and elapsed time.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "core/settings.hpp"

namespace sluice::pipeline {

class Backoff {
 public:
  // Cheap: one is made per poll and per batch, so the random engine is per thread and seeded once.
  explicit Backoff(const core::RetrySettings& s)
      : s_(s), started_(std::chrono::steady_clock::now()) {}

  // The delay before the next attempt, or nullopt-like negative when attempts are used up.
  // Attempt numbers start at 1 for the first retry.
  bool next(std::chrono::milliseconds& delay) {
    ++attempts_;
    if (s_.max_attempts != 0 && attempts_ > s_.max_attempts) return false;
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);
    if (s_.max_elapsed_ms != 0 && static_cast<uint64_t>(elapsed.count()) >= s_.max_elapsed_ms)
      return false;
    double cap = std::min<double>(s_.max_backoff_ms,
                                  s_.initial_backoff_ms * std::pow(s_.multiplier, attempts_ - 1));
    // Half fixed, half jitter: spreads retries without ever waiting near zero.
    std::uniform_real_distribution<double> jitter(cap / 2, cap);
    thread_local std::mt19937 rng(std::random_device{}());
    delay = std::chrono::milliseconds(static_cast<int64_t>(jitter(rng)));
    return true;
  }
  uint32_t attempts() const { return attempts_; }

 private:
  core::RetrySettings s_;
  std::chrono::steady_clock::time_point started_;
  uint32_t attempts_ = 0;
};

}  // namespace sluice::pipeline
