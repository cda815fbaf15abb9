// The interface the adaptive stage steers through: a batch sizer and a concurrency limiter, with
// a short trace of the limiter's decisions. sluice's own controllers are the default; the rival
// arms (rival_controllers.hpp) exist to be benchmarked against them (performance.controller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/settings.hpp"

namespace sluice::middleware {

// What the stage knows when it asks the limiter for a new limit.
struct LoadSignals {
  size_t queued_records = 0;   // waiting in intake and lanes
  uint32_t in_flight = 0;      // batches in flight, counting one that just finished
  double memory_pressure = 0;  // RSS / limit
};

// One change of a limit and why, for /stats, --stats-file and `sluice top`.
struct Decision {
  double at_s = 0;  // seconds since the controller was made
  uint32_t from = 0;
  uint32_t to = 0;
  std::string reason;  // e.g. "cut 8 -> 4: latency 2.1x baseline"
};

// The last kCapacity decisions, oldest first. Thread-safe.
class DecisionTrace {
 public:
  static constexpr size_t kCapacity = 16;

  explicit DecisionTrace(const core::Clock& clock);
  // Records "<verb> <from> -> <to>: <why>", e.g. verb "cut", why "latency 2.1x baseline".
  void record(std::string_view verb, uint32_t from, uint32_t to, std::string_view why);
  std::vector<Decision> snapshot() const;
  uint64_t total() const;  // decisions ever recorded (changes of the limit)

 private:
  const core::Clock& clock_;
  const core::TimePoint start_;
  mutable std::mutex mutex_;
  std::deque<Decision> last_;
  uint64_t total_ = 0;
};

class BatchSizer {
 public:
  virtual ~BatchSizer() = default;
  // One completed batch of `records` took `elapsed`. Returns the new target size.
  virtual uint32_t observe(uint32_t records, core::Duration elapsed) = 0;
  // The size the next batch should have.
  virtual uint32_t current() const = 0;
};

class ConcurrencyLimiter {
 public:
  virtual ~ConcurrencyLimiter() = default;
  // A batch of `records` finished `rtt` after it was dispatched.
  virtual void on_batch_done(core::Duration rtt, uint32_t records) = 0;
  // After each batch and at each metrics interval; returns the new limit.
  virtual uint32_t update(const LoadSignals& load) = 0;
  virtual uint32_t limit() const = 0;
  // A short name of the controller's state ("slow_start", "steady", ...).
  virtual std::string_view phase() const = 0;
  virtual const DecisionTrace& trace() const = 0;
};

struct Controllers {
  std::string name;  // performance.controller
  std::unique_ptr<BatchSizer> batch;
  std::unique_ptr<ConcurrencyLimiter> concurrency;
};

// The controllers performance.controller names (sluice unless a benchmark asks for a rival).
Controllers make_controllers(const core::PerformanceSettings& settings, const core::Clock& clock);

}  // namespace sluice::middleware
