// Kafka Connect's field transforms on schemaless JSON: InsertField, ReplaceField, MaskField,
// ExtractField, HoistField (see docs/transforms.md for what is not done yet).
#include <set>

#include "kafka_smt.hpp"
#include "plugins.hpp"

namespace sluice::smt {

namespace {

// A field of InsertField: a `!` suffix marks it required, `?` (the default) optional.
struct Insertion {
  std::string name;
  bool optional = true;
  explicit operator bool() const { return !name.empty(); }
};

Insertion insertion(const Config& c, const char* key) {
  Insertion f{option(c, key), true};
  if (!f.name.empty() && (f.name.back() == '!' || f.name.back() == '?')) {
    f.optional = f.name.back() == '?';
    f.name.pop_back();
  }
  return f;
}

struct InsertField {
  static constexpr const char* kName = "insert_field";
  static constexpr const char* kDescription =
      "Kafka's InsertField: adds the topic, partition, offset, timestamp or a constant.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("topic.field").doc("Field for the topic (suffix ! required, ? optional).");
    s.string("partition.field").doc("Field for the partition.");
    s.string("offset.field").doc("Field for the offset.");
    s.string("timestamp.field").doc("Field for the record timestamp (ms since the epoch).");
    s.string("static.field").doc("Field for static.value.");
    s.string("static.value").doc("The constant for static.field.");
  }
  explicit InsertField(const Config& c)
      : target(target_option(c)),
        topic(insertion(c, "topic.field")),
        partition(insertion(c, "partition.field")),
        offset(insertion(c, "offset.field")),
        timestamp(insertion(c, "timestamp.field")),
        static_field(insertion(c, "static.field")),
        static_value(option(c, "static.value")) {}

  // Calls `add(field, value, schema type, logical name)` for each field to insert, in Kafka's
  // order.
  template <class Add>
  void each(const Record& r, rapidjson::Document::AllocatorType& a, Add add) const {
    if (topic) add(topic, str(r.topic, a), "string", nullptr);
    if (partition) add(partition, rapidjson::Value(r.partition), "int32", nullptr);
    if (offset) add(offset, rapidjson::Value(r.offset), "int64", nullptr);
    if (timestamp)
      add(timestamp, rapidjson::Value(r.timestamp_ms), "int64",
          "org.apache.kafka.connect.data.Timestamp");
    if (static_field) add(static_field, str(static_value, a), "string", nullptr);
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;  // Kafka passes tombstones and null keys through
    auto& a = d.allocator();
    if (!d.schema_view()) {
      rapidjson::Value& v = require_map(d.payload(), "field insertion");
      each(r, a, [&](const Insertion& f, rapidjson::Value&& x, const char*, const char*) {
        put(v, f.name, std::move(x), a);
      });
      d.set(std::move(v), nullptr);
      return true;
    }
    const rapidjson::Value& old_schema = require_struct_view(d, "field insertion");
    rapidjson::Value& v = d.payload();
    each(r, a, [&](const Insertion& f, rapidjson::Value&& x, const char*, const char*) {
      put(v, f.name, std::move(x), a);
    });
    NewSchema schema = make_schema(d, this, 0, [&](rapidjson::Document::AllocatorType& sa) {
      rapidjson::Value out = struct_like(old_schema, sa);
      for (const auto& f : old_schema["fields"].GetArray())
        add_field(out, f["field"].GetString(), f, sa);
      each(r, sa, [&](const Insertion& f, rapidjson::Value&&, const char* type, const char* name) {
        if (field_schema(out, f.name))
          throw DataError("Cannot create field because of field name duplication " + f.name);
        add_field(out, f.name, primitive_schema(type, f.optional, sa, name), sa);
      });
      return out;
    });
    set_new(d, std::move(v), schema);
    return true;
  }

  Target target;
  Insertion topic, partition, offset, timestamp, static_field;
  std::string static_value;
};

// renames: "old:new,..."
std::vector<std::pair<std::string, std::string>> renames_option(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& item : list_option(c, "renames")) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size())
      throw ConfigError("renames", "renames must be old:new pairs, got '" + item + "'");
    out.emplace_back(item.substr(0, colon), item.substr(colon + 1));
  }
  return out;
}

