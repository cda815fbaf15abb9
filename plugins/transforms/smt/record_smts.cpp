// Kafka Connect's record-level transforms on schemaless JSON: ValueToKey, Flatten, RegexRouter,
// TimestampRouter, InsertHeader, DropHeaders, HeaderFrom, Filter.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <mutex>
#include <unordered_map>

#include "date_format.hpp"
#include "kafka_smt.hpp"
#include "plugins.hpp"

namespace sluice::smt {

namespace {

rapidjson::Value* member(rapidjson::Value& o, const std::string& name) {
  auto it = o.FindMember(rapidjson::StringRef(name.data(), name.size()));
  return it == o.MemberEnd() ? nullptr : &it->value;
}

struct ValueToKey {
  static constexpr const char* kName = "value_to_key";
  static constexpr const char* kDescription =
      "Kafka's ValueToKey: the key becomes an object of fields copied from the value.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("fields").doc("Fields of the value that make the key (comma-separated).").required();
    s.boolean("replace.null.with.default").doc("Accepted; sluice keeps nulls as they are.");
  }
  explicit ValueToKey(const Config& c) : fields(required_list(c, "fields")) {}

  bool apply(Record& r) const {
    static constexpr const char* kPurpose = "copying fields from value to key";
    rapidjson::Value* value_schema = r.value.schema();
    if (value_schema) require_struct(r.value, kPurpose);
    rapidjson::Value& v =
        value_schema ? r.value.payload() : require_map(r.value.payload(), kPurpose);
    if (!v.IsObject())
      throw DataError(std::string("Only Struct objects supported for [") + kPurpose +
                      "], found: null");
    auto& a = r.key.allocator();
    rapidjson::Value key(rapidjson::kObjectType);
    // With a schema the key's schema is a struct of the fields' schemas.
    rapidjson::Value key_schema(rapidjson::kObjectType);
    key_schema.AddMember("type", "struct", a)
        .AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a)
        .AddMember("optional", false, a);
    for (const std::string& f : fields) {
      if (value_schema) {
        const rapidjson::Value* fs = field_schema(*value_schema, f);
        if (!fs) throw DataError(f + " is not a valid field name");
        add_field(key_schema, f, *fs, a);
      }
      rapidjson::Value copy;  // a field the value lacks is null in the key, as in Kafka
      if (const rapidjson::Value* m = member(v, f)) copy = copy_of(*m, a);
      put(key, f, std::move(copy), a);
    }
    r.key.set(std::move(key), value_schema ? &key_schema : nullptr);
    return true;
  }

  std::vector<std::string> fields;
};

struct Flatten {
  static constexpr const char* kName = "flatten";
  static constexpr const char* kDescription =
      "Kafka's Flatten: nested objects become top-level fields joined by a delimiter.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("delimiter").doc("Joins the names of nested fields (default '.').");
  }
  explicit Flatten(const Config& c)
      : target(target_option(c)), delimiter(option(c, "delimiter", ".")) {}

  void flatten(rapidjson::Value& in, const std::string& prefix, rapidjson::Value& out,
               rapidjson::Document::AllocatorType& a) const {
    for (auto& m : in.GetObject()) {
      std::string name(m.name.GetString(), m.name.GetStringLength());
      if (!prefix.empty()) name = prefix + delimiter + name;
      if (m.value.IsObject())
        flatten(m.value, name, out, a);  // an empty object leaves nothing, as in Kafka
      else
        put(out, name, std::move(m.value), a);
    }
  }

  // With a schema: every struct field's leaves, optional when any struct on the way is.
  void flatten_schema(const rapidjson::Value& schema, rapidjson::Value* value,
                      const std::string& prefix, bool optional, rapidjson::Value& out_schema,
                      rapidjson::Value& out, rapidjson::Document::AllocatorType& a) const {
    for (const auto& f : schema["fields"].GetArray()) {
      const std::string field = f["field"].GetString();
      const std::string name = prefix.empty() ? field : prefix + delimiter + field;
      const bool opt = optional || (f.HasMember("optional") && f["optional"].IsTrue());
      rapidjson::Value* inner = value && value->IsObject() ? member(*value, field) : nullptr;
      if (f["type"] == "struct") {
        flatten_schema(f, inner, name, opt, out_schema, out, a);
        continue;
      }
      rapidjson::Value fs(f, a);
      put(fs, "optional", rapidjson::Value(opt), a);
      add_field(out_schema, name, fs, a);
      put(out, name, inner ? std::move(*inner) : rapidjson::Value(), a);
    }
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;
    rapidjson::Value out(rapidjson::kObjectType);
    auto& a = d.allocator();
    if (d.schema_view()) {
      rapidjson::Value& schema = require_struct(d, "flattening");
      rapidjson::Value out_schema = struct_like(schema, a);
      flatten_schema(schema, &d.payload(), "", false, out_schema, out, a);
      d.set(std::move(out), &out_schema);
      return true;
    }
    flatten(require_map(d.payload(), "flattening"), "", out, a);
    d.set(std::move(out), nullptr);
    return true;
  }

  Target target;
  std::string delimiter;
};

