// The running instances of a pipeline's stages, one slot per stage position, and the one rule
// for reaching them from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/plugin_calls.hpp"

namespace sluice::pipeline {

// Every stage's call at one moment: what a batch (or a stats read) works with from start to end.
struct StageSet {
  SourceCall source;
  std::vector<TransformCall> transforms;
  SinkCall sink;
  SinkCall dead_letter;  // empty without a dead_letter stage
};

// The access rule: a slot's instance is a shared_ptr, read (copied) and written only under
// `mu_`. A reader's copy keeps the instance alive while it calls it, so a reload may swap a slot
// at any time; the reload then waits until it holds the last copy of the old instance and
// destroys it itself, on the control thread (abi.h: create and destroy run there).
class StageSlots {
 public:
  enum class Role { source, transform, sink, dead_letter };

  // Slots are added in order: the source, the transforms, the sink, the dead-letter sink.
  // `policy`: the position's call deadline and crash journal (call_guard.hpp).
  void add(Role role, std::string label, std::shared_ptr<plugin::PluginInstance> instance,
           CallPolicy policy = {});
  StageSet snapshot() const;
  SourceCall source() const;
  SinkCall sink() const;

  struct Found {
    size_t slot;
    Role role;
  };
  // The slot of the stage with that instance name.
  std::optional<Found> find(const std::string& instance_name) const;
  StageCall call(size_t slot) const;
  // The call the slot would make with `next` in it (same label and counters), before the swap.
  StageCall candidate(size_t slot, std::shared_ptr<plugin::PluginInstance> next) const;
  // Puts `next` into the slot and returns the instance it held.
  std::shared_ptr<plugin::PluginInstance> exchange(size_t slot,
                                                   std::shared_ptr<plugin::PluginInstance> next);
  // Empties every slot, last first, destroying the instances on the calling thread.
  void clear();

  struct Reading : CallProfile {
    std::string label;
    Role role;
    std::string plugin;  // the registered name of the plugin in the slot now
  };
  // The call counters of every position, in slot order.
  std::vector<Reading> counters() const;

 private:
  struct Slot {
    Role role;
    std::string label;
    std::shared_ptr<CallCounters> counters;
    std::shared_ptr<plugin::PluginInstance> instance;
  };

  template <typename Call>
  Call call_of(const Slot& s) const {
    return Call(s.instance, s.counters, s.label);
  }

  mutable std::mutex mu_;
  std::vector<Slot> slots_;
};

// Destroys `instance` on this thread once no one else holds a copy (readers keep theirs only
// for a call or a batch). Never call it from a thread that itself holds a copy.
void retire(std::shared_ptr<plugin::PluginInstance> instance);

}  // namespace sluice::pipeline