struct ReplaceField {
  static constexpr const char* kName = "replace_field";
  static constexpr const char* kDescription =
      "Kafka's ReplaceField: keeps (include), drops (exclude) and renames top-level fields.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("include").doc("Fields to keep (comma-separated); all when empty.");
    s.string("exclude").doc("Fields to drop (comma-separated); exclude wins over include.");
    s.string("renames").doc("old:new pairs, comma-separated.");
  }
  explicit ReplaceField(const Config& c)
      : ReplaceField(target_option(c), list_option(c, "include"), list_option(c, "exclude"),
                     renames_option(c)) {}

  bool filter(const std::string& name) const {
    return !exclude.count(name) && (include.empty() || include.count(name));
  }
  std::string renamed(const std::string& name) const {
    for (const auto& [from, to] : renames)
      if (from == name) return to;
    return name;
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;
    auto& a = d.allocator();
    rapidjson::Value out(rapidjson::kObjectType);
    if (!d.schema_view()) {
      for (auto& m : require_map(d.payload(), "field replacement").GetObject()) {
        const std::string name(m.name.GetString(), m.name.GetStringLength());
        if (filter(name)) put(out, renamed(name), std::move(m.value), a);
      }
      d.set(std::move(out), nullptr);
      return true;
    }
    // With a schema the fields keep the schema's order.
    const rapidjson::Value& old_schema = require_struct_view(d, "field replacement");
    rapidjson::Value& v = d.payload();
    for (const auto& f : old_schema["fields"].GetArray()) {
      const std::string name = f["field"].GetString();
      if (!filter(name)) continue;
      auto it = v.FindMember(f["field"]);
      put(out, renamed(name), it == v.MemberEnd() ? rapidjson::Value() : std::move(it->value), a);
    }
    NewSchema schema = make_schema(d, this, 0, [&](rapidjson::Document::AllocatorType& sa) {
      rapidjson::Value made = struct_like(old_schema, sa);
      for (const auto& f : old_schema["fields"].GetArray()) {
        const std::string name = f["field"].GetString();
        if (filter(name)) add_field(made, renamed(name), f, sa);
      }
      return made;
    });
    set_new(d, std::move(out), schema);
    return true;
  }

  Target target;
  std::set<std::string> include, exclude;
  std::vector<std::pair<std::string, std::string>> renames;
  ReplaceField(Target t, std::vector<std::string> in, std::vector<std::string> ex,
               std::vector<std::pair<std::string, std::string>> rn)
      : target(t), include(in.begin(), in.end()), exclude(ex.begin(), ex.end()), renames(rn) {}
};

// MaskField's replacement for one value: its type's zero, or `replacement` converted to it.
rapidjson::Value masked(const rapidjson::Value& v, const std::optional<std::string>& replacement,
                        rapidjson::Document::AllocatorType& a) {
  if (v.IsNull()) return {};
  if (!replacement) {
    if (v.IsString()) return str("", a);
    if (v.IsBool()) return rapidjson::Value(false);
    if (v.IsInt64()) return rapidjson::Value(int64_t{0});
    if (v.IsNumber()) return rapidjson::Value(0.0);
    return rapidjson::Value(v.IsArray() ? rapidjson::kArrayType : rapidjson::kObjectType);
  }
  if (v.IsString()) return str(*replacement, a);
  if (v.IsNumber()) {
    char* end = nullptr;
    const double d = std::strtod(replacement->c_str(), &end);
    if (replacement->empty() || *end != '\0')
      throw DataError("Unable to convert " + *replacement +
                      " (class java.lang.String) to a number");
    if (v.IsInt64()) return rapidjson::Value(static_cast<int64_t>(d));
    return rapidjson::Value(d);
  }
  throw DataError("Cannot mask value of type " + type_name(v) + " with custom replacement.");
}

struct MaskField {
  static constexpr const char* kName = "mask_field";
  static constexpr const char* kDescription =
      "Kafka's MaskField: replaces fields by their type's zero value or a replacement.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("fields").doc("Fields to mask (comma-separated).").required();
    s.string("replacement").doc("Replacement for strings and numbers.");
  }
  explicit MaskField(const Config& c)
      : target(target_option(c)),
        fields(required_list(c, "fields")),
        replacement(c.has("replacement") ? std::optional(option(c, "replacement")) : std::nullopt) {
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    // Kafka requires a map (or struct) even of a tombstone here: it rejects it.
    const rapidjson::Value* schema = d.schema_view();
    if (schema) require_struct_view(d, "mask fields");
    rapidjson::Value& v = schema ? d.payload() : require_map(d.payload(), "mask fields");
    if (!v.IsObject()) throw DataError("Only Struct objects supported for [mask fields]");
    auto& a = d.allocator();
    if (schema) check_struct_fields(*schema, v);
    // As Kafka, a field the value lacks is added as null.
    for (const std::string& f : fields) {
      auto it = v.FindMember(rapidjson::StringRef(f.data(), f.size()));
      put(v, f, it == v.MemberEnd() ? rapidjson::Value() : masked(it->value, replacement, a), a);
    }
    d.set_payload(std::move(v));  // masking keeps the schema
    return true;
  }

  // With a schema Kafka cannot mask a struct field, nor name a field the schema lacks.
  void check_struct_fields(const rapidjson::Value& schema, const rapidjson::Value& v) const {
    for (const std::string& f : fields) {
      const rapidjson::Value* fs = field_schema(schema, f);
      if (!fs) throw DataError(f + " is not a valid field name");
      auto it = v.FindMember(rapidjson::StringRef(f.data(), f.size()));
      if ((*fs)["type"] == "struct" && it != v.MemberEnd() && !it->value.IsNull())
        throw DataError("Cannot mask value of type: class org.apache.kafka.connect.data.Struct");
    }
  }

  Target target;
  std::vector<std::string> fields;
  std::optional<std::string> replacement;
};

