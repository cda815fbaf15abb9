// Adaptive limit on batches in flight, moved by measured latency and pushed down by memory
// pressure.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/settings.hpp"
#include "middleware/controller.hpp"

namespace sluice::middleware {

// The signal is latency per record (batch round-trip time / records), the median over one "epoch":
// as many fresh completions as the limit allows (about one round trip), or a metrics interval.
// The median, not the mean: one slow call (a retry, a sink's queue briefly full) moves a mean
// past any tolerance, but not the median of the epoch.
// Per record, because the batch-size controller keeps batch time near its target and would hide
// congestion from a per-batch signal. Completions of batches started before the last limit change
// are left out, so each epoch measures the limit it is judging.
//
// Latency "holds" while the epoch median is within the tolerance of the baseline: the minimum
// epoch median over a sliding window (two buckets of `baseline_window`), so a permanent change of
// cost is learnt within two windows instead of pinning the limit at its minimum. The tolerance
// is kLatencyTolerance, or more on a noisy sink: 1 + kNoiseK x the measured jitter (the median of
// |m / m' - 1| over the last consecutive epochs m', m at one limit: a median, so one step of the
// workload does not count as jitter), at most kMaxTolerance, so a sink whose calls vary by +-30%
// does not read as past its knee epoch after epoch (the baseline, a minimum of noisy medians,
// sits low).
//
// Jitter per call (a sink whose calls vary by +-30%): an epoch takes as many completions as make
// its median precise to ~kEpochPrecision given the calls' measured spread (the spread of one
// call's latency per record around the epoch's median: pooled over the first calls, then a
// median absolute deviation averaged over epochs), between the limit and kMaxEpochStretch x the
// limit, and the tolerance is at least what that spread predicts for the step between two such
// medians. The baseline takes the median of the last kSmoothEpochs epochs at one limit, not
// single epochs (whose minimum sits far below the level), and no epoch sized before the spread
// was known. A rise within kClearRise x the tolerance is cut by its excess over the tolerance
// only; a cut undone with the latency back within the tolerance of the old baseline (the rise
// was noise) keeps the knee known before it (no slow start); a probe must hold
// kProbeHolds epochs, and one that held goes on up by steps of 1, 1, 2, 4, ... (slow start once
// the step is half the limit), so one lucky epoch does not double the limit. A cut that paid in
// full is halved again only when its proportional drop is larger than the tolerance.
//
// Hysteresis: a rise at a limit that used to hold cuts only after kConfirmEpochs epochs over the
// tolerance in a row; a cut is judged on the median of as many epochs after it. kConfirmEpochs
// epochs in a row that span kConfirmTime are enough for either: on a slow sink the epochs are
// long, and a rise that lasts a second is not a passing level. A verdict that one epoch already
// gives clear of the noise needs no more: a rise past kClearRise x the tolerance cuts at once,
// and a cut is judged at once when its first epochs' median is past the judgement's line by the
// tolerance (a workload that changes, as the shift benchmark's sink every 10 s, is followed in
// one epoch per step, not three). Each cut that had to be undone and after which the latency
// fell back to the level it had before the rise, at no cut of ours (two levels, neither set by
// our limit: a client's queue with or without room), doubles the count, up to
// kMaxConfirmEpochs, and turns the one-epoch verdicts off; a cut that pays resets it. A latency
// that jumps between two values thus stops cutting and undoing, while a workload that got
// dearer and stays so (the undo was right) keeps the fast verdicts.
//
// Moves, once per epoch:
//  - slow start: the limit doubles while latency holds and work is queued;
//  - the first rise marks a ceiling; the limit then bisects between the highest limit known to
//    hold and the lowest known to raise latency, so it finds the knee in log2 steps;
//  - at the knee it stays put and probes one above after kProbeEpochs epochs (and at least
//    kProbeDwell x the wait / kProbeEpochs, at most kMaxProbeDwell, after the last change),
//    waiting twice as long after each failed probe or cut within the noise (up to
//    kMaxProbeEpochs), so a stable knee is not paid for with a probe every few round trips; a
//    failed probe steps straight back, a successful one goes on up (above) (capacity grew);
//  - latency rising at a limit that used to hold (the system got slower) cuts the limit by the
//    latency ratio (between x0.5 and x0.9). If the next epoch did not get at least half of the
//    proportional drop in latency (a cut to f of the limit: latency <= (1 + f) / 2 of before), the
//    cut did not help: the work itself got costlier, so that latency becomes the baseline and the
//    limit goes back to where it was (then searches upwards again), instead of sitting at the
//    minimum until the old baseline expires. If instead latency fell in full proportion (or
//    more: as many records per second with fewer in flight), the limit is still past the knee
//    although the baseline did not say so (it was learnt under a dearer workload): it halves
//    again, until a cut stops paying; the limit before that cut is the knee, and its latency
//    the new baseline;
//  - memory pressure >= memory_pressure_threshold cuts x0.75 per epoch, whatever the latency.
// It only goes up while queued_records > 0, latency holds, pressure is below the threshold and the
// limit was filled: at some point of the epoch as many batches were in flight as the limit allows
// (TCP's "cwnd-limited" rule, RFC 7661). A limit the work never fills says nothing about a higher
// one: when the source, not the workers, sets the pace, more lanes only cost routing and wake-ups.
//
// Thread-safety: every member may be called from any thread; on_batch_done() and update() take a
// short mutex.
class ConcurrencyController final : public ConcurrencyLimiter {
 public:
  static constexpr double kLatencyTolerance = 1.15;
  static constexpr double kMaxTolerance = 1.5;
  static constexpr double kNoiseK = 5.0;
  static constexpr uint32_t kConfirmEpochs = 3;
  static constexpr uint32_t kMaxConfirmEpochs = 16;
  static constexpr double kClearRise = 2.0;
  static constexpr uint32_t kProbeEpochs = 8;
  // A probe above the knee counts as held after this many epochs in a row.
  static constexpr uint32_t kProbeHolds = 2;
  static constexpr uint32_t kMaxProbeEpochs = 64;
  static constexpr core::Duration kProbeDwell = std::chrono::seconds(4);
  static constexpr core::Duration kMaxProbeDwell = std::chrono::seconds(16);
  static constexpr core::Duration kConfirmTime = std::chrono::seconds(1);
  // A cut to f of the limit "paid in full" when latency fell to at most f * kProportionalCut.
  static constexpr double kProportionalCut = 1.1;
  // The baseline learns the median of this many epochs in a row at one limit, not one epoch's.
  static constexpr size_t kSmoothEpochs = 5;
  // An epoch's median should vary by about this much (relative), given the calls' spread; an
  // epoch takes at most kMaxEpochStretch x the limit completions (or kMinStretchSamples) for it.
  static constexpr double kEpochPrecision = 0.04;
  static constexpr uint32_t kMaxEpochStretch = 4;
  static constexpr uint32_t kMinStretchSamples = 4;

