// Stats rendering: the seed's JSON shape parsed back, and Prometheus text format rules.
#include "middleware/stats.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <cmath>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using sluice::middleware::StageStats;
using sluice::middleware::to_json;
using sluice::middleware::to_prometheus;

namespace {

StageStats stage(const std::string& pipeline, const std::string& name, uint32_t batch) {
  StageStats s;
  s.pipeline = pipeline;
  s.stage = name;
  s.batch_size = {batch, 50, 2000, 50};
  s.concurrency = {4, 1, 16, 3, "steady"};
  s.memory = {120.5, 200.0, 0.12, 0.8, 4096, 1024.0, 2};
  s.performance.avg_batch_time_ms = 42.0;
  s.performance.p50_batch_time_ms = 40.0;
  s.performance.p99_batch_time_ms = 90.0;
  s.performance.avg_throughput_per_sec = 1234.5;
  s.performance.memory_trend = "increasing";
  s.performance.records_in = 1000;
  s.performance.records_out = 990;
  s.performance.records_rejected = 10;
  s.performance.batches = 20;
  s.backpressure = {true, 300, 65536, 10000, 1500};
  s.extra = {{"cache_hits", 77.0}};
  return s;
}

std::set<std::string> keys_of(const rapidjson::Value& object) {
  std::set<std::string> keys;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    keys.insert(it->name.GetString());
  }
  return keys;
}

bool has_all(const std::set<std::string>& keys, const std::set<std::string>& wanted) {
  for (const auto& k : wanted) {
    if (!keys.count(k)) {
      MESSAGE("missing key " << k);
      return false;
    }
  }
  return true;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("stats JSON has the seed's shape under pipelines/<name>/stages/<stage>") {
  const std::string json =
      to_json({stage("cdc", "project", 100), stage("cdc", "emit", 200), stage("other", "s", 7)});
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE_FALSE(doc.HasParseError());

  const auto& pipelines = doc["pipelines"];
  CHECK(keys_of(pipelines) == std::set<std::string>{"cdc", "other"});
  CHECK(keys_of(pipelines["cdc"]["stages"]) == std::set<std::string>{"project", "emit"});

  const auto& s = pipelines["cdc"]["stages"]["emit"];
  CHECK(has_all(keys_of(s),
                {"batch_size", "concurrency", "memory", "performance", "backpressure", "extra"}));
  CHECK(has_all(keys_of(s["batch_size"]), {"current", "min", "max", "target_time_ms"}));
  CHECK(has_all(keys_of(s["concurrency"]), {"current", "min", "max", "in_flight", "phase"}));
  CHECK(has_all(keys_of(s["memory"]), {"current_mb", "peak_mb", "pressure", "threshold",
                                       "inflight_bytes", "limit_mb", "cleanups"}));
  CHECK(has_all(
      keys_of(s["performance"]),
      {"avg_batch_time_ms", "p50_batch_time_ms", "p99_batch_time_ms", "avg_throughput_per_sec",
       "avg_error_rate_percent", "memory_trend", "records_in", "records_out", "records_rejected",
       "records_dead_lettered", "records_filtered", "batches"}));
  CHECK(has_all(keys_of(s["backpressure"]),
                {"active", "queue_depth", "queue_bytes", "threshold", "paused_ms_total"}));

  CHECK(s["batch_size"]["current"].GetUint() == 200);
  CHECK(s["concurrency"]["phase"].GetString() == std::string("steady"));
  CHECK(s["memory"]["pressure"].GetDouble() == doctest::Approx(0.12));
  CHECK(s["performance"]["memory_trend"].GetString() == std::string("increasing"));
  CHECK(s["backpressure"]["active"].GetBool());
  CHECK(s["extra"]["cache_hits"].GetDouble() == doctest::Approx(77.0));
}

TEST_CASE("stats JSON carries the controller's last decisions with their reasons") {
  StageStats s = stage("p", "s", 100);
  s.controller.name = "sluice";
  s.controller.limit_changes = 7;
  s.controller.decisions = {{1.5, 8, 4, "cut 8 -> 4: latency 2.10x baseline"},
                            {2.0, 4, 5, "probe 4 -> 5: latency 1.00x baseline"}};
  rapidjson::Document doc;
  doc.Parse(to_json({s}).c_str());
  REQUIRE_FALSE(doc.HasParseError());
  const auto& c = doc["pipelines"]["p"]["stages"]["s"]["controller"];
  CHECK(c["name"].GetString() == std::string("sluice"));
  CHECK(c["limit_changes"].GetUint() == 7);
  REQUIRE(c["decisions"].Size() == 2);
  CHECK(c["decisions"][0]["at_s"].GetDouble() == doctest::Approx(1.5));
  CHECK(c["decisions"][0]["from"].GetUint() == 8);
  CHECK(c["decisions"][0]["to"].GetUint() == 4);
  CHECK(c["decisions"][0]["reason"].GetString() ==
        std::string("cut 8 -> 4: latency 2.10x baseline"));
}

TEST_CASE("stats JSON stays valid with non-finite numbers (written as null)") {
  StageStats s = stage("p", "s", 1);
  s.performance.avg_throughput_per_sec = std::numeric_limits<double>::quiet_NaN();
  s.memory.pressure = std::numeric_limits<double>::infinity();
  rapidjson::Document doc;
  doc.Parse(to_json({s}).c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc["pipelines"]["p"]["stages"]["s"]["performance"]["avg_throughput_per_sec"].IsNull());
  CHECK(doc["pipelines"]["p"]["stages"]["s"]["memory"]["pressure"].IsNull());
}

TEST_CASE("prometheus text has one HELP and TYPE per family, before its samples") {
  const std::string text =
      to_prometheus({stage("cdc", "project", 100), stage("cdc", "emit", 200), stage("o", "s", 7)});
  std::map<std::string, int> help, type;
  std::map<std::string, std::string> type_of;
  std::set<std::string> sampled;
  const std::regex help_re(R"(# HELP (\w+) .+)");
  const std::regex type_re(R"(# TYPE (\w+) (counter|gauge|summary|histogram|untyped))");
  const std::regex sample_re(R"re((\w+)\{((?:\w+="(?:[^"\\]|\\.)*",?)*)\} (\S+))re");
  for (const auto& line : lines_of(text)) {
    std::smatch m;
    if (std::regex_match(line, m, help_re)) {
      ++help[m[1]];
    } else if (std::regex_match(line, m, type_re)) {
      ++type[m[1]];
      type_of[m[1]] = m[2];
    } else {
      REQUIRE_MESSAGE(std::regex_match(line, m, sample_re), "bad line: " << line);
      const std::string family = m[1];
      CHECK_MESSAGE(type.count(family), "sample before its TYPE: " << line);
      CHECK(m[2].str().find("pipeline=") != std::string::npos);
      CHECK(m[2].str().find("stage=") != std::string::npos);
      CHECK(m[1].str().rfind("sluice_", 0) == 0);
      sampled.insert(family);
    }
  }
  CHECK(!help.empty());
  for (const auto& [family, n] : help) CHECK_MESSAGE(n == 1, family);
  for (const auto& [family, n] : type) CHECK_MESSAGE(n == 1, family);
  CHECK(help.size() == type.size());
  for (const auto& family : sampled) CHECK_MESSAGE(type.count(family), family);

  for (const auto& [family, kind] : type_of) {
    const bool total = family.size() > 6 && family.substr(family.size() - 6) == "_total";
    CHECK_MESSAGE((kind == "counter") == total, family << " is " << kind);
  }
  CHECK(type_of["sluice_records_in_total"] == "counter");
  CHECK(type_of["sluice_batch_size"] == "gauge");
  CHECK(text.find("sluice_batch_size{pipeline=\"cdc\",stage=\"emit\"} 200\n") != std::string::npos);
  CHECK(
      text.find(
          "sluice_batch_time_seconds{pipeline=\"cdc\",stage=\"emit\",quantile=\"0.99\"} 0.09\n") !=
      std::string::npos);
  CHECK(text.find("sluice_plugin_metric{pipeline=\"o\",stage=\"s\",name=\"cache_hits\"} 77\n") !=
        std::string::npos);
}

