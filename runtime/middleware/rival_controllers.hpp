// Rival controllers, for benchmarks only (performance.controller): the best-known published
// concurrency algorithms and the seed's own rule, behind the same interface as sluice's, so one
// benchmark can run them all on the same sink. Each follows its published step rule; where the
// stage cannot give the signal the original uses, the comment says what stands in for it.
//
// The signal: every rival sees the latency per record of a batch (round-trip time / records),
// the signal sluice's controller uses, because the batch sizer keeps the time of one batch near
// its target and would hide congestion from a per-batch round trip. The algorithms compare
// latencies by ratio or by mean and deviation, so the unit does not change their steps. No rival
// sees drops: a failed put is retried inside the batch and shows up as a longer round trip.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <string_view>
#include <vector>

#include "middleware/controller.hpp"

namespace sluice::middleware {

// What the rivals share: the bounds, the limit as a real number, the trace.
class RivalLimiter : public ConcurrencyLimiter {
 public:
  RivalLimiter(const core::PerformanceSettings& settings, const core::Clock& clock);
  uint32_t limit() const override;
  std::string_view phase() const override;
  const DecisionTrace& trace() const override { return trace_; }

 protected:
  // Sets the estimate (clamped to the bounds) and traces a change of the integer limit.
  void set_estimate_locked(double estimate, std::string_view verb, std::string_view why);
  uint32_t limit_locked() const;

  const core::Clock& clock_;
  const bool adaptive_;
  const double min_;
  const double max_;
  mutable std::mutex mutex_;
  double estimate_;
  DecisionTrace trace_;
};

// Vector's adaptive request concurrency (src/sinks/util/adaptive_concurrency/controller.rs):
// samples are averaged over an interval as long as the past mean round trip; at its end the
// limit goes +1 if the limit was reached and the interval's mean is at most the past mean (an
// EWMA, alpha 0.4), or x0.9 (floored) if the mean is at least past mean + 2.5 standard
// deviations (EWMA variance). The interval's length is the past mean batch round trip.
class VectorArcLimiter final : public RivalLimiter {
 public:
  static constexpr double kAlpha = 0.4;
  static constexpr double kDecrease = 0.9;
  static constexpr double kDeviationScale = 2.5;

  VectorArcLimiter(const core::PerformanceSettings& settings, const core::Clock& clock);
  void on_batch_done(core::Duration rtt, uint32_t records) override;
  uint32_t update(const LoadSignals& load) override;

 private:
  struct Ewma {
    bool valid = false;
    double mean = 0, variance = 0;
    void add(double x);
  };
  void manage_locked(double current);

  Ewma past_;         // latency per record
  Ewma past_rtt_ms_;  // batch round trip, for the interval's length
  double sum_ = 0, sum_rtt_ms_ = 0;
  uint32_t count_ = 0;
  bool reached_limit_ = false;
  core::TimePoint next_update_{};
};

// The Netflix limiters step once per sample: samples wait until the next update(), which knows
// how many batches are in flight.
class PerSampleLimiter : public RivalLimiter {
 public:
  using RivalLimiter::RivalLimiter;
  void on_batch_done(core::Duration rtt, uint32_t records) override;
  uint32_t update(const LoadSignals& load) override;

 protected:
  virtual void step_locked(double sample, uint32_t in_flight) = 0;

 private:
  std::vector<double> pending_;
};

// Netflix concurrency-limits' Gradient2Limit, per sample: long = exponential average of the
// samples (window 600, warm-up 10; x0.9 when long / short > 2), and when at least half the limit
// is in flight: limit = 0.8 limit + 0.2 (limit * clamp(long / short, 0.5, 1) + 4).
class Gradient2Limiter final : public PerSampleLimiter {
 public:
  static constexpr double kQueueSize = 4;
  static constexpr double kSmoothing = 0.2;
  static constexpr int kLongWindow = 600;
  static constexpr int kWarmup = 10;

  Gradient2Limiter(const core::PerformanceSettings& settings, const core::Clock& clock);
  double long_rtt() const;

 private:
  void step_locked(double sample, uint32_t in_flight) override;

  double long_ = 0;
  int long_count_ = 0;
};

// Netflix concurrency-limits' VegasLimit, per sample: the no-load latency is the minimum seen
// (re-probed every ~30 x limit samples); queue = ceil(limit (1 - noload / sample)); with
// L = max(1, floor(log10 limit)): +6L if queue <= L, +L if queue < 3L, -L if queue > 6L, else
// hold; nothing moves while fewer than half the limit are in flight.
class VegasLimiter final : public PerSampleLimiter {
 public:
  static constexpr int kProbeMultiplier = 30;

  VegasLimiter(const core::PerformanceSettings& settings, const core::Clock& clock);
  double noload() const;

 private:
  void step_locked(double sample, uint32_t in_flight) override;
  void reset_jitter_locked();

  double noload_ = 0;
  int probe_count_ = 0;
  double probe_jitter_ = 0.75;
  std::minstd_rand rng_{17};  // deterministic, so runs and tests repeat
};

// The seed's rule, once per metrics interval: -1 when memory pressure is over its threshold,
// +1 when it is under half the threshold and the queue under half the backpressure threshold.
class SeedConcurrencyLimiter final : public RivalLimiter {
 public:
  SeedConcurrencyLimiter(const core::PerformanceSettings& settings, const core::Clock& clock);
  void on_batch_done(core::Duration, uint32_t) override {}
  uint32_t update(const LoadSignals& load) override;

 private:
  const double pressure_threshold_;
  const size_t backpressure_threshold_;
  const core::Duration interval_;
  core::TimePoint last_;
};

// The seed's batch rule, once per metrics interval: x0.9 when the mean batch time is over the
// target, x1.1 when under half of it.
class SeedBatchSizer final : public BatchSizer {
 public:
  SeedBatchSizer(const core::PerformanceSettings& settings, const core::Clock& clock);
  uint32_t observe(uint32_t records, core::Duration elapsed) override;
  uint32_t current() const override;

 private:
  const core::Clock& clock_;
  const bool adaptive_;
  const double min_, max_, target_ms_;
  const core::Duration interval_;
  mutable std::mutex mutex_;
  double size_;
  double sum_ms_ = 0;
  uint32_t count_ = 0;
  core::TimePoint last_;
};

}  // namespace sluice::middleware
