// Debezium JSON decoding: envelopes with and without schema/payload, every op, positions, keys.
#include "debezium_decoder.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iterator>
#include <sluice/sdk.hpp>
#include <string_view>

#include "connect_decimal.hpp"

namespace sluice_cdc {

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_canonical(const rapidjson::Value& v, Writer& w) {
  if (v.IsObject() && v.MemberCount() <= 1) {
    // Nothing to sort (most keys: one column).
    w.StartObject();
    for (const auto& m : v.GetObject()) {
      w.Key(m.name.GetString(), m.name.GetStringLength());
      write_canonical(m.value, w);
    }
    w.EndObject();
  } else if (v.IsObject()) {
    std::vector<const rapidjson::Value::Member*> members;
    for (const auto& m : v.GetObject()) members.push_back(&m);
    std::sort(members.begin(), members.end(), [](const auto* a, const auto* b) {
      return std::string_view(a->name.GetString(), a->name.GetStringLength()) <
             std::string_view(b->name.GetString(), b->name.GetStringLength());
    });
    w.StartObject();
    for (const auto* m : members) {
      w.Key(m->name.GetString(), m->name.GetStringLength());
      write_canonical(m->value, w);
    }
    w.EndObject();
  } else if (v.IsArray()) {
    w.StartArray();
    for (const auto& e : v.GetArray()) write_canonical(e, w);
    w.EndArray();
  } else {
    v.Accept(w);
  }
}

const rapidjson::Value* member(const rapidjson::Value& obj, const char* name) {
  if (!obj.IsObject()) return nullptr;
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

// A member that is present and not null.
const rapidjson::Value* present(const rapidjson::Value& obj, const char* name) {
  const auto* v = member(obj, name);
  return v && !v->IsNull() ? v : nullptr;
}

std::string string_of(const rapidjson::Value* v) {
  return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

std::string parse_error(const rapidjson::ParseResult& error) {
  return "at byte " + std::to_string(error.Offset()) + ": " +
         rapidjson::GetParseError_En(error.Code());
}

std::string too_deep() {
  return "JSON nested deeper than " + std::to_string(sluice::kMaxJsonDepth) + " levels";
}

void write_or_null(Writer& w, const rapidjson::Value* v) {
  if (v)
    v->Accept(w);
  else
    w.Null();
}

// The members of an event's `source` that the decoder reads, as present() would find them (the
// first member of each name, nullptr if it is null), in one pass over the members instead of a
// search of them all per name (most names are missing: every lookup of one read them all).
struct SourceFields {
  const rapidjson::Value *schema = nullptr, *db = nullptr, *table = nullptr, *lsn = nullptr,
                         *file = nullptr, *pos = nullptr, *row = nullptr, *change_lsn = nullptr,
                         *event_serial_no = nullptr;
};

SourceFields source_fields(const rapidjson::Value& source) {
  SourceFields f;
  const rapidjson::Value* SourceFields::*const fields[] = {
      &SourceFields::schema, &SourceFields::db,         &SourceFields::table,
      &SourceFields::lsn,    &SourceFields::file,       &SourceFields::pos,
      &SourceFields::row,    &SourceFields::change_lsn, &SourceFields::event_serial_no};
  static constexpr std::string_view kNames[] = {
      "schema", "db", "table", "lsn", "file", "pos", "row", "change_lsn", "event_serial_no"};
  bool seen[std::size(kNames)] = {};
  for (const auto& m : source.GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    for (size_t i = 0; i < std::size(kNames); ++i) {
      if (seen[i] || name != kNames[i]) continue;
      seen[i] = true;
      if (!m.value.IsNull()) f.*fields[i] = &m.value;
      break;
    }
  }
  return f;
}

// A JSON object with {"schema":..., "payload":...} is Debezium's wrapped form.
const rapidjson::Value* unwrap(const rapidjson::Value& v) {
  if (v.IsObject() && v.HasMember("payload") && (v.HasMember("schema") || v.MemberCount() == 1))
    return &v["payload"];
  return &v;
}

// With schemas.enable=true the schema says which fields are Connect decimals (base64 of the
// unscaled value): they become exact decimal text. Without the schema nothing can be decoded,
// hence decimal.handling.mode=string for schemaless converters (README).
std::string decode_decimals(rapidjson::Value& doc, rapidjson::Document::AllocatorType& alloc) {
  if (!doc.IsObject() || !doc.HasMember("schema") || !doc.HasMember("payload")) return {};
  const rapidjson::Value& schema = doc["schema"];
  rapidjson::Value& payload = doc["payload"];
  const auto* envelope_fields = field_schema(schema, "after");
  if (!envelope_fields || !payload.IsObject()) {
    // A key (or any plain struct): its own fields.
    return decode_decimal_fields(schema, payload, alloc);
  }
  for (const char* image : {"before", "after"}) {
    const auto* image_schema = field_schema(schema, image);
    auto it = payload.FindMember(image);
    if (!image_schema || it == payload.MemberEnd()) continue;
    auto error = decode_decimal_fields(*image_schema, it->value, alloc);
    if (!error.empty()) return std::string(image) + ": " + error;
  }
  return {};
}

std::map<std::string, std::vector<std::string>> parse_key_columns(const sluice::Config& c) {
  std::map<std::string, std::vector<std::string>> out;
  const auto* v = c.find("key_columns");
  if (!v) return out;
  if (!v->IsObject()) throw sluice::ConfigError("key_columns", "key_columns must be a mapping");
  for (const auto& m : v->GetObject()) {
    std::vector<std::string> cols;
    if (m.value.IsString()) {
      cols.emplace_back(m.value.GetString(), m.value.GetStringLength());
    } else if (m.value.IsArray()) {
      for (const auto& e : m.value.GetArray()) {
        if (!e.IsString())
          throw sluice::ConfigError("key_columns", "key_columns lists column names (strings)");
        cols.emplace_back(e.GetString(), e.GetStringLength());
      }
    } else {
      throw sluice::ConfigError("key_columns", "key_columns maps a table to a column list");
    }
    if (cols.empty()) throw sluice::ConfigError("key_columns", "key_columns: empty column list");
    out[m.name.GetString()] = std::move(cols);
  }
  return out;
}

}  // namespace

DecoderOptions decoder_options(const sluice::Config& c) {
  DecoderOptions o;
  o.key_columns = parse_key_columns(c);
  o.heartbeat_topic_prefix = c.get_string("heartbeat_topic_prefix", "__debezium-heartbeat");
  return o;
}

const char* kind_name(EventKind kind) {
  switch (kind) {
    case EventKind::change:
      return "change";
    case EventKind::tombstone:
      return "tombstone";
    case EventKind::heartbeat:
      return "heartbeat";
    case EventKind::schema_change:
      return "schema_change";
    case EventKind::transaction:
      return "transaction";
    case EventKind::message:
      return "message";
  }
  return "change";
}

std::string lsn_position(int64_t lsn) {
  char buf[32];
  if (lsn >= 0) {
    // As "L%020lld" without printf's format parsing (once per event): a zero-padded count.
    std::string out(21, '0');
    out[0] = 'L';
    const auto end = std::to_chars(buf, buf + sizeof buf, lsn).ptr;
    std::copy(buf, end, out.end() - (end - buf));
    return out;
  }
  std::snprintf(buf, sizeof buf, "L%020lld", static_cast<long long>(lsn));
  return buf;
}

std::string binlog_position(std::string_view file, int64_t pos, int64_t row) {
  char buf[64];
  std::snprintf(buf, sizeof buf, ":%020lld:%010lld", static_cast<long long>(pos),
                static_cast<long long>(row));
  return "B" + std::string(file) + buf;
}

std::string kafka_position(int32_t partition, int64_t offset) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "K%010d:%020lld", partition, static_cast<long long>(offset));
  return buf;
}

