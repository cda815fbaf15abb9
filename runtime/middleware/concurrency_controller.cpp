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
// A call's spread: from epochs of at least this many calls, a median absolute deviation scaled to
// a normal deviation, averaged with this weight per epoch.
constexpr uint32_t kMinSpreadSamples = 2;
constexpr double kMadToDeviation = 1.4826;
constexpr double kSpreadWeight = 0.2;
// The first calls' spread is pooled over this many degrees of freedom.
constexpr uint32_t kPooledDegrees = 16;
// Below this many degrees of freedom an epoch is sized by the spread x sqrt(this / df).
constexpr double kConfidentDegrees = 4.0;
// The standard error of a median of n samples is ~1.25 deviations / sqrt(n).
constexpr double kMedianError = 1.25;
// The mean |difference| of two such medians is ~1.13 standard errors (sqrt(2) x sqrt(2 / pi)).
constexpr double kStepPerError = 1.13;

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
  // The measured jitter between epochs, or at least what the calls' spread predicts for it (two
  // medians' difference: ~1.13 standard errors), which is known from the first epoch on.
  const double predicted = spread_known_
                               ? kStepPerError * kMedianError * call_spread_ /
                                     std::sqrt(static_cast<double>(epoch_samples_locked()))
                               : 0.0;
  return std::clamp(1.0 + kNoiseK * std::max(noise_, predicted), kLatencyTolerance, kMaxTolerance);
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

void ConcurrencyController::learn_spread_locked() {
  // The spread of one call's latency per record around the epoch's median (the median absolute
  // deviation, scaled to a deviation), averaged over epochs: calls at one limit in one epoch
  // differ by jitter, not by the limit.
  if (epoch_ms_.size() < kMinSpreadSamples) return;
  std::vector<double> v = epoch_ms_;
  const double m = median_of(v);
  if (m <= 0.0) return;
  if (pooled_df_ < kPooledDegrees) {
    // The first calls: a pooled variance (a median absolute deviation of two or three calls
    // says little, and a spread guessed low sizes the epochs whose medians become the baseline).
    for (double x : v) pooled_squares_ += (x / m - 1.0) * (x / m - 1.0);
    pooled_df_ += static_cast<uint32_t>(v.size()) - 1;
    call_spread_ = std::sqrt(pooled_squares_ / pooled_df_);
    spread_known_ = true;
    return;
  }
  for (double& x : v) x = std::abs(x - m);
  const double spread = kMadToDeviation * median_of(v) / m;
  call_spread_ = (1 - kSpreadWeight) * call_spread_ + kSpreadWeight * spread;
}

uint32_t ConcurrencyController::epoch_samples_locked() const {
  // The median of n calls varies by ~1.25 deviations / sqrt(n): on a jittery sink one call per
  // batch in flight makes an epoch whose median moves by more than a step of the limit does,
  // so an epoch takes as many completions as bring that within kEpochPrecision, up to
  // kMaxEpochStretch round trips (and the metrics interval bounds it in time).
  if (!spread_known_) return limit_;
  // A spread pooled over few calls may be far too low: size by a larger one until it is known.
  const double doubt = std::sqrt(std::max(1.0, kConfidentDegrees / std::max(1u, pooled_df_)));
  const double se = kMedianError * call_spread_ * doubt / kEpochPrecision;
  const double wanted = std::ceil(se * se);
  const uint32_t cap = std::max(limit_ * kMaxEpochStretch, kMinStretchSamples);
  return std::max(limit_, static_cast<uint32_t>(std::min<double>(wanted, cap)));
}

