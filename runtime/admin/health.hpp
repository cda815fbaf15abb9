// Health of pipelines and stages, derived from their summaries and stats, as served at /health.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "middleware/stats.hpp"
#include "pipeline/pipeline.hpp"

namespace sluice::admin {

// starting: not yet running its stage; running; paused: intake held back by backpressure (the
// middleware doing its job, so healthy); degraded: running but something needs a look (error
// rate over the limit, an error reported against the stage, e.g. a refused reload that left
// the old version running, or RSS over the memory pause threshold that the runtime's own records
// do not explain, an isolated stage's crash breaker open); stuck: a plugin call past its
// call_timeout_ms (the watchdog's report, a stage error that starts "stuck:"); finished: input
// ended cleanly; failed: the pipeline stopped on error.
enum class HealthState { starting, running, paused, degraded, stuck, finished, failed };

const char* health_state_name(HealthState state);
// running, paused and finished are healthy; the others make /health answer 503.
bool is_healthy(HealthState state);

// What one pipeline looks like from outside, read from the Pipeline at one moment.
struct PipelineObservation {
  pipeline::Summary summary;
  bool finished = false;
  std::vector<middleware::StageStats> stats;  // empty until the pipeline has started
  // Problems the pipeline reports itself, by stage instance name: a refused reload (the old
  // instance still running), an open circuit breaker. Each makes its stage degraded, but for
  // "stuck: ..." (stuck) and "restarted: ..." (an isolated stage's crashes, shown as its
  // last_error while its state stays healthy).
  std::map<std::string, std::string> stage_errors;
};

struct HealthRules {
  // A stage whose mean error rate over the profiler window reaches this is degraded.
  double degraded_error_rate_percent = 5.0;
};

struct StageHealth {
  std::string name;  // an adaptive stage or a plugin instance name
  std::string role;  // source | transform | sink | dead_letter, "" when not a plugin instance
  std::string plugin;
  std::string version;
  HealthState state = HealthState::running;
  std::string last_error;
};

struct PipelineHealth {
  std::string name;
  HealthState state = HealthState::running;  // the worst of its own state and its stages'
  std::string last_error;
  std::vector<StageHealth> stages;
};

struct HealthReport {
  bool healthy = true;
  std::vector<PipelineHealth> pipelines;
};

// Errors reported against stages from outside the pipeline (the reloader), by pipeline then
// stage; an entry marks that stage degraded until it is cleared.
using StageErrors = std::map<std::string, std::map<std::string, std::string>>;

HealthReport evaluate_health(const std::vector<PipelineObservation>& pipelines,
                             const StageErrors& stage_errors, const HealthRules& rules = {});

// {"healthy": bool, "status": "ok"|"unhealthy", "pipelines": {"<name>": {"state", "healthy",
//  "last_error" (string or null), "stages": {"<name>": {"role", "plugin", "version", "state",
//  "healthy", "last_error"}}}}}
std::string to_json(const HealthReport& report);

}  // namespace sluice::admin
