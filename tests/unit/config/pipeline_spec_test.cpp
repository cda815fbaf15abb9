// Pipeline files -> PipelineSpec: layout, sections, defaults, and FILE:LINE:COL errors.
#include "config/pipeline_spec.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>

#include "config_test_support.hpp"

using namespace sluice;
using namespace sluice::config;
using namespace sluice::config::testing;

namespace {
const std::filesystem::path kFixtures = SLUICE_CONFIG_FIXTURES;
}

TEST_CASE("a single-pipeline file gives its stages, default instance names and positions") {
  const auto file = parse_pipelines(
      "name: orders\n"
      "source: {type: file, path: in.jsonl}\n"
      "transforms:\n"
      "  - type: fields\n"
      "    add: {env: prod}\n"
      "  - {type: filter, name: keep_big}\n"
      "sink: {type: file, path: out.jsonl}\n",
      "p.yaml");
  REQUIRE(file.pipelines.size() == 1);
  const PipelineSpec& p = file.pipelines[0];
  CHECK(p.name == "orders");
  CHECK(p.location.str() == "p.yaml:1:1");
  CHECK(p.name_location.str() == "p.yaml:1:7");
  CHECK(p.source.role == "source");
  CHECK(p.source.type == "file");
  CHECK(p.source.instance_name == "orders.source");
  CHECK(p.source.location.str() == "p.yaml:2:9");
  CHECK(p.source.type_location.str() == "p.yaml:2:16");
  CHECK(p.source.node["path"].as<std::string>() == "in.jsonl");
  REQUIRE(p.transforms.size() == 2);
  CHECK(p.transforms[0].role == "transform");
  CHECK(p.transforms[0].type == "fields");
  CHECK(p.transforms[0].instance_name == "orders.transform0");
  CHECK(p.transforms[0].location.str() == "p.yaml:4:5");
  CHECK(p.transforms[1].instance_name == "keep_big");
  CHECK(p.sink.role == "sink");
  CHECK(p.sink.instance_name == "orders.sink");
  CHECK_FALSE(p.dead_letter.has_value());
  CHECK(file.admin_location.line == 0);
}

TEST_CASE("every section left out gives the settings' defaults") {
  const auto file = parse_pipelines(with_pipeline(""), "p.yaml");
  const core::PerformanceSettings defaults;
  const auto& perf = file.pipelines.at(0).performance;
  CHECK(perf.min_batch_size == defaults.min_batch_size);
  CHECK(perf.max_batch_size == defaults.max_batch_size);
  CHECK(perf.batch_size == defaults.batch_size);
  CHECK(perf.max_concurrency == defaults.max_concurrency);
  CHECK(perf.ordering == core::Ordering::key);
  CHECK(perf.cache_eviction_policy == core::CacheEvictionPolicy::lru);
  CHECK(perf.controller == core::ControllerKind::sluice);
  const auto& errors = file.pipelines.at(0).errors;
  CHECK(errors.tolerance == core::Tolerance::none);
  CHECK(errors.retry.max_attempts == core::RetrySettings{}.max_attempts);
  CHECK(errors.circuit_breaker.enabled);
  CHECK(file.admin.enabled);
  CHECK(file.admin.host == "127.0.0.1");
  CHECK(file.admin.port == 8088);
  CHECK(file.admin.token.empty());
}

TEST_CASE("empty sections count as left out") {
  const auto file =
      parse_pipelines(with_pipeline("performance:\nerrors:\ntransforms:\n"), "p.yaml");
  CHECK(file.pipelines.at(0).transforms.empty());
  CHECK(file.pipelines.at(0).performance.max_batch_size == 2000);
}

