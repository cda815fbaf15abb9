// The adapters: every call into a plugin's C table, timed, counted and normalized.
#include "pipeline/plugin_calls.hpp"

#include <fmt/format.h>

#include <chrono>

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

template <typename Call>
StageResult StageCall::run(const char* hook, std::span<const sluice_record> records,
                           Call&& call) const {
  plugin::CallError err;
  const size_t records_in = records.size();
  const auto started = std::chrono::steady_clock::now();
  sluice_status status;
  {
    const CallScope scope(counters_->policy, name(), plugin(), hook, records);
    status = normalize(call(err.get()));
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  counters_->calls.fetch_add(1, std::memory_order_relaxed);
  counters_->records_in.fetch_add(records_in, std::memory_order_relaxed);
  counters_->busy_ns.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  if (status == SLUICE_OK) return std::nullopt;
  counters_->failed_calls.fetch_add(1, std::memory_order_relaxed);
  std::string message = err.message[0]
                            ? std::string(err.message)
                            : fmt::format("{} with no reason given", status_name(status));
  return error(std::move(message), status);
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
  StageResult result = run("poll", {}, [&](sluice_error* e) {
    return inst.table().poll(inst.handle(), &args, out.get(), e);
  });
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
