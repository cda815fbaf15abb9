// Per-stage performance history in fixed ring buffers: batch times, throughput, errors, memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/settings.hpp"

namespace sluice::middleware {

// Fixed-capacity ring buffer: memory stays bounded however long the stage runs.
template <class T>
class RingBuffer {
 public:
  explicit RingBuffer(size_t capacity) : items_(capacity == 0 ? 1 : capacity) {}

  void push(const T& value) {
    items_[next_] = value;
    next_ = (next_ + 1) % items_.size();
    if (size_ < items_.size()) ++size_;
  }
  size_t size() const { return size_; }
  size_t capacity() const { return items_.size(); }
  bool empty() const { return size_ == 0; }

  // i = 0 is the oldest kept value.
  const T& operator[](size_t i) const {
    const size_t start = size_ < items_.size() ? 0 : next_;
    return items_[(start + i) % items_.size()];
  }

  template <class F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < size_; ++i) f((*this)[i]);
  }

 private:
  std::vector<T> items_;
  size_t next_ = 0;
  size_t size_ = 0;
};

// Thread-safety: every member may be called from any thread (one short mutex); record_batch()
// comes from worker threads, sample() from the stage's metrics tick, getters from stats readers.
class Profiler {
 public:
  static constexpr size_t kDefaultCapacity = 1024;
  // Memory that moves less than this fraction of its mean over the window is "stable".
  static constexpr double kStableFraction = 0.05;

  Profiler(const core::PerformanceSettings& settings, const core::Clock& clock,
           size_t capacity = kDefaultCapacity);

  // One finished batch. With enable_performance_profiling off only the totals move.
  void record_batch(core::Duration elapsed, uint32_t records, uint32_t errors);
  // At each metrics interval: throughput and error rate of the interval, memory, queue depth.
  void sample(uint64_t memory_bytes, size_t queue_depth);

  double avg_batch_time_ms() const;
  double p50_batch_time_ms() const;
  double p99_batch_time_ms() const;
  double avg_batch_size() const;
  double avg_throughput() const;  // records per second
  double avg_error_rate_percent() const;
  // Least-squares slope of memory over time, and its reading: "increasing", "decreasing", "stable".
  double memory_slope_bytes_per_sec() const;
  std::string_view memory_trend() const;
  double avg_queue_depth() const;

  uint64_t total_records() const;
  uint64_t total_batches() const;
  uint64_t total_errors() const;

 private:
  double batch_time_percentile_locked(double q) const;
  double memory_slope_locked() const;

  const core::Clock& clock_;
  const bool enabled_;

  mutable std::mutex mutex_;
  RingBuffer<double> batch_times_ms_;
  RingBuffer<uint32_t> batch_sizes_;
  RingBuffer<double> throughput_;
  RingBuffer<double> error_rate_percent_;
  RingBuffer<double> memory_bytes_;
  RingBuffer<double> memory_seconds_;  // when each memory value was taken, since construction
  RingBuffer<double> queue_depth_;

  core::TimePoint start_;
  core::TimePoint last_sample_;
  uint64_t interval_records_ = 0;
  uint64_t interval_errors_ = 0;
  uint64_t total_records_ = 0;
  uint64_t total_batches_ = 0;
  uint64_t total_errors_ = 0;
};

}  // namespace sluice::middleware
