// The adapters: every call into a plugin's C table, timed, counted and normalized.
#include "pipeline/plugin_calls.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <utility>

#include "core/call_output_budget.hpp"
#include "core/plugin_unavailable.hpp"

namespace sluice::pipeline {

const char* status_name(sluice_status s) {
  switch (s) {
    case SLUICE_OK:
      return "OK";
    case SLUICE_RETRY:
      return "RETRY";
    case SLUICE_ERROR:
      return "ERROR";
    case SLUICE_FATAL:
      return "FATAL";
  }
  return "ERROR (unknown status)";
}

StageCall::StageCall(std::shared_ptr<plugin::PluginInstance> instance,
                     std::shared_ptr<CallCounters> counters, std::string label)
    : instance_(std::move(instance)), counters_(std::move(counters)), label_(std::move(label)) {}

StageError StageCall::error(std::string message, sluice_status status) const {
  return {name(), plugin(), std::move(message), status, 1};
}

namespace {

int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t now_ns() { return steady_ns(std::chrono::steady_clock::now()); }

uint64_t since(int64_t from_ns, int64_t to_ns) {
  return to_ns > from_ns ? static_cast<uint64_t>(to_ns - from_ns) : 0;
}

}  // namespace

size_t CallTimes::bucket(uint64_t ns) {
  if (ns < kExact) return ns;
  const size_t octave = std::min<size_t>(std::bit_width(ns) - 1, kExact / 2 + kOctaves - 2);
  const size_t quarter = (ns >> (octave - 2)) & 3;  // the two bits below the top one
  return kExact + (octave - 3) * 4 + quarter;
}

double CallTimes::middle_ns(size_t bucket) {
  if (bucket < kExact) return static_cast<double>(bucket);
  const size_t octave = (bucket - kExact) / 4 + 3;
  const size_t quarter = (bucket - kExact) % 4;
  const double width = std::ldexp(1.0, static_cast<int>(octave) - 2);
  return (4 + quarter) * width + width / 2;
}

void CallTimes::add(uint64_t ns) { counts_[bucket(ns)].fetch_add(1, std::memory_order_relaxed); }

double CallTimes::quantile_ns(double q) const {
  std::array<uint64_t, kBuckets> counts{};
  uint64_t total = 0;
  for (size_t i = 0; i < kBuckets; ++i)
    total += counts[i] = counts_[i].load(std::memory_order_relaxed);
  if (total == 0) return 0;
  // The rank of the quantile among `total` calls, 1-based: p99 of 100 calls is the 99th.
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * total)));
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts[i];
    if (seen >= rank) return middle_ns(i);
  }
  return middle_ns(kBuckets - 1);
}

CallCounters::CallCounters(bool idle_between_calls)
    : idle_between_calls_(idle_between_calls), created_ns_(now_ns()), idle_since_ns_(created_ns_) {}

void CallCounters::call_started(int64_t now) {
  if (!idle_between_calls_) return;
  if (running_.fetch_add(1, std::memory_order_acq_rel) == 0)
    add_wait(Wait::input, since(idle_since_ns_.load(std::memory_order_acquire), now));
}

void CallCounters::call_ended(int64_t now) {
  if (!idle_between_calls_) return;
  if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1)
    idle_since_ns_.store(now, std::memory_order_release);
}

CallProfile CallCounters::read() const {
  CallProfile p;
  p.calls = calls.load();
  p.failed_calls = failed_calls.load();
  p.records_in = records_in.load();
  p.records_out = records_out.load();
  p.busy_ns = busy_ns.load();
  const int64_t now = now_ns();
  p.elapsed_ns = since(created_ns_, now);
  p.wait_input_ns = wait_ns[static_cast<size_t>(Wait::input)].load();
  p.wait_downstream_ns = wait_ns[static_cast<size_t>(Wait::downstream)].load();
  p.wait_breaker_ns = wait_ns[static_cast<size_t>(Wait::breaker)].load();
  // Idle right now (no call running since idle_since) is input wait too.
  if (idle_between_calls_ && running_.load() == 0)
    p.wait_input_ns += since(idle_since_ns_.load(std::memory_order_acquire), now);
  p.p50_ns = times.quantile_ns(0.5);
  p.p99_ns = times.quantile_ns(0.99);
  return p;
}

void StageCall::add_wait(Wait wait, std::chrono::nanoseconds time) const {
  if (time.count() > 0) counters_->add_wait(wait, static_cast<uint64_t>(time.count()));
}

template <typename Call>
StageResult StageCall::run(const char* hook, std::span<const sluice_record> records, Call&& call,
                           CollectingWriter* produced) const {
  plugin::CallError err;
  const size_t records_in = records.size();
  const int64_t started = now_ns();
  counters_->call_started(started);
  sluice_status status;
  core::t_plugin_unavailable = false;
  {
    const CallScope scope(counters_->policy, name(), plugin(), hook, records);
    status = normalize(call(err.get()));
  }
  // An isolated stage's proxy refused the call: no plugin process runs (docs/isolation.md).
  const bool unavailable = std::exchange(core::t_plugin_unavailable, false) && status != SLUICE_OK;
  if (unavailable) status = SLUICE_RETRY;
  const int64_t ended = now_ns();
  counters_->call_ended(ended);
  const uint64_t ns = since(started, ended);
  counters_->calls.fetch_add(1, std::memory_order_relaxed);
  counters_->records_in.fetch_add(records_in, std::memory_order_relaxed);
  if (produced && produced->records().empty()) {
    counters_->add_wait(Wait::input, ns);
  } else {
    counters_->busy_ns.fetch_add(ns, std::memory_order_relaxed);
    counters_->times.add(ns);
  }
  if (status == SLUICE_OK) return std::nullopt;
  counters_->failed_calls.fetch_add(1, std::memory_order_relaxed);
  std::string message =
      err.message[0] ? err.text() : fmt::format("{} with no reason given", status_name(status));
  StageResult failed = error(std::move(message), status);
  failed->unavailable = unavailable;
  return failed;
}

