// Adaptive concurrency: slow start, bisection to the latency knee, probing, and pressure cuts.
#include "middleware/concurrency_controller.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace sluice::middleware {
namespace {

constexpr double kNoSample = std::numeric_limits<double>::infinity();
constexpr double kPressureCut = 0.75;
// The jitter is the median of the last steps between epochs; it is known after a few of them.
constexpr size_t kMinNoiseSteps = 3;

// The median of `v` (reordered); 0 when empty.
double median_of(std::vector<double>& v) {
  if (v.empty()) return 0.0;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2 == 1) return *mid;
  return (*mid + *std::max_element(v.begin(), mid)) / 2;
}

}  // namespace

ConcurrencyController::ConcurrencyController(const core::PerformanceSettings& settings,
                                             const core::Clock& clock,
                                             core::Duration baseline_window)
    : clock_(clock),
      trace_(clock),
      adaptive_(settings.adaptive_concurrency),
      min_(std::max<uint32_t>(1, settings.min_concurrency)),
      max_(std::max(min_, settings.max_concurrency)),
      pressure_threshold_(settings.memory_pressure_threshold),
      epoch_timeout_(std::chrono::milliseconds(
          std::max<uint32_t>(1, settings.metrics_collection_interval_ms))),
      baseline_window_(baseline_window),
      limit_(adaptive_ ? std::clamp(settings.concurrency, min_, max_)
                       : std::max<uint32_t>(1, settings.concurrency)),
      phase_(adaptive_ ? Phase::slow_start : Phase::fixed),
      good_(min_),
      last_decision_(clock.now()),
      last_change_(last_decision_),
      bucket_min_ms_(kNoSample),
      previous_bucket_min_ms_(kNoSample),
      bucket_start_(last_decision_) {}

uint32_t ConcurrencyController::limit() const {
  std::lock_guard lock(mutex_);
  return limit_;
}

std::string_view ConcurrencyController::phase() const {
  std::lock_guard lock(mutex_);
  switch (phase_) {
    case Phase::slow_start:
      return "slow_start";
    case Phase::steady:
      return "steady";
    case Phase::pressure:
      return "pressure";
    case Phase::fixed:
      break;
  }
  return "fixed";
}

double ConcurrencyController::latency_ms() const {
  std::lock_guard lock(mutex_);
  return latency_ms_;
}

double ConcurrencyController::baseline_ms() const {
  std::lock_guard lock(mutex_);
  const double b = baseline_locked();
  return std::isfinite(b) ? b : 0.0;
}

double ConcurrencyController::baseline_locked() const {
  return std::min(bucket_min_ms_, previous_bucket_min_ms_);
}

void ConcurrencyController::on_batch_done(core::Duration rtt, uint32_t records) {
  if (!adaptive_) return;
  const core::TimePoint started = clock_.now() - rtt;
  std::lock_guard lock(mutex_);
  if (started < last_change_) return;  // dispatched under an older limit
  epoch_ms_.push_back(core::to_ms(rtt) / std::max<uint32_t>(1, records));
}

double ConcurrencyController::tolerance() const {
  std::lock_guard lock(mutex_);
  return tolerance_locked();
}

double ConcurrencyController::tolerance_locked() const {
  return std::clamp(1.0 + kNoiseK * noise_, kLatencyTolerance, kMaxTolerance);
}

void ConcurrencyController::learn_noise_locked(double median_ms, bool same_limit) {
  // Only epochs at one limit tell noise from the effect of a change; a step of the workload
  // itself counts once, and its weight decays over the next epochs.
  if (same_limit && previous_median_ms_ > 0.0) {
    steps_[next_step_++ % steps_.size()] = std::abs(median_ms / previous_median_ms_ - 1.0);
    std::vector<double> known(steps_.begin(),
                              steps_.begin() + std::min<size_t>(next_step_, steps_.size()));
    if (known.size() >= kMinNoiseSteps) noise_ = median_of(known);
  }
  previous_median_ms_ = median_ms;
}