struct RegexRouter {
  static constexpr const char* kName = "regex_router";
  static constexpr const char* kDescription =
      "Kafka's RegexRouter: renames the topic when the whole name matches a regex.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("regex").doc("Regular expression the whole topic must match.").required();
    s.string("replacement").doc("The new topic; $1.. refer to groups.").required();
  }
  explicit RegexRouter(const Config& c)
      : regex(compile(required_option(c, "regex"))), replacement(option(c, "replacement")) {}
  static std::regex compile(const std::string& pattern) {
    try {
      return std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw ConfigError("regex", "invalid regex: " + std::string(e.what()));
    }
  }

  bool apply(Record& r) const {
    r.topic = routed(r.topic);
    return true;
  }

  // A pipeline sees few topics, so each one's new name is kept (matching a std::regex costs
  // more than the rest of a small record's transforms).
  std::string routed(const std::string& topic) const {
    {
      const std::lock_guard lock(mutex);
      if (auto it = seen.find(topic); it != seen.end()) return it->second;
    }
    std::smatch m;
    std::string out = std::regex_match(topic, m, regex) ? java_replacement(replacement, m) : topic;
    const std::lock_guard lock(mutex);
    if (seen.size() >= kSeenTopics) seen.clear();
    seen.emplace(topic, out);
    return out;
  }

  static constexpr size_t kSeenTopics = 1024;
  std::regex regex;
  std::string replacement;
  mutable std::mutex mutex;  // process() may run on several threads at once
  mutable std::unordered_map<std::string, std::string> seen;
};

struct TimestampRouter {
  static constexpr const char* kName = "timestamp_router";
  static constexpr const char* kDescription =
      "Kafka's TimestampRouter: the topic becomes topic.format with the record's timestamp.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("topic.format")
        .doc("${topic} and ${timestamp} are replaced.")
        .default_value("${topic}-${timestamp}");
    s.string("timestamp.format").doc("A SimpleDateFormat pattern, UTC.").default_value("yyyyMMdd");
  }
  explicit TimestampRouter(const Config& c)
      : topic_format(option(c, "topic.format", "${topic}-${timestamp}")),
        date(option(c, "timestamp.format", "yyyyMMdd")) {}

  static void replace_all(std::string& s, std::string_view from, const std::string& to) {
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
      s.replace(pos, from.size(), to);
  }
  bool apply(Record& r) const {
    std::string topic = topic_format;
    replace_all(topic, "${topic}", r.topic);
    replace_all(topic, "${timestamp}", date.format(r.timestamp_ms));
    r.topic = std::move(topic);
    return true;
  }

  std::string topic_format;
  DateFormat date;
};

struct InsertHeader {
  static constexpr const char* kName = "insert_header";
  static constexpr const char* kDescription = "Kafka's InsertHeader: adds a header with a literal.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("header").doc("The header's name.").required();
    s.string("value.literal").doc("The header's value.").required();
  }
  explicit InsertHeader(const Config& c)
      : header(required_option(c, "header")), literal(option(c, "value.literal")) {}

  bool apply(Record& r) const {
    r.headers.emplace_back(header, literal);
    return true;
  }

  std::string header, literal;
};