TEST_CASE("every performance key is read into PerformanceSettings") {
  const auto file = parse_pipelines(with_pipeline(R"(performance:
  adaptive_batching: false
  min_batch_size: 10
  max_batch_size: 500
  batch_size: 20
  target_batch_time_ms: 25
  load_adjustment_factor: 0.25
  linger_ms: 0
  adaptive_concurrency: false
  min_concurrency: 2
  max_concurrency: 8
  concurrency: 4
  cpu_utilization_threshold: 0.7
  ordering: partition
  backpressure: false
  backpressure_threshold: 300
  max_queue_bytes: 1048576
  memory_control: false
  memory_limit_mb: 512
  memory_pressure_threshold: 0.6
  gc_trigger_threshold: 1
  gc_interval_ms: 250
  enable_performance_profiling: false
  metrics_collection_interval_ms: 2000
  enable_predictive_caching: true
  cache_warmup_size: 64
  cache_eviction_policy: adaptive
  controller: vegas
)"),
                                    "p.yaml");
  const auto& p = file.pipelines.at(0).performance;
  CHECK_FALSE(p.adaptive_batching);
  CHECK(p.min_batch_size == 10);
  CHECK(p.max_batch_size == 500);
  CHECK(p.batch_size == 20);
  CHECK(p.target_batch_time_ms == 25);
  CHECK(p.load_adjustment_factor == doctest::Approx(0.25));
  CHECK(p.linger_ms == 0);
  CHECK_FALSE(p.adaptive_concurrency);
  CHECK(p.min_concurrency == 2);
  CHECK(p.max_concurrency == 8);
  CHECK(p.concurrency == 4);
  CHECK(p.cpu_utilization_threshold == doctest::Approx(0.7));
  CHECK(p.ordering == core::Ordering::partition);
  CHECK_FALSE(p.backpressure);
  CHECK(p.backpressure_threshold == 300);
  CHECK(p.max_queue_bytes == 1048576);
  CHECK_FALSE(p.memory_control);
  CHECK(p.memory_limit_mb == 512);
  CHECK(p.memory_pressure_threshold == doctest::Approx(0.6));
  CHECK(p.gc_trigger_threshold == doctest::Approx(1.0));
  CHECK(p.gc_interval_ms == 250);
  CHECK_FALSE(p.enable_performance_profiling);
  CHECK(p.metrics_collection_interval_ms == 2000);
  CHECK(p.enable_predictive_caching);
  CHECK(p.cache_warmup_size == 64);
  CHECK(p.cache_eviction_policy == core::CacheEvictionPolicy::adaptive);
  CHECK(p.controller == core::ControllerKind::vegas);
}

TEST_CASE("an unset start batch size or concurrency moves into the configured range") {
  const auto file = parse_pipelines(
      with_pipeline(
          "performance: {min_batch_size: 300, max_batch_size: 400, min_concurrency: 3}\n"),
      "p.yaml");
  CHECK(file.pipelines.at(0).performance.batch_size == 300);
  CHECK(file.pipelines.at(0).performance.concurrency == 3);
}

TEST_CASE("every errors key is read into ErrorSettings") {
  const auto file = parse_pipelines(with_pipeline(R"(errors:
  tolerance: all
  retry: {initial_backoff_ms: 5, max_backoff_ms: 50, multiplier: 1.5, max_attempts: 0, max_elapsed_ms: 0}
  circuit_breaker: {enabled: false, failure_threshold: 3, cooldown_ms: 100}
  log_errors: false
  dead_letter: {type: file, path: dlq.jsonl}
)"),
                                    "p.yaml");
  const auto& p = file.pipelines.at(0);
  CHECK(p.errors.tolerance == core::Tolerance::all);
  CHECK(p.errors.retry.initial_backoff_ms == 5);
  CHECK(p.errors.retry.max_backoff_ms == 50);
  CHECK(p.errors.retry.multiplier == doctest::Approx(1.5));
  CHECK(p.errors.retry.max_attempts == 0);
  CHECK(p.errors.retry.max_elapsed_ms == 0);
  CHECK_FALSE(p.errors.circuit_breaker.enabled);
  CHECK(p.errors.circuit_breaker.failure_threshold == 3);
  CHECK(p.errors.circuit_breaker.cooldown_ms == 100);
  CHECK_FALSE(p.errors.log_errors);
  REQUIRE(p.dead_letter.has_value());
  CHECK(p.dead_letter->role == "dead_letter");
  CHECK(p.dead_letter->instance_name == "orders.dead_letter");
  CHECK(p.dead_letter->location.str() == "p.yaml:9:16");
}