double ConcurrencyController::smoothed_locked(double median_ms, bool same_limit) {
  // The baseline is a minimum over many epochs: of single epochs' medians under +-30% jitter it
  // sits three deviations low, and every held epoch reads as a rise. The median of the last few
  // epochs at one limit has a third of the spread, so its minimum sits near the level.
  if (!same_limit || recent_limit_ != limit_) recent_ms_.clear();
  recent_limit_ = limit_;
  if (recent_ms_.size() == kSmoothEpochs) recent_ms_.erase(recent_ms_.begin());
  recent_ms_.push_back(median_ms);
  std::vector<double> copy = recent_ms_;
  return median_of(copy);
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
  if (epoch_ms_.size() < epoch_samples_locked() && now - last_decision_ < epoch_timeout_) {
    return limit_;
  }

  // An epoch sized before the calls' spread was known is no baseline: its median may rest on one
  // call (the first epochs, at limits 1 and 2, only double).
  const bool sized = spread_known_;
  learn_spread_locked();
  const bool have_latency = !epoch_ms_.empty();
  const double median_ms = median_of(epoch_ms_);
  epoch_ms_.clear();
  double smoothed_ms = median_ms;
  if (have_latency) {
    const bool same_limit = last_change_ < last_decision_;
    learn_noise_locked(median_ms, same_limit);
    watch_fallback_locked(median_ms);
    smoothed_ms = smoothed_locked(median_ms, same_limit);
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
    if (sized) bucket_min_ms_ = std::min(bucket_min_ms_, smoothed_ms);
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
  // Only a cut whose proportional drop is larger than the noise band can tell.
  const bool measurable = f * tolerance_locked() <= 1.0;
  if (measurable && limit_ < from && limit_ > min_ &&
      mean_ms <= cut_latency_ms_ * f * kProportionalCut) {
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
  if (cut_ceiling_ != 0 && mean_ms <= baseline_before * cut_tolerance_) {
    // The latency after the cut is back within the noise band of the old baseline: the rise
    // was noise (as a +-30% jitter gives now and then), not a dearer workload. Keep the knee
    // known before it rather than search up from here by doubling.
    ceiling_ = cut_ceiling_;
    phase_ = Phase::steady;
  } else {
    ceiling_ = 0;
    phase_ = Phase::slow_start;
  }
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
  probe_step_ = 1;
  probe_holds_ = 0;
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
  cut_tolerance_ = tolerance_locked();
  cut_ceiling_ = ceiling_ > limit_ ? ceiling_ : 0;
  ceiling_ = limit_;
  // A new workload: its knee is not known to be stable. A rise within the noise band at the top
  // of the known range refines the knee rather than moving it: probe later, as after a failed
  // probe.
  probe_wait_ = gradient <= tolerance_locked() * kClearRise
                    ? std::min(probe_wait_ * 2, kMaxProbeEpochs)
                    : kProbeEpochs;
  // A rise within kClearRise of the noise band is cut by its excess over the band only: under
  // jitter such a rise is one step past the knee more often than a collapse.
  const double tolerance = tolerance_locked();
  const double excess = gradient <= tolerance * kClearRise ? gradient / tolerance : gradient;
  const double factor = std::clamp(1.0 / excess, 0.5, 0.9);
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
  // A probe must hold kProbeHolds epochs in a row (it stays above good_ until then, so one
  // epoch over the tolerance still steps it back).
  if (probing_ && ceiling_ != 0 && limit_ >= ceiling_ && ++probe_holds_ < kProbeHolds) return;
  good_ = std::max(good_, limit_);
  if (ceiling_ != 0 && limit_ >= ceiling_) {
    if (probing_ && probe_step_ <= limit_ / 2) {
      // A probe held. Under jitter one epoch just past the knee can read as holding: go on up
      // by steps that double (1, 1, 2, 4, ...), and double the limit itself (slow start) only
      // once the step is half of it: capacity grew by more than the noise can fake.
      limit_ += probe_step_;
      probe_step_ *= 2;
      probe_holds_ = 0;
      ceiling_ = limit_;
      verb_ = "probe again";
      return;
    }
    ceiling_ = 0;  // capacity grew
  }
  if (ceiling_ == 0) probe_wait_ = kProbeEpochs;  // a new search: probe soon again
  probing_ = false;
  probe_step_ = 1;
  probe_holds_ = 0;

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
  // The dwell grows with the probe's wait (a knee that keeps holding is probed less often).
  const auto dwell = std::min(kProbeDwell * (probe_wait_ / kProbeEpochs), kMaxProbeDwell);
  if (++hold_epochs_ >= probe_wait_ && now - last_change_ >= dwell) {
    hold_epochs_ = 0;
    ++limit_;
    probing_ = true;
    verb_ = "probe";
  }
}

}  // namespace sluice::middleware
