// Plugins made inside a test: a sluice_plugin table whose process/put call a std::function, so
// the batch steps run through the real adapters with no library loaded.
#pragma once

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/stage_slots.hpp"
#include "plugin/plugin_instance.hpp"

namespace sluice::test {

// What a fake transform's process or a fake sink's put does with one call.
using FakeCall =
    std::function<sluice_status(const sluice_batch& in, sluice_writer& out, sluice_error& error)>;

// Writes `message` into a hook's error and returns `status`.
inline sluice_status fail_with(sluice_error& e, sluice_status status, const std::string& message) {
  const size_t n = std::min(message.size(), e.message_capacity - 1);
  std::memcpy(e.message, message.data(), n);
  e.message[n] = '\0';
  return status;
}

class FakeStage {
 public:
  // `kind`: SLUICE_KIND_TRANSFORM (the call is its process) or SLUICE_KIND_SINK (its put).
  FakeStage(sluice_kind kind, std::string name, FakeCall call) : call_(std::move(call)) {
    table_.struct_size = sizeof(table_);
    table_.kind = kind;
    table_.name = "fake";
    table_.version = "1.0.0";
    table_.config_schema_json = "{\"fields\":[]}";
    table_.create = &FakeStage::create;
    table_.destroy = [](void*) {};
    table_.process = &FakeStage::invoke;
    table_.put = &FakeStage::invoke;
    info_.kind = kind;
    info_.name = "fake";
    info_.table = &table_;
    // The instance handle is this object: create() reads its address from the config.
    instance_ = std::make_shared<plugin::PluginInstance>(
        info_, std::move(name), std::to_string(reinterpret_cast<uintptr_t>(this)));
  }
  FakeStage(const FakeStage&) = delete;
  FakeStage& operator=(const FakeStage&) = delete;

  int calls() const { return calls_.load(); }
  // The records of every call, copied (values only).
  const std::vector<std::vector<std::string>>& seen() const { return seen_; }
  // The headers of every record of every call.
  const std::vector<std::map<std::string, std::string>>& headers() const { return headers_; }
  const std::shared_ptr<plugin::PluginInstance>& instance() const { return instance_; }

  pipeline::TransformCall transform_call() const {
    return pipeline::TransformCall(instance_, std::make_shared<pipeline::CallCounters>(),
                                   "t.transform[0].fake");
  }
  pipeline::SinkCall sink_call() const {
    return pipeline::SinkCall(instance_, counters_, "t.sink.fake");
  }
  const pipeline::CallCounters& sink_counters() const { return *counters_; }

 private:
  static sluice_status create(const sluice_host_api*, const char* json, size_t len, void** instance,
                              sluice_error*) {
    *instance = reinterpret_cast<void*>(std::stoull(std::string(json, len)));
    return SLUICE_OK;
  }
  static sluice_status invoke(void* instance, const sluice_batch* in, sluice_writer* out,
                              sluice_error* error) {
    auto* self = static_cast<FakeStage*>(instance);
    self->calls_++;
    std::vector<std::string> values;
    for (size_t i = 0; i < in->count; ++i) {
      const sluice_record& r = in->records[i];
      values.emplace_back(text(r.value));
      auto& hs = self->headers_.emplace_back();
      for (size_t h = 0; h < r.header_count; ++h)
        hs[text(r.headers[h].key)] = text(r.headers[h].value);
    }
    self->seen_.push_back(std::move(values));
    return self->call_(*in, *out, *error);
  }

  static std::string text(sluice_bytes b) {
    return b.ptr ? std::string(reinterpret_cast<const char*>(b.ptr), b.len) : std::string();
  }

  FakeCall call_;
  sluice_plugin table_{};
  plugin::PluginInfo info_;
  std::shared_ptr<plugin::PluginInstance> instance_;
  std::shared_ptr<pipeline::CallCounters> counters_ = std::make_shared<pipeline::CallCounters>();
  std::atomic<int> calls_{0};
  std::vector<std::vector<std::string>> seen_;
  std::vector<std::map<std::string, std::string>> headers_;
};

// Forwards every input record unchanged.
inline sluice_status forward_all(const sluice_batch& in, sluice_writer& out, sluice_error&) {
  for (size_t i = 0; i < in.count; ++i) out.append(out.host_ctx, i, &in.records[i]);
  return SLUICE_OK;
}

// Accepts everything.
inline sluice_status accept_all(const sluice_batch&, sluice_writer&, sluice_error&) {
  return SLUICE_OK;
}

}  // namespace sluice::test