std::string canonical_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_canonical(v, w);
  return {sb.GetString(), sb.GetSize()};
}

DecodeScratch::DecodeScratch()
    : buffer_(new char[kKeyBytes + kValueBytes]),
      key_pool_(buffer_.get(), kKeyBytes),
      pool_(buffer_.get() + kKeyBytes, kValueBytes),
      key_doc(&key_pool_),
      doc(&pool_) {}

void DecodeScratch::reset() {
  key_doc.SetNull();
  doc.SetNull();
  key_pool_.Clear();
  pool_.Clear();
}

Decoded DebeziumDecoder::decode(const RawEvent& raw) const {
  DecodeScratch scratch;
  return decode_in(raw, scratch, true);
}

Decoded DebeziumDecoder::decode_in(const RawEvent& raw, DecodeScratch& scratch,
                                   bool with_json) const {
  Decoded out;
  rapidjson::Document& key_doc = scratch.key_doc;
  const rapidjson::Value* key = nullptr;
  if (raw.parsed_key) {
    if (auto error = decode_decimals(*raw.parsed_key, *raw.allocator); !error.empty()) {
      out.error = "key: " + error;
      return out;
    }
    key = unwrap(*raw.parsed_key);
    if (key->IsNull()) key = nullptr;
  } else if (raw.key && !raw.key->empty()) {
    const sluice::JsonParse parsed = sluice::parse_json_within(key_doc, *raw.key);
    if (!parsed.ok()) {
      out.error =
          parsed.too_deep ? too_deep() : "key is not valid JSON " + parse_error(parsed.error);
      return out;
    }
    if (auto error = decode_decimals(key_doc, key_doc.GetAllocator()); !error.empty()) {
      out.error = "key: " + error;
      return out;
    }
    key = unwrap(key_doc);
    if (key->IsNull()) key = nullptr;
  }

  if (!raw.value && !raw.parsed_value) {
    // Debezium writes a tombstone after each delete so that compaction can drop the key.
    out.kind = EventKind::tombstone;
    if (key) out.key = canonical_json(*key);
    out.position = kafka_position(raw.partition, raw.offset);
    return out;
  }
  rapidjson::Value* value = raw.parsed_value;
  rapidjson::Document::AllocatorType* allocator = raw.allocator;
  if (!value) {
    const sluice::JsonParse parsed = sluice::parse_json_within(scratch.doc, *raw.value);
    if (!parsed.ok()) {
      out.error =
          parsed.too_deep ? too_deep() : "value is not valid JSON " + parse_error(parsed.error);
      return out;
    }
    value = &scratch.doc;
    allocator = &scratch.doc.GetAllocator();
  }
  rapidjson::Value& doc = *value;
  if (!doc.IsObject()) {
    out.error = "value is not a JSON object";
    return out;
  }
  if (auto error = decode_decimals(doc, *allocator); !error.empty()) {
    out.error = error;
    return out;
  }
  const rapidjson::Value* payload = unwrap(doc);
  if (payload->IsNull()) {
    out.kind = EventKind::tombstone;
    if (key) out.key = canonical_json(*key);
    out.position = kafka_position(raw.partition, raw.offset);
    return out;
  }
  if (!payload->IsObject()) {
    out.error = "payload is not a JSON object";
    return out;
  }

  const bool heartbeat_topic = !options_.heartbeat_topic_prefix.empty() &&
                               raw.topic.starts_with(options_.heartbeat_topic_prefix);
  const auto* op = member(*payload, "op");
  if (op && !heartbeat_topic) {
    if (!op->IsString() || op->GetStringLength() != 1) {
      out.error = "op must be one of c, u, d, r, t, m";
      return out;
    }
    const char c = op->GetString()[0];
    if (c == 'm') {
      out.kind = EventKind::message;
    } else if (c == 'c' || c == 'u' || c == 'd' || c == 'r' || c == 't') {
      return decode_change(raw, *payload, key, with_json);
    } else {
      out.error = std::string("unknown op '") + c + "'";
      return out;
    }
  } else if (heartbeat_topic) {
    out.kind = EventKind::heartbeat;
  } else if (payload->HasMember("ddl") || payload->HasMember("tableChanges")) {
    out.kind = EventKind::schema_change;
  } else if (present(*payload, "status") && present(*payload, "id")) {
    out.kind = EventKind::transaction;
  } else if ((key && member(*key, "serverName")) ||
             (payload->MemberCount() == 1 && payload->HasMember("ts_ms"))) {
    out.kind = EventKind::heartbeat;
  } else {
    out.error = "not a Debezium event: no op, and not a heartbeat, schema change or transaction";
    return out;
  }

  // Passed-over kinds keep the original event so that a forwarding pipeline loses nothing.
  out.position = kafka_position(raw.partition, raw.offset);
  if (!with_json) return out;
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("kind");
  w.String(kind_name(out.kind));
  w.Key("topic");
  w.String(raw.topic.data(), static_cast<rapidjson::SizeType>(raw.topic.size()));
  w.Key("position");
  w.String(out.position.c_str());
  w.Key("event");
  payload->Accept(w);
  w.EndObject();
  out.json.assign(sb.GetString(), sb.GetSize());
  return out;
}

