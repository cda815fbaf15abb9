// Kafka Connect's Cast and TimestampConverter (schemaless), SetSchemaMetadata (schema'd only,
// as in Kafka).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "date_format.hpp"
#include "kafka_smt.hpp"
#include "plugins.hpp"

namespace sluice::smt {

namespace {

enum class CastType { int8, int16, int32, int64, float32, float64, boolean, string };

CastType cast_type(const std::string& name) {
  static const std::pair<const char*, CastType> kTypes[] = {
      {"int8", CastType::int8},       {"int16", CastType::int16},
      {"int32", CastType::int32},     {"int64", CastType::int64},
      {"float32", CastType::float32}, {"float64", CastType::float64},
      {"boolean", CastType::boolean}, {"string", CastType::string}};
  for (const auto& [n, t] : kTypes)
    if (name == n) return t;
  throw ConfigError("spec", "spec: unsupported type '" + name +
                                "' (int8, int16, int32, int64, float32, float64, boolean, "
                                "string)");
}

// Java's narrowing of a long: keeps the low bits.
int64_t narrow(int64_t v, CastType t) {
  switch (t) {
    case CastType::int8:
      return static_cast<int8_t>(v);
    case CastType::int16:
      return static_cast<int16_t>(v);
    case CastType::int32:
      return static_cast<int32_t>(v);
    default:
      return v;
  }
}

// Java's (int)/(long) of a double: truncates and saturates, NaN is 0.
int64_t java_integral(double d, CastType t) {
  if (std::isnan(d)) return 0;
  if (t == CastType::int64) {
    if (d >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
    if (d <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
    return static_cast<int64_t>(d);
  }
  const double clamped = std::fmax(std::fmin(d, 2147483647.0), -2147483648.0);
  return narrow(static_cast<int64_t>(clamped), t);
}

// A float32 as Java writes it: the shortest float digits, read back as a double.
double as_float32(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<float>(d));
  return std::strtod(std::string(buf, end).c_str(), nullptr);
}

bool is_integral(CastType t) {
  return t == CastType::int8 || t == CastType::int16 || t == CastType::int32 ||
         t == CastType::int64;
}

// A string parsed as Java's Byte/Short/Integer/Long/Float/Double.parseX would.
rapidjson::Value parse_number(const std::string& s, CastType t) {
  const auto bad = [&] {
    return DataError("Value (" + s + ") was out of range for requested data type");
  };
  if (is_integral(t)) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + (!s.empty() && s[0] == '+'), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || narrow(v, t) != v) throw bad();
    return rapidjson::Value(v);
  }
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') throw bad();
  return rapidjson::Value(t == CastType::float32 ? as_float32(d) : d);
}

rapidjson::Value cast_number(const rapidjson::Value& v, CastType t) {
  if (is_integral(t))
    return rapidjson::Value(v.IsInt64() ? narrow(v.GetInt64(), t)
                                        : java_integral(v.GetDouble(), t));
  const double d = v.GetDouble();
  return rapidjson::Value(t == CastType::float32 ? as_float32(d) : d);
}

// Kafka's JsonConverter writes a float that overflowed as the string "Infinity" (or NaN).
rapidjson::Value finite_or_text(rapidjson::Value v, rapidjson::Document::AllocatorType& a) {
  if (!v.IsDouble() || std::isfinite(v.GetDouble())) return v;
  const double d = v.GetDouble();
  return str(std::isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity", a);
}

rapidjson::Value cast_value(const rapidjson::Value& v, CastType t,
                            rapidjson::Document::AllocatorType& a) {
  if (v.IsNull()) return {};
  if (v.IsObject() || v.IsArray())
    throw DataError(std::string("Cast transformation does not support casting from ") +
                    (v.IsObject() ? "MAP" : "ARRAY") +
                    "; supported types are [INT8, INT16, INT32, INT64, FLOAT32, FLOAT64, "
                    "BOOLEAN, STRING, BYTES]");
  if (t == CastType::string) {
    if (v.IsString()) return rapidjson::Value(v, a);
    if (v.IsBool()) return str(v.GetBool() ? "true" : "false", a);
    return str(v.IsInt64() ? std::to_string(v.GetInt64()) : java_double(v.GetDouble()), a);
  }
  if (t == CastType::boolean) {
    if (v.IsBool()) return rapidjson::Value(v.GetBool());
    if (v.IsString()) {  // Java's Boolean.parseBoolean
      std::string s(v.GetString(), v.GetStringLength());
      for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return rapidjson::Value(s == "true");
    }
    return rapidjson::Value(v.IsInt64() ? v.GetInt64() != 0 : v.GetDouble() != 0);
  }
  rapidjson::Value out;
  if (v.IsBool())
    out = cast_number(rapidjson::Value(int64_t{v.GetBool() ? 1 : 0}), t);
  else if (v.IsString())
    out = parse_number(std::string(v.GetString(), v.GetStringLength()), t);
  else
    out = cast_number(v, t);
  return finite_or_text(std::move(out), a);
}

struct Cast {
  static constexpr const char* kName = "cast";
  static constexpr const char* kDescription =
      "Kafka's Cast: casts fields, or the whole key or value, to another primitive type.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("spec")
        .doc("field:type pairs (comma-separated), or one type for the whole key or value.")
        .required();
  }
  explicit Cast(const Config& c) : target(target_option(c)) {
    for (const std::string& item : required_list(c, "spec")) {
      const size_t colon = item.find(':');
      if (colon == std::string::npos) {
        whole = cast_type(item);
        continue;
      }
      fields.emplace_back(item.substr(0, colon), cast_type(item.substr(colon + 1)));
    }
    if (whole && !fields.empty())
      throw ConfigError("spec", "spec: a whole-value type cannot be mixed with field:type pairs");
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;
    auto& a = d.allocator();
    rapidjson::Value* schema = d.schema();
    rapidjson::Value& v = d.payload();
    if (whole) {
      rapidjson::Value out = cast_value(v, *whole, a);
      rapidjson::Value out_schema = schema ? cast_schema(*schema, *whole, a) : rapidjson::Value();
      d.set(std::move(out), schema ? &out_schema : nullptr);
      return true;
    }
    if (schema) {
      if (!schema->HasMember("type") || (*schema)["type"] != "struct")
        throw DataError("Cannot list fields on non-struct type");
    } else {
      require_map(v, "cast types");
    }
    for (const auto& [name, type] : fields) {  // a field the value lacks becomes null, as in Kafka
      auto it = v.FindMember(rapidjson::StringRef(name.data(), name.size()));
      put(v, name, it == v.MemberEnd() ? rapidjson::Value() : cast_value(it->value, type, a), a);
    }
    if (!schema) {
      d.set(std::move(v), nullptr);
      return true;
    }
    rapidjson::Value out_schema = struct_like(*schema, a);
    for (auto& f : (*schema)["fields"].GetArray()) {
      const std::string name = f["field"].GetString();
      auto spec = std::find_if(fields.begin(), fields.end(),
                               [&](const auto& p) { return p.first == name; });
      if (spec == fields.end())
        add_field(out_schema, name, f, a);
      else
        add_field(out_schema, name, cast_schema(f, spec->second, a), a);
    }
    d.set(std::move(v), &out_schema);
    return true;
  }

  // The schema of a cast value: the target type, as optional as before.
  static rapidjson::Value cast_schema(const rapidjson::Value& old, CastType t,
                                      rapidjson::Document::AllocatorType& a) {
    // Connect's JSON names of the types: float32 is "float", float64 "double".
    static const char* kNames[] = {"int8",  "int16",  "int32",   "int64",
                                   "float", "double", "boolean", "string"};
    const bool optional = old.HasMember("optional") && old["optional"].IsTrue();
    return primitive_schema(kNames[static_cast<int>(t)], optional, a);
  }

  Target target;
  std::optional<CastType> whole;
  std::vector<std::pair<std::string, CastType>> fields;
};

struct SetSchemaMetadata {
  static constexpr const char* kName = "set_schema_metadata";
  static constexpr const char* kDescription =
      "Kafka's SetSchemaMetadata: sets the name and version of the schema.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("schema.name").doc("The schema's new name.");
    s.string("schema.version").doc("The schema's new version.");
  }
  explicit SetSchemaMetadata(const Config& c)
      : target(target_option(c)), name(option(c, "schema.name")) {
    const std::string v = option(c, "schema.version");
    if (!v.empty()) {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || p != v.data() + v.size())
        throw ConfigError("schema.version", "schema.version must be an integer");
      version = n;
    }
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (!d.schema_view()) {
      if (d.is_null()) return true;
      throw DataError("Schema required for [updating schema metadata]");
    }
    rapidjson::Value& s = *d.schema();
    // Kafka 4.1 rebuilds the value as a struct, so any other schema fails.
    if (!s.HasMember("type") || s["type"] != "struct")
      throw DataError("Cannot list fields on non-struct type");
    auto& a = d.allocator();
    if (!name.empty()) put(s, "name", str(name, a), a);
    if (version) put(s, "version", rapidjson::Value(*version), a);
    rapidjson::Value schema(s, a);
    d.set(std::move(d.payload()), &schema);
    return true;
  }

  Target target;
  std::string name;
  std::optional<int64_t> version;
};

