// A tiny fake host for plugin unit tests: loads a built plugin with dlopen and drives it
// through its C table, with a host API and writers that record what the plugin did.
#pragma once

#include <dlfcn.h>
#include <doctest/doctest.h>
#include <sluice/abi.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sluice/testing.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace plugin_test {

inline std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (!v) throw std::runtime_error(std::string(name) + " is not set (run through ctest)");
  return v;
}

// Where the first-party plugins were built.
inline std::string plugin_path(std::string_view module) {
  return env_or_fail("SLUICE_BUILD_PLUGIN_DIR") + "/sluice-" + std::string(module) + ".so";
}

// Where a test module (tests/plugins/<dir>) was built.
inline std::string test_plugin_path(std::string_view dir, std::string_view module) {
  return env_or_fail("SLUICE_BINARY_DIR") + "/test-plugins/" + std::string(dir) + "/sluice-" +
         std::string(module) + ".so";
}

// A dlopen'ed library, closed on destruction.
class Library {
 public:
  explicit Library(const std::string& path)
      : handle_(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    if (!handle_) throw std::runtime_error("dlopen " + path + ": " + ::dlerror());
  }
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  ~Library() { ::dlclose(handle_); }

  void* symbol(const char* name) const { return ::dlsym(handle_, name); }

  const sluice_module& module() const {
    auto get = reinterpret_cast<sluice_module_get_fn>(symbol(SLUICE_MODULE_ENTRY));
    if (!get) throw std::runtime_error("no sluice_module_get");
    const sluice_module* m = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
    if (!m) throw std::runtime_error("sluice_module_get returned NULL");
    return *m;
  }

  const sluice_plugin& plugin(sluice_kind kind, std::string_view name) const {
    const sluice_module& m = module();
    for (size_t i = 0; i < m.plugin_count; ++i)
      if (m.plugins[i]->kind == kind && name == m.plugins[i]->name) return *m.plugins[i];
    throw std::runtime_error("no plugin " + std::string(name));
  }

 private:
  void* handle_;
};

// The host API: counters and gauges land in maps; `on_gauge` lets a test hold a plugin thread.
class FakeHost {
 public:
  // `memory_limit`: what sluice_host_memory_limit answers (0: unknown).
  explicit FakeHost(uint64_t memory_limit = 0) : memory_limit_(memory_limit) {
    api_.struct_size = sizeof(api_);
    api_.abi_major = SLUICE_ABI_MAJOR;
    api_.abi_minor = SLUICE_ABI_MINOR;
    api_.host_ctx = this;
    api_.sluice_host_log = [](void* ctx, int32_t level, const char* msg, size_t len) {
      auto* self = static_cast<FakeHost*>(ctx);
      std::lock_guard lock(self->mutex_);
      self->logs_.emplace_back(msg, len);
    };
    api_.sluice_host_counter_add = [](void* ctx, const char* name, double delta) {
      auto* self = static_cast<FakeHost*>(ctx);
      std::lock_guard lock(self->mutex_);
      self->counters_[name] += delta;
    };
    api_.sluice_host_gauge_set = [](void* ctx, const char* name, double value) {
      auto* self = static_cast<FakeHost*>(ctx);
      {
        std::lock_guard lock(self->mutex_);
        self->gauges_[name] = value;
        self->gauge_history_.emplace_back(name, value);
      }
      if (self->on_gauge) self->on_gauge(name, value);
    };
    api_.sluice_host_memory_pressure = [](void*) { return 0.0; };
    api_.sluice_host_instance_name = [](void*) { return "test.instance"; };
    api_.sluice_host_drain = nullptr;
    api_.sluice_host_memory_limit = [](void* ctx) {
      return static_cast<FakeHost*>(ctx)->memory_limit_;
    };
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  const sluice_host_api* api() const { return &api_; }
  double counter(const std::string& name) {
    std::lock_guard lock(mutex_);
    return counters_[name];
  }
  std::vector<double> gauge_values(const std::string& name) {
    std::lock_guard lock(mutex_);
    std::vector<double> out;
    for (const auto& [n, v] : gauge_history_)
      if (n == name) out.push_back(v);
    return out;
  }
  std::vector<std::string> logs() {
    std::lock_guard lock(mutex_);
    return logs_;
  }

  std::function<void(const std::string&, double)> on_gauge;

 private:
  uint64_t memory_limit_;
  sluice_host_api api_{};
  std::mutex mutex_;
  std::map<std::string, double> counters_;
  std::map<std::string, double> gauges_;
  std::vector<std::pair<std::string, double>> gauge_history_;
  std::vector<std::string> logs_;
};

// A record owned by the test, for input batches and for what plugins wrote: the SDK fake host's
// record (sluice/testing.hpp), with topic "t" unless a test sets another.
struct TestRecord : sluice::testing::Record {
  TestRecord() { topic = "t"; }
  explicit TestRecord(sluice::testing::Record r) : Record(std::move(r)) {}
};

using Rejection = sluice::testing::Reject;

// A host-owned writer that copies every record appended to it.
class FakeWriter {
 public:
  FakeWriter() {
    writer_.struct_size = sizeof(writer_);
    writer_.host_ctx = this;
    writer_.append = [](void* ctx, size_t index, const sluice_record* r) -> sluice_status {
      static_cast<FakeWriter*>(ctx)->records.emplace_back(sluice::testing::detail::copy(*r, index));
      return SLUICE_OK;
    };
    writer_.append_owned = nullptr;
    writer_.reject = [](void* ctx, size_t index, sluice_status status, const char* msg,
                        size_t len) {
      static_cast<FakeWriter*>(ctx)->rejects.push_back({index, status, std::string(msg, len)});
    };
  }
  FakeWriter(const FakeWriter&) = delete;
  FakeWriter& operator=(const FakeWriter&) = delete;

