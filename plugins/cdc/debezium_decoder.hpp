// Decodes one Debezium JSON change event (any envelope form) into a normalized change event.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
class Config;
}

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
  // The value already parsed (an envelope line's embedded object), used instead of `value`'s
  // text; its Connect decimals are decoded in place with `allocator`.
  rapidjson::Value* parsed_value = nullptr;
  // The same for a key that an envelope line embeds as JSON (not as a string holding its
  // text): used instead of `key`'s text, which is then nullopt.
  rapidjson::Value* parsed_key = nullptr;
  rapidjson::Document::AllocatorType* allocator = nullptr;
};

struct DecoderOptions {
  // table -> primary-key columns, used when the record key is null.
  std::map<std::string, std::vector<std::string>> key_columns;
  std::string heartbeat_topic_prefix = "__debezium-heartbeat";
};

// The options from a stage's `key_columns` and `heartbeat_topic_prefix` (ConfigError if bad).
DecoderOptions decoder_options(const sluice::Config& c);

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
  // For a change: its images and ts_ms, pointing into the DecodeScratch decoded into.
  const rapidjson::Value* before = nullptr;
  const rapidjson::Value* after = nullptr;
  std::optional<int64_t> ts_ms;
};

// The parsed documents a Decoded's image pointers point into, reused from event to event: their
// memory pools start in buffers owned here, so an ordinary event parses without a malloc.
class DecodeScratch {
 public:
  DecodeScratch();
  DecodeScratch(const DecodeScratch&) = delete;
  DecodeScratch& operator=(const DecodeScratch&) = delete;
  // Forgets the previous event's documents and keeps their memory.
  void reset();

 private:
  static constexpr size_t kKeyBytes = 4096, kValueBytes = 64 * 1024;
  std::unique_ptr<char[]> buffer_;
  rapidjson::MemoryPoolAllocator<> key_pool_, pool_;

 public:
  rapidjson::Document key_doc;
  rapidjson::Document doc;
  // The envelope line `doc` was parsed from in place (split_envelope_line_parsed): its strings
  // point into this copy, so it lives as long as `doc`.
  std::string line;
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
  // The same without writing `json` (a consumer that folds the images directly): the images
  // stay valid until `scratch` is reused.
  Decoded decode_in(const RawEvent& raw, DecodeScratch& scratch, bool with_json) const;

 private:
  Decoded decode_change(const RawEvent& raw, const rapidjson::Value& payload,
                        const rapidjson::Value* key, bool with_json) const;
  DecoderOptions options_;
  std::map<std::string, std::string> route_keys_;
};

// Splits an envelope line {"key":..,"value":..,"topic":..,"partition":..,"offset":..,
// "headers":{..}} (the file sink's `envelope` format) into a RawEvent. The strings the RawEvent
// points at live in `storage`. Returns an error text, or "" on success.
std::string split_envelope_line(std::string_view line, RawEvent& raw,
                                std::deque<std::string>& storage);
// The same, parsing the line into `scratch.doc` once, in place in a copy kept in `scratch.line`
// (one copy of the line instead of one allocation and copy per string): an embedded value
// object is handed over parsed (raw.parsed_value), not re-serialised, and so is an embedded key
// (raw.parsed_key); the strings the RawEvent points at live in `scratch` (or, for a value that
// is neither a string nor an object, in `storage`).
std::string split_envelope_line_parsed(std::string_view line, RawEvent& raw, DecodeScratch& scratch,
                                       std::deque<std::string>& storage);

}  // namespace sluice_cdc