  ConcurrencyController(const core::PerformanceSettings& settings, const core::Clock& clock,
                        core::Duration baseline_window = std::chrono::seconds(30));

  // A batch of `records` finished `rtt` after it was dispatched (now - rtt is its start).
  void on_batch_done(core::Duration rtt, uint32_t records) override;

  // After each batch and at each metrics interval; returns the new limit. A decision is taken at
  // most once per epoch; calls in between return the limit unchanged. Without `in_flight` the
  // limit counts as filled.
  uint32_t update(size_t queued_records, double memory_pressure);
  uint32_t update(const LoadSignals& load) override;

  uint32_t limit() const override;
  // "slow_start", "steady", "pressure" or "fixed".
  std::string_view phase() const override;
  const DecisionTrace& trace() const override { return trace_; }

  // Latency per record in ms: the last epoch's median and the baseline (0 before any sample).
  double latency_ms() const;
  double baseline_ms() const;
  // The ratio to the baseline that still counts as holding (kLatencyTolerance or more on noise).
  double tolerance() const;

 private:
  enum class Phase { slow_start, steady, pressure, fixed };

  double baseline_locked() const;
  void rotate_baseline_locked(core::TimePoint now);
  double tolerance_locked() const;
  void learn_noise_locked(double median_ms, bool same_limit);
  bool judge_cut_locked(double mean_ms, core::TimePoint now);
  void on_latency_rise_locked(double gradient, double mean_ms);
  bool rise_confirmed_locked(core::TimePoint now, double gradient, double tolerance);
  bool clear_verdict_locked(double judged_ms) const;
  void watch_fallback_locked(double median_ms);
  double smoothed_locked(double median_ms, bool same_limit);
  void learn_spread_locked();
  uint32_t epoch_samples_locked() const;
  uint32_t decide_locked(size_t queued_records, double memory_pressure);
  void on_latency_hold_locked(size_t queued_records, bool filled, core::TimePoint now);

