// Unit tests of the latency sink's cost model: the concurrency knee, seeded failures, records.
#include <algorithm>
#include <fstream>
#include <latch>
#include <sstream>
#include <thread>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

std::vector<TestRecord> records(int n) {
  std::vector<TestRecord> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    out[static_cast<size_t>(i)].value = "{\"i\":" + std::to_string(i) + "}";
  return out;
}

std::vector<bool> failure_pattern(const sluice_plugin& p, const std::string& config, int puts) {
  FakeHost host;
  Instance sink(p, host, config);
  std::vector<bool> failed;
  for (int i = 0; i < puts; ++i) {
    FakeWriter rejects;
    auto r = sink.put(records(1), rejects);
    CHECK((r.status == SLUICE_OK || r.status == SLUICE_RETRY));
    failed.push_back(r.status == SLUICE_RETRY);
  }
  return failed;
}

}  // namespace

TEST_CASE("latency sink multiplies the cost of puts past the knee by (active/knee)^2") {
  Library lib(plugin_path("testing"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "latency"), host,
                R"({"batch_cost_ms":0.5,"record_cost_us":250,"knee":1})");
  // Hold each put where it reports itself active until all three are in, so they overlap for
  // sure: they see 1, 2 and 3 puts active.
  std::latch all_in(3);
  host.on_gauge = [&](const std::string& name, double) {
    if (name == "active_puts") all_in.arrive_and_wait();
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&] {
      FakeWriter rejects;
      CHECK(sink.put(records(2), rejects).ok());  // 0.5 ms + 2 * 0.25 ms = 1 ms base
    });
  for (auto& t : threads) t.join();
  auto costs = host.gauge_values("last_cost_ms");
  std::sort(costs.begin(), costs.end());
  REQUIRE(costs.size() == 3);
  CHECK(costs[0] == doctest::Approx(1.0));
  CHECK(costs[1] == doctest::Approx(4.0));
  CHECK(costs[2] == doctest::Approx(9.0));
  CHECK(host.counter("records") == 6);
}

TEST_CASE("latency sink without a knee costs the same at any concurrency") {
  Library lib(plugin_path("testing"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "latency"), host, R"({"batch_cost_ms":0.2})");
  std::latch all_in(2);
  host.on_gauge = [&](const std::string& name, double) {
    if (name == "active_puts") all_in.arrive_and_wait();
  };
  std::thread other([&] {
    FakeWriter rejects;
    CHECK(sink.put(records(1), rejects).ok());
  });
  FakeWriter rejects;
  CHECK(sink.put(records(1), rejects).ok());
  other.join();
  for (double c : host.gauge_values("last_cost_ms")) CHECK(c == doctest::Approx(0.2));
}

TEST_CASE("latency sink with the same seed fails the same puts") {
  Library lib(plugin_path("testing"));
  const auto& p = lib.plugin(SLUICE_KIND_SINK, "latency");
  const auto a = failure_pattern(p, R"({"failure_rate":0.3,"seed":42})", 60);
  const auto b = failure_pattern(p, R"({"failure_rate":0.3,"seed":42})", 60);
  const auto c = failure_pattern(p, R"({"failure_rate":0.3,"seed":43})", 60);
  CHECK(a == b);
  CHECK(a != c);
  const auto failures = std::count(a.begin(), a.end(), true);
  CHECK(failures > 5);
  CHECK(failures < 40);
  const auto none = failure_pattern(p, R"({"failure_rate":0,"seed":42})", 20);
  CHECK(std::count(none.begin(), none.end(), true) == 0);
}

TEST_CASE("latency sink counts and records only the records of puts that succeeded") {
  TempDir dir;
  const std::string path = dir.file("seen.txt");
  Library lib(plugin_path("testing"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "latency"), host,
                R"({"failure_rate":0.5,"seed":1,"record_file":")" + path + R"("})");
  int succeeded = 0;
  std::string expected;
  for (int i = 0; i < 20; ++i) {
    std::vector<TestRecord> batch(1);
    batch[0].value = "v" + std::to_string(i);
    FakeWriter rejects;
    if (sink.put(batch, rejects).ok()) {
      ++succeeded;
      expected += *batch[0].value + "\n";
    }
  }
  CHECK(host.counter("records") == succeeded);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(ss.str() == expected);
}

TEST_CASE("latency sink phases apply by time since create and must start at 0 and grow") {
  Library lib(plugin_path("testing"));
  const auto& p = lib.plugin(SLUICE_KIND_SINK, "latency");
  FakeHost host;
  Instance sink(p, host,
                R"({"batch_cost_ms":5,"phases":[{"after_ms":0,"batch_cost_ms":0.1},)"
                R"({"after_ms":100000000,"batch_cost_ms":50}]})");
  FakeWriter rejects;
  REQUIRE(sink.put(records(1), rejects).ok());
  CHECK(host.gauge_values("last_cost_ms").back() == doctest::Approx(0.1));

  auto not_growing =
      Instance::validate(p, R"({"phases":[{"after_ms":0},{"after_ms":10},{"after_ms":10}]})");
  CHECK(not_growing.status == SLUICE_ERROR);
  CHECK(not_growing.field == "phases");
  CHECK(Instance::validate(p, R"({"phases":[{"after_ms":5}]})").status == SLUICE_ERROR);
}

TEST_CASE("latency sink jitter spreads each put's cost within +-jitter, the same for one seed") {
  Library lib(plugin_path("testing"));
  auto costs_of = [&](const std::string& config) {
    FakeHost host;
    Instance sink(lib.plugin(SLUICE_KIND_SINK, "latency"), host, config);
    for (int i = 0; i < 40; ++i) {
      FakeWriter rejects;
      CHECK(sink.put(records(1), rejects).ok());
    }
    return host.gauge_values("last_cost_ms");
  };
  const auto a = costs_of(R"({"batch_cost_ms":0.2,"jitter":0.3,"seed":5})");
  const auto b = costs_of(R"({"batch_cost_ms":0.2,"jitter":0.3,"seed":5})");
  REQUIRE(a.size() == 40);
  CHECK(a == b);
  CHECK(*std::min_element(a.begin(), a.end()) >= 0.2 * 0.7);
  CHECK(*std::max_element(a.begin(), a.end()) <= 0.2 * 1.3);
  CHECK(*std::max_element(a.begin(), a.end()) - *std::min_element(a.begin(), a.end()) > 0.04);
  const auto flat = costs_of(R"({"batch_cost_ms":0.2,"seed":5})");
  CHECK(*std::max_element(flat.begin(), flat.end()) == doctest::Approx(0.2));
  CHECK(*std::min_element(flat.begin(), flat.end()) == doctest::Approx(0.2));
}
