// Health rules: a pipeline's state is the worst of its own and its stages'; only running, paused
// and finished count as healthy.
#include "admin/health.hpp"

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <string_view>

namespace sluice::admin {
namespace {

// Larger is worse; a pipeline takes the worst state of its stages.
int severity(HealthState s) {
  switch (s) {
    case HealthState::finished:
      return 0;
    case HealthState::running:
      return 1;
    case HealthState::paused:
      return 2;
    case HealthState::starting:
      return 3;
    case HealthState::degraded:
      return 4;
    case HealthState::stuck:
      return 5;
    case HealthState::failed:
      return 6;
  }
  return 6;
}

HealthState worse(HealthState a, HealthState b) { return severity(a) >= severity(b) ? a : b; }

StageHealth& entry(std::vector<StageHealth>& stages, const std::string& name, HealthState base) {
  auto it = std::find_if(stages.begin(), stages.end(),
                         [&](const StageHealth& s) { return s.name == name; });
  if (it != stages.end()) return *it;
  stages.push_back(StageHealth{name, "", "", "", base, ""});
  return stages.back();
}

PipelineHealth evaluate(const PipelineObservation& p, const StageErrors& stage_errors,
                        const HealthRules& rules) {
  PipelineHealth out;
  out.name = p.summary.pipeline;
  HealthState base = HealthState::running;
  if (p.summary.failed) {
    base = HealthState::failed;
    out.last_error = p.summary.failure;
  } else if (p.finished) {
    base = HealthState::finished;
  } else if (p.stats.empty()) {
    base = HealthState::starting;
  }
  out.state = base;

  for (const auto& s : p.stats) {
    for (const auto& plugin : s.plugins) {
      StageHealth& e = entry(out.stages, plugin.instance, base);
      e.role = plugin.role;
      e.plugin = plugin.name;
      e.version = plugin.version;
      // Backpressure holds the source back, so that is where the pause shows.
      if (base == HealthState::running && plugin.role == "source" && s.backpressure.active)
        e.state = HealthState::paused;
    }
    StageHealth& stage = entry(out.stages, s.stage, base);
    if (base == HealthState::failed) stage.last_error = p.summary.failure;
    if (base != HealthState::running) continue;
    if (s.backpressure.active) stage.state = worse(stage.state, HealthState::paused);
    const double error_rate = s.performance.avg_error_rate_percent;
    if (error_rate >= rules.degraded_error_rate_percent) {
      stage.state = HealthState::degraded;
      stage.last_error = fmt::format("error rate {:.1f}% over the profiler window (limit {:.1f}%)",
                                     error_rate, rules.degraded_error_rate_percent);
    }
    // Intake paused by memory that is not ours to drain: say so rather than "paused" forever.
    if (!s.memory.unaccounted.empty()) {
      stage.state = HealthState::degraded;
      stage.last_error = s.memory.unaccounted;
    }
  }

  auto degrade = [&](const std::map<std::string, std::string>& errors) {
    for (const auto& [stage_name, message] : errors) {
      if (message.empty()) continue;
      StageHealth& e = entry(out.stages, stage_name, base);
      // An isolated stage restarted after crashes but working: shown, still healthy.
      if (message.rfind("restarted:", 0) == 0) {
        if (e.last_error.empty()) e.last_error = message;
        continue;
      }
      const bool stuck = message.rfind("stuck:", 0) == 0;
      e.state = worse(e.state, stuck ? HealthState::stuck : HealthState::degraded);
      e.last_error = message;
    }
  };
  degrade(p.stage_errors);
  if (auto it = stage_errors.find(out.name); it != stage_errors.end()) degrade(it->second);

  for (const auto& s : out.stages) {
    out.state = worse(out.state, s.state);
    if (out.last_error.empty() && !is_healthy(s.state)) out.last_error = s.last_error;
  }
  return out;
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void text(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void error_or_null(Writer& w, const std::string& error) {
  w.Key("last_error");
  if (error.empty()) {
    w.Null();
  } else {
    w.String(error.data(), static_cast<rapidjson::SizeType>(error.size()));
  }
}

}  // namespace

const char* health_state_name(HealthState state) {
  switch (state) {
    case HealthState::starting:
      return "starting";
    case HealthState::running:
      return "running";
    case HealthState::paused:
      return "paused";
    case HealthState::degraded:
      return "degraded";
    case HealthState::stuck:
      return "stuck";
    case HealthState::finished:
      return "finished";
    case HealthState::failed:
      return "failed";
  }
  return "failed";
}

bool is_healthy(HealthState state) {
  return state == HealthState::running || state == HealthState::paused ||
         state == HealthState::finished;
}

HealthReport evaluate_health(const std::vector<PipelineObservation>& pipelines,
                             const StageErrors& stage_errors, const HealthRules& rules) {
  HealthReport report;
  for (const auto& p : pipelines) {
    report.pipelines.push_back(evaluate(p, stage_errors, rules));
    report.healthy = report.healthy && is_healthy(report.pipelines.back().state);
  }
  return report;
}

std::string to_json(const HealthReport& report) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("healthy");
  w.Bool(report.healthy);
  text(w, "status", report.healthy ? "ok" : "unhealthy");
  w.Key("pipelines");
  w.StartObject();
  for (const auto& p : report.pipelines) {
    w.Key(p.name.data(), static_cast<rapidjson::SizeType>(p.name.size()));
    w.StartObject();
    text(w, "state", health_state_name(p.state));
    w.Key("healthy");
    w.Bool(is_healthy(p.state));
    error_or_null(w, p.last_error);
    w.Key("stages");
    w.StartObject();
    for (const auto& s : p.stages) {
      w.Key(s.name.data(), static_cast<rapidjson::SizeType>(s.name.size()));
      w.StartObject();
      text(w, "role", s.role);
      text(w, "plugin", s.plugin);
      text(w, "version", s.version);
      text(w, "state", health_state_name(s.state));
      w.Key("healthy");
      w.Bool(is_healthy(s.state));
      error_or_null(w, s.last_error);
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace sluice::admin