TEST_CASE("a pipeline-level dead_letter is read as a dead_letter stage") {
  const auto file =
      parse_pipelines(with_pipeline("dead_letter: {type: file, path: dlq.jsonl}\n"), "p.yaml");
  REQUIRE(file.pipelines.at(0).dead_letter.has_value());
  CHECK(file.pipelines.at(0).dead_letter->type == "file");
}

TEST_CASE("a dead_letter given twice is an error at the second") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("dead_letter: {type: file, path: a}\n"
                                               "errors:\n  dead_letter: {type: file, path: b}\n")),
                     "p.yaml:6:3: ", "already has a dead_letter sink at p.yaml:4:14");
}

TEST_CASE("the admin section is read, and its token may come from the environment") {
  setenv("SLUICE_CONFIG_TEST_TOKEN", "s3cret", 1);
  const auto file = parse_pipelines(
      "pipelines:\n"
      "  - name: a\n"
      "    source: {type: generator}\n"
      "    sink: {type: file, path: out}\n"
      "admin: {enabled: false, host: 0.0.0.0, port: 0, token: '${env:SLUICE_CONFIG_TEST_TOKEN}'}\n",
      "p.yaml");
  CHECK_FALSE(file.admin.enabled);
  CHECK(file.admin.host == "0.0.0.0");
  CHECK(file.admin.port == 0);
  CHECK(file.admin.token == "s3cret");
  CHECK(file.admin_location.str() == "p.yaml:5:8");
}

TEST_CASE("a pipelines list gives every pipeline in order") {
  const auto file = parse_pipelines(
      "pipelines:\n"
      "  - name: a\n"
      "    source: {type: generator}\n"
      "    sink: {type: file, path: a}\n"
      "  - name: b\n"
      "    source: {type: generator}\n"
      "    sink: {type: file, path: b}\n",
      "p.yaml");
  REQUIRE(file.pipelines.size() == 2);
  CHECK(file.pipelines[0].name == "a");
  CHECK(file.pipelines[1].name == "b");
  CHECK(file.pipelines[1].location.str() == "p.yaml:5:5");
  CHECK(file.pipelines[1].source.instance_name == "b.source");
}

TEST_CASE("a directory loads every yaml and yml file in name order and skips other files") {
  const auto file = load_pipelines(kFixtures / "multi");
  REQUIRE(file.pipelines.size() == 3);
  CHECK(file.pipelines[0].name == "orders");
  CHECK(file.pipelines[1].name == "payments");
  CHECK(file.pipelines[2].name == "audit");
  CHECK(file.pipelines[2].location.file == (kFixtures / "multi" / "20-audit.yml").string());
  CHECK(file.admin.port == 9090);
  CHECK(file.admin_location.file == (kFixtures / "multi" / "10-orders.yaml").string());
}

TEST_CASE("a pipeline name used twice across a directory is an error at the second name") {
  const auto message = error_of([] { load_pipelines(kFixtures / "duplicate"); });
  CHECK_CONFIG_ERROR(message, (kFixtures / "duplicate" / "b.yaml").string() + ":2:7: ",
                     "duplicate pipeline name 'orders' (first defined at " +
                         (kFixtures / "duplicate" / "a.yaml").string() + ":2:7)");
}

TEST_CASE("a pipeline name used twice in one file is an error at the second name") {
  CHECK_CONFIG_ERROR(parse_error("pipelines:\n"
                                 "  - {name: a, source: {type: g}, sink: {type: f}}\n"
                                 "  - {name: a, source: {type: g}, sink: {type: f}}\n"),
                     "p.yaml:3:12: ", "duplicate pipeline name 'a' (first defined at p.yaml:2:12)");
}

TEST_CASE("two admin sections across a directory are an error at the second") {
  const auto message = error_of([] { load_pipelines(kFixtures / "two_admins"); });
  CHECK_CONFIG_ERROR(message, (kFixtures / "two_admins" / "b.yaml").string() + ":5:1: ",
                     "admin: already configured");
}

TEST_CASE("a directory without pipeline files is an error naming the directory") {
  const auto message = error_of([] { load_pipelines(kFixtures / "empty"); });
  CHECK(message == (kFixtures / "empty").string() + ": no *.yaml or *.yml files in the directory");
}

