// The adapters, one per plugin role: the only code that calls a plugin's C table. Each call is
// timed and counted, its status normalized, and a failure filled into one StageError.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "pipeline/call_guard.hpp"
#include "pipeline/stage_error.hpp"
#include "pipeline/writers.hpp"
#include "plugin/plugin_instance.hpp"

namespace sluice::pipeline {

// What the calls of one stage position came to. They survive reloads (the position stays, its
// instance changes) and are read from any thread.
struct CallCounters {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failed_calls{0};  // status other than OK
  std::atomic<uint64_t> records_in{0};    // handed to the plugin
  std::atomic<uint64_t> records_out{0};   // appended (source, transform) or accepted (sink)
  std::atomic<uint64_t> busy_ns{0};       // time spent inside the plugin
  CallPolicy policy;  // deadline and crash journal of the position, set when it is made
};

// A stage's instance seen through the position it holds. Cheap to copy: a batch takes a copy of
// every stage's call when it starts, which keeps the instances alive until it ends.
class StageCall {
 public:
  StageCall() = default;
  // `label` names the position by pipeline, role, index and plugin ("orders.transform[1].fields").
  StageCall(std::shared_ptr<plugin::PluginInstance> instance,
            std::shared_ptr<CallCounters> counters, std::string label);

  explicit operator bool() const { return instance_ != nullptr; }
  const std::string& label() const { return label_; }
  const std::string& name() const { return instance_->name(); }
  const std::string& plugin() const { return instance_->info().name; }
  const CallCounters& counters() const { return *counters_; }
  plugin::PluginInstance& instance() const { return *instance_; }

  // Any role. Optional hooks a plugin lacks are a no-op (memory pressure) or success.
  void on_memory_pressure(double level) const;
  StageResult snapshot(std::string& state) const;
  StageResult restore(std::string_view state) const;

  // An error blamed on this stage.
  StageError error(std::string message, sluice_status status = SLUICE_ERROR) const;

 protected:
  // Runs `call` (which returns the plugin's status and fills `err`) inside a CallScope naming
  // `hook` and the `records` it gets: times and counts it, normalizes the status, and turns a
  // failure into a StageError carrying the plugin's message.
  template <typename Call>
  StageResult run(const char* hook, std::span<const sluice_record> records, Call&& call) const;
  void count_out(size_t records) const;

 private:
  std::shared_ptr<plugin::PluginInstance> instance_;
  std::shared_ptr<CallCounters> counters_;
  std::string label_;
};

class SourceCall : public StageCall {
 public:
  using StageCall::StageCall;
  // Appends up to args.max_records records to `out` (sets args.end_of_stream at the end).
  StageResult poll(sluice_poll_args& args, CollectingWriter& out) const;
  // Positions the pipeline is done with; success if the source does not commit.
  StageResult commit(std::span<const sluice_position> positions) const;
  void set_paused(bool paused) const;
};

class TransformCall : public StageCall {
 public:
  using StageCall::StageCall;
  // Runs the transform over `in` into `out` (made for `in.size()` records). An input index
  // outside `in`, or output past `out`'s byte budget, is the plugin's ERROR, whatever status it
  // returned: the output cannot be trusted or would not fit in memory.
  StageResult process(std::span<const sluice_record> in, CollectingWriter& out) const;
};

class SinkCall : public StageCall {
 public:
  using StageCall::StageCall;
  // Puts `in`; records the sink rejects one by one land in `rejects`.
  StageResult put(std::span<const sluice_record> in, CollectingWriter& rejects) const;
  StageResult flush() const;
  StageResult pre_commit() const;
};

}  // namespace sluice::pipeline
