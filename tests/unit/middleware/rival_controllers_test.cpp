// The rival controllers' step rules, one published rule at a time, with a manual clock.
#include "middleware/rival_controllers.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/clock.hpp"
#include "middleware/batch_size_controller.hpp"
#include "middleware/concurrency_controller.hpp"

using sluice::core::ControllerKind;
using sluice::core::Duration;
using sluice::core::ManualClock;
using sluice::core::PerformanceSettings;
using namespace sluice::middleware;

namespace {

Duration ms(double v) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(v));
}

PerformanceSettings settings(uint32_t start) {
  PerformanceSettings s;
  s.min_concurrency = 1;
  s.max_concurrency = 64;
  s.concurrency = start;
  return s;
}

// One batch of 100 records took `rtt_ms` (so 'latency per record' is rtt_ms / 100).
uint32_t complete(ConcurrencyLimiter& c, ManualClock& clock, double rtt_ms, uint32_t in_flight) {
  clock.advance(ms(rtt_ms));
  c.on_batch_done(ms(rtt_ms), 100);
  return c.update({100000, in_flight, 0.1});
}

}  // namespace

TEST_CASE("vector ARC: +1 per interval when the limit is reached and latency holds") {
  ManualClock clock;
  VectorArcLimiter c(settings(4), clock);
  complete(c, clock, 10, 4);  // the first sample only seeds the past mean
  CHECK(c.limit() == 4);
  for (uint32_t expected = 5; expected <= 8; ++expected) {
    // An interval is one past mean round trip (10 ms): the completion at its end decides.
    CHECK(complete(c, clock, 10, c.limit()) == expected);
  }
  CHECK(c.trace().snapshot().back().reason.starts_with("raise 7 -> 8: limit reached"));
}

TEST_CASE("vector ARC: no increase while the limit is not reached") {
  ManualClock clock;
  VectorArcLimiter c(settings(4), clock);
  uint32_t highest = 0;
  // (Identical samples sit exactly at mean + 0 deviations, which the rule reads as a rise.)
  for (int i = 0; i < 10; ++i) highest = std::max(highest, complete(c, clock, 10, 2));
  CHECK(highest <= 4);
}

TEST_CASE("vector ARC: x0.9 (floored) when latency is past mean + 2.5 deviations") {
  ManualClock clock;
  VectorArcLimiter c(settings(20), clock);
  complete(c, clock, 10, 20);
  complete(c, clock, 10, 20);  // holds: 21
  REQUIRE(c.limit() == 21);
  // Past variance is 0, so any rise is past the threshold: floor(21 * 0.9) = 18.
  CHECK(complete(c, clock, 12, 21) == 18);
  // A later sample under the (now higher) mean raises again, once its interval (the past mean
  // round trip, now 10.8 ms) is over.
  clock.advance(ms(1));
  CHECK(complete(c, clock, 10, 18) == 19);
}

TEST_CASE("gradient2: grows by queue size x smoothing while latency holds, not when app-limited") {
  ManualClock clock;
  Gradient2Limiter c(settings(20), clock);
  complete(c, clock, 10, 5);  // fewer than half of 20 in flight: app-limited
  CHECK(c.limit() == 20);
  complete(c, clock, 10, 20);  // gradient 1: 0.8 * 20 + 0.2 * (20 + 4) = 20.8
  complete(c, clock, 10, 20);  // 21.6
  CHECK(c.limit() == 21);
}

TEST_CASE("gradient2: a doubled latency cuts by the gradient, floored at 0.5") {
  ManualClock clock;
  Gradient2Limiter c(settings(30), clock);
  for (int i = 0; i < 11; ++i) complete(c, clock, 10, 64);  // +0.8 each: 38.8
  REQUIRE(c.limit() == 38);
  // long stays ~0.1 ms/record, short is 0.3: gradient clamps at 0.5:
  // 0.8 * 38.8 + 0.2 * (38.8 * 0.5 + 4) = 35.72.
  CHECK(complete(c, clock, 30, 64) == 35);
  CHECK(c.long_rtt() == doctest::Approx(0.1).epsilon(0.01));
}

