// What the process knows about the plugin calls in flight, kept where a crash handler and a
// watchdog can read it: one preallocated slot per thread that calls plugins. Before a call the
// adapter fills its thread's slot (who, what, which records, when); the crash handler
// (SIGSEGV/SIGBUS/SIGFPE/SIGILL/SIGABRT) and the exit()/_exit()/_Exit()/quick_exit()
// interposition report that slot and append its journal line; the watchdog thread marks a call
// past its deadline stuck.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pipeline/crash_journal.hpp"

namespace sluice::pipeline {

// Exit statuses of containment (also in `sluice --help` and docs/containment.md).
inline constexpr int kExitPluginExited = 70;  // a plugin called exit()/_exit() inside a call
inline constexpr int kExitStuckAtStop = 71;   // a stop could not drain a stuck plugin call

// Who a stage position's calls are, fixed when the stage is made.
struct CallPolicy {
  std::string pipeline;
  uint32_t timeout_ms = 0;                // 0: no deadline
  const CrashJournal* journal = nullptr;  // where a crash of these calls is written
};

// Marks this thread as inside a plugin call for its lifetime. Nested calls (a source's commit
// from inside its poll) keep the outer call's record.
class CallScope {
 public:
  CallScope(const CallPolicy& policy, const std::string& stage, const std::string& plugin,
            const char* call, std::span<const sluice_record> records);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  struct Slot* slot_ = nullptr;
  bool outer_ = false;
};

// A call past its deadline, as the watchdog saw it.
struct StuckCall {
  std::string stage;
  std::string description;  // "plugin 'x' (stage s) in process() for 3.2 s (limit 1 s) on ..."
};
// The stuck calls of `pipeline` now (empty when none).
std::vector<StuckCall> stuck_calls(const std::string& pipeline);
// The call `stage` of `pipeline` is in now, whatever its deadline (a source's poll has none by
// default): its description and how long it has run; nullopt when it is in no call.
struct CallInFlight {
  std::string description;  // "plugin 'x' (stage s of pipeline p), call poll() on 0 records"
  std::chrono::nanoseconds elapsed{0};
};
std::optional<CallInFlight> call_in_flight(const std::string& pipeline, const std::string& stage);

// Ends the process with `status` now, as the host's own decision: unlike _Exit (which a plugin
// inside a call may call, and which is then its failure), never reported as a plugin's.
[[noreturn]] void exit_now(int status);
// exit, _exit, _Exit or quick_exit (`fn`) as the executable exports them: reported as the
// plugin's failure (status 70) while a plugin call is in flight, else libc's `fn`.
[[noreturn]] void leave(const char* fn, int status);

// Installs the crash handlers and starts the watchdog, once per process (idempotent).
void install_call_guard();

}  // namespace sluice::pipeline
