// Checking a stage's plugin config against the plugin's schema, and pointing errors at YAML.
#include "config/stage_config.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "config/did_you_mean.hpp"
#include "config/substitution.hpp"
#include "config/yaml_reader.hpp"

namespace sluice::config {
namespace {

// One field of a plugin's config schema (abi.h: config_schema_json).
struct SchemaField {
  std::string name;
  std::string type;  // string, int, double, bool, list, object
  bool required = false;
  bool secret = false;
  bool path = false;  // a filesystem path: relative ones are taken from the YAML file's folder
  const rapidjson::Value* default_value = nullptr;  // points into the parsed schema document
  std::vector<std::string> enum_values;
  std::optional<double> min;
  std::optional<double> max;
};

std::vector<SchemaField> read_schema(const rapidjson::Document& schema, const StageSpec& stage) {
  const auto invalid = [&](const std::string& why) {
    return ConfigError(
        stage.type_location,
        fmt::format("plugin '{}' has an invalid config schema: {}", stage.type, why));
  };
  if (!schema.IsObject()) throw invalid("not a JSON object");
  const auto fields = schema.FindMember("fields");
  if (fields == schema.MemberEnd() || !fields->value.IsArray())
    throw invalid("no \"fields\" array");
  std::vector<SchemaField> out;
  for (const auto& f : fields->value.GetArray()) {
    if (!f.IsObject()) throw invalid("a field is not an object");
    SchemaField field;
    const auto string_member = [&](const char* key) -> std::string {
      const auto it = f.FindMember(key);
      if (it == f.MemberEnd() || !it->value.IsString())
        throw invalid(fmt::format("a field has no string \"{}\"", key));
      return {it->value.GetString(), it->value.GetStringLength()};
    };
    const auto bool_member = [&](const char* key) {
      const auto it = f.FindMember(key);
      return it != f.MemberEnd() && it->value.IsBool() && it->value.GetBool();
    };
    const auto number_member = [&](const char* key) -> std::optional<double> {
      const auto it = f.FindMember(key);
      if (it == f.MemberEnd() || it->value.IsNull()) return std::nullopt;
      if (!it->value.IsNumber()) throw invalid(fmt::format("\"{}\" is not a number", key));
      return it->value.GetDouble();
    };
    field.name = string_member("name");
    field.type = string_member("type");
    static const std::vector<std::string> kTypes = {"string", "int",  "double",
                                                    "bool",   "list", "object"};
    if (std::find(kTypes.begin(), kTypes.end(), field.type) == kTypes.end())
      throw invalid(fmt::format("field '{}' has unknown type '{}'", field.name, field.type));
    field.required = bool_member("required");
    field.secret = bool_member("secret");
    field.path = bool_member("path");
    if (const auto it = f.FindMember("default"); it != f.MemberEnd() && !it->value.IsNull())
      field.default_value = &it->value;
    if (const auto it = f.FindMember("enum"); it != f.MemberEnd() && it->value.IsArray())
      for (const auto& v : it->value.GetArray())
        if (v.IsString()) field.enum_values.emplace_back(v.GetString(), v.GetStringLength());
    field.min = number_member("min");
    field.max = number_member("max");
    out.push_back(std::move(field));
  }
  return out;
}

std::string shown(std::string_view text) {
  constexpr size_t kShown = 60;
  if (text.size() <= kShown) return fmt::format("'{}'", text);
  return fmt::format("'{}...'", text.substr(0, kShown));
}

std::string format_number(double v) { return fmt::format("{}", v); }

// Converts one field of one stage; collects secret values on the way.
class FieldConverter {
 public:
  FieldConverter(const StageSpec& stage, const YamlReader& reader,
                 rapidjson::Document::AllocatorType& allocator, std::vector<std::string>& secrets)
      : stage_(stage), reader_(reader), allocator_(allocator), secrets_(secrets) {}