void StageCall::count_out(size_t records) const {
  counters_->records_out.fetch_add(records, std::memory_order_relaxed);
}

void StageCall::on_memory_pressure(double level) const {
  if (!instance_->has(&sluice_plugin::on_memory_pressure)) return;
  run("on_memory_pressure", {}, [&](sluice_error*) {
    instance_->table().on_memory_pressure(instance_->handle(), level);
    return SLUICE_OK;
  });
}

StageResult StageCall::snapshot(std::string& state) const {
  if (!instance_->has(&sluice_plugin::snapshot)) return std::nullopt;
  sluice_buffer buf{sizeof(sluice_buffer), &state, [](void* ctx, const uint8_t* data, size_t len) {
                      static_cast<std::string*>(ctx)->append(reinterpret_cast<const char*>(data),
                                                             len);
                    }};
  return run("snapshot", {}, [&](sluice_error* e) {
    return instance_->table().snapshot(instance_->handle(), &buf, e);
  });
}

StageResult StageCall::restore(std::string_view state) const {
  if (!instance_->has(&sluice_plugin::restore)) return std::nullopt;
  return run("restore", {}, [&](sluice_error* e) {
    return instance_->table().restore(
        instance_->handle(), reinterpret_cast<const uint8_t*>(state.data()), state.size(), e);
  });
}

StageResult SourceCall::poll(sluice_poll_args& args, CollectingWriter& out) const {
  auto& inst = instance();
  StageResult result = run(
      "poll", {},
      [&](sluice_error* e) { return inst.table().poll(inst.handle(), &args, out.get(), e); }, &out);
  count_out(out.records().size());
  return result;
}

StageResult SourceCall::commit(std::span<const sluice_position> positions) const {
  auto& inst = instance();
  if (!inst.has(&sluice_plugin::commit)) return std::nullopt;
  return run("commit", {}, [&](sluice_error* e) {
    return inst.table().commit(inst.handle(), positions.data(), positions.size(), e);
  });
}

void SourceCall::set_paused(bool paused) const {
  auto& inst = instance();
  if (!inst.has(&sluice_plugin::set_paused)) return;
  run("set_paused", {}, [&](sluice_error*) {
    inst.table().set_paused(inst.handle(), paused ? 1 : 0);
    return SLUICE_OK;
  });
}

StageResult TransformCall::process(std::span<const sluice_record> in, CollectingWriter& out) const {
  auto& inst = instance();
  sluice_batch batch{sizeof(sluice_batch), in.data(), in.size()};
  const core::CallOutputBudget budget(out.byte_budget());  // for an isolated plugin's child
  StageResult result = run("process", in, [&](sluice_error* e) {
    return inst.table().process(inst.handle(), &batch, out.get(), e);
  });
  count_out(out.records().size());
  if (out.bad_index())
    return error(fmt::format("transform '{}' ({}) gave input_index {} for a batch of {} records",
                             name(), plugin(), *out.bad_index(), in.size()));
  if (out.over_budget())
    return error(fmt::format("transform '{}' ({}) output over {} bytes for a batch of {} records",
                             name(), plugin(), out.byte_budget(), in.size()));
  return result;
}

StageResult SinkCall::put(std::span<const sluice_record> in, CollectingWriter& rejects) const {
  auto& inst = instance();
  sluice_batch batch{sizeof(sluice_batch), in.data(), in.size()};
  StageResult result = run("put", in, [&](sluice_error* e) {
    return inst.table().put(inst.handle(), &batch, rejects.get(), e);
  });
  // A reject of a record the batch does not have: what the sink wrote is unknown, so the put
  // fails (retried, then its records fail) rather than acking on a word that cannot be true.
  if (!result && rejects.bad_index())
    return error(fmt::format("sink '{}' ({}) rejected input_index {} of a batch of {} records",
                             name(), plugin(), *rejects.bad_index(), in.size()));
  if (!result) count_out(in.size() - rejects.rejects().size());
  return result;
}

StageResult SinkCall::flush() const {
  auto& inst = instance();
  if (!inst.has(&sluice_plugin::flush)) return std::nullopt;
  return run("flush", {}, [&](sluice_error* e) { return inst.table().flush(inst.handle(), e); });
}

StageResult SinkCall::pre_commit() const {
  auto& inst = instance();
  if (!inst.has(&sluice_plugin::pre_commit)) return std::nullopt;
  return run("pre_commit", {},
             [&](sluice_error* e) { return inst.table().pre_commit(inst.handle(), e); });
}

}  // namespace sluice::pipeline
