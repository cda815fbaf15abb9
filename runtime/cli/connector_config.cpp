// Reading Kafka Connect connector configs: Java .properties and Connect's REST API JSON.
#include "cli/connector_config.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fstream>
#include <sstream>

#include "config/location.hpp"

namespace sluice::cli {

const std::string* ConnectorConfig::find(const std::string& key) const {
  for (const auto& [k, v] : entries)
    if (k == key) return &v;
  return nullptr;
}

std::string ConnectorConfig::get(const std::string& key, const std::string& fallback) const {
  const std::string* v = find(key);
  return v ? *v : fallback;
}

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\f'; }

void append_utf8(std::string& out, unsigned code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// Java's Properties.load escapes: \t \n \r \f, \uXXXX, and a backslash before anything else
// stands for that character (so `\\.` in a regex value is `\.`).
std::string unescape(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char c = text[++i];
    if (c == 'u' && i + 4 < text.size()) {
      const std::string hex(text.substr(i + 1, 4));
      if (hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
        append_utf8(out, static_cast<unsigned>(std::stoul(hex, nullptr, 16)));
        i += 4;
        continue;
      }
    }
    out += c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 'f' ? '\f' : c;
  }
  return out;
}

// Whether `line` ends in an odd number of backslashes: the logical line goes on.
bool continues(const std::string& line) {
  size_t n = 0;
  for (auto it = line.rbegin(); it != line.rend() && *it == '\\'; ++it) ++n;
  return n % 2 == 1;
}

// Splits one logical line (comments and blank lines already gone) into key and value.
std::pair<std::string, std::string> split_property(const std::string& line) {
  size_t i = 0;
  while (i < line.size() && !is_blank(line[i]) && line[i] != '=' && line[i] != ':')
    i += line[i] == '\\' ? 2 : 1;
  const size_t key_end = std::min(i, line.size());
  while (i < line.size() && is_blank(line[i])) ++i;
  if (i < line.size() && (line[i] == '=' || line[i] == ':')) ++i;
  while (i < line.size() && is_blank(line[i])) ++i;
  return {unescape(std::string_view(line).substr(0, key_end)),
          unescape(std::string_view(line).substr(std::min(i, line.size())))};
}

// A JSON config value as Connect reads it: strings as they are, other scalars as their text.
std::string value_text(const rapidjson::Value& v) {
  if (v.IsString()) return {v.GetString(), v.GetStringLength()};
  if (v.IsNull()) return "";
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return sb.GetString();
}

config::Location location_at(const std::string& text, size_t offset, const std::string& file) {
  config::Location where{file, 1, 1};
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++where.line;
      where.column = 1;
    } else {
      ++where.column;
    }
  }
  return where;
}

}  // namespace

ConnectorConfig parse_properties(const std::string& text, const std::string& file) {
  ConnectorConfig out;
  std::istringstream in(text);
  std::string physical, logical;
  while (std::getline(in, physical)) {
    if (!physical.empty() && physical.back() == '\r') physical.pop_back();
    size_t start = 0;
    while (start < physical.size() && is_blank(physical[start])) ++start;
    if (logical.empty() &&
        (start == physical.size() || physical[start] == '#' || physical[start] == '!'))
      continue;
    logical += physical.substr(start);
    if (continues(logical)) {
      logical.pop_back();
      continue;
    }
    out.entries.push_back(split_property(logical));
    logical.clear();
  }
  if (!logical.empty()) out.entries.push_back(split_property(logical));
  out.name = out.get("name");
  (void)file;
  return out;
}

ConnectorConfig parse_connector_json(const std::string& text, const std::string& file) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  if (doc.HasParseError())
    throw config::ConfigError(location_at(text, doc.GetErrorOffset(), file),
                              fmt::format("not a connector config: invalid JSON: {}",
                                          rapidjson::GetParseError_En(doc.GetParseError())));
  if (!doc.IsObject())
    throw config::ConfigError(location_at(text, 0, file),
                              "not a connector config: expected a JSON object");
  const bool wrapped = doc.HasMember("config") && doc["config"].IsObject();
  const rapidjson::Value& config = wrapped ? doc["config"] : doc;
  ConnectorConfig out;
  for (const auto& m : config.GetObject()) {
    if (m.value.IsObject() || m.value.IsArray())
      throw config::ConfigError(
          location_at(text, text.find(fmt::format("\"{}\"", m.name.GetString())), file),
          fmt::format("connector config key '{}' must be a string, number or boolean",
                      m.name.GetString()));
    out.entries.emplace_back(m.name.GetString(), value_text(m.value));
  }
  out.name = wrapped && doc.HasMember("name") ? value_text(doc["name"]) : out.get("name");
  return out;
}

ConnectorConfig read_connector_config(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw config::ConfigError(config::Location{file, 0, 0}, "cannot read the file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  if (file.ends_with(".properties")) return parse_properties(text, file);
  return parse_connector_json(text, file);
}

}  // namespace sluice::cli
