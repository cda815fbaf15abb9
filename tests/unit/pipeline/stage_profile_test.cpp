// The profile per stage position: each transform is timed on its own, so a slow one shows as the
// busiest position (the bottleneck `sluice top` marks), and the call-time histogram's quantiles.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "admin/stats_view.hpp"
#include "fake_stage.hpp"
#include "pipeline/batch_steps.hpp"
#include "pipeline/circuit_breaker.hpp"

using namespace sluice;
using test::FakeStage;

namespace {

// Forwards every record after a pause: the slow transform.
sluice_status forward_slowly(const sluice_batch& in, sluice_writer& out, sluice_error& e) {
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  return test::forward_all(in, out, e);
}

std::vector<sluice_record> batch_of(std::vector<std::string>& values) {
  std::vector<sluice_record> records(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    records[i].struct_size = sizeof(sluice_record);
    records[i].value = {reinterpret_cast<const uint8_t*>(values[i].data()), values[i].size()};
    records[i].topic = {reinterpret_cast<const uint8_t*>("t"), 1};
    records[i].offset = static_cast<int64_t>(i);
  }
  return records;
}

}  // namespace

TEST_CASE("a slow transform is the busiest position, timed apart from the sink") {
  FakeStage fast(SLUICE_KIND_TRANSFORM, "t.fast", test::forward_all);
  FakeStage slow(SLUICE_KIND_TRANSFORM, "t.slow", forward_slowly);
  FakeStage sink(SLUICE_KIND_SINK, "t.sink", test::accept_all);
  pipeline::StageSlots slots;
  slots.add(pipeline::StageSlots::Role::transform, "t.transform[0].fast", fast.instance());
  slots.add(pipeline::StageSlots::Role::transform, "t.transform[1].slow", slow.instance());
  slots.add(pipeline::StageSlots::Role::sink, "t.sink.fake", sink.instance());

  pipeline::CircuitBreaker breaker(core::CircuitBreakerSettings{false, 5, 60000});
  pipeline::RecordCounts counts;
  pipeline::SecretList secrets;
  pipeline::BatchContext context;
  context.pipeline = "t";
  context.errors.retry = {1, 2, 2.0, 3, 0};
  context.secrets = &secrets;
  context.counts = &counts;
  context.breaker = &breaker;
  context.stopping = [] { return false; };
  context.fail = [](const std::string&) {};
  std::vector<std::string> values{"a", "b", "c"};
  const auto records = batch_of(values);
  for (int i = 0; i < 5; ++i) pipeline::run_batch(context, slots.snapshot(), records);

  const auto readings = slots.counters();
  REQUIRE(readings.size() == 3);
  std::vector<double> busy;
  for (const auto& r : readings) {
    INFO(r.label);
    CHECK(r.calls == 5);
    CHECK(r.records_in == 15);
    CHECK(r.records_out == 15);
    REQUIRE(r.elapsed_ns > 0);
    busy.push_back(static_cast<double>(r.busy_ns) / static_cast<double>(r.elapsed_ns));
  }
  CHECK(readings[1].plugin == "fake");
  CHECK(admin::bottleneck(busy) == 1u);
  // Every call of the slow one slept 3 ms; the histogram reads within a quarter of that.
  CHECK(readings[1].p50_ns >= 2.25e6);
  CHECK(readings[1].p99_ns >= readings[1].p50_ns);
  CHECK(readings[0].p50_ns < readings[1].p50_ns);
  // The transforms and the sink idled between the batches' calls: waiting for input.
  CHECK(readings[2].wait_input_ns > 0);
}

TEST_CASE("call-time quantiles come from the histogram within its bucket width") {
  pipeline::CallTimes times;
  CHECK(times.quantile_ns(0.5) == 0);
  for (uint64_t ns = 1; ns <= 1000; ++ns) times.add(ns * 1000);  // 1 us .. 1 ms, evenly
  CHECK(times.quantile_ns(0.5) == doctest::Approx(500e3).epsilon(0.13));
  CHECK(times.quantile_ns(0.99) == doctest::Approx(990e3).epsilon(0.13));
  times.add(UINT64_MAX);  // past the last bucket: counted there, not lost
  CHECK(times.quantile_ns(1.0) > 1e12);
}

TEST_CASE("no position is the bottleneck when none was busy") {
  CHECK_FALSE(admin::bottleneck(std::vector<double>{0, 0}).has_value());
  CHECK_FALSE(admin::bottleneck(std::vector<double>{}).has_value());
  CHECK(admin::bottleneck(std::vector<double>{0.2, 0.9, 0.4}) == 1u);
}