TEST_CASE("plugin counters are a Prometheus counter family; plugin gauges stay gauges") {
  StageStats s = stage("o", "s", 7);
  s.extra = {{"sink.records", 1500.0}, {"sink.queue", 3.0}};
  s.extra_counters = {"sink.records"};
  const std::string text = to_prometheus({s});
  CHECK(text.find("# TYPE sluice_plugin_total counter\n") != std::string::npos);
  CHECK(text.find("sluice_plugin_total{pipeline=\"o\",stage=\"s\",name=\"sink.records\"} "
                  "1500\n") != std::string::npos);
  CHECK(text.find("# TYPE sluice_plugin_metric gauge\n") != std::string::npos);
  CHECK(text.find("sluice_plugin_metric{pipeline=\"o\",stage=\"s\",name=\"sink.queue\"} 3\n") !=
        std::string::npos);
  CHECK(text.find("sluice_plugin_metric{pipeline=\"o\",stage=\"s\",name=\"sink.records\"}") ==
        std::string::npos);
  // The JSON keeps its shape: both in "extra", as numbers.
  rapidjson::Document doc;
  doc.Parse(to_json({s}).c_str());
  const auto& extra = doc["pipelines"]["o"]["stages"]["s"]["extra"];
  CHECK(extra["sink.records"].GetDouble() == doctest::Approx(1500.0));
  CHECK(extra["sink.queue"].GetDouble() == doctest::Approx(3.0));
  CHECK(extra.MemberCount() == 2);
}

TEST_CASE("prometheus label values are escaped") {
  const std::string text = to_prometheus({stage("we\"ird\\pipe\nline", "st", 5)});
  CHECK(text.find(R"(sluice_batch_size{pipeline="we\"ird\\pipe\nline",stage="st"} 5)") !=
        std::string::npos);
  for (const auto& line : lines_of(text)) {
    CHECK_MESSAGE(!line.empty(), "a raw newline split a sample line");
  }
}

TEST_CASE("prometheus values use NaN and +Inf spellings") {
  StageStats s = stage("p", "s", 1);
  s.memory.pressure = std::numeric_limits<double>::infinity();
  s.performance.avg_batch_time_ms = std::numeric_limits<double>::quiet_NaN();
  const std::string text = to_prometheus({s});
  CHECK(text.find("sluice_memory_pressure{pipeline=\"p\",stage=\"s\"} +Inf\n") !=
        std::string::npos);
  CHECK(text.find("sluice_batch_time_avg_seconds{pipeline=\"p\",stage=\"s\"} NaN\n") !=
        std::string::npos);
}

TEST_CASE("prometheus output for no stages is empty") { CHECK(to_prometheus({}).empty()); }