TEST_CASE("a missing file is an error naming the file and the reason, without a position") {
  const auto message = error_of([] { load_pipelines(kFixtures / "nope.yaml"); });
  CHECK(message == (kFixtures / "nope.yaml").string() + ": cannot read: No such file or directory");
}

TEST_CASE("a stage name used twice is an error at the second") {
  CHECK_CONFIG_ERROR(parse_error("name: p\n"
                                 "source: {type: g, name: x}\n"
                                 "sink: {type: f, name: x}\n"),
                     "p.yaml:3:23: ", "duplicate stage name 'x' (first used at p.yaml:2:25)");
}

TEST_CASE("an unknown pipeline key suggests the closest known key") {
  CHECK_CONFIG_ERROR(parse_error("name: p\nsource: {type: g}\nsinc: {type: f}\n"),
                     "p.yaml:3:1: ", "unknown key 'sinc' in pipeline; did you mean 'sink'?");
}

TEST_CASE("an unknown performance key that is a prefix suggests the full key") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance:\n  max_batch: 10\n")), "p.yaml:5:3: ",
                     "unknown key 'max_batch' in performance; did you mean 'max_batch_size'?");
}

TEST_CASE("an unknown key far from every known one gets no suggestion") {
  const auto message = parse_error(with_pipeline("errors: {zzzzzz: 1}\n"));
  CHECK_CONFIG_ERROR(message, "p.yaml:4:10: ", "unknown key 'zzzzzz' in errors");
  CHECK(message.find("did you mean") == std::string::npos);
}

TEST_CASE("an unknown nested errors key is an error at the key") {
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("errors:\n  retry: {max_attempt: 3}\n")),
      "p.yaml:5:11: ", "unknown key 'max_attempt' in errors.retry; did you mean 'max_attempts'?");
}

TEST_CASE("a misspelt top-level pipelines key suggests 'pipelines'") {
  CHECK_CONFIG_ERROR(parse_error("pipeline:\n  - name: a\n"),
                     "p.yaml:1:1: ", "did you mean 'pipelines'?");
}

TEST_CASE("a top level without name or pipelines is an error at the mapping") {
  CHECK_CONFIG_ERROR(parse_error("# comment\nfoo: 1\n"),
                     "p.yaml:2:1: ", "expected 'name:' (one pipeline) or 'pipelines:'");
}

TEST_CASE("a top level that is not a mapping is an error") {
  CHECK_CONFIG_ERROR(parse_error("- a\n- b\n"),
                     "p.yaml:1:1: ", "expected a mapping at the top level");
  CHECK_CONFIG_ERROR(parse_error("just text\n"), "p.yaml:1:1: ", "got a scalar");
}

TEST_CASE("an empty file or one with only comments is an error") {
  CHECK(parse_error("") ==
        "p.yaml:1:1: the file is empty; expected a pipeline (a mapping with "
        "'name:') or a 'pipelines:' list");
  CHECK_CONFIG_ERROR(parse_error("# nothing here\n\n"), "p.yaml:1:1: ", "the file is empty");
}

TEST_CASE("pipelines that is not a list, or an empty one, is an error") {
  CHECK_CONFIG_ERROR(parse_error("pipelines: {name: a}\n"),
                     "p.yaml:1:12: ", "pipelines: expected a list of pipelines, got a mapping");
  CHECK_CONFIG_ERROR(parse_error("pipelines: []\n"), "p.yaml:1:12: ", "the list is empty");
  CHECK_CONFIG_ERROR(parse_error("pipelines:\n  - 3\n"),
                     "p.yaml:2:5: ", "a pipeline must be a mapping");
}

TEST_CASE("a pipeline without a name is an error at the pipeline") {
  CHECK_CONFIG_ERROR(parse_error("pipelines:\n  - source: {type: g}\n    sink: {type: f}\n"),
                     "p.yaml:2:5: ", "pipeline has no 'name'");
}

TEST_CASE("a pipeline name with characters outside [A-Za-z0-9_.-] is an error at the name") {
  CHECK_CONFIG_ERROR(parse_error("name: 'my pipe'\nsource: {type: g}\nsink: {type: f}\n"),
                     "p.yaml:1:7: ", "'my pipe' is not a valid pipeline name");
}

