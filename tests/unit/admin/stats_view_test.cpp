// The `sluice stats` table and the `sluice top` frame, drawn from canned stats JSON.
#include "admin/stats_view.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <sstream>
#include <vector>

using namespace sluice::admin;

namespace {

// What /stats answers, trimmed to the fields the views read (plus one they must ignore).
std::string canned(uint64_t out_a, double rate_a, bool paused_b) {
  return R"({"pipelines":{
    "orders":{"state":"running","records":{"in":5000},"stages":{"orders.sink":{
      "batch_size":{"current":400,"min":50,"max":2000,"target_time_ms":50},
      "concurrency":{"current":4,"min":1,"max":16,"in_flight":3,"phase":"steady"},
      "memory":{"current_mb":120.5,"peak_mb":200,"pressure":0.42,"threshold":0.8},
      "performance":{"avg_throughput_per_sec":)" +
         std::to_string(rate_a) + R"(,"avg_error_rate_percent":1.25,"records_in":5000,
        "records_out":)" +
         std::to_string(out_a) + R"(,"records_rejected":0,"records_filtered":0},
      "backpressure":{"active":false,"queue_depth":120},
      "plugins":[{"instance":"orders.sink","role":"sink","name":"null","version":"0.1.0","file":"x"}]}}},
    "audit":{"state":"running","stages":{"audit.sink":{
      "batch_size":{"current":50},"concurrency":{"current":1,"in_flight":0},
      "memory":{"pressure":null},
      "performance":{"avg_throughput_per_sec":10,"avg_error_rate_percent":0,"records_in":7,
        "records_out":7},
      "backpressure":{"active":)" +
         std::string(paused_b ? "true" : "false") + R"(,"queue_depth":9000}}}},
    "later":{"state":"starting","stages":{}}
  }})";
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("stats JSON becomes one row per pipeline stage, and a row for a pipeline not started") {
  auto rows = parse_stats(canned(4900, 2500, false));
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].pipeline == "orders");
  CHECK(rows[0].stage == "orders.sink");
  CHECK(rows[0].records_in == 5000);
  CHECK(rows[0].records_out == 4900);
  CHECK(rows[0].batch_size == 400);
  CHECK(rows[0].concurrency == 4);
  CHECK(rows[0].in_flight == 3);
  CHECK(rows[0].queue_depth == 120);
  CHECK(rows[0].memory_pressure == doctest::Approx(0.42));
  CHECK(rows[0].error_rate_percent == doctest::Approx(1.25));
  CHECK(rows[1].memory_pressure == 0.0);  // null (non-finite) reads as 0
  CHECK(rows[2].pipeline == "later");
  CHECK(rows[2].stage == "-");
  CHECK(rows[2].state == "starting");
}

TEST_CASE("stats that are not the stats JSON are refused with a reason") {
  CHECK_THROWS_WITH_AS(parse_stats("{"), doctest::Contains("not JSON"), std::runtime_error);
  CHECK_THROWS_WITH_AS(parse_stats("[1,2]"), doctest::Contains("pipelines"), std::runtime_error);
  CHECK_THROWS_AS(parse_stats(R"({"pipelines":3})"), std::runtime_error);
  // Whatever answers on the admin address (another local user's server bound there first) may
  // send JSON nested 200,000 deep: a reason, not a crash of `sluice stats` or `sluice top`.
  const std::string abyss = std::string(200000, '[') + std::string(200000, ']');
  CHECK_THROWS_AS(parse_stats(R"({"pipelines":)" + abyss + "}"), std::runtime_error);
  const std::string stage = R"({"pipelines":{"p":{"stages":{"s":{"extra":)" + abyss + "}}}}}";
  CHECK_NOTHROW(parse_stats(stage));
}

TEST_CASE("the stats table has a header and aligned rows with the watched figures") {
  const std::string table = render_stats_table(parse_stats(canned(4900, 2500, true)));
  const auto l = lines(table);
  REQUIRE(l.size() == 4);
  CHECK(l[0].rfind("PIPELINE", 0) == 0);
  for (const char* column :
       {"STAGE", "STATE", "IN", "OUT", "REC/S", "BATCH", "CONC", "QUEUE", "MEM", "ERR"})
    CHECK_MESSAGE(l[0].find(column) != std::string::npos, column);
  CHECK(l[1].find("orders.sink") != std::string::npos);
  CHECK(l[1].find("2500") != std::string::npos);
  CHECK(l[1].find("3/4") != std::string::npos);
  CHECK(l[1].find("42.0%") != std::string::npos);
  CHECK(l[1].find("1.2%") != std::string::npos);  // 1.25 rounds to even
  CHECK(l[2].find("paused") != std::string::npos);
  CHECK(l[3].find("starting") != std::string::npos);
  // Right-aligned numbers: the QUEUE column ends at the same place on every line.
  const auto end_of = [](const std::string& line, const std::string& cell) {
    return line.find(cell) + cell.size();
  };
  CHECK(end_of(l[1], " 120 ") == end_of(l[2], " 9000 "));
  for (const auto& line : l) CHECK(line.back() != ' ');
}

TEST_CASE("an empty stats object renders as no pipelines") {
  CHECK(render_stats_table(parse_stats(R"({"pipelines":{}})")) == "no pipelines\n");
}

TEST_CASE(
    "a sparkline scales samples to the largest: zero is the lowest bar, the top the highest") {
  const std::vector<double> samples = {0, 1, 2, 3, 4, 5, 6, 7};
  CHECK(sparkline(samples) == "▁▂▃▄▅▆▇█");
  const std::vector<double> flat = {0, 0, 0};
  CHECK(sparkline(flat) == "▁▁▁");
  const std::vector<double> spike = {10, 1000, 10};
  CHECK(sparkline(spike) == "▁█▁");
  CHECK(sparkline({}).empty());
}

