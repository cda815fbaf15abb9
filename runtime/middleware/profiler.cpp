// Profiler: averages, nearest-rank percentiles and a least-squares memory trend over ring buffers.
#include "middleware/profiler.hpp"

#include <algorithm>
#include <cmath>

namespace sluice::middleware {
namespace {

template <class T>
double mean_of(const RingBuffer<T>& ring) {
  if (ring.empty()) return 0.0;
  double sum = 0.0;
  ring.for_each([&](const T& v) { sum += static_cast<double>(v); });
  return sum / static_cast<double>(ring.size());
}

}  // namespace

Profiler::Profiler(const core::PerformanceSettings& settings, const core::Clock& clock,
                   size_t capacity)
    : clock_(clock),
      enabled_(settings.enable_performance_profiling),
      batch_times_ms_(capacity),
      batch_sizes_(capacity),
      throughput_(capacity),
      error_rate_percent_(capacity),
      memory_bytes_(capacity),
      memory_seconds_(capacity),
      queue_depth_(capacity),
      start_(clock.now()),
      last_sample_(start_) {}

void Profiler::record_batch(core::Duration elapsed, uint32_t records, uint32_t errors) {
  std::lock_guard lock(mutex_);
  total_records_ += records;
  total_errors_ += errors;
  ++total_batches_;
  if (!enabled_) return;
  interval_records_ += records;
  interval_errors_ += errors;
  batch_times_ms_.push(core::to_ms(elapsed));
  batch_sizes_.push(records);
}

void Profiler::sample(uint64_t memory_bytes, size_t queue_depth) {
  std::lock_guard lock(mutex_);
  if (!enabled_) return;
  const core::TimePoint now = clock_.now();
  const double seconds = std::chrono::duration<double>(now - last_sample_).count();
  if (seconds > 0.0) {
    throughput_.push(static_cast<double>(interval_records_) / seconds);
    // An interval without records has no error rate; counting it as 0% would flatter the average.
    if (interval_records_ > 0) {
      error_rate_percent_.push(100.0 * static_cast<double>(interval_errors_) /
                               static_cast<double>(interval_records_));
    }
    interval_records_ = 0;
    interval_errors_ = 0;
    last_sample_ = now;
  }
  memory_bytes_.push(static_cast<double>(memory_bytes));
  memory_seconds_.push(std::chrono::duration<double>(now - start_).count());
  queue_depth_.push(static_cast<double>(queue_depth));
}

double Profiler::avg_batch_time_ms() const {
  std::lock_guard lock(mutex_);
  return mean_of(batch_times_ms_);
}

double Profiler::batch_time_percentile_locked(double q) const {
  if (batch_times_ms_.empty()) return 0.0;
  std::vector<double> values;
  values.reserve(batch_times_ms_.size());
  batch_times_ms_.for_each([&](double v) { values.push_back(v); });
  // Nearest rank: the smallest value with at least q of the values at or below it.
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  const size_t index = std::clamp<size_t>(rank, 1, values.size()) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(index), values.end());
  return values[index];
}

double Profiler::p50_batch_time_ms() const {
  std::lock_guard lock(mutex_);
  return batch_time_percentile_locked(0.50);
}

double Profiler::p99_batch_time_ms() const {
  std::lock_guard lock(mutex_);
  return batch_time_percentile_locked(0.99);
}

double Profiler::avg_batch_size() const {
  std::lock_guard lock(mutex_);
  return mean_of(batch_sizes_);
}

double Profiler::avg_throughput() const {
  std::lock_guard lock(mutex_);
  return mean_of(throughput_);
}

double Profiler::avg_error_rate_percent() const {
  std::lock_guard lock(mutex_);
  return mean_of(error_rate_percent_);
}

double Profiler::avg_queue_depth() const {
  std::lock_guard lock(mutex_);
  return mean_of(queue_depth_);
}

double Profiler::memory_slope_locked() const {
  const size_t n = memory_bytes_.size();
  if (n < 2) return 0.0;
  const double mean_t = mean_of(memory_seconds_);
  const double mean_m = mean_of(memory_bytes_);
  double stt = 0.0, stm = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double dt = memory_seconds_[i] - mean_t;
    stt += dt * dt;
    stm += dt * (memory_bytes_[i] - mean_m);
  }
  return stt > 0.0 ? stm / stt : 0.0;
}

double Profiler::memory_slope_bytes_per_sec() const {
  std::lock_guard lock(mutex_);
  return memory_slope_locked();
}

std::string_view Profiler::memory_trend() const {
  std::lock_guard lock(mutex_);
  const size_t n = memory_bytes_.size();
  if (n < 2) return "stable";
  const double slope = memory_slope_locked();
  const double span_seconds = memory_seconds_[n - 1] - memory_seconds_[0];
  const double change = slope * span_seconds;
  // Judge the change over the whole window against the memory level, so small jitter on a large
  // heap reads as stable.
  if (std::abs(change) <= kStableFraction * mean_of(memory_bytes_)) return "stable";
  return change > 0 ? "increasing" : "decreasing";
}

uint64_t Profiler::total_records() const {
  std::lock_guard lock(mutex_);
  return total_records_;
}

uint64_t Profiler::total_batches() const {
  std::lock_guard lock(mutex_);
  return total_batches_;
}

uint64_t Profiler::total_errors() const {
  std::lock_guard lock(mutex_);
  return total_errors_;
}

}  // namespace sluice::middleware
