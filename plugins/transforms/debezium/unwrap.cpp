// Debezium's ExtractNewRecordState as the `unwrap` transform: a change event's envelope becomes
// its new row state (docs/transforms.md).
#include "debezium_smt.hpp"
#include "plugins.hpp"

namespace sluice::dbz {

namespace {

// What happens to deletes and tombstones; delete.tombstone.handling.mode picks one, or the
// legacy delete.handling.mode with drop.tombstones.
enum class OnDelete { null_value, drop, tombstone, rewrite };
struct DeleteHandling {
  bool keep_tombstones = false;
  OnDelete on_delete = OnDelete::null_value;
};

DeleteHandling mode_option(const Config& c) {
  const std::string mode = smt::option(c, "delete.tombstone.handling.mode", "tombstone");
  if (mode == "tombstone") return {false, OnDelete::null_value};
  if (mode == "drop") return {false, OnDelete::drop};
  if (mode == "rewrite") return {false, OnDelete::rewrite};
  if (mode == "rewrite-with-tombstone") return {true, OnDelete::rewrite};
  if (mode == "delete-to-tombstone") return {false, OnDelete::tombstone};
  throw ConfigError("delete.tombstone.handling.mode",
                    "delete.tombstone.handling.mode must be tombstone, drop, rewrite, "
                    "rewrite-with-tombstone or delete-to-tombstone");
}

// Debezium 1.x/2.x's keys, which Debezium 3 no longer reads: sluice still honours them when
// the new key is absent, so that old connector configs keep their meaning.
DeleteHandling legacy_option(const Config& c) {
  const std::string mode = smt::option(c, "delete.handling.mode", "none");
  DeleteHandling h{!smt::bool_option(c, "drop.tombstones", true), OnDelete::null_value};
  if (mode == "drop")
    h.on_delete = OnDelete::drop;
  else if (mode == "rewrite")
    h.on_delete = OnDelete::rewrite;
  else if (mode != "none")
    throw ConfigError("delete.handling.mode", "delete.handling.mode must be none, drop or rewrite");
  return h;
}

DeleteHandling handling_option(const Config& c) {
  const bool legacy = c.find("delete.handling.mode") || c.find("drop.tombstones");
  if (legacy && !c.find("delete.tombstone.handling.mode")) return legacy_option(c);
  return mode_option(c);
}

// One entry of add.fields / add.headers: "field", "struct.field", each optionally ":new_name".
struct FieldReference {
  std::string parent;  // "source", "transaction", ... or "" for the envelope itself
  std::string field;
  std::string new_name;

  static std::string parent_of(const std::string& field) {
    if (field == "id" || field == "data_collection_order" || field == "total_order")
      return "transaction";
    if (field == "op" || field == "ts_ms" || field == "ts_us" || field == "ts_ns") return "";
    if (field == "updateDescription") return "updateDescription";
    return "source";
  }

  FieldReference(const std::string& prefix, const std::string& item, const char* key) {
    const size_t colon = item.find(':');
    if (colon != std::string::npos && item.find(':', colon + 1) != std::string::npos)
      throw ConfigError(key, std::string("Unexpected field name: ") + item);
    const std::string path = item.substr(0, colon);
    const size_t dot = path.find('.');
    field =
        dot == std::string::npos ? path : path.substr(dot + 1, path.find('.', dot + 1) - dot - 1);
    parent = dot == std::string::npos ? parent_of(field) : path.substr(0, dot);
    if (colon != std::string::npos)
      new_name = prefix + item.substr(colon + 1);
    else
      new_name = prefix + (dot == std::string::npos ? field : parent + "_" + field);
  }

  // The schema of the field in the envelope: in its parent struct, else in the envelope.
  const rapidjson::Value* schema(const rapidjson::Value& envelope_schema) const {
    const rapidjson::Value* in = &envelope_schema;
    if (!parent.empty()) {
      in = smt::field_schema(envelope_schema, parent);
      if (!in) throw DataError(parent + " is not a field of the envelope");
    }
    const rapidjson::Value* f = smt::field_schema(*in, field);
    return f ? f : smt::field_schema(envelope_schema, field);
  }

