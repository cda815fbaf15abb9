// Memory monitor with an injected RSS reading and cgroup file: limit, pressure, peak, cleanup.
#include "middleware/memory_monitor.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/clock.hpp"

using sluice::core::ManualClock;
using sluice::core::PerformanceSettings;
using sluice::middleware::MemoryMonitor;

namespace {

constexpr uint64_t kMb = 1024 * 1024;

// A memory.max file in a private temporary folder, removed at the end of the test.
struct CgroupFile {
  std::filesystem::path dir;
  std::filesystem::path path;
  explicit CgroupFile(const std::string& content) {
    dir = std::filesystem::temp_directory_path() /
          ("sluice-memtest-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(dir);
    path = dir / "memory.max";
    std::ofstream(path) << content;
  }
  ~CgroupFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  static std::atomic<int>& counter() {
    static std::atomic<int> n{0};
    return n;
  }
};

uint64_t physical_bytes() {
  return static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
}

PerformanceSettings settings(uint64_t limit_mb) {
  PerformanceSettings s;
  s.memory_limit_mb = limit_mb;
  s.memory_pressure_threshold = 0.8;
  s.gc_trigger_threshold = 0.9;
  s.gc_interval_ms = 5000;
  return s;
}

}  // namespace

TEST_CASE("memory limit comes from config, else the cgroup's memory.max, else physical memory") {
  ManualClock clock;
  auto rss = [] { return uint64_t{0}; };
  CgroupFile cgroup("268435456\n");  // 256 MiB
  CgroupFile unlimited("max\n");

  CHECK(MemoryMonitor(settings(100), clock, rss, cgroup.path.string()).limit_bytes() == 100 * kMb);
  CHECK(MemoryMonitor(settings(0), clock, rss, cgroup.path.string()).limit_bytes() == 256 * kMb);
  CHECK(MemoryMonitor(settings(0), clock, rss, unlimited.path.string()).limit_bytes() ==
        physical_bytes());
  CHECK(MemoryMonitor(settings(0), clock, rss, "/nonexistent/memory.max").limit_bytes() ==
        physical_bytes());
}

TEST_CASE("cgroup memory.max parsing accepts numbers only") {
  CgroupFile number("1048576\n");
  CgroupFile max("max\n");
  CgroupFile garbage("12abc\n");
  CHECK(MemoryMonitor::read_cgroup_limit(number.path.string()) == uint64_t{1048576});
  CHECK_FALSE(MemoryMonitor::read_cgroup_limit(max.path.string()).has_value());
  CHECK_FALSE(MemoryMonitor::read_cgroup_limit(garbage.path.string()).has_value());
  CHECK_FALSE(MemoryMonitor::read_cgroup_limit("/nonexistent/memory.max").has_value());
}

TEST_CASE("pressure is the larger of RSS and in-flight bytes over the limit") {
  ManualClock clock;
  uint64_t rss = 100 * kMb;
  MemoryMonitor m(
      settings(1000), clock, [&] { return rss; }, "/nonexistent");
  CHECK(m.pressure() == doctest::Approx(0.1));
  m.add_inflight(300 * kMb);
  CHECK(m.inflight_bytes() == 300 * kMb);
  CHECK(m.pressure() == doctest::Approx(0.3));
  m.add_inflight(-300 * static_cast<int64_t>(kMb));
  CHECK(m.inflight_bytes() == 0);
  rss = 850 * kMb;
  CHECK(m.pressure() == doctest::Approx(0.1));  // RSS counts only once sampled
  m.sample();
  CHECK(m.pressure() == doctest::Approx(0.85));
  CHECK(m.over_threshold());
}

TEST_CASE("peak is the highest RSS sampled") {
  ManualClock clock;
  uint64_t rss = 200 * kMb;
  MemoryMonitor m(
      settings(1000), clock, [&] { return rss; }, "/nonexistent");
  rss = 500 * kMb;
  m.sample();
  rss = 300 * kMb;
  m.sample();
  CHECK(m.rss_bytes() == 300 * kMb);
  CHECK(m.peak_bytes() == 500 * kMb);
}

TEST_CASE("cleanup runs above gc_trigger_threshold at most once per gc interval") {
  ManualClock clock;
  uint64_t rss = 500 * kMb;
  MemoryMonitor m(
      settings(1000), clock, [&] { return rss; }, "/nonexistent");
  int calls = 0;
  double level_seen = 0;
  auto on_pressure = [&](double level) {
    ++calls;
    level_seen = level;
  };

  CHECK_FALSE(m.maybe_cleanup(on_pressure));  // 0.5 < 0.9
  CHECK(calls == 0);

  rss = 950 * kMb;
  m.sample();
  CHECK(m.maybe_cleanup(on_pressure));
  CHECK(calls == 1);
  CHECK(level_seen == doctest::Approx(0.95));
  CHECK(m.cleanups() == 1);

  clock.advance(std::chrono::milliseconds(4999));
  CHECK_FALSE(m.maybe_cleanup(on_pressure));
  clock.advance(std::chrono::milliseconds(1));
  CHECK(m.maybe_cleanup(on_pressure));
  CHECK(calls == 2);
  CHECK(m.cleanups() == 2);
}

TEST_CASE("with memory control off there is no threshold, no cleanup and no hard bound") {
  ManualClock clock;
  PerformanceSettings s = settings(1000);
  s.memory_control = false;
  MemoryMonitor m(
      s, clock, [] { return 990 * kMb; }, "/nonexistent");
  CHECK(m.pressure() == doctest::Approx(0.99));  // still reported
  CHECK(m.control_pressure() == 0.0);
  CHECK_FALSE(m.over_threshold());
  CHECK_FALSE(m.maybe_cleanup([](double) {}));
  CHECK(m.cleanups() == 0);
  clock.advance(m.unaccounted_after());
  m.sample();
  CHECK_FALSE(m.past_hard_bound().has_value());  // nor a stop for memory
}

TEST_CASE("the real RSS of this process reads as non-zero") {
  CHECK(MemoryMonitor::read_proc_rss() > 0);
  ManualClock clock;
  MemoryMonitor m(settings(0), clock);
  CHECK(m.rss_bytes() > 0);
  CHECK(m.limit_bytes() > 0);
}

TEST_CASE("RSS over the pause threshold that the runtime's records do not explain is reported") {
  ManualClock clock;
  uint64_t rss = 900 * kMb;  // over 0.8 x 1000 MB
  MemoryMonitor m(
      settings(1000), clock, [&] { return rss; }, "/nonexistent");
  CHECK_FALSE(m.unaccounted().has_value());  // not for long enough yet
  clock.advance(m.unaccounted_after() - std::chrono::milliseconds(1));
  m.sample();
  CHECK_FALSE(m.unaccounted().has_value());
  clock.advance(std::chrono::milliseconds(1));
  m.add_inflight(10 * kMb);
  m.sample();
  const auto u = m.unaccounted();
  REQUIRE(u.has_value());
  CHECK(u->rss == 900 * kMb);
  CHECK(u->limit == 1000 * kMb);
  CHECK(u->accounted == 10 * kMb);

  // The runtime's own records explain it: a full queue, not a leak.
  m.add_inflight(500 * kMb);
  m.sample();
  CHECK_FALSE(m.unaccounted().has_value());
  m.add_inflight(-510 * static_cast<int64_t>(kMb));

  // Back under the threshold: the clock starts again.
  rss = 700 * kMb;
  m.sample();
  rss = 900 * kMb;
  m.sample();
  clock.advance(std::chrono::milliseconds(10));
  CHECK_FALSE(m.unaccounted().has_value());
}

TEST_CASE(
    "unaccounted RSS at 95% of the limit is past the hard bound; under it, or short, is not") {
  ManualClock clock;
  uint64_t rss = 900 * kMb;
  MemoryMonitor m(
      settings(1000), clock, [&] { return rss; }, "/nonexistent");
  clock.advance(m.unaccounted_after());
  m.sample();
  REQUIRE(m.unaccounted().has_value());
  CHECK_FALSE(m.past_hard_bound().has_value());  // degraded only: under 95%
  rss = 960 * kMb;
  m.sample();
  const auto u = m.past_hard_bound();
  REQUIRE(u.has_value());
  CHECK(u->rss == 960 * kMb);
  CHECK(u->limit == 1000 * kMb);
  // The runtime's own records explain it: not a leak, no stop.
  m.add_inflight(500 * kMb);
  m.sample();
  CHECK_FALSE(m.past_hard_bound().has_value());
}
