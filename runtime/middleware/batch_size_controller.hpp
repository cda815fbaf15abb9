// Adaptive batch size: steers the time one batch takes toward target_batch_time_ms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "core/clock.hpp"
#include "core/settings.hpp"
#include "middleware/controller.hpp"

namespace sluice::middleware {

// Models the cost of a batch of n records as t = fixed + per_record * n, fitted over a small window
// of recent batches, and steps the target size toward the n whose predicted time is the target.
// When the fixed cost (a remote call's round trip) is at least the target, the goal is instead
// ten times the target, where such a fixed cost is at most a tenth (between half the target and
// the target, a line joins the two): a target the fixed cost alone fills would otherwise pull the
// size to its minimum and pay almost only overhead. The goal never exceeds ten times the target,
// since a fixed cost may also be congestion that the concurrency limit is about to relieve.
//
// Why a model instead of the seed's x0.9 / x1.1 rule: the model jumps close to the right size in a
// few batches after a change, and because the step aims at a size (not at "a bit more / a bit
// less"), stale observations from batches formed under an older size do not push it past the
// goal. A dead band of +-10% around the target keeps it still once there (after
// leaving the band it steps until within +-3%, so it rests near the target, not at the band's
// edge).
//
// A batch far off the model is held aside: alone it is ignored (a GC pause, one slow request); if
// the next batch misses the same way, the workload changed and the window restarts from the two.
//
// Partial batches (a linger flush smaller than the target) are valid points for the fit when the
// window also holds larger batches; on their own they cannot tell fixed cost from per-record cost,
// so a window of only partial batches never moves the target.
//
// Thread-safety: every member may be called from any thread; observe() takes a short mutex.
class BatchSizeController final : public BatchSizer {
 public:
  explicit BatchSizeController(const core::PerformanceSettings& settings);

  // One completed batch of `records` took `elapsed`. Returns the new target size.
  uint32_t observe(uint32_t records, core::Duration elapsed) override;

  // The size the next batch should have.
  uint32_t current() const override;

  // The model's current fit, for stats and tests (ms and ms per record; 0 before any fit).
  double fixed_cost_ms() const;
  double per_record_cost_ms() const;

 private:
  struct Observation {
    double records;
    double ms;
    bool partial;
  };

  bool fit_locked();
  // The batch time to aim at: the target, or longer when the fixed cost nearly fills it.
  double goal_time_ms_locked() const;
  // +1 / -1 when obs is far slower / faster than the model predicts, else 0.
  int deviation_locked(const Observation& obs) const;

  const bool adaptive_;
  const double min_size_;
  const double max_size_;
  const double target_ms_;
  const double damping_;

  mutable std::mutex mutex_;
  double target_size_;
  std::vector<Observation> window_;  // oldest first, at most kWindow entries
  bool have_model_ = false;
  double fixed_ms_ = 0.0;
  double per_record_ms_ = 0.0;
  bool settling_ = false;  // left the dead band; stepping until close to the target
  // An observation far off the model, held out of the fit until the next one shows whether it was
  // a one-off (dropped) or the first of a new workload (the window restarts from both).
  std::optional<Observation> suspect_;
  int suspect_sign_ = 0;
};

}  // namespace sluice::middleware