void ConcurrencyController::rotate_baseline_locked(core::TimePoint now) {
  if (now - bucket_start_ < baseline_window_) return;
  const double before = baseline_locked();
  previous_bucket_min_ms_ = bucket_min_ms_;
  bucket_min_ms_ = kNoSample;
  bucket_start_ = now;
  const double after = baseline_locked();
  // The cheap old samples expired and the floor moved up: what was learnt about the knee belongs
  // to the old workload, so search again from the current limit.
  if (std::isfinite(before) && std::isfinite(after) && after > before * kLatencyTolerance) {
    ceiling_ = 0;
    good_ = std::min(good_, limit_);
    hold_epochs_ = 0;
  }
}

uint32_t ConcurrencyController::update(size_t queued_records, double memory_pressure) {
  std::lock_guard lock(mutex_);
  epoch_peak_in_flight_ = std::max(epoch_peak_in_flight_, limit_);
  return decide_locked(queued_records, memory_pressure);
}

uint32_t ConcurrencyController::update(const LoadSignals& load) {
  std::lock_guard lock(mutex_);
  epoch_peak_in_flight_ = std::max(epoch_peak_in_flight_, load.in_flight);
  return decide_locked(load.queued_records, load.memory_pressure);
}

bool ConcurrencyController::rise_confirmed_locked(core::TimePoint now, double gradient,
                                                  double tolerance) {
  if (rise_epochs_++ == 0) rise_since_ = now;
  // confirm_ epochs in a row, or kConfirmEpochs that span kConfirmTime: on a slow sink the
  // epochs are long, and a rise that lasts a second is not a passing level. A rise of more than
  // kClearRise times the tolerance is no noise: one epoch confirms it, unless the latency was
  // seen to have two levels of its own.
  return rise_epochs_ >= confirm_ ||
         (rise_epochs_ >= kConfirmEpochs && now - rise_since_ >= kConfirmTime) ||
         (confirm_ == kConfirmEpochs && gradient > tolerance * kClearRise);
}

bool ConcurrencyController::clear_verdict_locked(double judged_ms) const {
  // The judgement's lines (judge_cut_locked), crossed by the noise band (the tolerance) again:
  // more epochs would not change the verdict. Not while the latency is known to have two levels.
  if (confirm_ != kConfirmEpochs || cut_from_ == 0) return false;
  const double tolerance = tolerance_locked();
  const double f = static_cast<double>(limit_) / cut_from_;
  const bool not_paid = judged_ms > cut_latency_ms_ * (1.0 + f) / 2 * tolerance;
  const bool paid_in_full =
      limit_ > min_ && judged_ms < cut_latency_ms_ * f * kProportionalCut / tolerance;
  return not_paid || paid_in_full;
}

void ConcurrencyController::watch_fallback_locked(double median_ms) {
  // After an undone cut: latency back at the level it had before the rise, with no cut of ours,
  // means the rise was one of two levels the latency takes by itself (a client's queue with or
  // without room): demand a longer rise before the next cut. A workload that got dearer and stays
  // so (the undo was right) never comes back, and keeps one-epoch verdicts.
  if (fallback_ms_ <= 0.0 || median_ms > fallback_ms_ * tolerance_locked()) return;
  fallback_ms_ = 0.0;
  confirm_ = std::min(confirm_ * 2, kMaxConfirmEpochs);
}