struct DropHeaders {
  static constexpr const char* kName = "drop_headers";
  static constexpr const char* kDescription = "Kafka's DropHeaders: removes headers by name.";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema& s) {
    s.string("headers").doc("Header names to remove (comma-separated).").required();
  }
  explicit DropHeaders(const Config& c) : names(required_list(c, "headers")) {}

  bool apply(Record& r) const {
    std::erase_if(r.headers, [&](const auto& h) {
      return std::find(names.begin(), names.end(), h.first) != names.end();
    });
    return true;
  }

  std::vector<std::string> names;
};

// How Kafka's SimpleHeaderConverter writes a Connect value into a header.
std::optional<std::string> header_text(const rapidjson::Value& v) {
  if (v.IsNull()) return std::nullopt;
  if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsNumber()) return java_double(v.GetDouble());
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

struct HeaderFrom {
  static constexpr const char* kName = "header_from";
  static constexpr const char* kDescription =
      "Kafka's HeaderFrom: copies or moves fields of the key or value into headers.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("fields").doc("Fields to take (comma-separated).").required();
    s.string("headers").doc("Header names, one per field (comma-separated).").required();
    s.string("operation").doc("copy or move.").one_of({"copy", "move"}).required();
  }
  explicit HeaderFrom(const Config& c)
      : target(target_option(c)),
        fields(required_list(c, "fields")),
        headers(required_list(c, "headers")),
        move(required_option(c, "operation") == "move") {
    const std::string op = option(c, "operation");
    if (op != "move" && op != "copy")
      throw ConfigError("operation", "operation must be move or copy");
    if (fields.size() != headers.size())
      throw ConfigError("headers", "fields and headers must have the same number of names");
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    const char* purpose = move ? "header move" : "header copy";
    rapidjson::Value* schema = d.schema();
    if (schema) require_struct(d, purpose);
    rapidjson::Value& v = schema ? d.payload() : require_map(d.payload(), purpose);
    if (!v.IsObject())
      throw DataError(std::string("Only Struct objects supported for [") + purpose + "]");
    for (size_t i = 0; i < fields.size(); ++i) {
      const rapidjson::Value* m = member(v, fields[i]);
      r.headers.emplace_back(headers[i], m ? header_text(*m) : std::nullopt);
    }
    if (!move) return true;
    for (const std::string& f : fields) v.RemoveMember(rapidjson::StringRef(f.data(), f.size()));
    if (!schema) {
      d.set(std::move(v), nullptr);
      return true;
    }
    rapidjson::Value out_schema = struct_like(*schema, d.allocator());
    for (auto& f : (*schema)["fields"].GetArray())
      if (std::find(fields.begin(), fields.end(), f["field"].GetString()) == fields.end())
        add_field(out_schema, f["field"].GetString(), f, d.allocator());
    d.set(std::move(v), &out_schema);
    return true;
  }

  Target target;
  std::vector<std::string> fields, headers;
  bool move;
};

struct Filter {
  static constexpr const char* kName = "filter";
  static constexpr const char* kDescription =
      "Kafka's Filter: drops every record (use it with a predicate).";
  static constexpr bool kHasTarget = false;
  static void declare(ConfigSchema&) {}
  explicit Filter(const Config&) {}
  bool apply(Record&) const { return false; }
};

}  // namespace

detail::PluginEntry value_to_key() { return plugin_table<ValueToKey>(); }
detail::PluginEntry flatten() { return plugin_table<Flatten>(); }
detail::PluginEntry regex_router() { return plugin_table<RegexRouter>(); }
detail::PluginEntry timestamp_router() { return plugin_table<TimestampRouter>(); }
detail::PluginEntry insert_header() { return plugin_table<InsertHeader>(); }
detail::PluginEntry drop_headers() { return plugin_table<DropHeaders>(); }
detail::PluginEntry header_from() { return plugin_table<HeaderFrom>(); }
detail::PluginEntry filter() { return plugin_table<Filter>(); }

// The steps the `chain` transform can run (chain.cpp).
std::vector<StepType> record_steps() {
  return {step_type<ValueToKey>(),      step_type<Flatten>(),      step_type<RegexRouter>(),
          step_type<TimestampRouter>(), step_type<InsertHeader>(), step_type<DropHeaders>(),
          step_type<HeaderFrom>(),      step_type<Filter>()};
}

}  // namespace sluice::smt