TEST_CASE("a pipeline without a source or a sink is an error at the pipeline") {
  CHECK_CONFIG_ERROR(parse_error("name: p\nsink: {type: f}\n"),
                     "p.yaml:1:1: ", "pipeline 'p' has no 'source'");
  CHECK_CONFIG_ERROR(parse_error("name: p\nsource: {type: g}\n"),
                     "p.yaml:1:1: ", "pipeline 'p' has no 'sink'");
}

TEST_CASE("a stage that is not a mapping is an error with a hint") {
  CHECK_CONFIG_ERROR(parse_error("name: p\nsource: file\nsink: {type: f}\n"), "p.yaml:2:9: ",
                     "source: expected a mapping with 'type:', got a scalar (write '{type: file}'");
}

TEST_CASE("a stage without a type is an error at the stage") {
  CHECK_CONFIG_ERROR(parse_error("name: p\nsource: {type: g}\nsink:\n  path: x\n"),
                     "p.yaml:4:3: ", "sink: missing 'type'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("transforms:\n  - {add: 1}\n")),
                     "p.yaml:5:5: ", "transforms[0]: missing 'type'");
}

TEST_CASE("transforms that are not a list are an error") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("transforms: {type: x}\n")),
                     "p.yaml:4:13: ", "transforms: expected a list of stages, got a mapping");
}

TEST_CASE("a performance value of the wrong type is an error at the value") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {min_batch_size: abc}\n")),
                     "p.yaml:4:31: ", "performance.min_batch_size: expected an integer, got 'abc'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {adaptive_batching: yes}\n")),
                     "p.yaml:4:34: ", "performance.adaptive_batching: expected true or false");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {linger_ms: [1]}\n")),
                     "p.yaml:4:26: ", "performance.linger_ms: expected an integer, got a list");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {load_adjustment_factor: half}\n")),
                     "p.yaml:4:39: ", "expected a number, got 'half'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: [1]\n")),
                     "p.yaml:4:14: ", "performance: expected a mapping, got a list");
}

TEST_CASE("an enum value out of its set suggests the closest one") {
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance: {ordering: kye}\n")), "p.yaml:4:25: ",
      "performance.ordering: expected one of key, partition, none, field, got 'kye'; did "
      "you mean 'key'?");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {cache_eviction_policy: fifo}\n")),
                     "p.yaml:4:38: ", "expected one of lru, lfu, ttl, adaptive");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {controller: vector}\n")),
                     "p.yaml:4:27: ",
                     "performance.controller: expected one of sluice, vector_arc, gradient2, "
                     "vegas, seed, got 'vector'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("errors: {tolerance: some}\n")),
                     "p.yaml:4:21: ", "errors.tolerance: expected one of none, all");
}

TEST_CASE("integers outside their range are errors at the value") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {max_concurrency: 0}\n")),
                     "p.yaml:4:32: ", "performance.max_concurrency: must be between 1 and");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {min_concurrency: 0}\n")),
                     "p.yaml:4:32: ", "performance.min_concurrency: must be between 1 and");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {linger_ms: -1}\n")),
                     "p.yaml:4:26: ", "must be between 0 and 4294967295, got '-1'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {linger_ms: 4294967296}\n")),
                     "p.yaml:4:26: ", "must be between 0 and 4294967295");
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance: {max_queue_bytes: 99999999999999999999999}\n")),
      "p.yaml:4:32: ", "must be between 1 and");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("admin: {port: 70000}\n")),
                     "p.yaml:4:15: ", "admin.port: must be between 0 and 65535");
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("errors: {circuit_breaker: {failure_threshold: 0}}\n")),
      "p.yaml:4:47: ", "errors.circuit_breaker.failure_threshold: must be between 1");
}

TEST_CASE("thresholds outside (0, 1] are errors at the value") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {cpu_utilization_threshold: 0}\n")),
                     "p.yaml:4:42: ", "must be greater than 0 and at most 1, got 0");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {memory_pressure_threshold: 1.5}\n")),
                     "p.yaml:4:42: ", "got 1.5");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {load_adjustment_factor: -0.1}\n")),
                     "p.yaml:4:39: ", "performance.load_adjustment_factor");
}

