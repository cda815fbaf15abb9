// Decodes one Debezium JSON change event (any envelope form) into a normalized change event.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice_cdc {

// What a decoded input is; everything but `change` is passed over or routed as configured.
enum class EventKind { change, tombstone, heartbeat, schema_change, transaction, message };

const char* kind_name(EventKind kind);

// The raw parts of one input: a Kafka-style record, or one envelope line already split.
struct RawEvent {
  std::optional<std::string_view> key;    // JSON text; nullopt: no key
  std::optional<std::string_view> value;  // JSON text; nullopt: a tombstone
  std::string_view topic;
  std::optional<std::string_view> old_key_header;  // __debezium.oldkey
  std::optional<std::string_view> new_key_header;  // __debezium.newkey
  int32_t partition = 0;
  int64_t offset = 0;
};

struct DecoderOptions {
  // table -> primary-key columns, used when the record key is null.
  std::map<std::string, std::vector<std::string>> key_columns;
  std::string heartbeat_topic_prefix = "__debezium-heartbeat";
};

// The result of decoding: a normalized event as JSON, or the reason it cannot be decoded.
struct Decoded {
  EventKind kind = EventKind::change;
  std::string error;     // non-empty: reject with this reason
  char op = 0;           // c, u, d, r, t for changes
  std::string table;     // "schema.table" (or "db.table")
  std::string key;       // canonical JSON of the primary key ("" for a truncate)
  std::string position;  // totally ordered text: compare with <
  std::string json;      // the normalized event
  // Sets the output record key when route_keys names a field for the table.
  std::optional<std::string> route_value;
};

// Encodes positions so that string comparison orders them the way the source log does.
std::string lsn_position(int64_t lsn);
std::string binlog_position(std::string_view file, int64_t pos, int64_t row);
std::string kafka_position(int32_t partition, int64_t offset);

// Compact JSON of a value with object members sorted by name, so equal keys compare equal.
std::string canonical_json(const rapidjson::Value& v);

class DebeziumDecoder {
 public:
  explicit DebeziumDecoder(DecoderOptions options,
                           std::map<std::string, std::string> route_keys = {})
      : options_(std::move(options)), route_keys_(std::move(route_keys)) {}

  // Never throws for bad input: a malformed event comes back with `error` set.
  Decoded decode(const RawEvent& raw) const;

 private:
  Decoded decode_change(const RawEvent& raw, const rapidjson::Value& payload,
                        const rapidjson::Value* key) const;
  DecoderOptions options_;
  std::map<std::string, std::string> route_keys_;
};

// Splits an envelope line {"key":..,"value":..,"topic":..,"partition":..,"offset":..,
// "headers":{..}} (the file sink's `envelope` format) into a RawEvent. The strings the RawEvent
// points at live in `storage`. Returns an error text, or "" on success.
std::string split_envelope_line(std::string_view line, RawEvent& raw,
                                std::deque<std::string>& storage);

}  // namespace sluice_cdc