uint32_t ConcurrencyController::decide_locked(size_t queued_records, double memory_pressure) {
  if (!adaptive_) return limit_;

  const core::TimePoint now = clock_.now();
  if (epoch_ms_.size() < limit_ && now - last_decision_ < epoch_timeout_) return limit_;

  const bool have_latency = !epoch_ms_.empty();
  const double median_ms = median_of(epoch_ms_);
  epoch_ms_.clear();
  if (have_latency) {
    learn_noise_locked(median_ms, last_change_ < last_decision_);
    watch_fallback_locked(median_ms);
  }
  const bool filled = epoch_peak_in_flight_ >= limit_;
  epoch_peak_in_flight_ = 0;
  last_decision_ = now;
  rotate_baseline_locked(now);

  const uint32_t before = limit_;
  verb_.clear();
  // A cut is judged on the median of confirm_ epochs after it, not on one: a latency with two
  // levels would otherwise make a lucky epoch look like a cut that paid.
  const bool judging = memory_pressure < pressure_threshold_ && have_latency && cut_from_ != 0;
  if (judging) judge_ms_.push_back(median_ms);
  // While a judgement is incomplete, wait at the cut limit; once judged, a cut undone (or cut
  // again) is this epoch's decision.
  const bool waiting = judging && judge_ms_.size() < confirm_ &&
                       (judge_ms_.size() < kConfirmEpochs || now - last_change_ < kConfirmTime) &&
                       !clear_verdict_locked(median_of(judge_ms_));
  if (waiting || (judging && judge_cut_locked(median_of(judge_ms_), now))) {
    // Nothing more to decide this epoch.
  } else if (memory_pressure >= pressure_threshold_) {
    cut_from_ = 0;
    const auto cut = static_cast<uint32_t>(std::floor(limit_ * kPressureCut));
    limit_ = std::max(min_, std::min(cut, limit_ > 0 ? limit_ - 1 : 0));
    verb_ = "cut";
    why_ = fmt::format("memory pressure {:.2f} >= {:.2f}", memory_pressure, pressure_threshold_);
    phase_ = Phase::pressure;
    hold_epochs_ = 0;
  } else if (have_latency) {
    const double baseline = baseline_locked();
    const double gradient = std::isfinite(baseline) && baseline > 0 ? median_ms / baseline : 1.0;
    const double tolerance = tolerance_locked();
    why_ = fmt::format("latency {:.2f}x baseline ({:.4f} ms/record, tolerance {:.2f})", gradient,
                       median_ms, tolerance);
    if (gradient <= tolerance) {
      rise_epochs_ = 0;
      on_latency_hold_locked(queued_records, filled, now);
    } else if (limit_ > good_ || rise_confirmed_locked(now, gradient, tolerance)) {
      // Above the last limit that held, one epoch decides (a search or a probe); at a limit that
      // held, the rise must last confirm_ epochs in a row.
      if (limit_ <= good_) why_ += fmt::format(", {} epochs in a row", rise_epochs_);
      rise_epochs_ = 0;
      on_latency_rise_locked(gradient, median_ms);
    }
  } else if (phase_ == Phase::pressure) {
    phase_ = ceiling_ == 0 ? Phase::slow_start : Phase::steady;
  }
  if (have_latency) {
    latency_ms_ = median_ms;
    bucket_min_ms_ = std::min(bucket_min_ms_, median_ms);
  }

  limit_ = std::clamp(limit_, min_, max_);
  if (limit_ != before) {
    last_change_ = now;
    trace_.record(verb_.empty() ? "move" : verb_, before, limit_, why_);
  }
  return limit_;
}