  sluice_writer* raw() { return &writer_; }

  std::vector<TestRecord> records;
  std::vector<Rejection> rejects;

 private:
  sluice_writer writer_{};
};

// The status and error text of one call, and the host-owned buffers it is written into.
using CallResult = sluice::testing::Result;

class ErrorBuffer : public sluice::testing::detail::ErrorBuffer {
 public:
  sluice_error* raw() { return get(); }
};

// A borrowed input batch built from test records.
class InputBatch : public sluice::testing::detail::Batch {
 public:
  using Batch::Batch;
  const sluice_batch* raw() const { return get(); }
};

// One plugin instance, destroyed with the object.
class Instance {
 public:
  // Creates the instance or throws with the plugin's error message.
  Instance(const sluice_plugin& plugin, FakeHost& host, const std::string& config_json)
      : plugin_(plugin) {
    CallResult r = try_create(plugin, host, config_json, &instance_);
    if (!r.ok()) throw std::runtime_error("create failed: " + r.message);
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance() {
    if (instance_) plugin_.destroy(instance_);
  }

  static CallResult try_create(const sluice_plugin& plugin, FakeHost& host,
                               const std::string& config_json, void** out) {
    ErrorBuffer e;
    sluice_status s =
        plugin.create(host.api(), config_json.data(), config_json.size(), out, e.raw());
    return e.result(s);
  }
  static CallResult validate(const sluice_plugin& plugin, const std::string& config_json) {
    ErrorBuffer e;
    return e.result(plugin.validate(config_json.data(), config_json.size(), e.raw()));
  }

  // Source: one poll; appends to `out`.
  CallResult poll(FakeWriter& out, uint32_t max_records, uint32_t timeout_ms,
                  bool* end_of_stream = nullptr, uint64_t max_bytes = UINT64_MAX) {
    sluice_poll_args args{};
    args.struct_size = sizeof(args);
    args.max_records = max_records;
    args.timeout_ms = timeout_ms;
    args.max_bytes = max_bytes;
    ErrorBuffer e;
    auto r = e.result(plugin_.poll(instance_, &args, out.raw(), e.raw()));
    if (end_of_stream) *end_of_stream = args.end_of_stream != 0;
    return r;
  }
  CallResult commit(int32_t partition, int64_t offset, const std::string& topic = "") {
    sluice_position p{};
    p.struct_size = sizeof(p);
    p.topic = {reinterpret_cast<const uint8_t*>(topic.data()), topic.size()};
    p.partition = partition;
    p.offset = offset;
    ErrorBuffer e;
    return e.result(plugin_.commit(instance_, &p, 1, e.raw()));
  }
  CallResult process(const std::vector<TestRecord>& in, FakeWriter& out) {
    InputBatch batch(in);
    ErrorBuffer e;
    return e.result(plugin_.process(instance_, batch.raw(), out.raw(), e.raw()));
  }
  CallResult put(const std::vector<TestRecord>& in, FakeWriter& rejects) {
    InputBatch batch(in);
    ErrorBuffer e;
    return e.result(plugin_.put(instance_, batch.raw(), rejects.raw(), e.raw()));
  }
  CallResult flush() {
    ErrorBuffer e;
    return e.result(plugin_.flush(instance_, e.raw()));
  }
  std::string snapshot() {
    std::string state;
    sluice_buffer b{};
    b.struct_size = sizeof(b);
    b.host_ctx = &state;
    b.append = [](void* ctx, const uint8_t* data, size_t len) {
      static_cast<std::string*>(ctx)->append(reinterpret_cast<const char*>(data), len);
    };
    ErrorBuffer e;
    REQUIRE(plugin_.snapshot(instance_, &b, e.raw()) == SLUICE_OK);
    return state;
  }
  CallResult restore(const std::string& state) {
    ErrorBuffer e;
    return e.result(plugin_.restore(instance_, reinterpret_cast<const uint8_t*>(state.data()),
                                    state.size(), e.raw()));
  }

 private:
  const sluice_plugin& plugin_;
  void* instance_ = nullptr;
};

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-plugins-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Creates transform `plugin` of `module` with `config` and destroys it: whether creation failed
// and why.
inline CallResult create_transform(const char* module, const char* plugin,
                                   const std::string& config) {
  Library lib(plugin_path(module));
  FakeHost host;
  void* instance = nullptr;
  const sluice_plugin& p = lib.plugin(SLUICE_KIND_TRANSFORM, plugin);
  CallResult r = Instance::try_create(p, host, config, &instance);
  if (instance) p.destroy(instance);
  return r;
}

// Checks that `config` is refused with a message holding `words`.
inline void check_refused(const char* module, const char* plugin, const std::string& config,
                          const std::string& words) {
  CAPTURE(config);
  const CallResult r = create_transform(module, plugin, config);
  CHECK_FALSE(r.ok());
  CHECK_MESSAGE(r.message.find(words) != std::string::npos, r.message);
}

}  // namespace plugin_test
