// What the Kafka source and sink share: RAII for librdkafka handles, config building, log relay.
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sluice/sdk.hpp"

namespace sluice::kafka {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct ErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const { rd_kafka_metadata_destroy(m); }
};
struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const { rd_kafka_headers_destroy(h); }
};

using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, ErrorDeleter>;
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;
using HeadersPtr = std::unique_ptr<rd_kafka_headers_t, HeadersDeleter>;

// librdkafka logs from its own threads, but the host's log may only be called from threads the
// host calls us on: lines wait here until the next poll/put hands them over.
class LogRelay {
 public:
  void push(int syslog_level, std::string line);
  // Hands every waiting line to the host's log.
  void flush_to(const Host& host);

 private:
  static constexpr size_t kMaxLines = 256;
  std::mutex mutex_;
  std::deque<std::pair<Host::Level, std::string>> lines_;
  size_t dropped_ = 0;
};

// The handle's opaque: every callback gets it, and the plugin objects derive from it, so a
// callback reaches both the relay and its plugin object.
class HandleContext {
 public:
  virtual ~HandleContext() = default;
  LogRelay& log_relay() { return log_relay_; }

 private:
  LogRelay log_relay_;
};

// Config keys the plugin sets itself, in the order they are applied after the user's properties.
using Settings = std::vector<std::pair<std::string, std::string>>;

// Builds a librdkafka config: bootstrap servers, then every entry of the `properties` object
// (strings, numbers and booleans as text), then `forced` (which the plugin's guarantees rely
// on: a user value for one of them is overridden, with a warning naming only the key, as values
// may be secrets). An invalid name or value -> ConfigError("properties.<name>", librdkafka's
// message). `context` becomes the handle's opaque and gets librdkafka's log lines.
ConfPtr build_conf(const Config& config, const Host& host, const Settings& defaults,
                   const Settings& forced, HandleContext& context);

// Sets one key or throws ConfigError(field, librdkafka's message).
void set_conf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
              const std::string& field);

// The user's `properties` object has this key.
bool has_property(const Config& config, const char* key);

// Set by the host (never written by hand) on the kafka source and sink of a pipeline with
// `delivery: exactly_once`: the pipeline's name, which pairs them (see transaction.hpp).
inline constexpr const char* kExactlyOnceField = "exactly_once_pipeline";
// The key the host gives a kafka dead-letter sink of such a pipeline: it produces into the
// pipeline's transaction through the kafka sink's producer.
inline constexpr const char* kExactlyOnceDeadLetterField = "exactly_once_dead_letter";
void add_exactly_once_field(ConfigSchema& schema);
// Set by the host on the in-process kafka source and kafka sinks of an at-least-once pipeline
// with a kafka source: the pipeline's name, which pairs them (see delivery_gate.hpp).
inline constexpr const char* kDeliveryGateField = "delivery_gate_pipeline";
void add_delivery_gate_field(ConfigSchema& schema);

// The one T of `pipeline` in this process, made with T(pipeline) on first use and gone with its
// last user: how a pipeline's kafka source and sinks meet inside this module.
template <typename T>
std::shared_ptr<T> shared_per_pipeline(const std::string& pipeline) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<T>> instances;
  std::lock_guard lock(mutex);
  std::erase_if(instances, [](const auto& entry) { return entry.second.expired(); });
  auto& slot = instances[pipeline];
  std::shared_ptr<T> found = slot.lock();
  if (!found) {
    found = std::make_shared<T>(pipeline);
    slot = found;
  }
  return found;
}

// "cannot reach Kafka at ..." style text for an error code.
std::string error_text(rd_kafka_resp_err_t err);

}  // namespace sluice::kafka
