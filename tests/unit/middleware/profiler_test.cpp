// Profiler: averages and percentiles over ring buffers, interval throughput, error rate, trends.
#include "middleware/profiler.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/clock.hpp"

using sluice::core::ManualClock;
using sluice::core::PerformanceSettings;
using sluice::middleware::Profiler;
using sluice::middleware::RingBuffer;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST_CASE("ring buffer keeps only the newest values, oldest first") {
  RingBuffer<int> ring(3);
  for (int i = 1; i <= 5; ++i) ring.push(i);
  REQUIRE(ring.size() == 3);
  CHECK(ring[0] == 3);
  CHECK(ring[1] == 4);
  CHECK(ring[2] == 5);
}

TEST_CASE("batch time average and nearest-rank percentiles") {
  ManualClock clock;
  Profiler p(PerformanceSettings{}, clock);
  for (int i = 100; i >= 1; --i) p.record_batch(milliseconds(i), 10, 0);
  CHECK(p.avg_batch_time_ms() == doctest::Approx(50.5));
  CHECK(p.p50_batch_time_ms() == doctest::Approx(50.0));
  CHECK(p.p99_batch_time_ms() == doctest::Approx(99.0));
  CHECK(p.avg_batch_size() == doctest::Approx(10.0));
}

TEST_CASE("history is bounded by the capacity: old batches fall out of the figures") {
  ManualClock clock;
  Profiler p(PerformanceSettings{}, clock, 10);
  for (int i = 0; i < 10; ++i) p.record_batch(milliseconds(1000), 1, 0);
  for (int i = 0; i < 10; ++i) p.record_batch(milliseconds(10), 1, 0);
  CHECK(p.avg_batch_time_ms() == doctest::Approx(10.0));
  CHECK(p.p99_batch_time_ms() == doctest::Approx(10.0));
  CHECK(p.total_batches() == 20);  // totals keep counting
}

TEST_CASE("throughput and error rate are measured per metrics interval") {
  ManualClock clock;
  Profiler p(PerformanceSettings{}, clock);
  p.record_batch(milliseconds(5), 400, 40);
  p.record_batch(milliseconds(5), 100, 10);
  clock.advance(seconds(1));
  p.sample(0, 0);  // 500 records/s, 10% errors
  p.record_batch(milliseconds(5), 1500, 0);
  clock.advance(seconds(1));
  p.sample(0, 0);  // 1500 records/s, 0% errors
  clock.advance(seconds(1));
  p.sample(0, 0);  // idle: 0 records/s, no error rate
  CHECK(p.avg_throughput() == doctest::Approx((500.0 + 1500.0 + 0.0) / 3));
  CHECK(p.avg_error_rate_percent() == doctest::Approx(5.0));
  CHECK(p.total_records() == 2000);
  CHECK(p.total_errors() == 50);
}

TEST_CASE("memory trend reads the slope over the window") {
  ManualClock clock;
  SUBCASE("growing memory is increasing, with its slope in bytes per second") {
    Profiler p(PerformanceSettings{}, clock);
    for (int i = 0; i < 10; ++i) {
      p.sample(100'000'000 + i * 10'000'000ull, 0);
      clock.advance(seconds(1));
    }
    CHECK(p.memory_trend() == "increasing");
    CHECK(p.memory_slope_bytes_per_sec() == doctest::Approx(10'000'000.0));
  }
  SUBCASE("shrinking memory is decreasing") {
    Profiler p(PerformanceSettings{}, clock);
    for (int i = 0; i < 10; ++i) {
      p.sample(200'000'000 - i * 10'000'000ull, 0);
      clock.advance(seconds(1));
    }
    CHECK(p.memory_trend() == "decreasing");
    CHECK(p.memory_slope_bytes_per_sec() < 0);
  }
  SUBCASE("jitter of a percent is stable") {
    Profiler p(PerformanceSettings{}, clock);
    for (int i = 0; i < 10; ++i) {
      p.sample(i % 2 == 0 ? 100'000'000 : 101'000'000, 0);
      clock.advance(seconds(1));
    }
    CHECK(p.memory_trend() == "stable");
  }
}

TEST_CASE("queue depth average over the samples") {
  ManualClock clock;
  Profiler p(PerformanceSettings{}, clock);
  for (size_t depth : {10u, 20u, 30u}) {
    clock.advance(seconds(1));
    p.sample(0, depth);
  }
  CHECK(p.avg_queue_depth() == doctest::Approx(20.0));
}

TEST_CASE("with profiling off only the totals move") {
  ManualClock clock;
  PerformanceSettings s;
  s.enable_performance_profiling = false;
  Profiler p(s, clock);
  p.record_batch(milliseconds(40), 100, 3);
  clock.advance(seconds(1));
  p.sample(1000, 5);
  CHECK(p.total_records() == 100);
  CHECK(p.total_batches() == 1);
  CHECK(p.total_errors() == 3);
  CHECK(p.avg_batch_time_ms() == 0.0);
  CHECK(p.avg_throughput() == 0.0);
  CHECK(p.avg_queue_depth() == 0.0);
}

TEST_CASE("batches recorded from many threads are all counted") {
  ManualClock clock;
  Profiler p(PerformanceSettings{}, clock, 64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) p.record_batch(milliseconds(1), 2, 1);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(p.total_batches() == 4000);
  CHECK(p.total_records() == 8000);
  CHECK(p.total_errors() == 4000);
}
