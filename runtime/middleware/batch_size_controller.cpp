// Adaptive batch size: fits batch cost = fixed + per_record * n and aims at the target batch time.
#include "middleware/batch_size_controller.hpp"

#include <algorithm>
#include <cmath>

namespace sluice::middleware {
namespace {

constexpr size_t kWindow = 12;
// Hold steady while the predicted batch time is within kDeadBand of the target; once outside it,
// keep stepping until within kSettleBand, so the size ends near the target, not at the band's edge.
constexpr double kDeadBand = 0.10;
constexpr double kSettleBand = 0.03;
// A batch this far off the model (either way), twice in a row, means the workload changed.
constexpr double kDeviationRatio = 1.35;
// The fit needs batches of different sizes; closer sizes make the slope mostly noise.
constexpr double kMinSpread = 1.3;
// A batch smaller than this fraction of the target was flushed by linger.
constexpr double kPartialFraction = 0.9;
// The ratio fallback averages over this many recent full batches.
constexpr size_t kRatioSamples = 4;
// When the fixed cost alone is near or over the target, the target cannot be met without paying
// mostly for overhead (a remote call's round trip): from kOverheadBound of the target the goal
// grows, to target / kMaxFixedShare (where a fixed cost equal to the target is a tenth) once the
// fixed cost reaches the target, and no further. Below kOverheadBound the target holds as it is, so
// a small fixed cost, whose fit is noisy, never moves the goal.
constexpr double kOverheadBound = 0.5;
constexpr double kMaxFixedShare = 0.1;

}  // namespace

BatchSizeController::BatchSizeController(const core::PerformanceSettings& settings)
    : adaptive_(settings.adaptive_batching),
      min_size_(std::max<uint32_t>(1, settings.min_batch_size)),
      max_size_(std::max<double>(std::max<uint32_t>(1, settings.min_batch_size),
                                 settings.max_batch_size)),
      target_ms_(std::max<uint32_t>(1, settings.target_batch_time_ms)),
      damping_(std::clamp(settings.load_adjustment_factor, 0.05, 1.0)),
      target_size_(adaptive_ ? std::clamp<double>(settings.batch_size, min_size_, max_size_)
                             : std::max<uint32_t>(1, settings.batch_size)) {
  window_.reserve(kWindow + 1);
}

uint32_t BatchSizeController::current() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(std::lround(target_size_));
}

double BatchSizeController::fixed_cost_ms() const {
  std::lock_guard lock(mutex_);
  return fixed_ms_;
}

double BatchSizeController::per_record_cost_ms() const {
  std::lock_guard lock(mutex_);
  return per_record_ms_;
}

int BatchSizeController::deviation_locked(const Observation& obs) const {
  if (!have_model_) return 0;
  const double predicted = fixed_ms_ + per_record_ms_ * obs.records;
  if (predicted <= 0.0) return 0;
  if (obs.ms > predicted * kDeviationRatio) return 1;
  if (obs.ms * kDeviationRatio < predicted) return -1;
  return 0;
}

uint32_t BatchSizeController::observe(uint32_t records, core::Duration elapsed) {
  std::lock_guard lock(mutex_);
  if (!adaptive_ || records == 0) return static_cast<uint32_t>(std::lround(target_size_));

  const Observation obs{static_cast<double>(records), std::max(core::to_ms(elapsed), 1e-6),
                        records < kPartialFraction * target_size_};

  const int sign = deviation_locked(obs);
  if (sign != 0 && !(suspect_ && suspect_sign_ == sign)) {
    suspect_ = obs;
    suspect_sign_ = sign;
    return static_cast<uint32_t>(std::lround(target_size_));
  }
  if (sign != 0) {
    // Confirmed: the cost changed, and the old window would only slow the response down.
    window_.assign(1, *suspect_);
  }
  suspect_.reset();
  suspect_sign_ = 0;
  window_.push_back(obs);
  if (window_.size() > kWindow) window_.erase(window_.begin());

  if (!fit_locked()) return static_cast<uint32_t>(std::lround(target_size_));

  const double goal_ms = goal_time_ms_locked();
  const double error = std::abs(fixed_ms_ + per_record_ms_ * target_size_ - goal_ms) / goal_ms;
  if (error > kDeadBand) settling_ = true;
  if (error <= kSettleBand) settling_ = false;
  if (settling_) {
    const double goal = (goal_ms - fixed_ms_) / per_record_ms_;
    target_size_ += damping_ * (std::clamp(goal, min_size_, max_size_) - target_size_);
    target_size_ = std::clamp(target_size_, min_size_, max_size_);
  }
  return static_cast<uint32_t>(std::lround(target_size_));
}

