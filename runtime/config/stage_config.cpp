// Checking a stage's plugin config against the plugin's schema, and pointing errors at YAML.
#include "config/stage_config.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <optional>
#include <sluice/sdk.hpp>

#include "config/did_you_mean.hpp"
#include "config/substitution.hpp"
#include "config/yaml_reader.hpp"
#include "core/cut_mark.hpp"
#include "core/utf8.hpp"

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
    raw_ = value.Scalar();
    const std::string text = substitute(raw_, where, reader_.base_dir());
    if (field.secret) add_secret(text);
    check_enum(text, where);
    if (type == "string" && field.path && !text.empty() && text.front() != '/') {
      const std::string resolved =
          (std::filesystem::path(reader_.base_dir()) / text).lexically_normal().string();
      return rapidjson::Value(resolved.c_str(), resolved.size(), allocator_);
    }
    if (type == "string") return rapidjson::Value(text.c_str(), text.size(), allocator_);
    if (type == "bool") {
      const auto parsed = parse_bool(text);
      if (!parsed) fail(where, "must be true or false", got(text));
      return rapidjson::Value(*parsed);
    }
    if (type == "int") {
      const auto parsed = parse_int(text);
      if (!parsed) fail(where, "must be an int", got(text));
      check_range(static_cast<double>(*parsed), text, where);
      return rapidjson::Value(static_cast<int64_t>(*parsed));
    }
    // double: any YAML integer or float.
    std::optional<double> parsed = parse_double(text);
    if (!parsed)
      if (const auto integer = parse_int(text)) parsed = static_cast<double>(*integer);
    if (!parsed) fail(where, "must be a number", got(text));
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

  // "got 'VALUE'", or what the reference as written says when the value came from one.
  // Numbers over a bound are shown as written, unquoted.
  std::string got(std::string_view text, bool quoted = true) const {
    if (!quoted && !has_substitution(raw_)) return "got " + std::string(text);
    return "got " + shown_value(raw_, text);
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
    fail(where, problem, got(text) + (has_substitution(raw_) ? "" : did_you_mean(text, values)));
  }

  void check_range(double v, const std::string& text, const Location& where) const {
    if (field_->min && v < *field_->min)
      fail(where, "must be at least " + format_number(*field_->min), got(text, false));
    if (field_->max && v > *field_->max)
      fail(where, "must be at most " + format_number(*field_->max), got(text, false));
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
        const std::string text = substitute_masked(raw, where);
        const bool plain = node.Tag() == "?" && !has_substitution(raw);
        if (plain) {
          if (const auto b = parse_bool(text)) return rapidjson::Value(*b);
          if (const auto i = parse_int(text)) return rapidjson::Value(static_cast<int64_t>(*i));
          if (const auto d = parse_double(text)) return rapidjson::Value(*d);
        }
        if (field_->secret) add_secret(text);
        return rapidjson::Value(text.c_str(), text.size(), allocator_);
      }
      default:
        return rapidjson::Value(rapidjson::kNullType);
    }
  }

  // What ${env:...} and ${file:...} put into a list or a mapping is masked like a secret field's
  // value: the keys there are free (a kafka `properties:` value such as sasl.password, which
  // librdkafka quotes when it refuses it), so the field cannot say which is secret, and a
  // reference is how a pipeline file keeps a secret out of itself.
  std::string substitute_masked(const std::string& raw, const Location& where) {
    std::vector<std::string> inserted;
    std::string text = substitute(raw, where, reader_.base_dir(), &inserted);
    for (const auto& value : inserted) add_secret(value);
    return text;
  }

  void add_secret(const std::string& value) {
    if (value.empty()) return;
    for (auto& part : secret_values_of(value))
      if (std::find(secrets_.begin(), secrets_.end(), part) == secrets_.end())
        secrets_.push_back(std::move(part));
  }

  Location located(const YAML::Node& node, const Location& fallback) const {
    Location at = reader_.at(node);
    return at.line > 0 ? at : fallback;
  }

  const StageSpec& stage_;
  const YamlReader& reader_;
  rapidjson::Document::AllocatorType& allocator_;
  std::vector<std::string>& secrets_;
  std::string raw_;  // the scalar at hand as written, its references not substituted
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

// Secrets: finding passwords in URLs and conninfo strings, and masking them in text.

// [begin, end) of a part of a text.
struct TextRange {
  size_t begin;
  size_t end;
};

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Where a URL's host part ends (RFC 3986), or a URL embedded in a message does.
bool ends_authority(char c) {
  return c == '/' || c == '?' || c == '#' || is_space(c) || c == '"' || c == '\'' || c == '<' ||
         c == '>';
}