Decoded DebeziumDecoder::decode_change(const RawEvent& raw, const rapidjson::Value& payload,
                                       const rapidjson::Value* key, bool with_json) const {
  Decoded out;
  out.op = payload["op"].GetString()[0];
  const rapidjson::Value* source = member(payload, "source");
  if (source && !source->IsNull() && !source->IsObject()) {
    out.error = "source is not a JSON object";
    return out;
  }
  if (source && source->IsNull()) source = nullptr;

  const SourceFields src = source ? source_fields(*source) : SourceFields{};
  // Table: source.schema (Postgres, SQL Server) or source.db (MySQL), then source.table.
  std::string qualifier, table;
  if (source) {
    qualifier = string_of(src.schema);
    if (qualifier.empty()) qualifier = string_of(src.db);
    table = string_of(src.table);
  }
  if (table.empty()) {
    // Debezium's topic naming: <prefix>.<schema>.<table>.
    std::string_view t = raw.topic;
    auto last = t.rfind('.');
    auto prev = last == std::string_view::npos || last == 0 ? std::string_view::npos
                                                            : t.rfind('.', last - 1);
    if (prev == std::string_view::npos) {
      out.error = "no table: source.table is missing and topic '" + std::string(raw.topic) +
                  "' is not <prefix>.<schema>.<table>";
      return out;
    }
    qualifier = std::string(t.substr(prev + 1, last - prev - 1));
    table = std::string(t.substr(last + 1));
  }
  out.table = qualifier.empty() ? table : qualifier + "." + table;

  const rapidjson::Value* before = member(payload, "before");
  const rapidjson::Value* after = member(payload, "after");
  for (auto [name, v] : {std::pair{"before", before}, std::pair{"after", after}}) {
    if (v && !v->IsNull() && !v->IsObject()) {
      out.error = std::string(name) + " is not a JSON object";
      return out;
    }
  }
  if (before && before->IsNull()) before = nullptr;
  if (after && after->IsNull()) after = nullptr;
  if ((out.op == 'c' || out.op == 'r' || out.op == 'u') && !after) {
    out.error = std::string("op ") + out.op + " without an after image";
    return out;
  }
  if (out.op == 'd' && !before && !key) {
    out.error = "op d without a before image or key";
    return out;
  }

  // The primary key: the record key, else the configured key columns of the image.
  std::string key_text;
  if (key) {
    if (key->IsArray()) {
      out.error = "key is a JSON array; expected an object or a scalar";
      return out;
    }
    key_text = canonical_json(*key);
  } else if (out.op != 't') {
    auto cols = options_.key_columns.find(out.table);
    if (cols == options_.key_columns.end()) {
      out.error = "no primary key: the record key is null and key_columns has no entry for '" +
                  out.table + "'";
      return out;
    }
    const rapidjson::Value* image = after ? after : before;
    rapidjson::Document k(rapidjson::kObjectType);
    for (const auto& col : cols->second) {
      const auto* v = image ? member(*image, col.c_str()) : nullptr;
      if (!v) {
        out.error = "no primary key: key column '" + col + "' is missing from the image";
        return out;
      }
      k.AddMember(rapidjson::Value(col.c_str(), k.GetAllocator()),
                  rapidjson::Value(*v, k.GetAllocator()), k.GetAllocator());
    }
    key_text = canonical_json(k);
  }
  out.key = std::move(key_text);

  // Position: the source log's own order when the connector gives one, else the Kafka offset.
  const auto* lsn = src.lsn;
  const auto* file = src.file;
  const auto* pos = src.pos;
  const auto* change_lsn = src.change_lsn;
  if (lsn && lsn->IsInt64()) {
    out.position = lsn_position(lsn->GetInt64());
  } else if (file && file->IsString() && pos && pos->IsInt64()) {
    const auto* row = src.row;
    out.position = binlog_position(string_of(file), pos->GetInt64(),
                                   row && row->IsInt64() ? row->GetInt64() : 0);
  } else if (change_lsn && change_lsn->IsString()) {
    const auto* serial = src.event_serial_no;
    char buf[24];
    std::snprintf(buf, sizeof buf, ":%010lld",
                  static_cast<long long>(serial && serial->IsInt64() ? serial->GetInt64() : 0));
    out.position = "S" + string_of(change_lsn) + buf;
  } else {
    out.position = kafka_position(raw.partition, raw.offset);
  }

  // Primary-key changes: Debezium sends delete(old key, newkey header) then create(new key,
  // oldkey header); both are kept so a consumer can link them.
  rapidjson::Document moved;
  const char* moved_name = nullptr;
  sluice::JsonParse parsed;
  if (out.op == 'd' && raw.new_key_header) {
    parsed = sluice::parse_json_within(moved, *raw.new_key_header);
    moved_name = "new_key";
  } else if (out.op == 'c' && raw.old_key_header) {
    parsed = sluice::parse_json_within(moved, *raw.old_key_header);
    moved_name = "old_key";
  }
  if (moved_name && !parsed.ok()) {
    out.error = std::string("__debezium.") + (out.op == 'd' ? "newkey" : "oldkey") +
                (parsed.too_deep ? " header: " + too_deep()
                                 : " header is not valid JSON " + parse_error(parsed.error));
    return out;
  }

  out.before = before;
  out.after = after;
  if (const auto* ts = present(payload, "ts_ms"); ts && ts->IsInt64()) out.ts_ms = ts->GetInt64();
  if (!with_json) return out;

  auto route = route_keys_.find(out.table);
  if (route != route_keys_.end()) {
    const rapidjson::Value* image = after ? after : before;
    const auto* v = image ? present(*image, route->second.c_str()) : nullptr;
    if (v) out.route_value = v->IsString() ? string_of(v) : canonical_json(*v);
  }

  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("kind");
  w.String("change");
  w.Key("op");
  w.String(&out.op, 1);
  w.Key("table");
  w.String(out.table.c_str(), static_cast<rapidjson::SizeType>(out.table.size()));
  w.Key("key");
  if (out.key.empty())
    w.Null();
  else
    w.RawValue(out.key.data(), out.key.size(), rapidjson::kObjectType);
  w.Key("position");
  w.String(out.position.c_str(), static_cast<rapidjson::SizeType>(out.position.size()));
  w.Key("ts_ms");
  if (out.ts_ms)
    w.Int64(*out.ts_ms);
  else
    w.Null();
  w.Key("before");
  write_or_null(w, before);
  w.Key("after");
  write_or_null(w, after);
  w.Key("source");
  write_or_null(w, source);
  w.Key("transaction");
  write_or_null(w, present(payload, "transaction"));
  if (moved_name) {
    w.Key("key_change");
    w.StartObject();
    w.Key(moved_name);
    write_canonical(*unwrap(moved), w);
    w.EndObject();
  }
  w.EndObject();
  out.json.assign(sb.GetString(), sb.GetSize());
  return out;
}

