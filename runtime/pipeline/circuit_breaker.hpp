// A circuit breaker per sink: open after N consecutive failures, one probe after a cool-down.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

#include "core/clock.hpp"
#include "core/settings.hpp"

namespace sluice::pipeline {

// Thread-safe; workers call acquire() before a sink call and report its result.
class CircuitBreaker {
 public:
  enum class State { closed, open, half_open };

  explicit CircuitBreaker(const core::CircuitBreakerSettings& s,
                          const core::Clock& clock = core::SteadyClock::instance())
      : s_(s), clock_(clock) {}

  // Returns when a call may go ahead: at once while closed; after the cool-down while open (the
  // first caller then probes, the others wait for its result). False if `stopping()` turned true.
  bool acquire(const std::function<bool()>& stopping) {
    if (!s_.enabled) return true;
    std::unique_lock lock(mu_);
    for (;;) {
      if (state_ == State::closed) return true;
      if (stopping()) return false;
      if (state_ == State::open && clock_.now() - opened_at_ >= cooldown()) {
        state_ = State::half_open;
        probing_ = true;
        return true;
      }
      // Waiting here is the pause: no call reaches the failing sink, no loop spins.
      cv_.wait_for(lock, std::chrono::milliseconds(20));
    }
  }

  void on_success() {
    if (!s_.enabled) return;
    std::lock_guard lock(mu_);
    consecutive_failures_ = 0;
    if (state_ != State::closed) {
      state_ = State::closed;
      probing_ = false;
      cv_.notify_all();
    }
  }

  void on_failure() {
    if (!s_.enabled) return;
    std::lock_guard lock(mu_);
    ++consecutive_failures_;
    if (state_ == State::half_open ||
        (state_ == State::closed && consecutive_failures_ >= s_.failure_threshold)) {
      state_ = State::open;
      probing_ = false;
      opened_at_ = clock_.now();
      ++opened_total_;
    }
  }

  State state() const {
    std::lock_guard lock(mu_);
    return state_;
  }
  uint32_t consecutive_failures() const {
    std::lock_guard lock(mu_);
    return consecutive_failures_;
  }
  uint64_t opened_total() const {
    std::lock_guard lock(mu_);
    return opened_total_;
  }
  static std::string_view name(State s) {
    return s == State::closed ? "closed" : s == State::open ? "open" : "half_open";
  }

 private:
  core::Duration cooldown() const { return std::chrono::milliseconds(s_.cooldown_ms); }

  const core::CircuitBreakerSettings s_;
  const core::Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::closed;
  bool probing_ = false;
  uint32_t consecutive_failures_ = 0;
  uint64_t opened_total_ = 0;
  core::TimePoint opened_at_{};
};

}  // namespace sluice::pipeline