// The passwords of the URLs in `text`: the part between "user:" and the last "@" of the host part
// following each "://".
std::vector<TextRange> url_passwords(std::string_view text) {
  std::vector<TextRange> out;
  for (size_t sep = text.find("://"); sep != std::string_view::npos;
       sep = text.find("://", sep + 3)) {
    const size_t start = sep + 3;
    size_t end = start;
    while (end < text.size() && !ends_authority(text[end])) ++end;
    const std::string_view authority = text.substr(start, end - start);
    const size_t at = authority.rfind('@');
    const size_t colon = authority.find(':');
    if (at == std::string_view::npos || colon == std::string_view::npos || colon > at) continue;
    if (colon + 1 < at) out.push_back({start + colon + 1, start + at});
  }
  return out;
}

// The values of every `password=VALUE` in `text` (libpq's conninfo keyword, also a URL query
// parameter): `password = 'quoted \' value'` gives what is inside the quotes, an unquoted value
// runs to the next space or '&'.
std::vector<TextRange> keyword_passwords(std::string_view text) {
  constexpr std::string_view kKeyword = "password";
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::vector<TextRange> out;
  for (size_t at = lower.find(kKeyword); at != std::string::npos;
       at = lower.find(kKeyword, at + 1)) {
    if (at > 0 && is_word_char(text[at - 1])) continue;
    size_t i = at + kKeyword.size();
    while (i < text.size() && is_space(text[i])) ++i;
    if (i >= text.size() || text[i] != '=') continue;
    ++i;
    while (i < text.size() && is_space(text[i])) ++i;
    const bool quoted = i < text.size() && text[i] == '\'';
    const size_t begin = quoted ? i + 1 : i;
    size_t end = begin;
    while (end < text.size()) {
      const char c = text[end];
      if (c == '\\' && end + 1 < text.size()) {
        end += 2;
        continue;
      }
      if (quoted ? c == '\'' : (is_space(c) || c == '&' || c == '#')) break;
      ++end;
    }
    if (end > begin) out.push_back({begin, end});
  }
  return out;
}

// A conninfo value as libpq reads it: a backslash escapes the next character.
std::string unescape_conninfo(std::string_view written) {
  std::string out;
  for (size_t i = 0; i < written.size(); ++i) {
    if (written[i] == '\\' && i + 1 < written.size()) ++i;
    out += written[i];
  }
  return out;
}

std::string percent_decode(std::string_view text) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Every byte but RFC 3986's unreserved characters as %XX, as URL builders write a password.
std::string percent_encode(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

// `text` as a JSON string's inside, as a plugin that prints its config as JSON writes it: `"`, `\`
// and control characters escaped; with `ascii`, every other non-ASCII character as \uXXXX too
// (surrogate pairs past U+FFFF), in the hex digits' case `upper` or not (Python and RapidJSON
// differ). Bytes that are not UTF-8 stay as they are.
std::string json_escaped(std::string_view text, bool ascii, bool upper) {
  const char* const digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  const auto unit = [&](uint32_t u) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += digits[(u >> shift) & 0xF];
  };
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t length = core::utf8_sequence_length(text, i);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20) {
      unit(c);
    } else if (ascii && c >= 0x80 && length > 1) {
      uint32_t code = c & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07);
      for (size_t k = 1; k < length; ++k)
        code = (code << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      if (code >= 0x10000) {
        unit(0xD800 + ((code - 0x10000) >> 10));
        unit(0xDC00 + ((code - 0x10000) & 0x3FF));
      } else {
        unit(code);
      }
      i += length;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

void mark(const TextRange& range, std::vector<bool>& hidden) {
  std::fill(hidden.begin() + static_cast<std::ptrdiff_t>(range.begin),
            hidden.begin() + static_cast<std::ptrdiff_t>(range.end), true);
}

// Marks what every occurrence of `secret` in `text` covers. Shorter than kWholeWordBelow, only
// an occurrence that is a whole word counts: such a secret is found inside too many words.
void mark_occurrences(std::string_view text, std::string_view secret, std::vector<bool>& hidden) {
  constexpr size_t kWholeWordBelow = 4;
  if (secret.empty()) return;
  const bool whole_word_only = secret.size() < kWholeWordBelow;
  for (size_t at = text.find(secret); at != std::string_view::npos;
       at = text.find(secret, at + 1)) {
    const size_t end = at + secret.size();
    const bool inside_word =
        (at > 0 && is_word_char(text[at - 1])) || (end < text.size() && is_word_char(text[end]));
    if (whole_word_only && inside_word) continue;
    mark({at, end}, hidden);
  }
}

// Marks, before each kCutMark, the longest end of the text that is the start of a secret: the
// cut kept only that much of it ("...hunt" + kCutMark for the secret "hunter2").
void mark_cut_starts(std::string_view text, std::string_view secret, std::vector<bool>& hidden) {
  for (size_t cut = text.find(core::kCutMark); cut != std::string_view::npos;
       cut = text.find(core::kCutMark, cut + 1)) {
    for (size_t n = std::min(secret.size() - 1, cut); n > 0; --n)
      if (text.substr(cut - n, n) == secret.substr(0, n)) {
        mark({cut - n, cut}, hidden);
        break;
      }
  }
}

}  // namespace

