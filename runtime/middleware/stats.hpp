// A plain snapshot of one stage's figures, rendered as the seed's JSON shape and as Prometheus
// text.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "middleware/controller.hpp"

namespace sluice::middleware {

// Filled by the stage (copying from its controllers, monitor and profiler) and handed to the
// renderers below; it holds no references, so it can be read on any thread.
struct StageStats {
  std::string pipeline;
  std::string stage;

  struct BatchSize {
    uint32_t current = 0;
    uint32_t min = 0;
    uint32_t max = 0;
    uint32_t target_time_ms = 0;
  } batch_size;

  struct Concurrency {
    uint32_t current = 0;
    uint32_t min = 0;
    uint32_t max = 0;
    uint32_t in_flight = 0;
    std::string phase;
  } concurrency;

  // The concurrency controller's last decisions with their reasons ("controller" key).
  struct Controller {
    std::string name;            // performance.controller
    uint64_t limit_changes = 0;  // since start
    std::vector<Decision> decisions;
  } controller;

  struct Memory {
    double current_mb = 0;
    double peak_mb = 0;
    double pressure = 0;
    double threshold = 0;
    uint64_t inflight_bytes = 0;
    double limit_mb = 0;
    uint64_t cleanups = 0;
    uint64_t held_bytes = 0;         // records in intake, lanes and batches in flight
    uint64_t queue_bound_bytes = 0;  // held_bytes at which the source is paused
    // Non-empty while RSS stays over the pause threshold though the runtime holds little
    // (MemoryMonitor::unaccounted): why the stage is degraded.
    std::string unaccounted;
  } memory;

  struct Performance {
    double avg_batch_time_ms = 0;
    double p50_batch_time_ms = 0;
    double p99_batch_time_ms = 0;
    double avg_throughput_per_sec = 0;
    double avg_error_rate_percent = 0;
    std::string memory_trend = "stable";
    double memory_slope_bytes_per_sec = 0;
    uint64_t records_in = 0;
    uint64_t records_out = 0;
    uint64_t records_rejected = 0;
    uint64_t records_dead_lettered = 0;
    uint64_t records_filtered = 0;
    uint64_t batches = 0;
  } performance;

  struct Backpressure {
    bool active = false;
    uint64_t queue_depth = 0;
    uint64_t queue_bytes = 0;
    uint64_t threshold = 0;
    uint64_t paused_ms_total = 0;
  } backpressure;

  // The sink's circuit breaker (state "closed", "open" or "half_open"; "disabled" when off).
  struct CircuitBreaker {
    std::string state = "closed";
    uint32_t consecutive_failures = 0;
    uint64_t opened_total = 0;
  } circuit_breaker;

  // Plugin counters and gauges (host API), by name.
  std::map<std::string, double> extra;
  // The names of `extra` that are counters (Prometheus counters; the others are gauges).
  std::set<std::string> extra_counters;

  // The plugin instances the stage runs (source, transforms, sink, dead-letter sink), so an
  // operator can tell which build of a plugin is live, e.g. after a reload.
  struct Plugin {
    std::string instance;  // the stage instance name (`name:` or the generated one)
    std::string role;      // source | transform | sink | dead_letter
    std::string name;      // the plugin's registered name (the YAML `type`)
    std::string version;
    std::string file;  // the shared object it was loaded from
  };
  std::vector<Plugin> plugins;

  // The profile of every stage position the pipeline runs, in order: source, transforms, sink,
  // dead-letter sink. Times in milliseconds; busy is time inside the plugin, elapsed the time
  // since the position was created (so busy / elapsed is the stage's busy fraction).
  struct Profile {
    std::string name;  // role and position: "orders.transform[1].fields"
    std::string role;  // source | transform | sink | dead_letter
    std::string plugin;
    uint64_t calls = 0;
    uint64_t failed_calls = 0;
    uint64_t records_in = 0;
    uint64_t records_out = 0;
    double elapsed_ms = 0;
    double busy_ms = 0;
    double p50_ms = 0;  // call time, from a log-scale histogram (within ~12%)
    double p99_ms = 0;
    double wait_input_ms = 0;       // idle: nothing to work on
    double wait_downstream_ms = 0;  // a source paused by backpressure
    double wait_breaker_ms = 0;     // a sink held by its open circuit breaker
  };
  std::vector<Profile> stages;
};

// One stage as a JSON object: batch_size, concurrency, controller (name, limit_changes and the
// last decisions: {at_s, from, to, reason}), memory, performance, backpressure (the
// seed's get_performance_stats shape and names, plus our extra fields), "extra" and "plugins" (a
// list of {instance, role, name, version, file}) and "stages" (the Profile list, see
// write_profile_json). Non-finite
// numbers are written as null, since JSON has no NaN.
void write_json(rapidjson::Writer<rapidjson::StringBuffer>& writer, const StageStats& stats);

// {"pipelines":{"<pipeline>":{"stages":{"<stage>":{...}}}}}, pipelines and stages in first-seen
// order.
std::string to_json(const std::vector<StageStats>& stats);

// Prometheus text exposition format 0.0.4: families named sluice_*, labels pipeline and stage,
// one # HELP / # TYPE per family, counters ending in _total, times in seconds (base units, so
// `promtool check metrics` accepts it).
std::string to_prometheus(const std::vector<StageStats>& stats);

// Escapes a label value for the text format (backslash, double quote, newline).
std::string escape_label_value(const std::string& value);

}  // namespace sluice::middleware