  const core::Clock& clock_;
  DecisionTrace trace_;
  const bool adaptive_;
  const uint32_t min_;
  const uint32_t max_;
  const double pressure_threshold_;
  const core::Duration epoch_timeout_;
  const core::Duration baseline_window_;

  mutable std::mutex mutex_;
  uint32_t limit_;
  Phase phase_;
  uint32_t good_;         // highest limit known to hold latency
  uint32_t ceiling_ = 0;  // lowest limit known to raise latency; 0: not known
  uint32_t hold_epochs_ = 0;
  uint32_t probe_wait_ = kProbeEpochs;  // epochs at the knee before the next probe
  bool probing_ = false;                // this epoch runs one above the knee
  uint32_t probe_step_ = 1;             // the next step up after a probe that held
  uint32_t probe_holds_ = 0;            // epochs this probe held
  uint32_t cut_from_ = 0;               // the limit before the last latency cut, until it is judged
  double cut_latency_ms_ = 0.0;         // the latency that made that cut
  double cut_tolerance_ = 0.0;          // the tolerance when that cut was made
  uint32_t cut_ceiling_ = 0;            // the knee's ceiling known before that cut; 0: none
  uint32_t cascade_ceiling_ = 0;        // the limit before the previous cut, while cuts keep paying
  std::string verb_, why_;              // this epoch's decision, for the trace

  std::vector<double> epoch_ms_;    // this epoch's latencies per record
  std::array<double, 16> steps_{};  // the last |m / m' - 1| of consecutive epoch medians, one limit
  size_t next_step_ = 0;
  double noise_ = 0.0;  // their median: the jitter of one epoch's median
  double previous_median_ms_ = 0.0;
  std::vector<double> recent_ms_;  // the last kSmoothEpochs epoch medians at recent_limit_
  uint32_t recent_limit_ = 0;
  double call_spread_ = 0.0;  // a call's latency per record: its relative deviation in an epoch
  bool spread_known_ = false;
  double pooled_squares_ = 0.0;  // the first calls' squared relative deviations, and their count
  uint32_t pooled_df_ = 0;
  uint32_t rise_epochs_ = 0;           // epochs over the tolerance in a row
  core::TimePoint rise_since_;         // when the first of them ended
  uint32_t confirm_ = kConfirmEpochs;  // epochs in a row a cut at a held limit needs
  std::vector<double> judge_ms_;       // medians of the epochs since the last cut, until judged
  double fallback_ms_ = 0.0;  // after an undone cut, the baseline before it, until the next cut
  uint32_t epoch_peak_in_flight_ = 0;  // the most batches in flight seen this epoch
  core::TimePoint last_decision_;
  core::TimePoint last_change_;
  double latency_ms_ = 0.0;

  double bucket_min_ms_;           // current baseline bucket
  double previous_bucket_min_ms_;  // the one before; the baseline is the smaller of the two
  core::TimePoint bucket_start_;
};

}  // namespace sluice::middleware