CheckedConfig check_stage(const StageSpec& stage, std::string_view schema_json) {
  // The schema is the plugin's word, and a plugin may lie: RapidJSON parses recursively, so a
  // schema nested 200,000 deep would run the host out of stack.
  rapidjson::Document schema;
  const sluice::JsonParse parsed =
      sluice::parse_json_within(schema, schema_json, sluice::kMaxSchemaDepth);
  if (parsed.too_deep)
    throw ConfigError(stage.type_location,
                      fmt::format("plugin '{}' has an invalid config schema: nested deeper than "
                                  "{} levels",
                                  stage.type, sluice::kMaxSchemaDepth));
  if (!parsed.ok())
    throw ConfigError(
        stage.type_location,
        fmt::format("plugin '{}' has an invalid config schema: {} at offset {}", stage.type,
                    rapidjson::GetParseError_En(parsed.error.Code()), parsed.error.Offset()));
  const std::vector<SchemaField> fields = read_schema(schema, stage);
  const YamlReader reader(stage.location.file);

  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.name);
  const std::vector<std::string>& host_keys = host_stage_keys();
  if (stage.node.IsMap()) {
    for (const auto& kv : stage.node) {
      const std::string& key = kv.first.Scalar();
      if (std::find(host_keys.begin(), host_keys.end(), key) != host_keys.end() ||
          std::find(names.begin(), names.end(), key) != names.end())
        continue;
      std::vector<std::string> known = names;
      known.insert(known.end(), host_keys.begin() + 2, host_keys.end());  // after type, name
      const std::string suggestion = did_you_mean(key, known);
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

void throw_unknown_plugin(const StageSpec& stage, const std::vector<std::string>& known_names,
                          const std::optional<std::string>& unusable, std::string_view note) {
  if (unusable) throw ConfigError(stage.type_location, *unusable);
  std::vector<std::string> known = known_names;
  std::sort(known.begin(), known.end());
  known.erase(std::unique(known.begin(), known.end()), known.end());
  const auto suggestion = closest_name(stage.type, known);
  throw ConfigError(
      stage.type_location,
      fmt::format("unknown {} plugin '{}'; {}known: {}{}", plugin_kind(stage.role), stage.type,
                  suggestion ? fmt::format("did you mean '{}'? ", *suggestion) : std::string(),
                  join_names(known), note));
}

Location field_location(const StageSpec& stage, std::string_view field) {
  const YamlReader reader(stage.location.file);
  return locate_field(stage.node, field, reader, stage.location);
}

std::vector<std::string> secret_values_of(std::string_view value) {
  std::vector<std::string> out{std::string(value)};
  const auto add = [&out](std::string part) {
    if (!part.empty() && std::find(out.begin(), out.end(), part) == out.end())
      out.push_back(std::move(part));
  };
  std::vector<TextRange> passwords = url_passwords(value);
  const std::vector<TextRange> keyword = keyword_passwords(value);
  passwords.insert(passwords.end(), keyword.begin(), keyword.end());
  for (const auto& range : passwords) {
    const std::string_view written = value.substr(range.begin, range.end - range.begin);
    const std::string unquoted = unescape_conninfo(written);
    const std::string decoded = percent_decode(unquoted);
    add(std::string(written));
    add(unquoted);
    add(decoded);
    add(percent_encode(decoded));
  }
  // As JSON writes them: a plugin that reports its config (or a server that echoes a password)
  // as JSON escapes a quote, a backslash, a control character and perhaps every non-ASCII one.
  const size_t plain = out.size();
  for (size_t i = 0; i < plain; ++i) {
    add(json_escaped(out[i], false, false));
    add(json_escaped(out[i], true, false));
    add(json_escaped(out[i], true, true));
  }
  return out;
}

std::string redact(std::string_view text, const std::vector<std::string>& secret_values) {
  std::vector<bool> hidden(text.size(), false);
  const bool cut = text.find(core::kCutMark) != std::string_view::npos;
  for (const auto& secret : secret_values) {
    mark_occurrences(text, secret, hidden);
    if (cut && !secret.empty()) mark_cut_starts(text, secret, hidden);
  }
  for (const auto& range : url_passwords(text)) mark(range, hidden);
  for (const auto& range : keyword_passwords(text)) mark(range, hidden);
  constexpr std::string_view kMask = "***";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (!hidden[i]) {
      out += text[i];
    } else if (i == 0 || !hidden[i - 1]) {
      out += kMask;
    }
  }
  return out;
}

}  // namespace sluice::config