TEST_CASE("vegas: +6 with no queue, -1 past beta, nothing when far below the limit") {
  ManualClock clock;
  VegasLimiter c(settings(20), clock);
  complete(c, clock, 10, 20);  // seeds the no-load latency
  CHECK(c.limit() == 20);
  CHECK(complete(c, clock, 10, 20) == 26);  // queue 0 <= threshold 1: + beta (6 log10 26 = 6)
  // Twice the no-load latency at 26: queue = ceil(26 * 0.5) = 13 > beta 6: -1.
  CHECK(complete(c, clock, 20, 26) == 25);
  // queue = ceil(25 * (1 - 10/12)) = 5: between alpha 3 and beta 6: hold.
  CHECK(complete(c, clock, 12, 25) == 25);
  // queue = ceil(25 * (1 - 10/10.5)) = 2: under alpha: +1.
  CHECK(complete(c, clock, 10.5, 25) == 26);
  CHECK(complete(c, clock, 10, 10) == 26);  // 10 * 2 < 26: no evidence
  CHECK(c.noload() == doctest::Approx(0.1));
}

TEST_CASE("seed rule: +1 per metrics interval under low pressure and a short queue, -1 over it") {
  ManualClock clock;
  PerformanceSettings s = settings(4);
  s.metrics_collection_interval_ms = 1000;
  SeedConcurrencyLimiter c(s, clock);
  CHECK(c.update({0, 4, 0.1}) == 4);  // no interval has passed
  clock.advance(ms(1000));
  CHECK(c.update({0, 4, 0.1}) == 5);
  clock.advance(ms(1000));
  CHECK(c.update({s.backpressure_threshold, 4, 0.1}) == 5);  // queue too long
  clock.advance(ms(1000));
  CHECK(c.update({0, 4, 0.9}) == 4);  // over the pressure threshold
}

TEST_CASE("seed batch rule: x1.1 when under half the target, x0.9 when over it") {
  ManualClock clock;
  PerformanceSettings s = settings(1);
  s.batch_size = 1000;
  s.min_batch_size = 10;
  s.max_batch_size = 5000;
  s.target_batch_time_ms = 50;
  SeedBatchSizer b(s, clock);
  clock.advance(ms(1000));
  CHECK(b.observe(1000, ms(20)) == 1100);
  clock.advance(ms(1000));
  CHECK(b.observe(1100, ms(40)) == 1100);  // between half and the target: hold
  clock.advance(ms(1000));
  CHECK(b.observe(1100, ms(60)) == 990);
}

TEST_CASE("performance.controller picks the controllers") {
  ManualClock clock;
  PerformanceSettings s = settings(1);
  s.controller = ControllerKind::sluice;
  auto ours = make_controllers(s, clock);
  CHECK(ours.name == "sluice");
  CHECK(dynamic_cast<ConcurrencyController*>(ours.concurrency.get()) != nullptr);
  CHECK(dynamic_cast<BatchSizeController*>(ours.batch.get()) != nullptr);
  s.controller = ControllerKind::vegas;
  auto vegas = make_controllers(s, clock);
  CHECK(vegas.name == "vegas");
  CHECK(dynamic_cast<VegasLimiter*>(vegas.concurrency.get()) != nullptr);
  CHECK(dynamic_cast<BatchSizeController*>(vegas.batch.get()) != nullptr);
  s.controller = ControllerKind::seed;
  auto seed = make_controllers(s, clock);
  CHECK(dynamic_cast<SeedConcurrencyLimiter*>(seed.concurrency.get()) != nullptr);
  CHECK(dynamic_cast<SeedBatchSizer*>(seed.batch.get()) != nullptr);
}
