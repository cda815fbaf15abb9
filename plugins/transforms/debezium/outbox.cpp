// Debezium's outbox EventRouter as the `outbox` transform: a row inserted into an outbox table
// becomes an event on the topic of its aggregate type, keyed by its aggregate id.
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "debezium_smt.hpp"
#include "plugins.hpp"

namespace sluice::dbz {

namespace {

// One item of table.fields.additional.placement: "column:header|envelope|partition[:alias]".
struct Placement {
  enum Where { header, envelope, partition } where;
  std::string field;
  std::string alias;
};

std::vector<Placement> placements(const Config& c) {
  std::vector<Placement> out;
  for (const std::string& item : smt::list_option(c, "table.fields.additional.placement")) {
    std::vector<std::string> parts;
    for (size_t start = 0;;) {
      const size_t colon = item.find(':', start);
      parts.push_back(item.substr(start, colon - start));
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
    const auto where = parts.size() < 2 ? "" : parts[1];
    Placement p{Placement::header, parts[0], parts.size() == 3 ? parts[2] : parts[0]};
    if (where == "envelope")
      p.where = Placement::envelope;
    else if (where == "partition")
      p.where = Placement::partition;
    else if (where != "header")
      throw ConfigError("table.fields.additional.placement",
                        "table.fields.additional.placement: '" + item +
                            "' must be field:header|envelope|partition[:alias]");
    out.push_back(std::move(p));
  }
  return out;
}

// Debezium's JsonSchemaData.toConnectSchema: the Connect schema of an expanded JSON payload;
// null fields and empty arrays have none and are left out.
std::optional<rapidjson::Value> json_schema(const std::string& key, const rapidjson::Value& v,
                                            Alloc& a) {
  const char* type = v.IsString()   ? "string"
                     : v.IsBool()   ? "boolean"
                     : v.IsInt()    ? "int32"
                     : v.IsInt64()  ? "int64"
                     : v.IsNumber() ? "double"
                                    : nullptr;
  if (type) return smt::primitive_schema(type, true, a);
  if (v.IsArray()) {
    const rapidjson::Value* sample = nullptr;
    for (const auto& e : v.GetArray())
      if (!e.IsNull()) sample = sample ? sample : &e;
    if (!sample) return std::nullopt;
    auto items = json_schema(sample->IsObject() ? key : "", *sample, a);
    if (!items) throw DataError("Array has unrecognized member schema.");
    rapidjson::Value s(rapidjson::kObjectType);
    s.AddMember("type", "array", a);
    s.AddMember("items", *items, a);
    s.AddMember("optional", true, a);
    return s;
  }
  if (!v.IsObject()) return std::nullopt;
  rapidjson::Value s(rapidjson::kObjectType);
  s.AddMember("type", "struct", a);
  s.AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a);
  s.AddMember("optional", true, a);
  if (!key.empty()) s.AddMember("name", smt::str(key, a), a);
  for (const auto& m : v.GetObject()) {
    const std::string name(m.name.GetString(), m.name.GetStringLength());
    auto field = json_schema(key.empty() ? name : key + "." + name, m.value, a);
    if (field && !smt::field_schema(s, name)) smt::add_field(s, name, *field, a);
  }
  return s;
}

// Debezium reads the payload with Jackson, whose object keeps the last of duplicate keys in the
// first one's place; RapidJSON keeps them all and finds the first. Applied to the parsed payload
// before its schema is derived, so both follow the last value.
void keep_last_of_duplicates(rapidjson::Value& v, Alloc& a) {
  if (v.IsArray()) {
    for (auto& e : v.GetArray()) keep_last_of_duplicates(e, a);
    return;
  }
  if (!v.IsObject()) return;
  for (auto& m : v.GetObject()) keep_last_of_duplicates(m.value, a);
  if (v.MemberCount() < 2) return;
  const auto name_of = [](const rapidjson::Value& name) {
    return std::string_view(name.GetString(), name.GetStringLength());
  };
  std::unordered_set<std::string_view> seen;
  bool duplicates = false;
  for (const auto& m : v.GetObject()) duplicates |= !seen.insert(name_of(m.name)).second;
  if (!duplicates) return;
  // Names are copied: a short one lives inside its value, which moves.
  std::unordered_map<std::string, rapidjson::SizeType> first;
  rapidjson::Value out(rapidjson::kObjectType);
  for (auto& m : v.GetObject()) {
    auto [at, fresh] = first.try_emplace(std::string(name_of(m.name)), out.MemberCount());
    if (fresh)
      out.AddMember(m.name, m.value, a);
    else
      (out.MemberBegin() + at->second)->value = m.value;
  }
  v = out;
}

// JsonSchemaData.toConnectData: the payload keeps only what its schema has.
rapidjson::Value json_data(const rapidjson::Value& v, const rapidjson::Value& schema, Alloc& a) {
  if (schema["type"] == "array") {
    rapidjson::Value out(rapidjson::kArrayType);
    for (const auto& e : v.GetArray()) out.PushBack(json_data(e, schema["items"], a), a);
    return out;
  }
  if (schema["type"] != "struct" || !v.IsObject()) return rapidjson::Value(v, a);
  rapidjson::Value out(rapidjson::kObjectType);
  for (const auto& f : schema["fields"].GetArray()) {
    auto it = v.FindMember(f["field"]);
    if (it != v.MemberEnd())
      out.AddMember(rapidjson::Value(f["field"], a), json_data(it->value, f, a), a);
  }
  return out;
}

// EventRouterDelegate.getSchemaName: the row schema's name with the routed topic before its
// last part.
std::string value_schema_name(const rapidjson::Value& row_schema, const std::string& topic) {
  auto it = row_schema.FindMember("name");
  if (it == row_schema.MemberEnd() || !it->value.IsString()) return topic;
  const std::string name = it->value.GetString();
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return topic + "." + name;
  return name.substr(0, dot + 1) + topic + "." + name.substr(dot + 1);
}

// A field of the outbox row: its schema, which must exist, and its value (nullptr for null).
struct Column {
  const rapidjson::Value* schema;
  const rapidjson::Value* value;
};

struct Outbox {
  static constexpr const char* kName = "outbox";
  static constexpr const char* kDescription =
      "Debezium's outbox EventRouter: outbox rows become events routed by aggregate type.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("table.field.event.id").doc("The event id column, sent as header id (id).");
    s.string("table.field.event.key").doc("The key column (aggregateid).");
    s.string("table.field.event.payload").doc("The payload column (payload).");
    s.string("table.field.event.timestamp").doc("The event time column; else the event's ts_ms.");
    s.string("table.field.event.schema.version").doc("An int32 column: the value schema version.");
    s.string("table.fields.additional.placement")
        .doc("column:header|envelope|partition[:alias],...");
    s.string("table.field.additional.missing").doc("error (default) or ignore a missing column.");
    s.boolean("table.expand.json.payload").doc("Expand a JSON string payload (default false).");
    s.string("table.op.invalid.behavior").doc("An update: warn, error (both skip it) or fatal.");
    s.string("route.by.field").doc("The column naming the topic (aggregatetype).");
    s.string("route.topic.regex").doc("Java regex over the route value ((?<routedByValue>.*)).");
    s.string("route.topic.replacement").doc("The topic (outbox.event.${routedByValue}).");
    s.boolean("route.tombstone.on.empty.payload").doc("An empty payload makes a tombstone.");
  }
  explicit Outbox(const Config& c)
      : id(smt::option(c, "table.field.event.id", "id")),
        key(smt::option(c, "table.field.event.key", "aggregateid")),
        payload(smt::option(c, "table.field.event.payload", "payload")),
        timestamp(smt::option(c, "table.field.event.timestamp")),
        version(smt::option(c, "table.field.event.schema.version")),
        route_by(smt::option(c, "route.by.field", "aggregatetype")),
        route_regex(smt::option(c, "route.topic.regex", "(?<routedByValue>.*)"),
                    "route.topic.regex"),
        route_replacement(
            smt::option(c, "route.topic.replacement", "outbox.event.${routedByValue}")),
        extra(placements(c)),
        ignore_missing(smt::option(c, "table.field.additional.missing", "error") == "ignore"),
        expand_json(smt::bool_option(c, "table.expand.json.payload", false)),
        fail_on_update(smt::option(c, "table.op.invalid.behavior", "warn") == "fatal"),
        tombstone_on_empty(smt::bool_option(c, "route.tombstone.on.empty.payload", false)) {
    for (const Placement& p : extra) headers_only = headers_only && p.where != Placement::envelope;
  }

