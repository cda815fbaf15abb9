// The rival controllers' step rules (see rival_controllers.hpp for where each comes from).
#include "middleware/rival_controllers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace sluice::middleware {
namespace {

double per_record_ms(core::Duration rtt, uint32_t records) {
  return core::to_ms(rtt) / std::max<uint32_t>(1, records);
}

core::Duration interval_of(const core::PerformanceSettings& settings) {
  return std::chrono::milliseconds(std::max<uint32_t>(1, settings.metrics_collection_interval_ms));
}

}  // namespace

// ---- the shared part -----------------------------------------------------------------------

RivalLimiter::RivalLimiter(const core::PerformanceSettings& settings, const core::Clock& clock)
    : clock_(clock),
      adaptive_(settings.adaptive_concurrency),
      min_(std::max<uint32_t>(1, settings.min_concurrency)),
      max_(std::max<double>(min_, settings.max_concurrency)),
      estimate_(adaptive_ ? std::clamp<double>(settings.concurrency, min_, max_)
                          : std::max<uint32_t>(1, settings.concurrency)),
      trace_(clock) {}

uint32_t RivalLimiter::limit_locked() const { return static_cast<uint32_t>(estimate_); }

uint32_t RivalLimiter::limit() const {
  std::lock_guard lock(mutex_);
  return limit_locked();
}

std::string_view RivalLimiter::phase() const { return adaptive_ ? "steady" : "fixed"; }

void RivalLimiter::set_estimate_locked(double estimate, std::string_view verb,
                                       std::string_view why) {
  const uint32_t before = limit_locked();
  estimate_ = std::clamp(estimate, min_, max_);
  if (limit_locked() != before) trace_.record(verb, before, limit_locked(), why);
}

// ---- Vector ARC ----------------------------------------------------------------------------

void VectorArcLimiter::Ewma::add(double x) {
  if (!valid) {
    valid = true;
    mean = x;
    variance = 0;
    return;
  }
  const double difference = x - mean;
  const double increment = kAlpha * difference;
  mean += increment;
  variance = (1 - kAlpha) * (variance + difference * increment);
}

VectorArcLimiter::VectorArcLimiter(const core::PerformanceSettings& settings,
                                   const core::Clock& clock)
    : RivalLimiter(settings, clock) {}

void VectorArcLimiter::on_batch_done(core::Duration rtt, uint32_t records) {
  std::lock_guard lock(mutex_);
  sum_ += per_record_ms(rtt, records);
  sum_rtt_ms_ += core::to_ms(rtt);
  ++count_;
}

uint32_t VectorArcLimiter::update(const LoadSignals& load) {
  std::lock_guard lock(mutex_);
  if (!adaptive_) return limit_locked();
  if (load.in_flight >= limit_locked()) reached_limit_ = true;
  const core::TimePoint now = clock_.now();
  const auto interval = [&] {
    return std::chrono::duration_cast<core::Duration>(
        std::chrono::duration<double, std::milli>(past_rtt_ms_.mean));
  };
  if (!past_.valid) {
    if (count_ == 0) return limit_locked();
    past_.add(sum_ / count_);
    past_rtt_ms_.add(sum_rtt_ms_ / count_);
    next_update_ = now + interval();
    return limit_locked();
  }
  if (now < next_update_) return limit_locked();
  if (count_ > 0) {
    const double current = sum_ / count_;
    manage_locked(current);
    past_.add(current);
    past_rtt_ms_.add(sum_rtt_ms_ / count_);
  }
  next_update_ = now + interval();
  sum_ = sum_rtt_ms_ = 0;
  count_ = 0;
  reached_limit_ = false;
  return limit_locked();
}

void VectorArcLimiter::manage_locked(double current) {
  const double threshold = std::sqrt(past_.variance) * kDeviationScale;
  const uint32_t limit = limit_locked();
  if (limit < max_ && reached_limit_ && current <= past_.mean) {
    set_estimate_locked(
        limit + 1, "raise",
        fmt::format("limit reached, latency {:.4f} <= mean {:.4f} ms/record", current, past_.mean));
  } else if (limit > 1 && current >= past_.mean + threshold) {
    set_estimate_locked(
        std::max(1.0, std::floor(limit * kDecrease)), "cut",
        fmt::format("latency {:.4f} >= mean {:.4f} + 2.5 sd ms/record", current, past_.mean));
  }
}

// ---- Gradient2 -----------------------------------------------------------------------------

void PerSampleLimiter::on_batch_done(core::Duration rtt, uint32_t records) {
  std::lock_guard lock(mutex_);
  pending_.push_back(per_record_ms(rtt, records));
}

uint32_t PerSampleLimiter::update(const LoadSignals& load) {
  std::lock_guard lock(mutex_);
  if (!adaptive_) return limit_locked();
  for (double sample : pending_) step_locked(sample, load.in_flight);
  pending_.clear();
  return limit_locked();
}

Gradient2Limiter::Gradient2Limiter(const core::PerformanceSettings& settings,
                                   const core::Clock& clock)
    : PerSampleLimiter(settings, clock) {}

double Gradient2Limiter::long_rtt() const {
  std::lock_guard lock(mutex_);
  return long_;
}

