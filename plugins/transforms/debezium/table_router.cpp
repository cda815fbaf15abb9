// Debezium's ByLogicalTableRouter as the `table_router` transform: the change events of several
// physical tables go to one logical table's topic, with the key made unique across them.
#include "debezium_smt.hpp"
#include "plugins.hpp"

namespace sluice::dbz {

namespace {

// ByLogicalTableRouter's copySchemaExcludingName: a struct schema named `name` with the
// version, doc, parameters, optionality and (with `fields`) the fields of `source`.
rapidjson::Value renamed_struct(const rapidjson::Value& source, std::string_view name, bool fields,
                                Alloc& a) {
  rapidjson::Value out(rapidjson::kObjectType);
  out.AddMember("type", "struct", a);
  out.AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a);
  for (const char* basic : {"version", "doc", "parameters"}) {
    auto it = source.FindMember(basic);
    if (it != source.MemberEnd() && !it->value.IsNull())
      out.AddMember(rapidjson::StringRef(basic), rapidjson::Value(it->value, a), a);
  }
  auto optional = source.FindMember("optional");
  out.AddMember("optional", optional != source.MemberEnd() && optional->value.IsTrue(), a);
  out.AddMember("name", smt::str(name, a), a);
  if (fields)
    for (const auto& f : source["fields"].GetArray())
      out["fields"].PushBack(rapidjson::Value(f, a), a);
  return out;
}

struct TableRouter {
  static constexpr const char* kName = "table_router";
  static constexpr const char* kDescription =
      "Debezium's ByLogicalTableRouter: routes several tables' change events to one topic.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("topic.regex").doc("Java regex the whole topic must match.").required();
    s.string("topic.replacement")
        .doc("The logical table's topic; $1 or ${name} groups.")
        .required();
    s.boolean("key.enforce.uniqueness").doc("Add the physical table to the key (default true).");
    s.string("key.field.name").doc("The key field naming the physical table.");
    s.string("key.field.regex").doc("Java regex over the topic for the key field's value.");
    s.string("key.field.replacement").doc("The key field's value; needs key.field.regex.");
  }
  explicit TableRouter(const Config& c)
      : topic_regex(smt::required_option(c, "topic.regex"), "topic.regex"),
        topic_replacement(smt::required_option(c, "topic.replacement")),
        unique_keys(smt::bool_option(c, "key.enforce.uniqueness", true)),
        key_field(smt::option(c, "key.field.name", "__dbz__physicalTableIdentifier")),
        key_replacement(smt::option(c, "key.field.replacement")) {
    const std::string regex = smt::option(c, "key.field.regex");
    if (regex.find_first_not_of(" \t") == std::string::npos) return;
    if (key_replacement.find_first_not_of(" \t") == std::string::npos)
      throw ConfigError("key.field.replacement",
                        "key.field.replacement must be non-empty if key.field.regex is set.");
    key_regex.emplace(regex, "key.field.regex");
  }

  bool apply(Record& r) const {
    const auto topic = topic_regex.replace_whole(r.topic, topic_replacement);
    if (!topic || topic->empty()) return true;
    if (!r.key.is_null()) rekey(r.key, r.topic, *topic);
    if (!r.value.is_null() && is_envelope(r.value)) rename_envelope(r.value, *topic);
    r.topic = *topic;
    return true;
  }

  void rekey(Data& key, const std::string& old_topic, const std::string& topic) const {
    Alloc& a = key.allocator();
    rapidjson::Value schema =
        renamed_struct(smt::require_struct(key, "Updating schema"), topic + ".Key", true, a);
    rapidjson::Value& payload = key.payload();
    if (unique_keys) {
      if (smt::field_schema(schema, key_field))
        throw DataError("Cannot create field because of field name duplication " + key_field);
      smt::add_field(schema, key_field, smt::primitive_schema("string", false, a), a);
      std::string table = old_topic;
      if (key_regex)
        table = key_regex->replace_whole(old_topic, key_replacement).value_or(old_topic);
      smt::put(payload, key_field, smt::str(table, a), a);
    }
    key.set(std::move(payload), &schema);
  }

  static void rename_envelope(Data& value, const std::string& topic) {
    Alloc& a = value.allocator();
    rapidjson::Value& old = *value.schema();
    const rapidjson::Value* before = smt::field_schema(old, "before");
    if (!before) throw DataError("before is not a valid field name");
    const rapidjson::Value row = renamed_struct(*before, topic + ".Value", true, a);
    rapidjson::Value schema = renamed_struct(old, topic + ".Envelope", false, a);
    for (const auto& f : old["fields"].GetArray()) {
      const std::string_view name(f["field"].GetString(), f["field"].GetStringLength());
      smt::add_field(schema, name, name == "before" || name == "after" ? row : f, a);
    }
    value.set(std::move(value.payload()), &schema);
  }

  JavaRegex topic_regex;
  std::string topic_replacement;
  bool unique_keys;
  std::string key_field;
  std::string key_replacement;
  std::optional<JavaRegex> key_regex;
};

}  // namespace

detail::PluginEntry table_router() { return smt::plugin_table<TableRouter>(); }
smt::StepType table_router_step() { return smt::step_type<TableRouter>(); }

}  // namespace sluice::dbz
