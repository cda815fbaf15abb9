// A fake host for plugin unit tests: drives a plugin through its C table, in-process, as the
// sluice host would, and records what it did (output records, rejects, logs, counters, gauges).
// It needs nothing but abi.h and the standard library (plus dlopen to load a built .so), so a
// plugin author tests a plugin of any language without the runtime:
//
//   sluice::testing::Module module(&sluice_module_get);   // the plugin linked into the test
//   // or: auto module = sluice::testing::Module::open("build/sluice-my_plugin.so");
//   sluice::testing::Instance upper(module.plugin("uppercase"), R"({"field":"name"})");
//   auto out = upper.process({sluice::testing::Record::value_of(R"({"name":"ada"})")});
//   CHECK(out.records[0].value == R"({"name":"ADA"})");
//
// It follows abi.h's lifecycle: the entry point, the handshake, the module's init (which builds
// the schemas), create, the calls, destroy, shutdown. Failures of the harness itself (no entry
// point, a refused handshake, a failed create) throw std::runtime_error with the reason.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "sluice/abi.h"

namespace sluice::testing {

// A record owned by the test: input of a batch, or a copy of what the plugin appended.
struct Record {
  std::optional<std::string> key;
  std::optional<std::string> value;  // nullopt: a tombstone
  std::string topic;
  std::vector<std::pair<std::string, std::string>> headers;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  size_t input_index = SIZE_MAX;  // of an output record: the input it derives from

  static Record value_of(std::string value) {
    Record r;
    r.value = std::move(value);
    return r;
  }
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return std::nullopt;
  }
};

struct Reject {
  size_t index;
  sluice_status status;
  std::string message;
};

// The status of one call and the plugin's error text.
struct Result {
  sluice_status status = SLUICE_OK;
  std::string message;
  std::string field;
  bool ok() const { return status == SLUICE_OK; }
};

// What a poll, process or put gave back.
struct Output {
  Result result;
  std::vector<Record> records;
  std::vector<Reject> rejects;
  bool end_of_stream = false;  // a poll's
};

struct LogLine {
  int32_t level;
  std::string message;
};

namespace detail {

// A copy of the bytes a view points to; nullopt for an absent view (ptr == NULL).
inline std::optional<std::string> copy(sluice_bytes b) {
  if (b.ptr == nullptr) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(b.ptr), b.len);
}