bool ConcurrencyController::judge_cut_locked(double mean_ms, core::TimePoint now) {
  judge_ms_.clear();
  if (cut_from_ == 0) return false;
  const uint32_t from = cut_from_;
  const uint32_t above = cascade_ceiling_;
  cut_from_ = 0;
  cascade_ceiling_ = 0;
  // A cut to a fraction f of the limit should bring latency down towards f of what it was (all of
  // it in a saturated system, more past a knee); half of that drop counts as help.
  const double f = static_cast<double>(limit_) / from;
  if (limit_ < from && limit_ > min_ && mean_ms <= cut_latency_ms_ * f * kProportionalCut) {
    // The whole drop: as many records per second with fewer batches in flight, so the limit is
    // still past the knee (the baseline, learnt elsewhere, did not show it). Halve again.
    verb_ = "cut again";
    why_ = fmt::format("latency fell to {:.2f}x with {:.2f}x the limit: still past the knee",
                       mean_ms / cut_latency_ms_, f);
    cascade_ceiling_ = from;
    cut_from_ = limit_;
    cut_latency_ms_ = mean_ms;
    ceiling_ = from;
    limit_ = std::max(min_, limit_ / 2);
    good_ = limit_;
    return true;
  }
  if (limit_ < from && mean_ms <= cut_latency_ms_ * (1.0 + f) / 2) {
    confirm_ = kConfirmEpochs;  // the cut paid: rises are ours again
    return false;               // keep the cut
  }
  const double baseline_before = baseline_locked();
  bucket_min_ms_ = previous_bucket_min_ms_ = mean_ms;
  bucket_start_ = now;
  latency_ms_ = mean_ms;
  limit_ = from;
  good_ = from;
  hold_epochs_ = 0;
  if (above > from) {
    // The cuts paid in full down to `from` and not below it: `from` is the knee, and the latency
    // here is the no-load latency.
    verb_ = "back to knee";
    why_ =
        fmt::format("latency {:.4f} ms/record did not fall below {}; new baseline", mean_ms, from);
    ceiling_ = above;
    phase_ = Phase::steady;
    return true;
  }
  // Fewer batches in flight did not make them faster, so the rise did not come from our
  // concurrency: the work itself got costlier. Learn its latency as the new baseline and go back
  // to the limit from before the cut, then search upwards again.
  verb_ = "undo cut";
  why_ = fmt::format(
      "latency {:.4f} ms/record did not fall with the cut: the work got costlier; "
      "new baseline",
      mean_ms);
  ceiling_ = 0;
  phase_ = Phase::slow_start;
  // A rise that cutting did not cure was not ours. If the latency now falls back to where it was
  // before the rise (two levels, neither of them set by our limit), demand a longer rise before
  // the next cut (watch_fallback_locked).
  fallback_ms_ = baseline_before;
  return true;
}

void ConcurrencyController::on_latency_rise_locked(double gradient, double mean_ms) {
  hold_epochs_ = 0;
  phase_ = Phase::steady;
  // A failed probe: the knee did not move, so wait twice as long before the next one.
  if (probing_) probe_wait_ = std::min(probe_wait_ * 2, kMaxProbeEpochs);
  probing_ = false;
  if (limit_ > good_) {
    // Searching or probing above the last limit that held: this one is too high; bisect.
    ceiling_ = limit_;
    limit_ = good_ + (ceiling_ - good_) / 2;
    verb_ = "bisect down";
    return;
  }
  // A limit that used to hold no longer does: the system got slower. Cut by the latency ratio;
  // the next epoch tells whether the cut helped (judge_cut_locked).
  fallback_ms_ = 0.0;
  cut_from_ = limit_;
  cut_latency_ms_ = mean_ms;
  ceiling_ = limit_;
  probe_wait_ = kProbeEpochs;  // a new workload: its knee is not known to be stable
  const double factor = std::clamp(1.0 / gradient, 0.5, 0.9);
  const auto cut = static_cast<uint32_t>(std::floor(limit_ * factor));
  limit_ = std::max(min_, std::min(cut, limit_ - 1));
  verb_ = "cut";
  good_ = limit_;
}

void ConcurrencyController::on_latency_hold_locked(size_t queued_records, bool filled,
                                                   core::TimePoint now) {
  // An idle limit proves nothing: only a limit that was filled counts as holding.
  if (queued_records == 0 || !filled) {
    if (phase_ == Phase::pressure) phase_ = ceiling_ == 0 ? Phase::slow_start : Phase::steady;
    return;
  }
  good_ = std::max(good_, limit_);
  if (ceiling_ != 0 && limit_ >= ceiling_) ceiling_ = 0;  // a probe held: capacity grew
  if (ceiling_ == 0) probe_wait_ = kProbeEpochs;          // a new search: probe soon again
  probing_ = false;

  if (ceiling_ == 0) {
    phase_ = Phase::slow_start;
    limit_ = std::min<uint64_t>(uint64_t{limit_} * 2, max_);
    verb_ = "double";
    return;
  }
  phase_ = Phase::steady;
  if (ceiling_ - limit_ > 1) {
    limit_ += (ceiling_ - limit_) / 2;
    verb_ = "bisect up";
    return;
  }
  if (++hold_epochs_ >= probe_wait_ && now - last_change_ >= kProbeDwell) {
    hold_epochs_ = 0;
    ++limit_;
    probing_ = true;
    verb_ = "probe";
  }
}

}  // namespace sluice::middleware
