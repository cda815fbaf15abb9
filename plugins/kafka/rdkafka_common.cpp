// Config building and log relaying shared by the Kafka source and sink.
#include "rdkafka_common.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <mutex>

namespace sluice::kafka {

namespace {

Host::Level level_of(int syslog_level) {
  if (syslog_level <= 3) return Host::Level::error;
  if (syslog_level == 4) return Host::Level::warn;
  if (syslog_level <= 6) return Host::Level::info;
  return Host::Level::debug;
}

std::string value_text(const rapidjson::Value& v) {
  if (v.IsString()) return {v.GetString(), v.GetStringLength()};
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  if (v.IsNumber()) return fmt::format("{}", v.GetDouble());
  return {};
}

// librdkafka initialises process-wide state once (SASL, SSL, its own globals) and never frees
// it. Unloaded with the last copy of this plugin (a hot reload, or the host's exit), that state
// would leak and a reload would initialise it again; so librdkafka, once used, stays loaded for
// the life of the process (RTLD_NODELETE on the library that already holds rd_kafka_version).
void keep_librdkafka_loaded() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&rd_kafka_version), &info) == 0 || !info.dli_fname) return;
    // A reference that is never closed; NOLOAD: it is mapped already, this only pins it.
    (void)dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  });
}

}  // namespace

void LogRelay::push(int syslog_level, std::string line) {
  std::lock_guard lock(mutex_);
  if (lines_.size() >= kMaxLines) {
    lines_.pop_front();
    ++dropped_;
  }
  lines_.emplace_back(level_of(syslog_level), std::move(line));
}

void LogRelay::flush_to(const Host& host) {
  std::deque<std::pair<Host::Level, std::string>> lines;
  size_t dropped = 0;
  {
    std::lock_guard lock(mutex_);
    lines.swap(lines_);
    std::swap(dropped, dropped_);
  }
  if (dropped > 0) host.warn(fmt::format("librdkafka: {} log lines dropped", dropped));
  for (auto& [level, line] : lines) host.log(level, line);
}

void set_conf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
              const std::string& field) {
  std::array<char, 512> err{};
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err.data(), err.size()) !=
      RD_KAFKA_CONF_OK)
    throw ConfigError(field, err.data());
}

bool has_property(const Config& config, const char* key) {
  const auto* props = config.find("properties");
  return props != nullptr && props->IsObject() && props->HasMember(key);
}

ConfPtr build_conf(const Config& config, const Host& host, const Settings& defaults,
                   const Settings& forced, HandleContext& context) {
  keep_librdkafka_loaded();
  ConfPtr conf(rd_kafka_conf_new());
  set_conf(conf.get(), "bootstrap.servers", config.get_string("bootstrap_servers"),
           "bootstrap_servers");
  for (const auto& [key, value] : defaults)
    if (!has_property(config, key.c_str())) set_conf(conf.get(), key, value, "properties." + key);

  if (const auto* props = config.find("properties")) {
    if (!props->IsObject()) throw ConfigError("properties", "properties must be an object");
    for (const auto& m : props->GetObject()) {
      std::string key(m.name.GetString(), m.name.GetStringLength());
      if (!m.value.IsString() && !m.value.IsNumber() && !m.value.IsBool())
        throw ConfigError("properties." + key,
                          "a property value must be a string, number or boolean");
      set_conf(conf.get(), key, value_text(m.value), "properties." + key);
    }
  }
  for (const auto& [key, value] : forced) {
    if (has_property(config, key.c_str()))
      host.warn(fmt::format("properties.{} is set by the kafka plugin itself; ignoring it", key));
    set_conf(conf.get(), key, value, "properties." + key);
  }

  rd_kafka_conf_set_opaque(conf.get(), &context);
  rd_kafka_conf_set_log_cb(
      conf.get(), [](const rd_kafka_t* rk, int level, const char* facility, const char* line) {
        if (auto* context = static_cast<HandleContext*>(rd_kafka_opaque(rk)))
          context->log_relay().push(level, fmt::format("librdkafka {}: {}", facility, line));
      });
  return conf;
}

std::string error_text(rd_kafka_resp_err_t err) {
  return fmt::format("{} ({})", rd_kafka_err2str(err), rd_kafka_err2name(err));
}

void add_exactly_once_field(ConfigSchema& schema) {
  schema.string(kExactlyOnceField)
      .doc("Set by the host for a pipeline with `delivery: exactly_once` (do not write it)");
}

void add_delivery_gate_field(ConfigSchema& schema) {
  schema.string(kDeliveryGateField)
      .doc(
          "Set by the host for an at-least-once pipeline with a kafka source: the source commits "
          "only what the kafka sinks' delivery reports confirmed (do not write it)");
}

}  // namespace sluice::kafka