inline sluice_bytes view(const std::string& s) {
  static const uint8_t kEmpty = 0;  // an empty but present value still needs a pointer
  return {s.empty() ? &kEmpty : reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline Record copy(const sluice_record& r, size_t input_index) {
  Record t;
  t.key = copy(r.key);
  t.value = copy(r.value);
  t.topic = copy(r.topic).value_or("");
  for (size_t i = 0; i < r.header_count; ++i)
    t.headers.emplace_back(copy(r.headers[i].key).value_or(""),
                           copy(r.headers[i].value).value_or(""));
  t.partition = r.partition;
  t.offset = r.offset;
  t.timestamp_ms = r.timestamp_ms;
  t.input_index = input_index;
  return t;
}

// The host-owned error buffers of one call.
class ErrorBuffer {
 public:
  sluice_error* get() { return &error_; }
  Result result(sluice_status s) const { return {s, message_, field_}; }

 private:
  char message_[2048] = {};
  char field_[256] = {};
  sluice_error error_{sizeof(sluice_error), message_, sizeof message_, field_, sizeof field_};
};

// A writer that copies what is appended (the host's contract) and checks input indexes.
class Writer {
 public:
  explicit Writer(Output& out, size_t input_count) : out_(&out), input_count_(input_count) {
    writer_.struct_size = sizeof(writer_);
    writer_.host_ctx = this;
    writer_.append = &append;
    writer_.append_owned = &append_owned;
    writer_.reject = &reject;
  }
  sluice_writer* get() { return &writer_; }

 private:
  bool valid(size_t index) const { return input_count_ == SIZE_MAX || index < input_count_; }
  static sluice_status append(void* ctx, size_t index, const sluice_record* r) {
    auto* self = static_cast<Writer*>(ctx);
    if (r == nullptr || !self->valid(index)) return SLUICE_ERROR;
    self->out_->records.push_back(copy(*r, index));
    return SLUICE_OK;
  }
  static sluice_status append_owned(void* ctx, size_t index, const sluice_record* r,
                                    void (*release)(void*), void* release_ctx) {
    const sluice_status s = append(ctx, index, r);  // copied, so released at once
    if (release) release(release_ctx);
    return s;
  }
  static void reject(void* ctx, size_t index, sluice_status status, const char* message,
                     size_t len) {
    auto* self = static_cast<Writer*>(ctx);
    self->out_->rejects.push_back({index, status, message ? std::string(message, len) : ""});
  }

  Output* out_;
  size_t input_count_;
  sluice_writer writer_{};
};

// A borrowed batch over test records (Record or a type derived from it), laid out as the host
// lays it out.
class Batch {
 public:
  template <typename R>
  explicit Batch(const std::vector<R>& in) : headers_(in.size()) {
    for (size_t i = 0; i < in.size(); ++i) {
      const Record& t = in[i];
      for (const auto& [k, v] : t.headers) headers_[i].push_back({view(k), view(v)});
      sluice_record r{};
      r.struct_size = sizeof(r);
      r.key = t.key ? view(*t.key) : sluice_bytes{nullptr, 0};
      r.value = t.value ? view(*t.value) : sluice_bytes{nullptr, 0};
      r.topic = view(t.topic);
      r.headers = headers_[i].data();
      r.header_count = headers_[i].size();
      r.partition = t.partition;
      r.offset = t.offset;
      r.timestamp_ms = t.timestamp_ms;
      records_.push_back(r);
    }
    batch_ = {sizeof(sluice_batch), records_.data(), records_.size()};
  }
  const sluice_batch* get() const { return &batch_; }

 private:
  std::vector<std::vector<sluice_header>> headers_;
  std::vector<sluice_record> records_;
  sluice_batch batch_{};
};

}  // namespace detail

// The host API of one instance (or of the module's init): captures logs, counters and gauges.
// Thread-safe, like the host's.
class Host {
 public:
  explicit Host(std::string instance_name = "test.instance") : name_(std::move(instance_name)) {
    api_.struct_size = sizeof(api_);
    api_.abi_major = SLUICE_ABI_MAJOR;
    api_.abi_minor = SLUICE_ABI_MINOR;
    api_.host_ctx = this;
    api_.sluice_host_log = [](void* ctx, int32_t level, const char* msg, size_t len) {
      auto* self = static_cast<Host*>(ctx);
      std::lock_guard lock(self->mu_);
      self->logs_.push_back({level, std::string(msg, len)});
    };
    api_.sluice_host_counter_add = [](void* ctx, const char* name, double delta) {
      auto* self = static_cast<Host*>(ctx);
      std::lock_guard lock(self->mu_);
      self->counters_[name] += delta;
    };
    api_.sluice_host_gauge_set = [](void* ctx, const char* name, double value) {
      auto* self = static_cast<Host*>(ctx);
      std::lock_guard lock(self->mu_);
      self->gauges_[name] = value;
    };
    api_.sluice_host_memory_pressure = [](void* ctx) {
      auto* self = static_cast<Host*>(ctx);
      std::lock_guard lock(self->mu_);
      return self->pressure_;
    };
    api_.sluice_host_instance_name = [](void* ctx) {
      return static_cast<Host*>(ctx)->name_.c_str();
    };
    api_.sluice_host_drain = nullptr;  // no pipeline behind a test: drain is not offered
    api_.sluice_host_memory_limit = [](void* ctx) {
      auto* self = static_cast<Host*>(ctx);
      std::lock_guard lock(self->mu_);
      return self->memory_limit_;
    };
  }
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  const sluice_host_api* api() const { return &api_; }
  std::vector<LogLine> logs() const {
    std::lock_guard lock(mu_);
    return logs_;
  }
  // A counter's total (0 if never added to).
  double counter(const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = counters_.find(name);
    return it == counters_.end() ? 0 : it->second;
  }
  std::optional<double> gauge(const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = gauges_.find(name);
    return it == gauges_.end() ? std::nullopt : std::optional<double>(it->second);
  }
  // What sluice_host_memory_pressure answers from now on.
  void set_memory_pressure(double level) {
    std::lock_guard lock(mu_);
    pressure_ = level;
  }
  // What sluice_host_memory_limit answers from now on (0, unknown, until set).
  void set_memory_limit(uint64_t bytes) {
    std::lock_guard lock(mu_);
    memory_limit_ = bytes;
  }

 private:
  std::string name_;
  sluice_host_api api_{};
  mutable std::mutex mu_;
  std::vector<LogLine> logs_;
  std::map<std::string, double> counters_;
  std::map<std::string, double> gauges_;
  double pressure_ = 0;
  uint64_t memory_limit_ = 0;
};

// One loaded module, through the host's handshake and init; shut down and closed with the
// object. Keep it alive while its instances live.
class Module {
 public:
  // A module linked into the test: pass its entry point (`&sluice_module_get`).
  explicit Module(sluice_module_get_fn get) { start(get); }
  // A built plugin library.
  static Module open(const std::string& path) {
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) throw std::runtime_error("dlopen " + path + ": " + ::dlerror());
    auto get = reinterpret_cast<sluice_module_get_fn>(::dlsym(handle, SLUICE_MODULE_ENTRY));
    if (get == nullptr) {
      ::dlclose(handle);
      throw std::runtime_error(path + ": no " SLUICE_MODULE_ENTRY);
    }
    return Module(get, handle);
  }
  Module(Module&& o) noexcept
      : module_(std::exchange(o.module_, nullptr)), handle_(std::exchange(o.handle_, nullptr)) {}
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module& operator=(Module&&) = delete;
  ~Module() {
    if (module_ && SLUICE_HAS_FIELD(module_, sluice_module, shutdown) && module_->shutdown)
      module_->shutdown();
    if (handle_) ::dlclose(handle_);
  }

  const sluice_module& raw() const { return *module_; }
  Host& host() { return *host_; }
  // The plugin table named `name` (of any kind); throws if there is none.
  const sluice_plugin& plugin(std::string_view name) const {
    for (size_t i = 0; i < module_->plugin_count; ++i)
      if (name == module_->plugins[i]->name) return *module_->plugins[i];
    throw std::runtime_error("no plugin named " + std::string(name));
  }

 private:
  Module(sluice_module_get_fn get, void* handle) : handle_(handle) {
    try {
      start(get);
    } catch (...) {
      ::dlclose(handle_);
      throw;
    }
  }
  // The host's handshake, then the module's init.
  void start(sluice_module_get_fn get) {
    const sluice_module* m = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
    if (m == nullptr) throw std::runtime_error("the plugin declined the host's ABI");
    if (!SLUICE_HAS_FIELD(m, sluice_module, plugin_count) || m->abi_major != SLUICE_ABI_MAJOR ||
        m->abi_minor > SLUICE_ABI_MINOR)
      throw std::runtime_error("the plugin's ABI does not match the host's");
    host_ = std::make_unique<Host>("module");
    if (SLUICE_HAS_FIELD(m, sluice_module, init) && m->init) {
      detail::ErrorBuffer e;
      const Result r = e.result(m->init(host_->api(), e.get()));
      if (!r.ok()) throw std::runtime_error("plugin init failed: " + r.message);
    }
    module_ = m;
  }

  const sluice_module* module_ = nullptr;
  void* handle_ = nullptr;
  std::unique_ptr<Host> host_;
};

