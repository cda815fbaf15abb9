// Renders stage snapshots as the seed's JSON shape and as Prometheus text format 0.0.4.
#include "middleware/stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string_view>

namespace sluice::middleware {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void key(Writer& w, std::string_view name) {
  w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
}

void number(Writer& w, std::string_view name, double value) {
  key(w, name);
  if (std::isfinite(value)) {
    w.Double(value);
  } else {
    w.Null();
  }
}

void number(Writer& w, std::string_view name, uint64_t value) {
  key(w, name);
  w.Uint64(value);
}

void number(Writer& w, std::string_view name, uint32_t value) {
  key(w, name);
  w.Uint(value);
}

void text(Writer& w, std::string_view name, std::string_view value) {
  key(w, name);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

constexpr double kBytesPerMb = 1024.0 * 1024.0;
// Prometheus wants base units (promtool rejects names with _ms): times are exported in seconds.
constexpr double kMsPerSecond = 1000.0;

// One line of a family: extra labels (already formatted as `,k="v"`) and the value.
struct Sample {
  std::string labels;
  double value;
  std::string_view suffix = {};  // after the family name: a summary's _sum and _count
};

struct Family {
  std::string_view name;
  std::string_view help;
  std::string_view type;
  std::function<std::vector<Sample>(const StageStats&)> samples;
  // The samples carry their own `stage` label (a stage position's name), not the stage's.
  bool own_stage_label = false;
};

template <class F>
Family gauge(std::string_view name, std::string_view help, F value) {
  return {name, help, "gauge", [value](const StageStats& s) {
            return std::vector<Sample>{{"", double(value(s))}};
          }};
}

template <class F>
Family counter(std::string_view name, std::string_view help, F value) {
  return {name, help, "counter", [value](const StageStats& s) {
            return std::vector<Sample>{{"", double(value(s))}};
          }};
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

// The plugin metrics (`extra`) that are counters, or those that are gauges, labelled by name.
std::vector<Sample> plugin_samples(const StageStats& s, bool counters) {
  std::vector<Sample> out;
  for (const auto& [name, value] : s.extra)
    if (s.extra_counters.contains(name) == counters)
      out.push_back({fmt::format(",name=\"{}\"", escape_label_value(name)), value});
  return out;
}

const std::vector<Family>& families() {
  static const std::vector<Family> kFamilies = {
      gauge("sluice_batch_size", "Current adaptive batch size (records).",
            [](const StageStats& s) { return s.batch_size.current; }),
      gauge("sluice_batch_size_min", "Smallest allowed batch size (records).",
            [](const StageStats& s) { return s.batch_size.min; }),
      gauge("sluice_batch_size_max", "Largest allowed batch size (records).",
            [](const StageStats& s) { return s.batch_size.max; }),
      gauge("sluice_batch_target_time_seconds", "Batch time the batch-size controller aims at.",
            [](const StageStats& s) { return s.batch_size.target_time_ms / kMsPerSecond; }),
      gauge("sluice_concurrency_limit", "Current limit on batches in flight.",
            [](const StageStats& s) { return s.concurrency.current; }),
      gauge("sluice_concurrency_min", "Smallest allowed concurrency limit.",
            [](const StageStats& s) { return s.concurrency.min; }),
      gauge("sluice_concurrency_max", "Largest allowed concurrency limit.",
            [](const StageStats& s) { return s.concurrency.max; }),
      gauge("sluice_inflight_batches", "Batches in flight now.",
            [](const StageStats& s) { return s.concurrency.in_flight; }),
      {"sluice_concurrency_phase", "Concurrency controller phase (1 for the current one).", "gauge",
       [](const StageStats& s) {
         return std::vector<Sample>{
             {fmt::format(",phase=\"{}\"", escape_label_value(s.concurrency.phase)), 1.0}};
       }},
      gauge("sluice_memory_rss_bytes", "Resident set size of the process.",
            [](const StageStats& s) { return s.memory.current_mb * kBytesPerMb; }),
      gauge("sluice_memory_peak_bytes", "Peak resident set size seen.",
            [](const StageStats& s) { return s.memory.peak_mb * kBytesPerMb; }),
      gauge("sluice_memory_limit_bytes", "Memory limit pressure is measured against.",
            [](const StageStats& s) { return s.memory.limit_mb * kBytesPerMb; }),
      gauge("sluice_memory_inflight_bytes", "Bytes of records held in flight by the runtime.",
            [](const StageStats& s) { return s.memory.inflight_bytes; }),
      gauge("sluice_memory_pressure", "Memory used / memory limit.",
            [](const StageStats& s) { return s.memory.pressure; }),
      gauge("sluice_memory_pressure_threshold", "Pressure above which concurrency is cut.",
            [](const StageStats& s) { return s.memory.threshold; }),
      counter("sluice_memory_cleanups_total", "Memory-pressure cleanups run.",
              [](const StageStats& s) { return s.memory.cleanups; }),
      {"sluice_memory_trend", "Direction of memory use over the profiler window (1 for it).",
       "gauge",
       [](const StageStats& s) {
         return std::vector<Sample>{
             {fmt::format(",trend=\"{}\"", escape_label_value(s.performance.memory_trend)), 1.0}};
       }},
      gauge("sluice_memory_slope_bytes_per_second", "Least-squares slope of memory use.",
            [](const StageStats& s) { return s.performance.memory_slope_bytes_per_sec; }),
      gauge("sluice_batch_time_avg_seconds", "Mean batch time over the profiler window.",
            [](const StageStats& s) { return s.performance.avg_batch_time_ms / kMsPerSecond; }),
      // A summary (quantiles over a sliding window, as client libraries keep them) without _sum
      // and _count, which the profiler's window does not have exactly.
      {"sluice_batch_time_seconds", "Batch time quantiles over the profiler window.", "summary",
       [](const StageStats& s) {
         return std::vector<Sample>{
             {",quantile=\"0.5\"", s.performance.p50_batch_time_ms / kMsPerSecond},
             {",quantile=\"0.99\"", s.performance.p99_batch_time_ms / kMsPerSecond}};
       }},
      gauge("sluice_throughput_records_per_second", "Mean records per second over the window.",
            [](const StageStats& s) { return s.performance.avg_throughput_per_sec; }),
      gauge("sluice_error_rate_percent", "Mean share of records that failed, in percent.",
            [](const StageStats& s) { return s.performance.avg_error_rate_percent; }),
      counter("sluice_records_in_total", "Records taken into the stage.",
              [](const StageStats& s) { return s.performance.records_in; }),
      counter("sluice_records_out_total", "Records the stage delivered.",
              [](const StageStats& s) { return s.performance.records_out; }),
      counter("sluice_records_rejected_total", "Records a plugin rejected.",
              [](const StageStats& s) { return s.performance.records_rejected; }),
      counter("sluice_records_dead_lettered_total", "Records sent to the dead-letter sink.",
              [](const StageStats& s) { return s.performance.records_dead_lettered; }),
      counter("sluice_records_filtered_total", "Records a transform dropped on purpose.",
              [](const StageStats& s) { return s.performance.records_filtered; }),
      counter("sluice_batches_total", "Batches the stage completed.",
              [](const StageStats& s) { return s.performance.batches; }),
      gauge("sluice_backpressure_active", "1 while intake is paused by backpressure.",
            [](const StageStats& s) { return s.backpressure.active ? 1 : 0; }),
      gauge("sluice_queue_depth_records", "Records waiting in the intake queue.",
            [](const StageStats& s) { return s.backpressure.queue_depth; }),
      gauge("sluice_queue_bytes", "Bytes waiting in the intake queue.",
            [](const StageStats& s) { return s.backpressure.queue_bytes; }),
      gauge("sluice_backpressure_threshold_records", "Queued records that pause intake.",
            [](const StageStats& s) { return s.backpressure.threshold; }),
      counter("sluice_backpressure_paused_seconds_total", "Time intake spent paused.",
              [](const StageStats& s) { return s.backpressure.paused_ms_total / kMsPerSecond; }),
      {"sluice_plugin_metric", "Gauges reported by plugins, by name.", "gauge",
       [](const StageStats& s) { return plugin_samples(s, false); }},
      {"sluice_plugin_total", "Counters reported by plugins, by name.", "counter",
       [](const StageStats& s) { return plugin_samples(s, true); }},
      // The info-metric idiom: constant 1, the facts are in the labels.
      {"sluice_plugin_info", "Plugin instances a stage runs (1 per instance).", "gauge",
       [](const StageStats& s) {
         std::vector<Sample> out;
         for (const auto& p : s.plugins) {
           out.push_back({fmt::format(",instance=\"{}\",role=\"{}\",plugin=\"{}\",version=\"{}\"",
                                      escape_label_value(p.instance), escape_label_value(p.role),
                                      escape_label_value(p.name), escape_label_value(p.version)),
                          1.0});
         }
         return out;
       }},
  };
  return kFamilies;
}

// "stages": one object per stage position, the Profile fields under their own names.
void write_controller_json(Writer& w, const StageStats::Controller& c) {
  key(w, "controller");
  w.StartObject();
  text(w, "name", c.name);
  number(w, "limit_changes", c.limit_changes);
  key(w, "decisions");
  w.StartArray();
  for (const auto& d : c.decisions) {
    w.StartObject();
    number(w, "at_s", d.at_s);
    number(w, "from", d.from);
    number(w, "to", d.to);
    text(w, "reason", d.reason);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void write_profile_json(Writer& w, const std::vector<StageStats::Profile>& stages) {
  key(w, "stages");
  w.StartArray();
  for (const auto& p : stages) {
    w.StartObject();
    text(w, "name", p.name);
    text(w, "role", p.role);
    text(w, "plugin", p.plugin);
    number(w, "calls", p.calls);
    number(w, "failed_calls", p.failed_calls);
    number(w, "records_in", p.records_in);
    number(w, "records_out", p.records_out);
    number(w, "elapsed_ms", p.elapsed_ms);
    number(w, "busy_ms", p.busy_ms);
    number(w, "p50_ms", p.p50_ms);
    number(w, "p99_ms", p.p99_ms);
    number(w, "wait_input_ms", p.wait_input_ms);
    number(w, "wait_downstream_ms", p.wait_downstream_ms);
    number(w, "wait_breaker_ms", p.wait_breaker_ms);
    w.EndObject();
  }
  w.EndArray();
}

// A per-position family: one sample per stage position, labelled stage (the position's name),
// role and plugin; the family's `stage` label replaces the middleware stage's.
template <class F>
Family per_position(std::string_view name, std::string_view help, std::string_view type, F value) {
  return {name, help, type,
          [value](const StageStats& s) {
            std::vector<Sample> out;
            for (const auto& p : s.stages) value(p, out);
            return out;
          },
          true};
}

std::string position_labels(const StageStats::Profile& p, std::string_view more = {}) {
  return fmt::format(",stage=\"{}\",role=\"{}\",plugin=\"{}\"{}", escape_label_value(p.name),
                     escape_label_value(p.role), escape_label_value(p.plugin), more);
}

template <class F>
Family position_counter(std::string_view name, std::string_view help, F value) {
  return per_position(name, help, "counter",
                      [value](const StageStats::Profile& p, std::vector<Sample>& out) {
                        out.push_back({position_labels(p), double(value(p))});
                      });
}

// The profile families: counters for calls, records and times (seconds), a summary of call
// times (quantiles 0.5 and 0.99 with _sum and _count).
const std::vector<Family>& profile_families() {
  using P = StageStats::Profile;
  static const std::vector<Family> kFamilies = {
      position_counter("sluice_stage_calls_total", "Calls into the stage's plugin.",
                       [](const P& p) { return p.calls; }),
      position_counter("sluice_stage_failed_calls_total", "Calls that returned other than OK.",
                       [](const P& p) { return p.failed_calls; }),
      position_counter("sluice_stage_records_in_total", "Records handed to the stage's plugin.",
                       [](const P& p) { return p.records_in; }),
      position_counter("sluice_stage_records_out_total",
                       "Records the stage's plugin produced (source, transform) or accepted.",
                       [](const P& p) { return p.records_out; }),
      position_counter("sluice_stage_busy_seconds_total", "Time inside the stage's plugin.",
                       [](const P& p) { return p.busy_ms / kMsPerSecond; }),
      per_position("sluice_stage_wait_seconds_total",
                   "Time the stage waited, by reason: input (idle), downstream (backpressure), "
                   "breaker (open circuit breaker).",
                   "counter",
                   [](const P& p, std::vector<Sample>& out) {
                     out.push_back(
                         {position_labels(p, ",reason=\"input\""), p.wait_input_ms / kMsPerSecond});
                     out.push_back({position_labels(p, ",reason=\"downstream\""),
                                    p.wait_downstream_ms / kMsPerSecond});
                     out.push_back({position_labels(p, ",reason=\"breaker\""),
                                    p.wait_breaker_ms / kMsPerSecond});
                   }),
      per_position(
          "sluice_stage_call_seconds", "Time of one call into the stage's plugin.", "summary",
          [](const P& p, std::vector<Sample>& out) {
            out.push_back({position_labels(p, ",quantile=\"0.5\""), p.p50_ms / kMsPerSecond});
            out.push_back({position_labels(p, ",quantile=\"0.99\""), p.p99_ms / kMsPerSecond});
            out.push_back({position_labels(p), p.busy_ms / kMsPerSecond, "_sum"});
            out.push_back({position_labels(p), double(p.calls), "_count"});
          }),
  };
  return kFamilies;
}

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void write_json(Writer& w, const StageStats& s) {
  w.StartObject();

  key(w, "batch_size");
  w.StartObject();
  number(w, "current", s.batch_size.current);
  number(w, "min", s.batch_size.min);
  number(w, "max", s.batch_size.max);
  number(w, "target_time_ms", s.batch_size.target_time_ms);
  w.EndObject();

  key(w, "concurrency");
  w.StartObject();
  number(w, "current", s.concurrency.current);
  number(w, "min", s.concurrency.min);
  number(w, "max", s.concurrency.max);
  number(w, "in_flight", s.concurrency.in_flight);
  text(w, "phase", s.concurrency.phase);
  w.EndObject();

  write_controller_json(w, s.controller);

  key(w, "memory");
  w.StartObject();
  number(w, "current_mb", s.memory.current_mb);
  number(w, "peak_mb", s.memory.peak_mb);
  number(w, "pressure", s.memory.pressure);
  number(w, "threshold", s.memory.threshold);
  number(w, "inflight_bytes", s.memory.inflight_bytes);
  number(w, "limit_mb", s.memory.limit_mb);
  number(w, "cleanups", s.memory.cleanups);
  number(w, "held_bytes", s.memory.held_bytes);
  number(w, "queue_bound_bytes", s.memory.queue_bound_bytes);
  w.EndObject();

  key(w, "performance");
  w.StartObject();
  number(w, "avg_batch_time_ms", s.performance.avg_batch_time_ms);
  number(w, "p50_batch_time_ms", s.performance.p50_batch_time_ms);
  number(w, "p99_batch_time_ms", s.performance.p99_batch_time_ms);
  number(w, "avg_throughput_per_sec", s.performance.avg_throughput_per_sec);
  number(w, "avg_error_rate_percent", s.performance.avg_error_rate_percent);
  text(w, "memory_trend", s.performance.memory_trend);
  number(w, "memory_slope_bytes_per_sec", s.performance.memory_slope_bytes_per_sec);
  number(w, "records_in", s.performance.records_in);
  number(w, "records_out", s.performance.records_out);
  number(w, "records_rejected", s.performance.records_rejected);
  number(w, "records_dead_lettered", s.performance.records_dead_lettered);
  number(w, "records_filtered", s.performance.records_filtered);
  number(w, "batches", s.performance.batches);
  w.EndObject();

  key(w, "backpressure");
  w.StartObject();
  key(w, "active");
  w.Bool(s.backpressure.active);
  number(w, "queue_depth", s.backpressure.queue_depth);
  number(w, "queue_bytes", s.backpressure.queue_bytes);
  number(w, "threshold", s.backpressure.threshold);
  number(w, "paused_ms_total", s.backpressure.paused_ms_total);
  w.EndObject();

  key(w, "circuit_breaker");
  w.StartObject();
  key(w, "state");
  w.String(s.circuit_breaker.state.c_str());
  number(w, "consecutive_failures", s.circuit_breaker.consecutive_failures);
  number(w, "opened_total", s.circuit_breaker.opened_total);
  w.EndObject();

  key(w, "extra");
  w.StartObject();
  for (const auto& [name, value] : s.extra) number(w, name, value);
  w.EndObject();

  key(w, "plugins");
  w.StartArray();
  for (const auto& p : s.plugins) {
    w.StartObject();
    text(w, "instance", p.instance);
    text(w, "role", p.role);
    text(w, "name", p.name);
    text(w, "version", p.version);
    text(w, "file", p.file);
    w.EndObject();
  }
  w.EndArray();

  write_profile_json(w, s.stages);
  w.EndObject();
}

std::string to_json(const std::vector<StageStats>& stats) {
  // Group by pipeline, keeping first-seen order, so every key is written once.
  std::vector<std::pair<std::string, std::vector<const StageStats*>>> pipelines;
  for (const auto& s : stats) {
    auto it = std::find_if(pipelines.begin(), pipelines.end(),
                           [&](const auto& p) { return p.first == s.pipeline; });
    if (it == pipelines.end()) {
      pipelines.push_back({s.pipeline, {}});
      it = pipelines.end() - 1;
    }
    it->second.push_back(&s);
  }

  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  key(w, "pipelines");
  w.StartObject();
  for (const auto& [pipeline, stages] : pipelines) {
    key(w, pipeline);
    w.StartObject();
    key(w, "stages");
    w.StartObject();
    for (const StageStats* s : stages) {
      key(w, s->stage);
      write_json(w, *s);
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

namespace {

// The lines of one family over every stage, "" when it has no samples.
std::string family_lines(const Family& family, const std::vector<StageStats>& stats) {
  std::string lines;
  for (const auto& s : stats) {
    std::string labels = fmt::format("pipeline=\"{}\"", escape_label_value(s.pipeline));
    if (!family.own_stage_label)
      labels += fmt::format(",stage=\"{}\"", escape_label_value(s.stage));
    for (const Sample& sample : family.samples(s)) {
      lines += fmt::format("{}{}{{{}{}}} {}\n", family.name, sample.suffix, labels, sample.labels,
                           format_value(sample.value));
    }
  }
  return lines;
}

}  // namespace

std::string to_prometheus(const std::vector<StageStats>& stats) {
  std::string out;
  for (const auto* list : {&families(), &profile_families()}) {
    for (const Family& family : *list) {
      const std::string lines = family_lines(family, stats);
      if (lines.empty()) continue;
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family.name, family.help, family.name,
                         family.type);
      out += lines;
    }
  }
  return out;
}

}  // namespace sluice::middleware
