// Kafka Connect's field transforms on schemaless JSON: InsertField, ReplaceField, MaskField,
// ExtractField, HoistField (see docs/transforms.md for what is not done yet).
#include <set>

#include "kafka_smt.hpp"
#include "plugins.hpp"

namespace sluice::smt {

namespace {

// A field name of InsertField: a `!` suffix marks it required, `?` (the default) optional.
std::string insertion_name(const Config& c, const char* key) {
  std::string name = option(c, key);
  if (!name.empty() && (name.back() == '!' || name.back() == '?')) name.pop_back();
  return name;
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
        topic(insertion_name(c, "topic.field")),
        partition(insertion_name(c, "partition.field")),
        offset(insertion_name(c, "offset.field")),
        timestamp(insertion_name(c, "timestamp.field")),
        static_field(insertion_name(c, "static.field")),
        static_value(option(c, "static.value")) {}

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;  // Kafka passes tombstones and null keys through
    rapidjson::Value& v = require_map(schemaless(d), "field insertion");
    auto& a = d.allocator();
    if (!topic.empty()) put(v, topic, str(r.topic, a), a);
    if (!partition.empty()) put(v, partition, rapidjson::Value(r.partition), a);
    if (!offset.empty()) put(v, offset, rapidjson::Value(r.offset), a);
    if (!timestamp.empty()) put(v, timestamp, rapidjson::Value(r.timestamp_ms), a);
    if (!static_field.empty()) put(v, static_field, str(static_value, a), a);
    d.set(std::move(v), nullptr);
    return true;
  }

  Target target;
  std::string topic, partition, offset, timestamp, static_field, static_value;
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
    s.boolean("replace.null.with.default").doc("Only matters with schemas.");
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
    rapidjson::Value& v = require_map(schemaless(d), "field replacement");
    auto& a = d.allocator();
    rapidjson::Value out(rapidjson::kObjectType);
    for (auto& m : v.GetObject()) {
      const std::string name(m.name.GetString(), m.name.GetStringLength());
      if (filter(name)) put(out, renamed(name), std::move(m.value), a);
    }
    d.set(std::move(out), nullptr);
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
    // Kafka requires a map even of a tombstone here (it rejects it).
    rapidjson::Value& v = require_map(schemaless(d), "mask fields");
    auto& a = d.allocator();
    // As Kafka, a field the value lacks is added as null.
    for (const std::string& f : fields) {
      auto it = v.FindMember(rapidjson::StringRef(f.data(), f.size()));
      put(v, f, it == v.MemberEnd() ? rapidjson::Value() : masked(it->value, replacement, a), a);
    }
    d.set(std::move(v), nullptr);
    return true;
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
    if (d.is_null()) return true;
    rapidjson::Value* v = &require_map(schemaless(d), "field extraction");
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
    rapidjson::Value inner(std::move(schemaless(d)));
    rapidjson::Value out(rapidjson::kObjectType);
    out.AddMember(str(field, a), inner, a);
    d.set(std::move(out), nullptr);
    return true;
  }

  Target target;
  std::string field;
};

}  // namespace

const sluice_plugin* insert_field() { return plugin_table<InsertField>(); }
const sluice_plugin* replace_field() { return plugin_table<ReplaceField>(); }
const sluice_plugin* mask_field() { return plugin_table<MaskField>(); }
const sluice_plugin* extract_field() { return plugin_table<ExtractField>(); }
const sluice_plugin* hoist_field() { return plugin_table<HoistField>(); }

}  // namespace sluice::smt
