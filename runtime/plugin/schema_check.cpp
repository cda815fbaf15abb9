// The schema checks behind schema_problems(): one function per attribute of a field.
#include "plugin/schema_check.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <optional>
#include <set>
#include <sluice/sdk.hpp>

namespace sluice::plugin {
namespace {

using Value = rapidjson::Value;

// Whether `v` is a value of schema type `type` (an int default must be an integer).
bool has_type(const Value& v, std::string_view type) {
  if (type == "string") return v.IsString();
  if (type == "int") return v.IsInt64() || v.IsUint64();
  if (type == "double") return v.IsNumber();
  if (type == "bool") return v.IsBool();
  if (type == "list") return v.IsArray();
  return v.IsObject();
}

std::optional<double> number_of(const Value& f, const char* key, std::vector<std::string>& out,
                                const std::string& field) {
  const auto it = f.FindMember(key);
  if (it == f.MemberEnd() || it->value.IsNull()) return std::nullopt;
  if (it->value.IsNumber()) return it->value.GetDouble();
  out.push_back(fmt::format("field '{}': {} {} is not a number", field, key, json_text(it->value)));
  return std::nullopt;
}

void check_flags(const Value& f, const std::string& name, std::vector<std::string>& out) {
  for (const char* key : {"required", "secret", "path"})
    if (const auto it = f.FindMember(key); it != f.MemberEnd() && !it->value.IsBool())
      out.push_back(fmt::format("field '{}': {} must be true or false, not {}", name, key,
                                json_text(it->value)));
  for (const char* key : {"doc", "path_kind"})
    if (const auto it = f.FindMember(key); it != f.MemberEnd() && !it->value.IsString())
      out.push_back(fmt::format("field '{}': {} must be a string", name, key));
  if (const auto it = f.FindMember("path_kind"); it != f.MemberEnd() && it->value.IsString()) {
    const std::string_view kind = it->value.GetString();
    if (kind != "input" && kind != "output" && kind != "any")
      out.push_back(
          fmt::format("field '{}': path_kind '{}' is not input, output or any", name, kind));
  }
}

// The enum: a list of strings, only on a string field, holding the default.
void check_enum(const Value& f, const std::string& name, std::string_view type,
                std::vector<std::string>& out) {
  const auto it = f.FindMember("enum");
  if (it == f.MemberEnd()) return;
  const Value& values = it->value;
  const bool strings = values.IsArray() && std::all_of(values.Begin(), values.End(),
                                                       [](const Value& v) { return v.IsString(); });
  if (!strings) {
    out.push_back(fmt::format("field '{}': enum must be a list of strings", name));
    return;
  }
  if (type != "string")
    out.push_back(
        fmt::format("field '{}': an enum on a {} field (only strings have one)", name, type));
  const auto def = f.FindMember("default");
  if (def == f.MemberEnd() || !def->value.IsString() || values.Empty()) return;
  if (std::find(values.Begin(), values.End(), def->value) == values.End())
    out.push_back(fmt::format("field '{}': default {} is not one of the enum {}", name,
                              json_text(def->value), json_text(values)));
}

// min and max: numbers, min <= max, on a number field, around the default.
void check_range(const Value& f, const std::string& name, std::string_view type,
                 std::vector<std::string>& out) {
  const auto min = number_of(f, "min", out, name);
  const auto max = number_of(f, "max", out, name);
  if (!min && !max) return;
  if (type != "int" && type != "double")
    out.push_back(
        fmt::format("field '{}': min/max on a {} field (only numbers have them)", name, type));
  if (min && max && *min > *max)
    out.push_back(fmt::format("field '{}': min {} is above max {}", name, *min, *max));
  const auto def = f.FindMember("default");
  if (def == f.MemberEnd() || !def->value.IsNumber()) return;
  const double v = def->value.GetDouble();
  if ((min && v < *min) || (max && v > *max))
    out.push_back(fmt::format("field '{}': default {} is outside min..max ({}..{})", name,
                              json_text(def->value), min ? fmt::format("{}", *min) : "",
                              max ? fmt::format("{}", *max) : ""));
}

void check_field(const Value& f, size_t index, std::set<std::string>& names,
                 std::vector<std::string>& out) {
  const auto name_it = f.FindMember("name");
  if (!f.IsObject() || name_it == f.MemberEnd() || !name_it->value.IsString()) {
    out.push_back(fmt::format("field #{}: not an object with a string \"name\"", index + 1));
    return;
  }
  const std::string name = name_it->value.GetString();
  if (!names.insert(name).second) out.push_back(fmt::format("field '{}': declared twice", name));
  const auto type_it = f.FindMember("type");
  static const std::set<std::string_view> kTypes = {"string", "int",  "double",
                                                    "bool",   "list", "object"};
  if (type_it == f.MemberEnd() || !type_it->value.IsString() ||
      !kTypes.contains(type_it->value.GetString())) {
    out.push_back(
        fmt::format("field '{}': type {} is not one of string, int, double, bool, list, "
                    "object",
                    name, type_it == f.MemberEnd() ? "(none)" : json_text(type_it->value)));
    return;
  }
  const std::string_view type = type_it->value.GetString();
  if (const auto def = f.FindMember("default");
      def != f.MemberEnd() && !def->value.IsNull() && !has_type(def->value, type))
    out.push_back(
        fmt::format("field '{}': default {} is not a {}", name, json_text(def->value), type));
  check_flags(f, name, out);
  check_enum(f, name, type, out);
  check_range(f, name, type, out);
}

}  // namespace

std::string json_text(const rapidjson::Value& value) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  value.Accept(w);
  return sb.GetString();
}

std::vector<std::string> schema_problems(std::string_view schema_json) {
  rapidjson::Document d;
  const sluice::JsonParse parsed =
      sluice::parse_json_within(d, schema_json, sluice::kMaxSchemaDepth);
  if (parsed.too_deep)
    return {fmt::format("the schema is nested deeper than {} levels", sluice::kMaxSchemaDepth)};
  if (!parsed.ok())
    return {fmt::format("the schema is not valid JSON: {} at offset {}",
                        rapidjson::GetParseError_En(parsed.error.Code()), parsed.error.Offset())};
  if (!d.IsObject() || !d.HasMember("fields") || !d["fields"].IsArray())
    return {"the schema is not an object with a \"fields\" list"};
  std::vector<std::string> out;
  std::set<std::string> names;
  const auto& fields = d["fields"];
  for (rapidjson::SizeType i = 0; i < fields.Size(); ++i) check_field(fields[i], i, names, out);
  return out;
}

}  // namespace sluice::plugin