TEST_CASE("min_batch_size above max_batch_size is an error at max_batch_size") {
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance:\n  min_batch_size: 500\n  max_batch_size: 200\n")),
      "p.yaml:6:19: ", "min_batch_size (500) is greater than max_batch_size (200)");
  // With only the minimum written, the error points at the minimum.
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance: {min_batch_size: 5000}\n")),
      "p.yaml:4:31: ", "min_batch_size (5000) is greater than max_batch_size (2000)");
}

TEST_CASE("min_concurrency above max_concurrency is an error") {
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance: {min_concurrency: 9, max_concurrency: 4}\n")),
      "p.yaml:4:52: ", "min_concurrency (9) is greater than max_concurrency (4)");
}

TEST_CASE("a start batch size or concurrency outside its range is an error at the value") {
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance: {batch_size: 10}\n")), "p.yaml:4:27: ",
      "performance.batch_size: 10 is outside [min_batch_size, max_batch_size] = [50, "
      "2000]");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("performance: {concurrency: 17}\n")),
                     "p.yaml:4:28: ", "performance.concurrency: 17 is outside");
}

TEST_CASE("retry settings that cannot work are errors") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("errors: {retry: {multiplier: 0.5}}\n")),
                     "p.yaml:4:30: ", "errors.retry.multiplier: must be at least 1, got 0.5");
  CHECK_CONFIG_ERROR(
      parse_error(
          with_pipeline("errors: {retry: {initial_backoff_ms: 100, max_backoff_ms: 10}}\n")),
      "p.yaml:4:59: ", "initial_backoff_ms (100) is greater than max_backoff_ms (10)");
}

TEST_CASE("admin values of the wrong type are errors, and a token's value never shows") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("admin: {enabled: 1}\n")),
                     "p.yaml:4:18: ", "admin.enabled: expected true or false, got '1'");
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("admin: {token: [hunter2]}\n")), "p.yaml:4:16: ",
                     "value of secret field 'admin.token' must be a string, got a list");
  CHECK(parse_error(with_pipeline("admin: {token: [hunter2]}\n")).find("hunter2") ==
        std::string::npos);
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("admin: {host: ''}\n")),
                     "p.yaml:4:15: ", "admin.host: must not be empty");
}

TEST_CASE("a missing environment variable is an error at the value that uses it") {
  unsetenv("SLUICE_CONFIG_TEST_UNSET");
  CHECK_CONFIG_ERROR(
      parse_error(with_pipeline("performance:\n  linger_ms: ${env:SLUICE_CONFIG_TEST_UNSET}\n")),
      "p.yaml:5:14: ", "environment variable 'SLUICE_CONFIG_TEST_UNSET' is not set");
}

TEST_CASE("a number may come from the environment") {
  setenv("SLUICE_CONFIG_TEST_LINGER", "7", 1);
  const auto file = parse_pipelines(
      with_pipeline("performance:\n  linger_ms: ${env:SLUICE_CONFIG_TEST_LINGER}\n"), "p.yaml");
  CHECK(file.pipelines.at(0).performance.linger_ms == 7);
}

TEST_CASE("a wrong value from the environment is not shown in the error") {
  setenv("SLUICE_CONFIG_TEST_WRONG", "NotANumberSecret", 1);
  const auto message =
      parse_error(with_pipeline("performance:\n  linger_ms: ${env:SLUICE_CONFIG_TEST_WRONG}\n"));
  unsetenv("SLUICE_CONFIG_TEST_WRONG");
  CHECK_CONFIG_ERROR(message, "p.yaml:5:14: ",
                     "performance.linger_ms: expected an integer, got the value of "
                     "'${env:SLUICE_CONFIG_TEST_WRONG}' (not shown: it comes from a reference)");
  CHECK(message.find("NotANumberSecret") == std::string::npos);
}