double BatchSizeController::goal_time_ms_locked() const {
  const double from = kOverheadBound * target_ms_;
  const double longest = target_ms_ / kMaxFixedShare;
  if (fixed_ms_ <= from) return target_ms_;
  // Never past `longest`: a fixed cost can also be congestion (every call slower past a knee),
  // and batches must not grow without bound while the concurrency limit comes down.
  if (fixed_ms_ >= target_ms_) return longest;
  // In between, a straight line joins the two, so the goal never jumps.
  return target_ms_ + (fixed_ms_ - from) / (target_ms_ - from) * (longest - target_ms_);
}

bool BatchSizeController::fit_locked() {
  double min_n = window_.front().records, max_n = min_n, min_ms = window_.front().ms;
  for (const auto& o : window_) {
    min_n = std::min(min_n, o.records);
    max_n = std::max(max_n, o.records);
    min_ms = std::min(min_ms, o.ms);
  }

  if (window_.size() >= 3 && max_n >= kMinSpread * min_n) {
    const double count = static_cast<double>(window_.size());
    double sum_n = 0, sum_ms = 0;
    for (const auto& o : window_) {
      sum_n += o.records;
      sum_ms += o.ms;
    }
    const double mean_n = sum_n / count, mean_ms = sum_ms / count;
    double sxx = 0, sxy = 0;
    for (const auto& o : window_) {
      sxx += (o.records - mean_n) * (o.records - mean_n);
      sxy += (o.records - mean_n) * (o.ms - mean_ms);
    }
    double slope = sxy / sxx;
    double intercept = mean_ms - slope * mean_n;
    if (slope > 0.0 && intercept < 0.0) {
      // Negative fixed cost is noise; refit through the origin.
      double sxx0 = 0, sxy0 = 0;
      for (const auto& o : window_) {
        sxx0 += o.records * o.records;
        sxy0 += o.records * o.ms;
      }
      slope = sxy0 / sxx0;
      intercept = 0.0;
    }
    // The fixed cost cannot exceed the fastest batch seen.
    if (slope > 0.0 && intercept <= min_ms) {
      fixed_ms_ = intercept;
      per_record_ms_ = slope;
      have_model_ = true;
      return true;
    }
  }

  // Sizes too alike to separate the two costs: keep the last known fixed cost and take the
  // per-record cost from the most recent full batches. Partial batches are left out here, because
  // with the fixed cost unknown they make each record look dearer than it is.
  double sum_n = 0, sum_ms = 0, min_full_ms = 0;
  size_t used = 0;
  for (auto it = window_.rbegin(); it != window_.rend() && used < kRatioSamples; ++it) {
    if (it->partial) continue;
    min_full_ms = used == 0 ? it->ms : std::min(min_full_ms, it->ms);
    sum_n += it->records;
    sum_ms += it->ms;
    ++used;
  }
  if (used == 0) return false;
  const double fixed = std::min(fixed_ms_, 0.5 * min_full_ms);
  fixed_ms_ = fixed;
  per_record_ms_ = (sum_ms - fixed * static_cast<double>(used)) / sum_n;
  have_model_ = per_record_ms_ > 0.0;
  return have_model_;
}

}  // namespace sluice::middleware