void Gradient2Limiter::step_locked(double sample, uint32_t in_flight) {
  if (sample <= 0) return;
  if (long_count_ < kWarmup) {
    ++long_count_;
    long_ += (sample - long_) / long_count_;  // the plain mean while warming up
  } else {
    const double factor = 2.0 / (kLongWindow + 1);
    long_ = long_ * (1 - factor) + sample * factor;
  }
  if (long_ / sample > 2) long_ *= 0.9;   // load has passed: let the long average catch up
  if (in_flight < estimate_ / 2) return;  // app-limited: no evidence either way
  const double gradient = std::clamp(long_ / sample, 0.5, 1.0);
  const double target = estimate_ * gradient + kQueueSize;
  set_estimate_locked(estimate_ * (1 - kSmoothing) + target * kSmoothing,
                      gradient < 1.0 ? "cut" : "raise",
                      fmt::format("gradient {:.2f} (long {:.4f} / short {:.4f} ms/record)",
                                  gradient, long_, sample));
}

// ---- Vegas ---------------------------------------------------------------------------------

VegasLimiter::VegasLimiter(const core::PerformanceSettings& settings, const core::Clock& clock)
    : PerSampleLimiter(settings, clock) {
  reset_jitter_locked();
}

void VegasLimiter::reset_jitter_locked() {
  probe_jitter_ = std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
}

double VegasLimiter::noload() const {
  std::lock_guard lock(mutex_);
  return noload_;
}

void VegasLimiter::step_locked(double sample, uint32_t in_flight) {
  if (sample <= 0) return;
  if (probe_jitter_ * kProbeMultiplier * estimate_ <= ++probe_count_) {
    // Re-learn the no-load latency now and then: it may have grown for good.
    reset_jitter_locked();
    probe_count_ = 0;
    noload_ = sample;
    return;
  }
  if (noload_ == 0 || sample < noload_) {
    noload_ = sample;
    return;
  }
  if (in_flight * 2 < estimate_) return;  // far from the limit: no evidence
  const double queue = std::ceil(estimate_ * (1 - noload_ / sample));
  const double l = std::max(1.0, std::floor(std::log10(std::max(1.0, estimate_))));
  const auto why =
      fmt::format("queue {:.0f} (noload {:.4f}, now {:.4f} ms/record)", queue, noload_, sample);
  if (queue <= l) {
    set_estimate_locked(estimate_ + 6 * l, "raise", why);
  } else if (queue < 3 * l) {
    set_estimate_locked(estimate_ + l, "raise", why);
  } else if (queue > 6 * l) {
    set_estimate_locked(estimate_ - l, "cut", why);
  }
}

// ---- the seed's rules ----------------------------------------------------------------------

SeedConcurrencyLimiter::SeedConcurrencyLimiter(const core::PerformanceSettings& settings,
                                               const core::Clock& clock)
    : RivalLimiter(settings, clock),
      pressure_threshold_(settings.memory_pressure_threshold),
      backpressure_threshold_(settings.backpressure_threshold),
      interval_(interval_of(settings)),
      last_(clock.now()) {}

uint32_t SeedConcurrencyLimiter::update(const LoadSignals& load) {
  std::lock_guard lock(mutex_);
  const core::TimePoint now = clock_.now();
  if (!adaptive_ || now - last_ < interval_) return limit_locked();
  last_ = now;
  double next = estimate_;
  if (load.memory_pressure > pressure_threshold_) next -= 1;
  if (load.memory_pressure < pressure_threshold_ * 0.5 &&
      load.queued_records < backpressure_threshold_ / 2)
    next += 1;
  set_estimate_locked(next, next < estimate_ ? "cut" : "raise",
                      fmt::format("memory pressure {:.2f}, queue {} records", load.memory_pressure,
                                  load.queued_records));
  return limit_locked();
}

SeedBatchSizer::SeedBatchSizer(const core::PerformanceSettings& settings, const core::Clock& clock)
    : clock_(clock),
      adaptive_(settings.adaptive_batching),
      min_(std::max<uint32_t>(1, settings.min_batch_size)),
      max_(std::max<double>(min_, settings.max_batch_size)),
      target_ms_(std::max<uint32_t>(1, settings.target_batch_time_ms)),
      interval_(interval_of(settings)),
      size_(adaptive_ ? std::clamp<double>(settings.batch_size, min_, max_)
                      : std::max<uint32_t>(1, settings.batch_size)),
      last_(clock.now()) {}

uint32_t SeedBatchSizer::current() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(std::lround(size_));
}

uint32_t SeedBatchSizer::observe(uint32_t /*records*/, core::Duration elapsed) {
  std::lock_guard lock(mutex_);
  if (!adaptive_) return static_cast<uint32_t>(std::lround(size_));
  sum_ms_ += core::to_ms(elapsed);
  ++count_;
  const core::TimePoint now = clock_.now();
  if (now - last_ >= interval_) {
    const double mean = sum_ms_ / count_;
    if (mean > target_ms_)
      size_ *= 0.9;
    else if (mean < target_ms_ / 2)
      size_ *= 1.1;
    size_ = std::clamp(size_, min_, max_);
    sum_ms_ = 0;
    count_ = 0;
    last_ = now;
  }
  return static_cast<uint32_t>(std::lround(size_));
}

}  // namespace sluice::middleware