TEST_CASE("assigning one StageSpec to another leaves both parsed trees as written") {
  const auto file = parse_pipelines(with_pipeline(""), "p.yaml");
  StageSpec stage = file.pipelines.at(0).source;
  stage = file.pipelines.at(0).sink;
  CHECK(stage.node["path"].as<std::string>() == "out.jsonl");
  CHECK(file.pipelines.at(0).source.node["path"].as<std::string>() == "in.jsonl");
  stage = StageSpec(file.pipelines.at(0).source);
  CHECK(file.pipelines.at(0).sink.node["path"].as<std::string>() == "out.jsonl");
}

TEST_CASE("delivery: exactly_once pairs a kafka source and sink, and refuses anything else") {
  const std::string kafka_pipeline =
      "name: copy\n"
      "source: {type: kafka, group_id: g, topics: [in]}\n"
      "sink: {type: kafka, topic: out}\n";
  const auto file = parse_pipelines(kafka_pipeline + "delivery: exactly_once\n", "p.yaml");
  const PipelineSpec& p = file.pipelines[0];
  CHECK(p.exactly_once);
  // The kafka plugins find each other through the pipeline's name.
  CHECK(p.source.node["exactly_once_pipeline"].as<std::string>() == "copy");
  CHECK(p.sink.node["exactly_once_pipeline"].as<std::string>() == "copy");
  CHECK_FALSE(parse_pipelines(kafka_pipeline, "p.yaml").pipelines[0].exactly_once);
  CHECK_FALSE(parse_pipelines(kafka_pipeline + "delivery: at_least_once\n", "p.yaml")
                  .pipelines[0]
                  .exactly_once);

  CHECK_CONFIG_ERROR(parse_error(with_pipeline("delivery: exactly_once\n")),
                     "p.yaml:2:16:", "delivery: exactly_once: needs a kafka source");
  CHECK_CONFIG_ERROR(parse_error(kafka_pipeline + "delivery: twice\n"), "p.yaml:4:11:", "delivery");
  CHECK_CONFIG_ERROR(parse_error(kafka_pipeline + "dead_letter: {type: file, path: dlq.jsonl}\n"
                                                  "delivery: exactly_once\n"),
                     "p.yaml:4:21:", "the dead-letter sink must be kafka, not 'file'");
  CHECK_CONFIG_ERROR(
      parse_error(kafka_pipeline +
                  "dead_letter: {type: kafka, bootstrap_servers: 'other:9092', topic: dlq}\n"
                  "delivery: exactly_once\n"),
      "p.yaml:4:14:", "must use the sink's bootstrap_servers");
  CHECK_CONFIG_ERROR(parse_error(kafka_pipeline +
                                 "dead_letter: {type: kafka, topic: dlq, exactly_once_dead_letter: "
                                 "x}\ndelivery: exactly_once\n"),
                     "p.yaml:4:40:", "write `delivery: exactly_once`");
  CHECK_CONFIG_ERROR(parse_error("name: copy\n"
                                 "source: {type: kafka, group_id: g, topics: [in]}\n"
                                 "sink: {type: kafka, topic: out, exactly_once_pipeline: x}\n"),
                     "p.yaml:3:33:", "write `delivery: exactly_once`");
}

TEST_CASE("at least once pairs an in-process kafka source with its kafka sinks only") {
  const auto spec = [](const std::string& yaml) {
    return parse_pipelines(yaml, "p.yaml").pipelines.at(0);
  };
  const std::string kafka_source = "name: copy\nsource: {type: kafka, group_id: g, topics: [in]}\n";
  const PipelineSpec both = spec(kafka_source + "sink: {type: kafka, topic: out}\n" +
                                 "dead_letter: {type: kafka, topic: dlq}\n");
  // The source holds back its commits until the sinks' deliveries are confirmed.
  CHECK(both.source.node["delivery_gate_pipeline"].as<std::string>() == "copy");
  CHECK(both.sink.node["delivery_gate_pipeline"].as<std::string>() == "copy");
  CHECK(both.dead_letter->node["delivery_gate_pipeline"].as<std::string>() == "copy");
  // A kafka sink behind another source, or in another process, must wait for Kafka in put.
  CHECK_FALSE(spec(with_pipeline("")).sink.node["delivery_gate_pipeline"]);
  const PipelineSpec isolated =
      spec(kafka_source + "sink: {type: kafka, topic: out, isolation: process}\n");
  CHECK(isolated.source.node["delivery_gate_pipeline"]);
  CHECK_FALSE(isolated.sink.node["delivery_gate_pipeline"]);
  CHECK_FALSE(spec(kafka_source + "sink: {type: kafka, topic: out}\ndelivery: exactly_once\n")
                  .sink.node["delivery_gate_pipeline"]);
  CHECK_CONFIG_ERROR(
      parse_error(kafka_source + "sink: {type: kafka, topic: out, delivery_gate_pipeline: x}\n"),
      "p.yaml:3:33:", "is set by sluice");
}

