// The helpers sluice's Debezium transforms share (see debezium_smt.hpp).
#include "debezium_smt.hpp"

namespace sluice::dbz {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool is_envelope(Data& value) {
  const rapidjson::Value* s = value.schema_view();
  if (!s) return false;
  auto name = s->FindMember("name");
  return name != s->MemberEnd() && name->value.IsString() &&
         ends_with({name->value.GetString(), name->value.GetStringLength()}, ".Envelope") &&
         value.payload().IsObject();
}

rapidjson::Value* member(rapidjson::Value& payload, std::string_view name) {
  if (!payload.IsObject()) return nullptr;
  auto it = payload.FindMember(rapidjson::StringRef(name.data(), name.size()));
  return it == payload.MemberEnd() || it->value.IsNull() ? nullptr : &it->value;
}

rapidjson::Value value_schema(const rapidjson::Value& field, Alloc& a) {
  rapidjson::Value s = smt::copy_of(field, a);
  s.RemoveMember("field");
  return s;
}

rapidjson::Value optional_basics(const rapidjson::Value& schema, Alloc& a) {
  const std::string type = schema["type"].GetString();
  if (type == "struct" || type == "array" || type == "map")
    throw DataError("a " + type + " field cannot be copied into a new field");
  rapidjson::Value out(rapidjson::kObjectType);
  out.AddMember("type", rapidjson::Value(schema["type"], a), a);
  out.AddMember("optional", true, a);
  for (const char* basic : {"name", "version", "doc", "parameters"}) {
    auto it = schema.FindMember(basic);
    if (it != schema.MemberEnd())
      out.AddMember(rapidjson::StringRef(basic), smt::copy_of(it->value, a), a);
  }
  return out;
}

std::optional<std::string> string_field(rapidjson::Value& schema, rapidjson::Value& payload,
                                        std::string_view name) {
  const rapidjson::Value* f = smt::field_schema(schema, name);
  if (!f) throw DataError(std::string(name) + " is not a valid field name");
  if ((*f)["type"] != "string")
    throw DataError("Field '" + std::string(name) + "' is not of type STRING");
  const rapidjson::Value* v = member(payload, name);
  if (!v) return std::nullopt;
  return std::string(v->GetString(), v->GetStringLength());
}

std::optional<std::string> header_text(const rapidjson::Value& v) {
  if (v.IsNull()) return std::nullopt;
  if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsNumber()) return smt::java_double(v.GetDouble());
  throw DataError("sluice writes only primitive values into headers");
}

// ---- JavaRegex ----

namespace {

// Java's pattern with its named groups made plain groups (std::regex has no names); records
// the name of every capturing group in order.
std::string plain_groups(const std::string& pattern, std::vector<std::string>& names) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char ch = pattern[i];
    if (ch == '\\' && i + 1 < pattern.size()) {
      out += ch;
      out += pattern[++i];
      continue;
    }
    if (in_class) {
      in_class = ch != ']';
    } else if (ch == '[') {
      in_class = true;
    } else if (ch == '(' && pattern.compare(i, 3, "(?<") == 0 && i + 3 < pattern.size() &&
               pattern[i + 3] != '=' && pattern[i + 3] != '!') {
      const size_t close = pattern.find('>', i);
      if (close == std::string::npos) throw std::regex_error(std::regex_constants::error_paren);
      names.push_back(pattern.substr(i + 3, close - i - 3));
      out += '(';
      i = close;
      continue;
    } else if (ch == '(' && pattern.compare(i, 2, "(?") != 0) {
      names.emplace_back();
    }
    out += ch;
  }
  return out;
}

}  // namespace

JavaRegex::JavaRegex(const std::string& pattern, const char* key) {
  try {
    regex_ = std::regex(plain_groups(pattern, names_), std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError(key, std::string(key) + " is not a valid regex: " + e.what());
  }
}

std::optional<std::string> JavaRegex::replace_whole(const std::string& text,
                                                    const std::string& replacement) const {
  std::smatch m;
  if (!std::regex_match(text, m, regex_)) return std::nullopt;
  return smt::java_replacement(replacement, m, names_);
}

}  // namespace sluice::dbz
