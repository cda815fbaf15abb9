// Fuzz target: the SDK's JSON handling. The first line is a plugin config, read through
// sluice::Config's getters and handed to the fields transform's create() through its C table;
// every further line is a record value that the created transform processes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sluice/sdk.hpp>
#include <string>
#include <string_view>
#include <vector>

extern "C" const sluice_module* sluice_module_get(uint32_t, uint32_t);

namespace {

// The host side a plugin sees: logging and metrics that go nowhere.
void host_log(void*, int32_t, const char*, size_t) {}
void host_counter(void*, const char*, double) {}
void host_gauge(void*, const char*, double) {}
double host_pressure(void*) { return 0.0; }
const char* host_name(void*) { return "fuzz.transform"; }

const sluice_host_api kHost = {sizeof(sluice_host_api),
                               SLUICE_ABI_MAJOR,
                               SLUICE_ABI_MINOR,
                               nullptr,
                               host_log,
                               host_counter,
                               host_gauge,
                               host_pressure,
                               host_name,
                               nullptr,
                               nullptr};

// Output records are copied, as the host does, so a dangling view in the plugin shows up.
struct Collected {
  std::vector<std::string> values;
  size_t rejected = 0;
};

sluice_status append(void* ctx, size_t, const sluice_record* r) {
  auto* c = static_cast<Collected*>(ctx);
  c->values.emplace_back(sluice::as_view(r->value));
  for (size_t i = 0; i < r->header_count; ++i) {
    (void)sluice::as_view(r->headers[i].key).size();
    (void)sluice::as_view(r->headers[i].value).size();
  }
  return SLUICE_OK;
}
void reject(void* ctx, size_t, sluice_status, const char* message, size_t len) {
  auto* c = static_cast<Collected*>(ctx);
  ++c->rejected;
  (void)std::string(message, len);
}

const sluice_plugin& fields_plugin() {
  static const sluice_plugin* p = [] {
    const sluice_module* m = sluice_module_get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
    for (size_t i = 0; i < m->plugin_count; ++i)
      if (m->plugins[i]->kind == SLUICE_KIND_TRANSFORM) return m->plugins[i];
    __builtin_trap();
  }();
  return *p;
}

void exercise_config(std::string_view json) {
  try {
    sluice::Config c(json.data(), json.size());
    const char* names[] = {"add", "rename", "drop", "keep", "path", "count", ""};
    for (const char* n : names) {
      try {
        (void)c.get_string(n, "x");
      } catch (const sluice::ConfigError&) {
      }
      try {
        (void)c.get_int(n, 1);
      } catch (const sluice::ConfigError&) {
      }
      try {
        (void)c.get_double(n, 1.0);
      } catch (const sluice::ConfigError&) {
      }
      try {
        (void)c.get_bool(n, true);
      } catch (const sluice::ConfigError&) {
      }
      try {
        (void)c.get_strings(n);
      } catch (const sluice::ConfigError&) {
      }
      (void)c.has(n);
    }
  } catch (const sluice::ConfigError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nl = all.find('\n');
  std::string config(all.substr(0, nl));
  exercise_config(config);

  const sluice_plugin& p = fields_plugin();
  char message[256];
  char field[64];
  sluice_error err{sizeof(sluice_error), message, sizeof message, field, sizeof field};
  void* instance = nullptr;
  if (p.create(&kHost, config.data(), config.size(), &instance, &err) != SLUICE_OK) return 0;
  if (std::strlen(message) >= sizeof message) __builtin_trap();

  // Records: the remaining lines; a line "~" is a tombstone.
  std::vector<sluice_record> records;
  std::string_view rest = nl == std::string_view::npos ? std::string_view() : all.substr(nl + 1);
  static const sluice_header kHeader = {sluice::as_bytes(std::string_view("h")),
                                        sluice::as_bytes(std::string_view("v"))};
  while (!rest.empty() && records.size() < 64) {
    const size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    sluice_record r{};
    r.struct_size = sizeof r;
    r.key = sluice::as_bytes(std::string_view("k"));
    r.value = line == "~" ? sluice_bytes{nullptr, 0} : sluice::as_bytes(line);
    r.topic = sluice::as_bytes(std::string_view("topic"));
    r.headers = &kHeader;
    r.header_count = 1;
    r.partition = static_cast<int32_t>(records.size());
    r.offset = static_cast<int64_t>(records.size()) * 1000;
    r.timestamp_ms = 1700000000000;
    records.push_back(r);
  }
  Collected out;
  sluice_writer w{sizeof(sluice_writer), &out, append, nullptr, reject};
  sluice_batch in{sizeof(sluice_batch), records.data(), records.size()};
  (void)p.process(instance, &in, &w, &err);
  p.destroy(instance);
  return 0;
}
