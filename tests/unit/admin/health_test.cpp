// Health rules on hand-made observations: which states count as healthy and what wins.
#include "admin/health.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

using namespace sluice::admin;

namespace {

sluice::middleware::StageStats stage(const std::string& pipeline, const std::string& name) {
  sluice::middleware::StageStats s;
  s.pipeline = pipeline;
  s.stage = name;
  s.plugins = {{pipeline + ".source", "source", "generator", "0.1.0", "/p/sluice-generator.so"},
               {name, "sink", "null", "0.1.0", "/p/sluice-basic.so"}};
  return s;
}

PipelineObservation running(const std::string& name) {
  PipelineObservation o;
  o.summary.pipeline = name;
  o.stats = {stage(name, name + ".sink")};
  return o;
}

const StageHealth& find(const PipelineHealth& p, const std::string& name) {
  for (const auto& s : p.stages)
    if (s.name == name) return s;
  FAIL("no stage " << name);
  return p.stages.front();
}

}  // namespace

TEST_CASE("a running pipeline is healthy and lists its plugin instances as stages") {
  auto report = evaluate_health({running("a")}, {});
  CHECK(report.healthy);
  REQUIRE(report.pipelines.size() == 1);
  CHECK(report.pipelines[0].state == HealthState::running);
  CHECK(report.pipelines[0].stages.size() == 2);
  CHECK(find(report.pipelines[0], "a.source").role == "source");
  CHECK(find(report.pipelines[0], "a.sink").plugin == "null");
}

TEST_CASE("backpressure shows as paused on the stage and its source, and is still healthy") {
  auto o = running("a");
  o.stats[0].backpressure.active = true;
  auto report = evaluate_health({o}, {});
  CHECK(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::paused);
  CHECK(find(report.pipelines[0], "a.source").state == HealthState::paused);
  CHECK(find(report.pipelines[0], "a.sink").state == HealthState::paused);
}

TEST_CASE("an error rate at the limit makes the stage degraded and the report unhealthy") {
  auto o = running("a");
  o.stats[0].performance.avg_error_rate_percent = 5.0;
  auto report = evaluate_health({o}, {}, HealthRules{5.0});
  CHECK_FALSE(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::degraded);
  CHECK(find(report.pipelines[0], "a.sink").last_error.find("error rate 5.0%") == 0);

  o.stats[0].performance.avg_error_rate_percent = 4.9;
  CHECK(evaluate_health({o}, {}, HealthRules{5.0}).healthy);
}

TEST_CASE("a failed pipeline is unhealthy with its failure, whatever its stages show") {
  auto o = running("a");
  o.summary.failed = true;
  o.summary.failure = "sink 'null' returned FATAL";
  o.finished = true;
  o.stats[0].backpressure.active = true;
  auto report = evaluate_health({running("ok"), o}, {});
  CHECK_FALSE(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::running);
  CHECK(report.pipelines[1].state == HealthState::failed);
  CHECK(report.pipelines[1].last_error == "sink 'null' returned FATAL");
  CHECK(find(report.pipelines[1], "a.sink").last_error == "sink 'null' returned FATAL");
}

TEST_CASE("a pipeline not started yet is starting and not healthy; a finished one is healthy") {
  PipelineObservation starting;
  starting.summary.pipeline = "s";
  auto report = evaluate_health({starting}, {});
  CHECK_FALSE(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::starting);

  auto done = running("d");
  done.finished = true;
  report = evaluate_health({done}, {});
  CHECK(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::finished);
}

TEST_CASE("a reported stage error degrades that stage, also one the stats do not list") {
  StageErrors errors;
  errors["a"]["a.transform0"] = "reload failed: missing symbol";
  auto report = evaluate_health({running("a"), running("b")}, errors);
  CHECK_FALSE(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::degraded);
  CHECK(report.pipelines[0].last_error == "reload failed: missing symbol");
  CHECK(find(report.pipelines[0], "a.transform0").state == HealthState::degraded);
  CHECK(report.pipelines[1].state == HealthState::running);
}

TEST_CASE("health JSON carries state, healthy and last_error (null when none) at every level") {
  auto o = running("a");
  o.stats[0].performance.avg_error_rate_percent = 50;
  const std::string json = to_json(evaluate_health({o}, {}));
  rapidjson::Document d;
  d.Parse(json.c_str());
  REQUIRE_FALSE(d.HasParseError());
  CHECK_FALSE(d["healthy"].GetBool());
  CHECK(std::string(d["status"].GetString()) == "unhealthy");
  const auto& a = d["pipelines"]["a"];
  CHECK(std::string(a["state"].GetString()) == "degraded");
  CHECK_FALSE(a["healthy"].GetBool());
  CHECK(a["last_error"].IsString());
  CHECK(a["stages"]["a.source"]["last_error"].IsNull());
  CHECK(a["stages"]["a.source"]["healthy"].GetBool());
  CHECK(std::string(a["stages"]["a.sink"]["version"].GetString()) == "0.1.0");
}

TEST_CASE("errors the pipeline reports itself degrade their stage; empty ones are ignored") {
  auto o = running("a");
  o.stage_errors = {{"a.sink", "circuit breaker open after 5 consecutive failures"},
                    {"a.source", ""}};
  auto report = evaluate_health({o}, {});
  CHECK_FALSE(report.healthy);
  CHECK(find(report.pipelines[0], "a.sink").state == HealthState::degraded);
  CHECK(find(report.pipelines[0], "a.source").state == HealthState::running);
  CHECK(report.pipelines[0].last_error == "circuit breaker open after 5 consecutive failures");
}

TEST_CASE("an isolated stage restarted after crashes shows them and stays healthy") {
  auto o = running("a");
  const std::string restarted =
      "restarted: plugin process crashed 2 times, restarted 2 times; last: killed by signal 11";
  o.stage_errors = {{"a.sink", restarted}};
  auto report = evaluate_health({o}, {});
  CHECK(report.healthy);
  CHECK(find(report.pipelines[0], "a.sink").state == HealthState::running);
  CHECK(find(report.pipelines[0], "a.sink").last_error == restarted);
  // Its crash breaker open: a plain error, degraded.
  o.stage_errors = {{"a.sink", "plugin process crashed 7 times, too often"}};
  report = evaluate_health({o}, {});
  CHECK_FALSE(report.healthy);
  CHECK(find(report.pipelines[0], "a.sink").state == HealthState::degraded);
}

TEST_CASE("memory the runtime does not account for makes the stage degraded, with the figures") {
  auto o = running("a");
  o.stats[0].backpressure.active = true;
  o.stats[0].memory.unaccounted = "RSS 60.0 MB of a 64.0 MB limit, but the runtime holds 0.0 MB";
  auto report = evaluate_health({o}, {});
  CHECK_FALSE(report.healthy);
  CHECK(report.pipelines[0].state == HealthState::degraded);
  CHECK(find(report.pipelines[0], "a.sink").state == HealthState::degraded);
  CHECK(report.pipelines[0].last_error == o.stats[0].memory.unaccounted);
}