TEST_CASE("a kafka dead-letter sink of an exactly-once pipeline joins its transaction") {
  const auto file = parse_pipelines(
      "name: copy\n"
      "source: {type: kafka, group_id: g, topics: [in]}\n"
      "sink: {type: kafka, bootstrap_servers: 'k:9092', topic: out}\n"
      "dead_letter: {type: kafka, bootstrap_servers: 'k:9092', topic: dlq}\n"
      "delivery: exactly_once\n",
      "p.yaml");
  const PipelineSpec& p = file.pipelines[0];
  REQUIRE(p.dead_letter);
  // It produces through the sink's transactional producer, found by the pipeline's name.
  CHECK(p.dead_letter->node["exactly_once_dead_letter"].as<std::string>() == "copy");
  CHECK_FALSE(p.dead_letter->node["exactly_once_pipeline"]);
}

TEST_CASE("lanes follow the group_by of projection aggregates unless ordering is written") {
  const std::string stages = R"(transforms:
  - type: projection
    projections:
      - {name: customers, kind: mirror, table: bank.customers}
      - {name: balances, kind: aggregate, table: bank.transactions, group_by: account_id}
      - {name: by_branch, kind: aggregate, table: bank.accounts, group_by: branch}
)";
  const auto derived = parse_pipelines(with_pipeline(stages), "p.yaml").pipelines[0].performance;
  CHECK(derived.ordering == core::Ordering::field);
  CHECK(derived.ordering_field ==
        "payload.after.account_id|payload.after.branch|value.payload.after.account_id|"
        "value.payload.after.branch|payload.before.account_id|payload.before.branch|"
        "value.payload.before.account_id|value.payload.before.branch|after.account_id|"
        "after.branch|value.after.account_id|value.after.branch|before.account_id|before.branch|"
        "value.before.account_id|value.before.branch|key");
  // `ordering: field` alone takes the derived paths too.
  const auto field_only =
      parse_pipelines(with_pipeline(stages + "performance: {ordering: field}\n"), "p.yaml")
          .pipelines[0]
          .performance;
  CHECK(field_only.ordering_field == derived.ordering_field);
  // What the pipeline writes wins.
  const auto by_key =
      parse_pipelines(with_pipeline(stages + "performance: {ordering: key}\n"), "p.yaml")
          .pipelines[0]
          .performance;
  CHECK(by_key.ordering == core::Ordering::key);
  CHECK(by_key.ordering_field.empty());
  const auto own = parse_pipelines(with_pipeline(stages + "performance: {ordering: field, "
                                                          "ordering_field: after.id}\n"),
                                   "p.yaml")
                       .pipelines[0]
                       .performance;
  CHECK(own.ordering_field == "after.id");
  // Without aggregates nothing changes.
  const auto plain = parse_pipelines(with_pipeline(""), "p.yaml").pipelines[0].performance;
  CHECK(plain.ordering == core::Ordering::key);
  // A projection stage without projections, or with something else there, is left to the
  // plugin's own check (which names the field at FILE:LINE:COL): reading the file does not
  // throw yaml-cpp's "invalid node" (it did, and `sluice validate` ended with exit 1 and no
  // location).
  for (const char* odd : {"", "    projections:\n", "    projections: 5\n",
                          "    projections: [7, {kind: aggregate}, {group_by: [x]}]\n"}) {
    CAPTURE(odd);
    const auto none =
        parse_pipelines(with_pipeline(std::string("transforms:\n  - type: projection\n") + odd),
                        "p.yaml")
            .pipelines[0]
            .performance;
    CHECK(none.ordering == core::Ordering::key);
  }
}