TEST_CASE("top takes throughput from the change in finished records between refreshes") {
  TopView view;
  view.add(parse_stats(canned(1000, 777, false)), 0);
  view.add(parse_stats(canned(3000, 777, false)), 2.0);  // 2000 records in 2 s
  const auto l = lines(view.render("sluice top test"));
  CHECK(l[0] == "sluice top test");
  REQUIRE(l.size() == 6);  // title, blank, header, three rows
  CHECK(l[2].find("THROUGHPUT (last 30)") != std::string::npos);
  CHECK(l[3].find("orders.sink") != std::string::npos);
  CHECK(l[3].find(" 1000 ") != std::string::npos);
  CHECK(l[3].find("777") == std::string::npos);  // the first sample only seeds the history
  // First sample 777 (the profiler's figure), then 1000: a low bar then the top one.
  CHECK(l[3].substr(l[3].size() - std::string("▆█").size()) == "▆█");
}

TEST_CASE("top keeps the last 30 throughput samples per stage") {
  TopView view;
  for (int i = 0; i < 45; ++i) view.add(parse_stats(canned(1000 * i, 0, false)), 1.0);
  const auto l = lines(view.render("t"));
  const std::string& row = l[3];
  const std::string bars = row.substr(row.rfind("  ") + 2);
  size_t glyphs = 0;
  for (unsigned char c : bars)
    if ((c & 0xC0) != 0x80) ++glyphs;  // count UTF-8 lead bytes
  CHECK(glyphs == 30);
}

TEST_CASE("a top frame shows the controller's last four decisions with their reasons") {
  std::string decisions;
  for (int i = 0; i < 6; ++i)
    decisions += fmt::format(R"({}{{"at_s":{}.5,"from":{},"to":{},"reason":"step {}"}})",
                             i ? "," : "", i, i, i + 1, i);
  TopView view;
  view.add(parse_stats(R"({"pipelines":{"o":{"stages":{"o.sink":{"controller":{"name":"sluice",)"
                       R"("decisions":[)" +
                       decisions + "]}}}}}}"),
           0);
  const std::string frame = view.render("t");
  CHECK(frame.find("o / o.sink: controller's last decisions") != std::string::npos);
  CHECK(frame.find("  5.5 s  step 5\n") != std::string::npos);
  CHECK(frame.find("  2.5 s  step 2\n") != std::string::npos);
  CHECK(frame.find("step 1") == std::string::npos);  // only the last four
}

TEST_CASE("a top frame shows a fetch error line and drops stages no longer reported") {
  TopView view;
  view.add(parse_stats(canned(1, 1, false)), 0);
  view.add(parse_stats(R"({"pipelines":{"audit":{"stages":{"audit.sink":{}}}}})"), 1.0);
  const std::string frame = view.render("t", "cannot reach the admin API");
  const auto l = lines(frame);
  CHECK(l[1] == "cannot reach the admin API");
  CHECK(frame.find("orders.sink") == std::string::npos);
  CHECK(frame.find("audit.sink") != std::string::npos);
}

namespace {

// One stage whose positions have been busy `busy_ms` each over `elapsed_ms`.
std::string profiled(double elapsed_ms, double busy_source, double busy_transform,
                     double busy_sink) {
  auto position = [&](const char* name, const char* role, double busy) {
    return fmt::format(
        R"({{"name":"{}","role":"{}","plugin":"p","calls":10,"records_in":100,"records_out":100,)"
        R"("elapsed_ms":{},"busy_ms":{},"p50_ms":1.5,"p99_ms":4,"wait_input_ms":7,)"
        R"("wait_downstream_ms":8,"wait_breaker_ms":0}})",
        name, role, elapsed_ms, busy);
  };
  return R"({"pipelines":{"o":{"state":"running","stages":{"o.sink":{"stages":[)" +
         position("o.source.gen", "source", busy_source) + "," +
         position("o.transform[0].fields", "transform", busy_transform) + "," +
         position("o.sink.file", "sink", busy_sink) + "]}}}}}";
}

}  // namespace

TEST_CASE("top lists each position and marks the busiest since the last refresh the bottleneck") {
  auto rows = parse_stats(profiled(1000, 100, 600, 300));
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].positions.size() == 3);
  CHECK(rows[0].positions[1].name == "o.transform[0].fields");
  CHECK(rows[0].positions[1].busy_ms == 600);
  CHECK(rows[0].positions[2].wait_downstream_ms == 8);
  TopView view;
  view.add(rows, 0);
  std::string frame = view.render("t");
  CHECK(frame.find("o.source.gen") != std::string::npos);
  CHECK(frame.find("bottleneck: o.transform[0].fields (busy 60.0%)") != std::string::npos);
  // Over the next second the sink did the work: the fraction is of that second, not of all time.
  view.add(parse_stats(profiled(2000, 200, 650, 1200)), 1.0);
  frame = view.render("t");
  CHECK(frame.find("bottleneck: o.sink.file (busy 90.0%)") != std::string::npos);
  for (const auto& line : lines(frame))
    if (line.find("o.sink.file") != std::string::npos &&
        line.find("bottleneck") == std::string::npos)
      CHECK(line.rfind("*", 0) == 0);
}

TEST_CASE("stats from a server without the profile show no positions and no bottleneck") {
  TopView view;
  view.add(parse_stats(canned(4900, 2500, false)), 0);
  CHECK(view.render("t").find("bottleneck") == std::string::npos);
}
