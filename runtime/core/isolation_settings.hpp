// How one stage's plugin runs: in the host's process, or in a child process of its own.
#pragma once

#include <cstdint>

namespace sluice::core {

struct IsolationSettings {
  bool process = false;  // `isolation: process`: the plugin runs in `sluice plugin-host`
  uint32_t call_timeout_ms = 30000;  // an isolated call past this kills the child
  uint64_t memory_limit_mb = 0;      // the child's RLIMIT_AS; 0 = no limit
  // `share_cpu`: a transform's or sink's child runs each batch on the CPU of the thread that
  // called it (ChildProcess::share_cpu)
  bool share_cpu = true;
};

}  // namespace sluice::core
