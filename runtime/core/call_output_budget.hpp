// The output byte budget of the transform call the calling thread is in: what the host's writer
// will take (pipeline::CollectingWriter). A plugin run in a child process writes its output into
// shared memory before the host's writer sees any of it, so the proxy passes this budget on and
// the child stops writing where the host would refuse (docs/isolation.md).
#pragma once

#include <cstdint>

namespace sluice::core {

inline constexpr uint64_t kUnboundedOutput = UINT64_MAX;

// UINT64_MAX outside a transform call, or where its output is unbounded.
inline thread_local uint64_t t_call_output_budget = kUnboundedOutput;

// Sets the calling thread's budget for one call, restoring the one before.
class CallOutputBudget {
 public:
  explicit CallOutputBudget(uint64_t bytes) : saved_(t_call_output_budget) {
    t_call_output_budget = bytes;
  }
  ~CallOutputBudget() { t_call_output_budget = saved_; }
  CallOutputBudget(const CallOutputBudget&) = delete;
  CallOutputBudget& operator=(const CallOutputBudget&) = delete;

 private:
  uint64_t saved_;
};

}  // namespace sluice::core
