// What a pipeline tells its plugins about memory: sluice_host_memory_limit and
// sluice_host_memory_pressure of the host API.
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice::core {

// One per pipeline, shared by its plugin instances' host contexts. The limit is resolved when the
// pipeline is built (the plugins size their own buffers from it in `create`); the stage publishes
// the pressure each time it samples its memory.
struct HostMemory {
  explicit HostMemory(uint64_t limit) : limit_bytes(limit) {}
  const uint64_t limit_bytes;
  std::atomic<double> pressure{0.0};
};

}  // namespace sluice::core
