// A GCRA token bucket that caps a modelled remote system at so many records per second; shared
// by the test and benchmark sinks.
#pragma once

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

namespace sluice_testing {

class CapacityBucket {
 public:
  // Every call reserves its records' share of the capacity and sleeps until that share is
  // due; up to 100 ms of capacity may be used in a burst. Thread-safe.
  void wait(size_t records, double capacity_rps) {
    using Clock = std::chrono::steady_clock;
    const auto need = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(records) / capacity_rps));
    constexpr auto kBurst = std::chrono::milliseconds(100);
    Clock::time_point start;
    {
      std::lock_guard lock(mutex_);
      const auto now = Clock::now();
      if (theoretical_arrival_ < now) theoretical_arrival_ = now;
      start = std::max(now, theoretical_arrival_ - kBurst);
      theoretical_arrival_ += need;
    }
    std::this_thread::sleep_until(start);
  }

 private:
  std::mutex mutex_;
  std::chrono::steady_clock::time_point theoretical_arrival_{};
};

}  // namespace sluice_testing