struct ExtractField {
  static constexpr const char* kName = "extract_field";
  static constexpr const char* kDescription =
      "Kafka's ExtractField: replaces the key or value by one of its fields.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("field")
        .doc("The field to extract (a dotted path with field.syntax.version V2).")
        .required();
    s.string("field.syntax.version").doc("V1 (plain names) or V2 (dotted paths).");
  }
  explicit ExtractField(const Config& c)
      : target(target_option(c)), path(parse_path(option(c, "field"), syntax_v2(c))) {
    if (path.empty() || path[0].empty()) throw ConfigError("field", "field is required");
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    // With a schema Kafka looks the field up even for a null value.
    if (d.schema_view()) return apply_with_schema(d);
    if (d.is_null()) return true;
    rapidjson::Value* v = &require_map(d.payload(), "field extraction");
    for (const std::string& step : path) {
      if (!v || !v->IsObject()) {
        v = nullptr;
        break;
      }
      auto it = v->FindMember(rapidjson::StringRef(step.data(), step.size()));
      v = it == v->MemberEnd() ? nullptr : &it->value;
    }
    if (!v) {
      d.set_null();
      return true;
    }
    rapidjson::Value out(std::move(*v));
    d.set(std::move(out), nullptr);
    return true;
  }

  // Follows the path through the schema too; a field the schema lacks is an error, as in Kafka.
  bool apply_with_schema(Data& d) const {
    rapidjson::Value* schema = &require_struct(d, "field extraction");
    rapidjson::Value* v = &d.payload();
    for (const std::string& step : path) {
      rapidjson::Value* f =
          schema->IsObject() && schema->HasMember("fields") ? field_schema(*schema, step) : nullptr;
      if (!f) throw DataError("Unknown field: " + step);
      schema = f;
      auto it = v->IsObject() ? v->FindMember(rapidjson::StringRef(step.data(), step.size()))
                              : v->MemberEnd();
      v = v->IsObject() && it != v->MemberEnd() ? &it->value : nullptr;
      if (!v) break;
    }
    rapidjson::Value out_schema(*schema, d.allocator());
    out_schema.RemoveMember("field");
    rapidjson::Value out;
    if (v) out = std::move(*v);
    d.set(std::move(out), &out_schema);
    return true;
  }

  Target target;
  FieldPath path;
};

struct HoistField {
  static constexpr const char* kName = "hoist_field";
  static constexpr const char* kDescription =
      "Kafka's HoistField: wraps the key or value in an object under one field.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("field").doc("The field the data goes into.").required();
  }
  explicit HoistField(const Config& c)
      : target(target_option(c)), field(required_option(c, "field")) {}

  bool apply(Record& r) const {
    Data& d = side(r, target);
    auto& a = d.allocator();
    std::optional<rapidjson::Value> schema;
    if (const rapidjson::Value* inner = d.schema()) {
      schema.emplace(rapidjson::kObjectType);
      schema->AddMember("type", "struct", a);
      schema->AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a);
      schema->AddMember("optional", false, a);
      add_field(*schema, field, *inner, a);
    }
    rapidjson::Value inner(std::move(d.payload()));
    rapidjson::Value out(rapidjson::kObjectType);
    out.AddMember(str(field, a), inner, a);
    d.set(std::move(out), schema ? &*schema : nullptr);
    return true;
  }

  Target target;
  std::string field;
};

}  // namespace

detail::PluginEntry insert_field() { return plugin_table<InsertField>(); }
detail::PluginEntry replace_field() { return plugin_table<ReplaceField>(); }
detail::PluginEntry mask_field() { return plugin_table<MaskField>(); }
detail::PluginEntry extract_field() { return plugin_table<ExtractField>(); }
detail::PluginEntry hoist_field() { return plugin_table<HoistField>(); }

// The steps the `chain` transform can run (chain.cpp).
std::vector<StepType> field_steps() {
  return {step_type<InsertField>(), step_type<ReplaceField>(), step_type<MaskField>(),
          step_type<ExtractField>(), step_type<HoistField>()};
}

}  // namespace sluice::smt
