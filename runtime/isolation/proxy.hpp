// An isolated stage's plugin as the host sees it: a PluginInfo whose table forwards every hook
// to a `sluice plugin-host` child, restarts it when it dies, and quarantines poison records.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "core/isolation_settings.hpp"
#include "plugin/plugin_library.hpp"

namespace sluice::isolation {

// A PluginInfo like `real` (same names, schema and optional hooks) whose table runs the plugin
// of `real.file` in a child process. `instance_name` is the name the instance will be created
// under (the proxy's create finds its settings by it).
// `on_load_crash` is told the signal of each child that died of one while it loaded the library
// (its constructors, entry point or init), before it could create the instance: the host lives
// on, so it can journal what the child's own crash handler could only write to stderr.
using LoadCrashReporter = std::function<void(int signal)>;
plugin::PluginInfo make_proxy(const plugin::PluginInfo& real, const std::string& instance_name,
                              const core::IsolationSettings& settings,
                              LoadCrashReporter on_load_crash = {});

// `real` itself, or make_proxy(...) when `settings.process` is set.
plugin::PluginInfo plugin_info_for(const plugin::PluginInfo& real, const std::string& instance_name,
                                   const core::IsolationSettings& settings,
                                   LoadCrashReporter on_load_crash = {});

// An isolated instance's crashes as /health shows them. `handle` is the instance handle of a
// PluginInfo from make_proxy. breaker_open: its calls fail without reaching the plugin: more
// crashes in the crash window than its calls are retried for, or start_failing.
struct CrashState {
  uint64_t crashes = 0;
  uint64_t restarts = 0;
  std::string last_crash;  // "killed by signal 11 (SIGSEGV)", ... ("" before any)
  bool breaker_open = false;
  // The last start of its child died or hung (in create, or loading the library) and none has
  // succeeded since: calls fail at once until a start, tried after a backoff, succeeds.
  bool start_failing = false;
  // With start_failing: how the last start failed ("killed by signal 6 (SIGABRT) in create()",
  // "... while loading the library": the child says when its library has loaded), how many in a
  // row, and the time left before the next start is tried (0: with the next call).
  std::string start_failure;
  int failed_starts = 0;
  int64_t next_start_in_ms = 0;
};
CrashState crash_state(void* handle);

// From `when` on (a stop's grace ends), the isolated instance `handle` kills a restart in
// flight (a create that hangs would hold the stop up to call_timeout_ms) and starts none: its
// calls then fail as RETRY with the plugin not running, and the stop leaves their records
// unacked. Any thread.
// An earlier `when` handed before stays (a source's grace is handed from the stop's first sight).
void stop_starts_at(void* handle, std::chrono::steady_clock::time_point when);
// Whether `handle`'s restart is in flight, or was killed at the stop's grace (its call is on its
// way out, no start follows). Any thread.
bool restarting(void* handle);

// Loads `file` in a short-lived child (`plugin-host --check`: handshake, init, schema, create
// with `config_json`, destroy, shutdown). Returns how the child died or that it hung ("the new
// FILE killed by signal 6 (SIGABRT) while loading in a trial process ..."), else "": a clean
// refusal (handshake, create error) is left to the real load, which reports it the same way.
std::string trial_load(const std::filesystem::path& file, sluice_kind kind,
                       const std::string& plugin_name, const std::string& config_json);

}  // namespace sluice::isolation
