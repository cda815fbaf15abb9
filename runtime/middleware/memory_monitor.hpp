// Memory accounting for a stage: exact in-flight bytes, process RSS, the limit, pressure, cleanup.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "core/settings.hpp"

namespace sluice::middleware {

// Pressure = max(rss, in-flight bytes) / limit. In-flight bytes are exact and move at once; RSS is
// what the kernel counts against a cgroup but is only as fresh as the last sample(); the larger of
// the two is the safer reading.
//
// The limit: memory_limit_mb if set, else the cgroup v2 memory.max (if it is a number), else
// physical memory; a cgroup limit above physical memory counts as physical memory.
//
// Thread-safety: add_inflight() and every getter are lock-free atomics, safe from worker threads.
// sample() and maybe_cleanup() may be called from any thread; maybe_cleanup() runs at most one
// cleanup per gc_interval_ms even when called concurrently.
class MemoryMonitor {
 public:
  using RssReader = std::function<uint64_t()>;

  static constexpr const char* kCgroupMemoryMax = "/sys/fs/cgroup/memory.max";

  MemoryMonitor(const core::PerformanceSettings& settings, const core::Clock& clock);
  // For tests: a fake RSS reading and another cgroup file.
  MemoryMonitor(const core::PerformanceSettings& settings, const core::Clock& clock,
                RssReader rss_reader, std::string cgroup_memory_max_path);

  // Bytes of records the runtime holds in flight (queued or in a batch); negative to give back.
  void add_inflight(int64_t delta) { inflight_.fetch_add(delta, std::memory_order_relaxed); }
  uint64_t inflight_bytes() const {
    const int64_t v = inflight_.load(std::memory_order_relaxed);
    return v > 0 ? static_cast<uint64_t>(v) : 0;
  }

  // Reads RSS now (from /proc/self/statm unless a reader was given); returns it.
  uint64_t sample();
  uint64_t rss_bytes() const { return rss_.load(std::memory_order_relaxed); }
  uint64_t peak_bytes() const { return peak_.load(std::memory_order_relaxed); }
  uint64_t limit_bytes() const { return limit_; }

  double pressure() const;
  // pressure() when memory_control is on, else 0: what the controllers should see.
  double control_pressure() const { return memory_control_ ? pressure() : 0.0; }
  // pressure() >= memory_pressure_threshold (always false when memory_control is off).
  bool over_threshold() const;

  // Memory the runtime cannot account for: RSS at or over the pause threshold
  // (memory_pressure_threshold x limit) for unaccounted_after() while the runtime's accounted
  // bytes (inflight_bytes) are under half of that: nothing of ours to drain (a leaking plugin, a
  // heap that does not shrink). Health reports it as degraded; the stage admits records in small
  // steps meanwhile (AdaptiveStage::intake_room).
  struct Unaccounted {
    uint64_t rss = 0;
    uint64_t limit = 0;
    uint64_t accounted = 0;
  };
  // The figures of the last sample() if the condition has held for unaccounted_after().
  std::optional<Unaccounted> unaccounted() const;
  core::Duration unaccounted_after() const { return unaccounted_after_; }
  // The hard bound: unaccounted() and the last RSS at or over kHardBound of the limit (with
  // memory_control on). Cleanups and small-step intake have not brought it down, and past the
  // limit a cgroup's OOM killer would end the process without a word: the pipeline stops instead.
  static constexpr double kHardBound = 0.95;
  std::optional<Unaccounted> past_hard_bound() const;

  // If pressure >= gc_trigger_threshold and gc_interval_ms passed since the last cleanup: calls
  // on_pressure(level) (where the stage tells plugins to shrink), returns freed heap to the OS with
  // malloc_trim, samples RSS again and returns true.
  bool maybe_cleanup(const std::function<void(double level)>& on_pressure);
  uint64_t cleanups() const { return cleanups_.load(std::memory_order_relaxed); }

  // The limit a monitor of these settings measures against (see above).
  static uint64_t limit_for(const core::PerformanceSettings& settings) {
    return resolve_limit(settings, kCgroupMemoryMax);
  }
  // RSS of this process from /proc/self/statm; 0 if unreadable.
  static uint64_t read_proc_rss();
  // The number in a cgroup v2 memory.max file; nullopt for "max", a missing file or garbage.
  static std::optional<uint64_t> read_cgroup_limit(const std::string& path);

 private:
  static uint64_t resolve_limit(const core::PerformanceSettings& settings,
                                const std::string& cgroup_path);
  void track_unaccounted(uint64_t rss);

  const core::Clock& clock_;
  const bool memory_control_;
  const double pressure_threshold_;
  const double gc_trigger_threshold_;
  const core::Duration gc_interval_;
  const RssReader rss_reader_;
  const uint64_t limit_;

  std::atomic<int64_t> inflight_{0};
  std::atomic<uint64_t> rss_{0};
  std::atomic<uint64_t> peak_{0};
  std::atomic<uint64_t> cleanups_{0};

  std::mutex cleanup_mutex_;
  std::optional<core::TimePoint> last_cleanup_;

  const core::Duration unaccounted_after_;
  mutable std::mutex unaccounted_mutex_;
  std::optional<core::TimePoint> unaccounted_since_;
  Unaccounted last_unaccounted_;
};

}  // namespace sluice::middleware
