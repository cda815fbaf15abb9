// Memory accounting: RSS from /proc, the limit from config, cgroup or physical memory, cleanup.
#include "middleware/memory_monitor.hpp"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace sluice::middleware {
namespace {

uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

// At least one cleanup (every gc_interval_ms) gets its chance before memory counts as unaccounted.
constexpr core::Duration kUnaccountedAfterAtLeast = std::chrono::seconds(5);

void raise_to(std::atomic<uint64_t>& peak, uint64_t value) {
  uint64_t seen = peak.load(std::memory_order_relaxed);
  while (value > seen && !peak.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

MemoryMonitor::MemoryMonitor(const core::PerformanceSettings& settings, const core::Clock& clock)
    : MemoryMonitor(settings, clock, &MemoryMonitor::read_proc_rss, kCgroupMemoryMax) {}

MemoryMonitor::MemoryMonitor(const core::PerformanceSettings& settings, const core::Clock& clock,
                             RssReader rss_reader, std::string cgroup_memory_max_path)
    : clock_(clock),
      memory_control_(settings.memory_control),
      pressure_threshold_(settings.memory_pressure_threshold),
      gc_trigger_threshold_(settings.gc_trigger_threshold),
      gc_interval_(std::chrono::milliseconds(settings.gc_interval_ms)),
      rss_reader_(rss_reader ? std::move(rss_reader) : RssReader(&MemoryMonitor::read_proc_rss)),
      limit_(resolve_limit(settings, cgroup_memory_max_path)),
      unaccounted_after_(std::max(kUnaccountedAfterAtLeast, 2 * gc_interval_)) {
  sample();
}

uint64_t MemoryMonitor::read_proc_rss() {
  std::ifstream in("/proc/self/statm");
  uint64_t size_pages = 0, resident_pages = 0;
  if (!(in >> size_pages >> resident_pages)) return 0;
  const long page_size = sysconf(_SC_PAGE_SIZE);
  return resident_pages * static_cast<uint64_t>(page_size > 0 ? page_size : 4096);
}

std::optional<uint64_t> MemoryMonitor::read_cgroup_limit(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text.empty()) return std::nullopt;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;  // "max": no limit
  }
  try {
    return std::stoull(text);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

uint64_t MemoryMonitor::resolve_limit(const core::PerformanceSettings& settings,
                                      const std::string& cgroup_path) {
  if (settings.memory_limit_mb > 0) return settings.memory_limit_mb << 20;
  const uint64_t physical = physical_memory_bytes();
  if (const auto cgroup = read_cgroup_limit(cgroup_path); cgroup && *cgroup > 0) {
    return physical > 0 ? std::min(*cgroup, physical) : *cgroup;
  }
  // Unknown physical memory would make every pressure infinite; 1 TiB keeps the math sane.
  return physical > 0 ? physical : (uint64_t{1} << 40);
}

uint64_t MemoryMonitor::sample() {
  const uint64_t rss = rss_reader_();
  rss_.store(rss, std::memory_order_relaxed);
  raise_to(peak_, rss);
  track_unaccounted(rss);
  return rss;
}

void MemoryMonitor::track_unaccounted(uint64_t rss) {
  const auto pause_at = static_cast<uint64_t>(pressure_threshold_ * static_cast<double>(limit_));
  const uint64_t accounted = inflight_bytes();
  std::lock_guard lock(unaccounted_mutex_);
  if (rss < pause_at || accounted >= pause_at / 2) {
    unaccounted_since_.reset();
    return;
  }
  if (!unaccounted_since_) unaccounted_since_ = clock_.now();
  last_unaccounted_ = {rss, limit_, accounted};
}

std::optional<MemoryMonitor::Unaccounted> MemoryMonitor::unaccounted() const {
  std::lock_guard lock(unaccounted_mutex_);
  if (!unaccounted_since_ || clock_.now() - *unaccounted_since_ < unaccounted_after_)
    return std::nullopt;
  return last_unaccounted_;
}

std::optional<MemoryMonitor::Unaccounted> MemoryMonitor::past_hard_bound() const {
  if (!memory_control_) return std::nullopt;
  const auto u = unaccounted();
  if (!u || static_cast<double>(u->rss) < kHardBound * static_cast<double>(u->limit))
    return std::nullopt;
  return u;
}

double MemoryMonitor::pressure() const {
  const uint64_t used = std::max(rss_bytes(), inflight_bytes());
  return static_cast<double>(used) / static_cast<double>(limit_);
}

bool MemoryMonitor::over_threshold() const {
  return memory_control_ && pressure() >= pressure_threshold_;
}

bool MemoryMonitor::maybe_cleanup(const std::function<void(double level)>& on_pressure) {
  if (!memory_control_) return false;
  const double level = pressure();
  if (level < gc_trigger_threshold_) return false;
  {
    // Claim the slot before the (slow) callback so concurrent callers do not clean up twice.
    std::lock_guard lock(cleanup_mutex_);
    const core::TimePoint now = clock_.now();
    if (last_cleanup_ && now - *last_cleanup_ < gc_interval_) return false;
    last_cleanup_ = now;
  }
  if (on_pressure) on_pressure(level);
  malloc_trim(0);
  cleanups_.fetch_add(1, std::memory_order_relaxed);
  sample();
  return true;
}

}  // namespace sluice::middleware