namespace {

// Fills `raw` from a parsed envelope line. The file sink writes a key as a JSON string holding
// the key's text and embeds the value; other shapes are serialised into `storage`. With
// `embed_value`, an object value and a key that is not a string are handed over parsed instead.
std::string envelope_parts(rapidjson::Document& doc, RawEvent& raw,
                           std::deque<std::string>& storage, bool embed_value) {
  if (!doc.IsObject() || !doc.HasMember("value"))
    return "envelope line is not an object with a value member";
  storage.clear();
  auto text_of = [&](const rapidjson::Value& v) -> std::optional<std::string_view> {
    if (v.IsNull()) return std::nullopt;
    if (v.IsString()) {
      if (embed_value) return std::string_view(v.GetString(), v.GetStringLength());
      storage.emplace_back(v.GetString(), v.GetStringLength());
    } else {
      rapidjson::StringBuffer sb;
      Writer w(sb);
      v.Accept(w);
      storage.emplace_back(sb.GetString(), sb.GetSize());
    }
    return std::string_view(storage.back());
  };
  if (auto k = doc.FindMember("key"); k != doc.MemberEnd()) {
    if (embed_value && !k->value.IsNull() && !k->value.IsString())
      raw.parsed_key = &k->value;
    else
      raw.key = text_of(k->value);
  }
  rapidjson::Value& value = doc["value"];
  if (embed_value) raw.allocator = &doc.GetAllocator();
  if (embed_value && value.IsObject()) {
    raw.parsed_value = &value;
  } else {
    raw.value = text_of(value);
  }
  if (const auto* t = present(doc, "topic"); t && t->IsString()) raw.topic = *text_of(*t);
  if (const auto* p = present(doc, "partition"); p && p->IsInt()) raw.partition = p->GetInt();
  if (const auto* o = present(doc, "offset"); o && o->IsInt64()) raw.offset = o->GetInt64();
  if (const auto* h = present(doc, "headers"); h && h->IsObject()) {
    if (const auto* v = present(*h, "__debezium.oldkey")) raw.old_key_header = text_of(*v);
    if (const auto* v = present(*h, "__debezium.newkey")) raw.new_key_header = text_of(*v);
  }
  return {};
}

}  // namespace

std::string split_envelope_line(std::string_view line, RawEvent& raw,
                                std::deque<std::string>& storage) {
  rapidjson::Document doc;
  const sluice::JsonParse parsed = sluice::parse_json_within(doc, line, sluice::kMaxJsonDepth + 1);
  if (parsed.too_deep) return too_deep();
  if (parsed.error.IsError()) return "envelope line is not valid JSON " + parse_error(parsed.error);
  return envelope_parts(doc, raw, storage, false);
}

std::string split_envelope_line_parsed(std::string_view line, RawEvent& raw, DecodeScratch& scratch,
                                       std::deque<std::string>& storage) {
  // In place: the reader treats a NUL as the end of the text, as Parse(data, size) does. The
  // embedded value is one level below the line: the same limit as for the value's text.
  scratch.line.assign(line);
  const sluice::JsonParse parsed =
      sluice::parse_json_within_insitu(scratch.doc, scratch.line.data(), sluice::kMaxJsonDepth + 1);
  if (parsed.too_deep) return too_deep();
  if (parsed.error.IsError()) return "envelope line is not valid JSON " + parse_error(parsed.error);
  return envelope_parts(scratch.doc, raw, storage, true);
}

}  // namespace sluice_cdc