// unix.precision: how many of its units a millisecond is, as a ratio.
struct Precision {
  int64_t per_ms_num, per_ms_den;  // units = ms * num / den
};

Precision precision_option(const Config& c) {
  const std::string p = option(c, "unix.precision", "milliseconds");
  if (p == "seconds") return {1, 1000};
  if (p == "milliseconds") return {1, 1};
  if (p == "microseconds") return {1000, 1};
  if (p == "nanoseconds") return {1000000, 1};
  throw ConfigError("unix.precision",
                    "unix.precision must be seconds, milliseconds, microseconds or nanoseconds");
}

constexpr const char* kTimestamp = "org.apache.kafka.connect.data.Timestamp";
constexpr const char* kDate = "org.apache.kafka.connect.data.Date";
constexpr const char* kTime = "org.apache.kafka.connect.data.Time";
constexpr int64_t kDayMs = 86400000;

struct TimestampConverter {
  static constexpr const char* kName = "timestamp_converter";
  static constexpr const char* kDescription =
      "Kafka's TimestampConverter: converts a timestamp between unix time and formatted text.";
  static constexpr bool kHasTarget = true;
  static void declare(ConfigSchema& s) {
    s.string("field").doc("The field holding the timestamp; empty: the whole key or value.");
    s.string("target.type").doc("string or unix (Date, Time, Timestamp need schemas).").required();
    s.string("format").doc("SimpleDateFormat pattern for string timestamps (UTC).");
    s.string("unix.precision").doc("seconds, milliseconds (default), microseconds, nanoseconds.");
    s.string("field.syntax.version").doc("V1 (plain names) or V2 (dotted paths).");
  }
  explicit TimestampConverter(const Config& c)
      : target(target_option(c)),
        path(parse_path(option(c, "field"), syntax_v2(c))),
        type(required_option(c, "target.type")),
        precision(precision_option(c)) {
    if (type != "string" && type != "unix" && type != "Date" && type != "Time" &&
        type != "Timestamp")
      throw ConfigError("target.type", "target.type must be string, unix, Date, Time or Timestamp");
    if (c.has("format") && !option(c, "format").empty()) format.emplace(option(c, "format"));
    if (type == "string" && !format)
      throw ConfigError("format",
                        "TimestampConverter requires format option to be specified when using "
                        "string timestamps");
  }

