// A fixed-size latency histogram shared by the benchmark sinks (probe and latency).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice_testing {

// Latency histogram: 0.1 ms buckets below 1 s, 1 ms buckets up to 120 s, one overflow bucket.
// Fixed-size, so recording costs the same at any rate and percentiles are exact to a bucket.
class LatencyHistogram {
 public:
  LatencyHistogram() : counts_(kFineBuckets + kCoarseBuckets + 1, 0) {}

  void add(double ms) {
    if (ms < 0) ms = 0;  // clock skew between the source's and the sink's reading
    size_t index;
    if (ms < 1000.0) {
      index = static_cast<size_t>(ms * 10.0);
    } else {
      index = kFineBuckets + std::min<size_t>(static_cast<size_t>(ms - 1000.0), kCoarseBuckets);
    }
    ++counts_[std::min(index, counts_.size() - 1)];
    ++total_;
    sum_ms_ += ms;
    max_ms_ = std::max(max_ms_, ms);
  }

  // The upper edge of the bucket holding the q-quantile.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= std::max<uint64_t>(rank, 1)) return std::min(upper_edge(i), max_ms_);
    }
    return max_ms_;
  }

  uint64_t total() const { return total_; }
  double mean() const { return total_ ? sum_ms_ / static_cast<double>(total_) : 0; }
  double max() const { return max_ms_; }

 private:
  static constexpr size_t kFineBuckets = 10000;
  static constexpr size_t kCoarseBuckets = 119000;

  static double upper_edge(size_t i) {
    if (i < kFineBuckets) return static_cast<double>(i + 1) / 10.0;
    return 1000.0 + static_cast<double>(i - kFineBuckets + 1);
  }

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  double sum_ms_ = 0;
  double max_ms_ = 0;
};

}  // namespace sluice_testing
