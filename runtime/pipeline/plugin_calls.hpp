// The adapters, one per plugin role: the only code that calls a plugin's C table. Each call is
// timed and counted, its status normalized, and a failure filled into one StageError.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
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

// The times of a stage's calls in a fixed log-scale histogram: four buckets per doubling, so a
// quantile read from it is within about 12% of the true one. Adding is one relaxed increment.
class CallTimes {
 public:
  void add(uint64_t ns);
  // The q-quantile (0..1) of the calls added, in nanoseconds; 0 with none.
  double quantile_ns(double q) const;

 private:
  static constexpr size_t kExact = 8;     // 0..7 ns, one bucket each
  static constexpr size_t kOctaves = 37;  // 8 ns .. 2^40 ns (18 min); longer calls land last
  static constexpr size_t kBuckets = kExact + 4 * kOctaves;
  static size_t bucket(uint64_t ns);
  static double middle_ns(size_t bucket);
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
};

// What a stage waited for, outside its calls.
enum class Wait : uint8_t {
  input,       // idle: no batch to work on (a source: polls that returned nothing)
  downstream,  // a source paused by backpressure until the stage has room
  breaker,     // a sink held by its open circuit breaker
};

// One stage position's figures at one moment (see CallCounters).
struct CallProfile {
  uint64_t calls = 0, failed_calls = 0, records_in = 0, records_out = 0;
  uint64_t busy_ns = 0, elapsed_ns = 0;
  uint64_t wait_input_ns = 0, wait_downstream_ns = 0, wait_breaker_ns = 0;
  double p50_ns = 0, p99_ns = 0;
};

// What the calls of one stage position came to. They survive reloads (the position stays, its
// instance changes) and are read from any thread.
struct CallCounters {
  // `idle_between_calls`: the time no call is running counts as waiting for input (every stage
  // but the source, whose idle time is its empty polls and whose gaps are backpressure).
  explicit CallCounters(bool idle_between_calls = false);

  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failed_calls{0};  // status other than OK
  std::atomic<uint64_t> records_in{0};    // handed to the plugin
  std::atomic<uint64_t> records_out{0};   // appended (source, transform) or accepted (sink)
  std::atomic<uint64_t> busy_ns{0};       // time spent inside the plugin
  CallPolicy policy;  // deadline and crash journal of the position, set when it is made
  std::array<std::atomic<uint64_t>, 3> wait_ns{};  // by Wait
  CallTimes times;

  void add_wait(Wait wait, uint64_t ns) {
    wait_ns[static_cast<size_t>(wait)].fetch_add(ns, std::memory_order_relaxed);
  }
  // Bracket one call (steady-clock nanoseconds): with idle_between_calls, the time since the
  // last call ended, none running, is input wait.
  void call_started(int64_t now_ns);
  void call_ended(int64_t now_ns);
  CallProfile read() const;

 private:
  bool idle_between_calls_;
  int64_t created_ns_;
  std::atomic<uint32_t> running_{0};
  std::atomic<int64_t> idle_since_ns_;
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

  // Time the stage waited outside its calls (see Wait).
  void add_wait(Wait wait, std::chrono::nanoseconds time) const;

  // An error blamed on this stage.
  StageError error(std::string message, sluice_status status = SLUICE_ERROR) const;

 protected:
  // Runs `call` (which returns the plugin's status and fills `err`) inside a CallScope naming
  // `hook` and the `records` it gets: times and counts it, normalizes the status, and turns a
  // failure into a StageError carrying the plugin's message. With `produced` given, a call that
  // appended nothing to it was waiting for input, not busy.
  template <typename Call>
  StageResult run(const char* hook, std::span<const sluice_record> records, Call&& call,
                  CollectingWriter* produced = nullptr) const;
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