  int64_t to_ms(const rapidjson::Value& v) const {
    if (v.IsInt64()) return v.GetInt64() * precision.per_ms_den / precision.per_ms_num;
    if (v.IsString()) {
      const std::string_view text(v.GetString(), v.GetStringLength());
      std::optional<int64_t> ms = format ? format->parse(text) : std::nullopt;
      if (!ms)
        throw DataError("Could not parse timestamp: value (" + std::string(text) +
                        ") does not match pattern");
      return *ms;
    }
    throw DataError("TimestampConverter does not support class " + type_name(v) +
                    " objects as timestamps");
  }

  // The milliseconds of a value whose schema names a Connect logical type, else as to_ms.
  int64_t to_ms(const rapidjson::Value& v, const rapidjson::Value* schema) const {
    const auto it = schema ? schema->FindMember("name") : rapidjson::Value::ConstMemberIterator();
    if (schema && it != schema->MemberEnd() && it->value.IsString() && v.IsInt64()) {
      const std::string_view logical(it->value.GetString(), it->value.GetStringLength());
      if (logical == kTimestamp || logical == kTime) return v.GetInt64();
      if (logical == kDate) return v.GetInt64() * kDayMs;
    }
    return to_ms(v);
  }

  // `schema` is the value's schema, nullptr without schemas.
  rapidjson::Value convert(const rapidjson::Value& v, const rapidjson::Value* schema,
                           rapidjson::Document::AllocatorType& a) const {
    if (v.IsNull()) return {};
    const int64_t ms = to_ms(v, schema);
    if (type == "string") return str(format->format(ms), a);
    if (type == "unix") return rapidjson::Value(ms * precision.per_ms_num / precision.per_ms_den);
    // Kafka makes a java.util.Date, which its JsonConverter cannot write without a schema.
    if (!schema)
      throw DataError("Java class class java.util.Date does not have corresponding schema type.");
    if (type == "Date") return rapidjson::Value(floor_div(ms, kDayMs));
    if (type == "Time") return rapidjson::Value(ms - floor_div(ms, kDayMs) * kDayMs);
    return rapidjson::Value(ms);
  }
  static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
  }

  // The schema of a converted value.
  rapidjson::Value target_schema(const rapidjson::Value& old,
                                 rapidjson::Document::AllocatorType& a) const {
    const bool optional = old.HasMember("optional") && old["optional"].IsTrue();
    if (type == "string") return primitive_schema("string", optional, a);
    if (type == "unix") return primitive_schema("int64", optional, a);
    if (type == "Date") return primitive_schema("int32", optional, a, kDate);
    if (type == "Time") return primitive_schema("int32", optional, a, kTime);
    return primitive_schema("int64", optional, a, kTimestamp);
  }

  // With a schema: a top-level field (or the whole value), and its schema, are converted.
  bool apply_with_schema(Data& d) const {
    auto& a = d.allocator();
    rapidjson::Value& schema = *d.schema();
    rapidjson::Value& v = d.payload();
    if (path.size() == 1 && path[0].empty()) {
      rapidjson::Value out = convert(v, &schema, a);
      rapidjson::Value out_schema = target_schema(schema, a);
      d.set(std::move(out), &out_schema);
      return true;
    }
    require_struct(d, "converting timestamp formats");
    if (path.size() != 1) throw DataError("sluice converts only top-level fields with schemas");
    const std::string& name = path[0];
    if (!field_schema(schema, name)) return true;  // Kafka leaves the record as it is
    rapidjson::Value out_schema = struct_like(schema, a);
    for (auto& f : schema["fields"].GetArray()) {
      if (f["field"] != name.c_str()) {
        add_field(out_schema, f["field"].GetString(), f, a);
        continue;
      }
      add_field(out_schema, name, target_schema(f, a), a);
      auto it = v.IsObject() ? v.FindMember(f["field"]) : v.MemberEnd();
      if (v.IsObject())
        put(v, name, it == v.MemberEnd() ? rapidjson::Value() : convert(it->value, &f, a), a);
    }
    d.set(std::move(v), &out_schema);
    return true;
  }

  bool apply(Record& r) const {
    Data& d = side(r, target);
    if (d.is_null()) return true;
    if (d.schema_view()) return apply_with_schema(d);
    auto& a = d.allocator();
    rapidjson::Value& v = d.payload();
    if (path.size() == 1 && path[0].empty()) {
      rapidjson::Value out = convert(v, nullptr, a);
      d.set(std::move(out), nullptr);
      return true;
    }
    rapidjson::Value* parent = &require_map(v, "converting timestamp formats");
    for (size_t i = 0; i + 1 < path.size() && parent; ++i) {
      auto it = parent->FindMember(rapidjson::StringRef(path[i].data(), path[i].size()));
      parent = it != parent->MemberEnd() && it->value.IsObject() ? &it->value : nullptr;
    }
    if (parent) {  // a field the value lacks becomes null, as in Kafka
      const std::string& name = path.back();
      auto it = parent->FindMember(rapidjson::StringRef(name.data(), name.size()));
      put(*parent, name,
          it == parent->MemberEnd() ? rapidjson::Value() : convert(it->value, nullptr, a), a);
    }
    d.set(std::move(v), nullptr);
    return true;
  }

  Target target;
  FieldPath path;
  std::string type;
  Precision precision;
  std::optional<DateFormat> format;
};

}  // namespace

detail::PluginEntry timestamp_converter() { return plugin_table<TimestampConverter>(); }
detail::PluginEntry cast() { return plugin_table<Cast>(); }
detail::PluginEntry set_schema_metadata() { return plugin_table<SetSchemaMetadata>(); }

// The steps the `chain` transform can run (chain.cpp).
std::vector<StepType> cast_steps() {
  return {step_type<TimestampConverter>(), step_type<Cast>(), step_type<SetSchemaMetadata>()};
}

}  // namespace sluice::smt