  rapidjson::Value convert(const SchemaField& field, const Entry& entry) {
    field_ = &field;
    const YAML::Node& value = entry.value;
    const Location where = reader_.at(entry);
    const std::string& type = field.type;
    if (type == "list" || type == "object") {
      const bool ok = type == "list" ? value.IsSequence() : value.IsMap();
      if (!ok)
        fail(where, fmt::format("must be {}", type == "list" ? "a list" : "a mapping"),
             fmt::format("got {}", kind_name(value)));
      return to_json(value, where, 1);
    }
    if (!value.IsScalar())
      fail(where, fmt::format("must be {}", article(type)),
           fmt::format("got {}", kind_name(value)));
    const std::string text = substitute(value.Scalar(), where, reader_.base_dir());
    if (field.secret && !text.empty()) secrets_.push_back(text);
    check_enum(text, where);
    if (type == "string" && field.path && !text.empty() && text.front() != '/') {
      const std::string resolved =
          (std::filesystem::path(reader_.base_dir()) / text).lexically_normal().string();
      return rapidjson::Value(resolved.c_str(), resolved.size(), allocator_);
    }
    if (type == "string") return rapidjson::Value(text.c_str(), text.size(), allocator_);
    if (type == "bool") {
      const auto parsed = parse_bool(text);
      if (!parsed) fail(where, "must be true or false", "got " + shown(text));
      return rapidjson::Value(*parsed);
    }
    if (type == "int") {
      const auto parsed = parse_int(text);
      if (!parsed) fail(where, "must be an int", "got " + shown(text));
      check_range(static_cast<double>(*parsed), text, where);
      return rapidjson::Value(static_cast<int64_t>(*parsed));
    }
    // double: any YAML integer or float.
    std::optional<double> parsed = parse_double(text);
    if (!parsed)
      if (const auto integer = parse_int(text)) parsed = static_cast<double>(*integer);
    if (!parsed) fail(where, "must be a number", "got " + shown(text));
    check_range(*parsed, text, where);
    return rapidjson::Value(*parsed);
  }

 private:
  static std::string article(const std::string& type) {
    if (type == "int") return "an int";
    if (type == "double") return "a number";
    if (type == "bool") return "true or false";
    return "a " + type;
  }

  // A secret's value, even a wrong one, never reaches a message: only public details do.
  [[noreturn]] void fail(const Location& where, const std::string& problem,
                         const std::string& got) const {
    if (field_->secret)
      throw ConfigError(where, fmt::format("{}: value of secret field '{}' {}",
                                           stage_.instance_name, field_->name, problem));
    throw ConfigError(where, fmt::format("{}: field '{}' {}, {}", stage_.instance_name,
                                         field_->name, problem, got));
  }

  void check_enum(const std::string& text, const Location& where) const {
    const auto& values = field_->enum_values;
    if (values.empty() || std::find(values.begin(), values.end(), text) != values.end()) return;
    const std::string problem = fmt::format("must be one of {}", join_names(values));
    fail(where, problem, "got " + shown(text) + did_you_mean(text, values));
  }

  void check_range(double v, const std::string& text, const Location& where) const {
    if (field_->min && v < *field_->min)
      fail(where, "must be at least " + format_number(*field_->min), "got " + text);
    if (field_->max && v > *field_->max)
      fail(where, "must be at most " + format_number(*field_->max), "got " + text);
  }

  // Lists and objects have no schema inside, so scalars are typed as YAML's core schema does;
  // quoted and substituted scalars stay strings.
  rapidjson::Value to_json(const YAML::Node& node, const Location& where, int depth) {
    if (depth > kMaxDepth)
      throw ConfigError(where, fmt::format("{}: field '{}' is nested deeper than {} levels",
                                           stage_.instance_name, field_->name, kMaxDepth));
    switch (node.Type()) {
      case YAML::NodeType::Sequence: {
        rapidjson::Value array(rapidjson::kArrayType);
        for (const auto& child : node)
          array.PushBack(to_json(child, located(child, where), depth + 1), allocator_);
        return array;
      }
      case YAML::NodeType::Map: {
        rapidjson::Value object(rapidjson::kObjectType);
        for (const auto& kv : node) {
          const std::string& key = kv.first.Scalar();
          rapidjson::Value name(key.c_str(), key.size(), allocator_);
          object.AddMember(name,
                           to_json(kv.second, located(kv.second, reader_.at(kv.first)), depth + 1),
                           allocator_);
        }
        return object;
      }
      case YAML::NodeType::Scalar: {
        const std::string& raw = node.Scalar();
        const std::string text = substitute(raw, where, reader_.base_dir());
        const bool plain = node.Tag() == "?" && !has_substitution(raw);
        if (plain) {
          if (const auto b = parse_bool(text)) return rapidjson::Value(*b);
          if (const auto i = parse_int(text)) return rapidjson::Value(static_cast<int64_t>(*i));
          if (const auto d = parse_double(text)) return rapidjson::Value(*d);
        }
        if (field_->secret && !text.empty()) secrets_.push_back(text);
        return rapidjson::Value(text.c_str(), text.size(), allocator_);
      }
      default:
        return rapidjson::Value(rapidjson::kNullType);
    }
  }

  Location located(const YAML::Node& node, const Location& fallback) const {
    Location at = reader_.at(node);
    return at.line > 0 ? at : fallback;
  }