  bool apply(Record& r) const {
    if (r.value.is_null()) return false;     // tombstones are not events
    if (!is_envelope(r.value)) return true;  // heartbeats, schema changes: unchanged
    rapidjson::Value& env = r.value.payload();
    const auto op = string_field(*r.value.schema(), env, "op");
    if (op == "d") return false;
    if (op == "u") {
      if (fail_on_update) throw DataError("Unexpected update message received, fail.");
      return false;
    }
    route(r, env);
    return true;
  }

  Column column(rapidjson::Value& row_schema, rapidjson::Value& row, const std::string& name,
                const char* what) const {
    const rapidjson::Value* s = smt::field_schema(row_schema, name);
    if (!s) throw DataError("Unable to find " + std::string(what) + " field " + name + " in event");
    return {s, member(row, name)};
  }

  void route(Record& r, rapidjson::Value& env) const;
  int64_t event_time(rapidjson::Value& env, rapidjson::Value& row_schema,
                     rapidjson::Value& row) const;
  // The event's value struct {payload, envelope columns}; puts the header and partition
  // columns on `r` on the way, as Debezium does.
  void place(Record& r, rapidjson::Value& row_schema, rapidjson::Value& row,
             rapidjson::Value& event, rapidjson::Value& event_schema) const;
  rapidjson::Value event_schema(rapidjson::Value& row_schema, rapidjson::Value& row,
                                const rapidjson::Value& payload_schema, const std::string& routed,
                                Alloc& a) const;