// Whether `plugin` carries hook `member`, read inside its struct_size (SLUICE_HAS_FIELD).
#define SLUICE_TESTING_HAS_HOOK(plugin, hook) \
  (SLUICE_HAS_FIELD(&(plugin), sluice_plugin, hook) && (plugin).hook != nullptr)

// A plugin's validate hook on a config (SLUICE_OK when the plugin has none).
inline Result validate(const sluice_plugin& plugin, const std::string& config_json) {
  if (!SLUICE_TESTING_HAS_HOOK(plugin, validate)) return {};
  detail::ErrorBuffer e;
  return e.result(plugin.validate(config_json.data(), config_json.size(), e.get()));
}

// One plugin instance with its own Host; destroyed with the object. Calls are made as the host
// makes them; an optional hook the plugin lacks answers SLUICE_OK.
class Instance {
 public:
  // Creates the instance from a JSON config (the host would have filled in defaults from the
  // schema first); throws std::runtime_error with the plugin's message if create fails.
  Instance(const sluice_plugin& plugin, const std::string& config_json,
           std::string instance_name = "test.instance")
      : plugin_(&plugin), host_(std::make_unique<Host>(std::move(instance_name))) {
    detail::ErrorBuffer e;
    const Result r = e.result(
        plugin.create(host_->api(), config_json.data(), config_json.size(), &instance_, e.get()));
    if (!r.ok() || instance_ == nullptr)
      throw std::runtime_error("create failed: " + r.message +
                               (r.field.empty() ? "" : " (field " + r.field + ")"));
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance() {
    if (instance_) plugin_->destroy(instance_);
  }

  Host& host() { return *host_; }
  void* handle() const { return instance_; }

  // Source: one poll with these bounds (max_bytes: ABI 1.1's byte bound).
  Output poll(uint32_t max_records, uint64_t max_bytes = UINT64_MAX, uint32_t timeout_ms = 0) {
    Output out;
    detail::Writer w(out, SIZE_MAX);
    sluice_poll_args args{sizeof(sluice_poll_args), max_records, timeout_ms, 0, max_bytes};
    detail::ErrorBuffer e;
    out.result = e.result(plugin_->poll(instance_, &args, w.get(), e.get()));
    out.end_of_stream = args.end_of_stream != 0;
    return out;
  }
  // Transform: one batch; records carry the input index they derive from.
  Output process(const std::vector<Record>& in) {
    return batch(in, [&](const sluice_batch* b, sluice_writer* w, sluice_error* e) {
      return plugin_->process(instance_, b, w, e);
    });
  }
  // Sink: one batch; `rejects` of the result are the records it rejected.
  Output put(const std::vector<Record>& in) {
    return batch(in, [&](const sluice_batch* b, sluice_writer* w, sluice_error* e) {
      return plugin_->put(instance_, b, w, e);
    });
  }
  Result flush() { return call(SLUICE_TESTING_HAS_HOOK(*plugin_, flush), &sluice_plugin::flush); }
  Result pre_commit() {
    return call(SLUICE_TESTING_HAS_HOOK(*plugin_, pre_commit), &sluice_plugin::pre_commit);
  }
  // Source: positions (topic, partition, last done offset) that are done.
  Result commit(const std::vector<std::tuple<std::string, int32_t, int64_t>>& positions) {
    if (!SLUICE_TESTING_HAS_HOOK(*plugin_, commit)) return {};
    std::vector<sluice_position> ps;
    for (const auto& [topic, partition, offset] : positions)
      ps.push_back({sizeof(sluice_position), detail::view(topic), partition, offset});
    detail::ErrorBuffer e;
    return e.result(plugin_->commit(instance_, ps.data(), ps.size(), e.get()));
  }
  void set_paused(bool paused) {
    if (SLUICE_TESTING_HAS_HOOK(*plugin_, set_paused)) plugin_->set_paused(instance_, paused);
  }
  void on_memory_pressure(double level) {
    if (SLUICE_TESTING_HAS_HOOK(*plugin_, on_memory_pressure))
      plugin_->on_memory_pressure(instance_, level);
  }
  // The state a hot reload hands on; `state` is what was appended (empty without the hook).
  Result snapshot(std::string& state) {
    state.clear();
    if (!SLUICE_TESTING_HAS_HOOK(*plugin_, snapshot)) return {};
    sluice_buffer b{sizeof(sluice_buffer), &state, [](void* ctx, const uint8_t* data, size_t len) {
                      static_cast<std::string*>(ctx)->append(reinterpret_cast<const char*>(data),
                                                             len);
                    }};
    detail::ErrorBuffer e;
    return e.result(plugin_->snapshot(instance_, &b, e.get()));
  }
  Result restore(const std::string& state) {
    if (!SLUICE_TESTING_HAS_HOOK(*plugin_, restore)) return {};
    detail::ErrorBuffer e;
    return e.result(plugin_->restore(instance_, reinterpret_cast<const uint8_t*>(state.data()),
                                     state.size(), e.get()));
  }

 private:
  template <typename Call>
  Output batch(const std::vector<Record>& in, Call&& call) {
    Output out;
    detail::Batch b(in);
    detail::Writer w(out, in.size());
    detail::ErrorBuffer e;
    out.result = e.result(call(b.get(), w.get(), e.get()));
    return out;
  }
  Result call(bool present, sluice_status (*sluice_plugin::*hook)(void*, sluice_error*)) {
    if (!present) return {};
    detail::ErrorBuffer e;
    return e.result((plugin_->*hook)(instance_, e.get()));
  }

  const sluice_plugin* plugin_;
  std::unique_ptr<Host> host_;
  void* instance_ = nullptr;
};

}  // namespace sluice::testing