  const StageSpec& stage_;
  const YamlReader& reader_;
  rapidjson::Document::AllocatorType& allocator_;
  std::vector<std::string>& secrets_;
  const SchemaField* field_ = nullptr;
};

std::string_view plugin_kind(const std::string& role) {
  return role == "dead_letter" ? std::string_view("sink") : std::string_view(role);
}

// Follows a dotted path ("tls.ca", "brokers.1") as far as it goes. Recursion rather than a loop:
// assigning a YAML::Node would write into the tree instead of moving along it.
Location locate_field(const YAML::Node& node, std::string_view path, const YamlReader& reader,
                      const Location& found) {
  if (path.empty()) return found;
  const size_t dot = path.find('.');
  const std::string_view part = path.substr(0, dot);
  const std::string_view rest =
      dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  if (node.IsMap()) {
    const auto entry = find_entry(node, part);
    return entry ? locate_field(entry->value, rest, reader, reader.at(*entry)) : found;
  }
  if (node.IsSequence()) {
    const auto index = parse_int(part);
    if (!index || *index < 0 || static_cast<size_t>(*index) >= node.size()) return found;
    const YAML::Node child = node[static_cast<size_t>(*index)];
    const Location at = reader.at(child);
    return locate_field(child, rest, reader, at.line > 0 ? at : found);
  }
  return found;
}

}  // namespace

CheckedConfig check_stage(const StageSpec& stage, std::string_view schema_json) {
  rapidjson::Document schema;
  schema.Parse(schema_json.data(), schema_json.size());
  if (schema.HasParseError())
    throw ConfigError(
        stage.type_location,
        fmt::format("plugin '{}' has an invalid config schema: {} at offset {}", stage.type,
                    rapidjson::GetParseError_En(schema.GetParseError()), schema.GetErrorOffset()));
  const std::vector<SchemaField> fields = read_schema(schema, stage);
  const YamlReader reader(stage.location.file);

  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.name);
  if (stage.node.IsMap()) {
    for (const auto& kv : stage.node) {
      const std::string& key = kv.first.Scalar();
      if (key == "type" || key == "name" ||
          std::find(names.begin(), names.end(), key) != names.end())
        continue;
      const std::string suggestion = did_you_mean(key, names);
      throw ConfigError(
          reader.at(kv.first),
          fmt::format(
              "{}: unknown field '{}' for {} plugin '{}'{}", stage.instance_name, key,
              plugin_kind(stage.role), stage.type,
              suggestion.empty() ? fmt::format(" (fields: {})", join_names(names)) : suggestion));
    }
  }

  CheckedConfig out;
  rapidjson::Document config(rapidjson::kObjectType);
  auto& allocator = config.GetAllocator();
  FieldConverter converter(stage, reader, allocator, out.secret_values);
  for (const auto& field : fields) {
    const auto entry = find_entry(stage.node, field.name);
    rapidjson::Value name(field.name.c_str(), field.name.size(), allocator);
    // An empty value (`key:`) counts as not given, so the default applies.
    if (entry && !entry->value.IsNull()) {
      config.AddMember(name, converter.convert(field, *entry), allocator);
    } else if (field.default_value != nullptr) {
      config.AddMember(name, rapidjson::Value(*field.default_value, allocator), allocator);
    } else if (field.required) {
      throw ConfigError(entry ? reader.at(*entry) : stage.location,
                        fmt::format("{}: {} plugin '{}' needs field '{}'", stage.instance_name,
                                    plugin_kind(stage.role), stage.type, field.name));
    }
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  config.Accept(writer);
  out.json.assign(buffer.GetString(), buffer.GetSize());
  return out;
}

void throw_unknown_plugin(const StageSpec& stage, const std::vector<std::string>& known_names) {
  std::vector<std::string> known = known_names;
  std::sort(known.begin(), known.end());
  known.erase(std::unique(known.begin(), known.end()), known.end());
  const auto suggestion = closest_name(stage.type, known);
  throw ConfigError(
      stage.type_location,
      fmt::format("unknown {} plugin '{}'; {}known: {}", plugin_kind(stage.role), stage.type,
                  suggestion ? fmt::format("did you mean '{}'? ", *suggestion) : std::string(),
                  join_names(known)));
}

Location field_location(const StageSpec& stage, std::string_view field) {
  const YamlReader reader(stage.location.file);
  return locate_field(stage.node, field, reader, stage.location);
}

std::string redact(std::string text, const std::vector<std::string>& secret_values) {
  std::vector<std::string> secrets = secret_values;
  // Longer first, so a secret that contains a shorter one is hidden whole.
  std::sort(secrets.begin(), secrets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  constexpr std::string_view kMask = "***";
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (size_t at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + kMask.size()))
      text.replace(at, secret.size(), kMask);
  }
  return text;
}

}  // namespace sluice::config