  std::string id, key, payload, timestamp, version, route_by;
  JavaRegex route_regex;
  std::string route_replacement;
  std::vector<Placement> extra;
  bool ignore_missing, expand_json, fail_on_update, tombstone_on_empty;
  bool headers_only = true;
};

int64_t Outbox::event_time(rapidjson::Value& env, rapidjson::Value& row_schema,
                           rapidjson::Value& row) const {
  const rapidjson::Value* ts_ms = member(env, "ts_ms");
  const int64_t fallback = ts_ms && ts_ms->IsInt64() ? ts_ms->GetInt64() : 0;
  if (timestamp.empty()) return fallback;
  const Column t = column(row_schema, row, timestamp, "timestamp");
  if (!t.value) return fallback;
  auto name = t.schema->FindMember("name");
  const std::string logical = name == t.schema->MemberEnd() ? "" : name->value.GetString();
  if (logical == "io.debezium.time.MicroTimestamp") return t.value->GetInt64() / 1000;
  if (logical == "io.debezium.time.NanoTimestamp") return t.value->GetInt64() / 1000000;
  if (logical == "org.apache.kafka.connect.data.Timestamp") return t.value->GetInt64();
  throw DataError("Unsupported field type for event timestamp: " + logical);
}

void Outbox::route(Record& r, rapidjson::Value& env) const {
  Alloc& a = r.value.allocator();
  const rapidjson::Value* row_field = smt::field_schema(*r.value.schema(), "after");
  rapidjson::Value* row_ptr = member(env, "after");
  if (!row_field || !row_ptr || !row_ptr->IsObject())
    throw DataError("Only Struct objects supported for [Read Outbox Event], found: null");
  rapidjson::Value row_schema = value_schema(*row_field, a);
  rapidjson::Value& row = *row_ptr;
  const Column body = column(row_schema, row, payload, "payload");
  rapidjson::Value payload_schema = value_schema(*body.schema, a);
  rapidjson::Value value = body.value ? rapidjson::Value(*body.value, a) : rapidjson::Value();
  const int64_t time = event_time(env, row_schema, row);
  const Column event_id = column(row_schema, row, id, "event-id");
  r.headers.emplace_back("id", event_id.value ? header_text(*event_id.value) : std::nullopt);
  // A payload nested past kMaxJsonDepth stays a string, as one that does not parse: RapidJSON
  // parses recursively and would run out of stack (Debezium's Jackson refuses it too).
  if (expand_json && value.IsString() && value.GetStringLength() > 0 &&
      (value.GetString()[0] == '{' || value.GetString()[0] == '[') &&
      sluice::json_nesting_depth({value.GetString(), value.GetStringLength()}) <=
          sluice::kMaxJsonDepth) {
    rapidjson::Document parsed;
    parsed.Parse(value.GetString(), value.GetStringLength());
    // Debezium fills a Struct from the expanded JSON: a top-level array cannot be one.
    if (parsed.IsArray()) throw DataError("Invalid type for ARRAY: an expanded payload array");
    if (!parsed.HasParseError()) {
      keep_last_of_duplicates(parsed, parsed.GetAllocator());
      auto schema = json_schema(payload, parsed, a);
      if (schema) {
        value = json_data(parsed, *schema, a);
        payload_schema = std::move(*schema);
      }
    }
  }
  const auto routed = string_field(row_schema, row, route_by);
  if (!routed) throw DataError("the outbox row has no " + route_by);
  const bool empty =
      !body.value || (body.value->IsString() &&
                      std::string_view(body.value->GetString()).find_first_not_of(" \t\n\r") ==
                          std::string_view::npos);
  rapidjson::Value schema = event_schema(row_schema, row, payload_schema, *routed, a);
  rapidjson::Value event(rapidjson::kObjectType);
  event.AddMember("payload", rapidjson::Value(value, a), a);
  place(r, row_schema, row, event, schema);
  const rapidjson::Value* key_schema = smt::field_schema(row_schema, key);
  if (!key_schema) throw DataError(key + " is not a valid field name");
  Alloc& ka = r.key.allocator();
  const rapidjson::Value* key_value = member(row, key);
  rapidjson::Value key_schema_copy = value_schema(*key_schema, ka);
  r.key.set(key_value ? rapidjson::Value(*key_value, ka) : rapidjson::Value(), &key_schema_copy);
  r.timestamp_ms = time;
  r.topic = route_regex.replace_whole(*routed, route_replacement).value_or(*routed);
  if (empty && tombstone_on_empty) {
    r.value.set_null();
  } else if (headers_only) {
    r.value.set(std::move(value), &payload_schema);
  } else {
    r.value.set(std::move(event), &schema);
  }
}

rapidjson::Value Outbox::event_schema(rapidjson::Value& row_schema, rapidjson::Value& row,
                                      const rapidjson::Value& payload_schema,
                                      const std::string& routed, Alloc& a) const {
  rapidjson::Value s(rapidjson::kObjectType);
  s.AddMember("type", "struct", a);
  s.AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a);
  s.AddMember("optional", false, a);
  s.AddMember("name", smt::str(value_schema_name(row_schema, routed), a), a);
  if (!version.empty()) {
    const Column v = column(row_schema, row, version, "schema version");
    if (v.value) s.AddMember("version", rapidjson::Value(*v.value, a), a);
  }
  smt::add_field(s, "payload", payload_schema, a);
  for (const Placement& p : extra) {
    if (p.where != Placement::envelope) continue;
    const rapidjson::Value* f = smt::field_schema(row_schema, p.field);
    if (!f && ignore_missing) continue;
    if (!f) throw DataError("Unable to find field " + p.field + " in event");
    smt::add_field(s, p.alias, *f, a);
  }
  return s;
}

void Outbox::place(Record& r, rapidjson::Value& row_schema, rapidjson::Value& row,
                   rapidjson::Value& event, rapidjson::Value& event_schema) const {
  Alloc& a = r.value.allocator();
  for (const Placement& p : extra) {
    if (ignore_missing && !smt::field_schema(row_schema, p.field)) continue;
    const Column c = column(row_schema, row, p.field, "additional");
    if (p.where == Placement::envelope && smt::field_schema(event_schema, p.alias))
      smt::put(event, p.alias, c.value ? rapidjson::Value(*c.value, a) : rapidjson::Value(), a);
    else if (p.where == Placement::header)
      r.headers.emplace_back(p.alias, c.value ? header_text(*c.value) : std::nullopt);
    else if (p.where == Placement::partition)
      r.partition = c.value && c.value->IsInt() ? c.value->GetInt() : 0;
  }
}

}  // namespace

detail::PluginEntry outbox() { return smt::plugin_table<Outbox>(); }
smt::StepType outbox_step() { return smt::step_type<Outbox>(); }

}  // namespace sluice::dbz