  // The field's value (nullptr for null): in its parent struct when the parent's schema has
  // it, else in the envelope (a field another transform added there), as Debezium reads it.
  const rapidjson::Value* value(const rapidjson::Value& envelope_schema,
                                rapidjson::Value& envelope) const {
    if (parent.empty()) return member(envelope, field);
    rapidjson::Value* in = member(envelope, parent);
    if (!in) return nullptr;
    const rapidjson::Value* parent_schema = smt::field_schema(envelope_schema, parent);
    return parent_schema && smt::field_schema(*parent_schema, field) ? member(*in, field)
                                                                     : member(envelope, field);
  }
};

std::vector<FieldReference> references(const Config& c, const char* key, const char* prefix_key) {
  const std::string prefix = smt::option(c, prefix_key, "__");
  std::vector<FieldReference> out;
  for (const std::string& item : smt::list_option(c, key)) out.emplace_back(prefix, item, key);
  return out;
}

// The new value of a change event being built: payload and struct schema.
struct NewValue {
  rapidjson::Value payload;
  rapidjson::Value schema;

  void add(std::string_view name, rapidjson::Value&& field_schema, rapidjson::Value&& v, Alloc& a) {
    if (smt::field_schema(schema, name))
      throw DataError("Cannot create field because of field name duplication " + std::string(name));
    smt::add_field(schema, name, field_schema, a);
    smt::put(payload, name, std::move(v), a);
  }
};

struct Unwrap {
  static constexpr const char* kName = "unwrap";
  static constexpr const char* kDescription =
      "Debezium's ExtractNewRecordState: a change event becomes its new row state.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("delete.tombstone.handling.mode")
        .doc("tombstone (default), drop, rewrite, rewrite-with-tombstone or delete-to-tombstone.")
        .one_of({"tombstone", "drop", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone"});
    s.string("delete.handling.mode").doc("Legacy (Debezium 2): none, drop or rewrite.");
    s.boolean("drop.tombstones").doc("Legacy (Debezium 2): drop tombstones (default true).");
    s.string("add.fields").doc("Envelope fields to add to the value: op, source.ts_ms, db:name.");
    s.string("add.fields.prefix").doc("Prefix of the added fields (default __).");
    s.string("add.headers").doc("Envelope fields to add as headers, as add.fields.");
    s.string("add.headers.prefix").doc("Prefix of the added headers (default __).");
    s.string("route.by.field").doc("A string field of the row whose value becomes the topic.");
  }
  explicit Unwrap(const Config& c)
      : handling(handling_option(c)),
        fields(references(c, "add.fields", "add.fields.prefix")),
        headers(references(c, "add.headers", "add.headers.prefix")),
        route_by(smt::option(c, "route.by.field")) {}

  bool apply(Record& r) const {
    Data& v = r.value;
    const bool tombstone = v.is_null();
    const bool envelope = !tombstone && is_envelope(v);
    if ((envelope || tombstone) && !headers.empty()) add_headers(r, tombstone);
    if (tombstone && handling.keep_tombstones) v.set_null();  // {schema: null, payload: null} too
    if (tombstone) return handling.keep_tombstones;
    if (!envelope) return true;  // heartbeats, schema changes, other records: unchanged
    rapidjson::Value& env = v.payload();
    const bool deleted = !member(env, "after");
    if (deleted && !member(env, "before")) return false;  // a truncate
    if (deleted && handling.on_delete == OnDelete::drop) return false;
    if (deleted && handling.on_delete == OnDelete::tombstone) {
      v.set_null();
      return true;
    }
    const bool rewrite = handling.on_delete == OnDelete::rewrite;
    if (route_by.empty() && v.cached_schema()) {
      apply_cached(v, deleted, rewrite);
      return true;
    }
    NewValue out = row(v, deleted ? "before" : "after");
    if (deleted && !rewrite) {  // tombstone mode: the null `after` with its schema
      NewValue after = row(v, "after");
      route(r, out);
      v.set(rapidjson::Value(), &after.schema);
      return true;
    }
    if (rewrite && out.payload.IsObject())
      out.add("__deleted", smt::primitive_schema("string", true, v.allocator()),
              smt::str(deleted ? "true" : "false", v.allocator()), v.allocator());
    route(r, out);
    add_fields(v, out);
    v.set(std::move(out.payload), &out.schema);
    return true;
  }

  // apply() for an envelope with a cached schema and no route.by.field: the new value's schema is
  // made once per envelope schema and case (new_schema), its payload per record.
  void apply_cached(Data& v, bool deleted, bool rewrite) const {
    const rapidjson::Value& env_schema = *v.schema_view();
    rapidjson::Value& env = v.payload();
    const rapidjson::Value* row = member(env, deleted ? "before" : "after");
    const bool tombstone_mode = deleted && !rewrite;
    const bool is_object = row->IsObject();
    const int variant = tombstone_mode ? 4 : (deleted ? 2 : 0) + (is_object ? 1 : 0);
    smt::NewSchema schema = smt::make_schema(v, this, variant, [&](Alloc& a) {
      return new_schema(env_schema, deleted, rewrite, is_object, a);
    });
    if (tombstone_mode) {  // the null `after` with its schema
      smt::set_new(v, rapidjson::Value(), schema);
      return;
    }
    Alloc& a = v.allocator();
    rapidjson::Value payload = smt::copy_of(*row, a);  // an object: new_schema checked it
    if (rewrite) smt::put(payload, "__deleted", smt::str(deleted ? "true" : "false", a), a);
    for (const FieldReference& f : fields) {
      if (!f.schema(env_schema)) continue;
      const rapidjson::Value* x = f.value(env_schema, env);
      smt::put(payload, f.new_name, x ? rapidjson::Value(*x, a) : rapidjson::Value(), a);
    }
    smt::set_new(v, std::move(payload), schema);
  }

  // The schema of the new value, with the errors of apply()'s own path in its order: the row's
  // schema, __deleted, then the added fields.
  rapidjson::Value new_schema(const rapidjson::Value& env_schema, bool deleted, bool rewrite,
                              bool is_object, Alloc& a) const {
    const rapidjson::Value& row = row_schema(env_schema, deleted ? "before" : "after");
    if (deleted && !rewrite) return value_schema(row_schema(env_schema, "after"), a);
    NewValue out{rapidjson::Value(rapidjson::kObjectType), value_schema(row, a)};
    if (rewrite && is_object)
      out.add("__deleted", smt::primitive_schema("string", true, a), rapidjson::Value(), a);
    if (!is_object) throw DataError("Only Struct objects supported for [source field insertion]");
    out.schema["optional"] = false;  // as add_fields
    for (const FieldReference& f : fields)
      if (const rapidjson::Value* s = f.schema(env_schema))
        out.add(f.new_name, optional_basics(*s, a), rapidjson::Value(), a);
    return std::move(out.schema);
  }

  static const rapidjson::Value& row_schema(const rapidjson::Value& env_schema, const char* which) {
    const rapidjson::Value* f = smt::field_schema(env_schema, which);
    if (!f) throw DataError(std::string(which) + " is not a valid field name");
    return *f;
  }

  // The `before` or `after` row with its schema, as ExtractField makes it.
  static NewValue row(Data& v, const char* which) {
    Alloc& a = v.allocator();
    const rapidjson::Value* f = smt::field_schema(*v.schema(), which);
    if (!f) throw DataError(std::string(which) + " is not a valid field name");
    NewValue out{rapidjson::Value(), value_schema(*f, a)};
    if (rapidjson::Value* row = member(v.payload(), which)) out.payload = smt::copy_of(*row, a);
    return out;
  }

  void route(Record& r, NewValue& out) const {
    if (route_by.empty()) return;
    if (!out.payload.IsObject()) throw DataError("Only Struct objects supported for routing");
    auto topic = string_field(out.schema, out.payload, route_by);
    if (topic && topic->find_first_not_of(" \t\n\r") != std::string::npos) r.topic = *topic;
  }

  void add_fields(Data& v, NewValue& out) const {
    if (!out.payload.IsObject())
      throw DataError("Only Struct objects supported for [source field insertion]");
    Alloc& a = v.allocator();
    // Debezium rebuilds the row schema with copySchemaBasics, which does not copy optionality.
    out.schema["optional"] = false;
    rapidjson::Value& schema = *v.schema();
    for (const FieldReference& f : fields) {
      const rapidjson::Value* s = f.schema(schema);
      if (!s) continue;
      const rapidjson::Value* x = f.value(schema, v.payload());
      out.add(f.new_name, optional_basics(*s, a), x ? rapidjson::Value(*x, a) : rapidjson::Value(),
              a);
    }
  }

  void add_headers(Record& r, bool tombstone) const {
    for (const FieldReference& h : headers) {
      if (tombstone) {
        if (h.field == "op") r.headers.emplace_back(h.new_name, "d");
        continue;
      }
      const rapidjson::Value& schema = *r.value.schema_view();
      if (!h.schema(schema)) continue;
      const rapidjson::Value* x = h.value(schema, r.value.payload());
      r.headers.emplace_back(h.new_name, x ? header_text(*x) : std::nullopt);
    }
  }

  DeleteHandling handling;
  std::vector<FieldReference> fields;
  std::vector<FieldReference> headers;
  std::string route_by;
};

}  // namespace

detail::PluginEntry unwrap() { return smt::plugin_table<Unwrap>(); }
smt::StepType unwrap_step() { return smt::step_type<Unwrap>(); }

}  // namespace sluice::dbz
