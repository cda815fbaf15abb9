// A Kafka Connect connector config as `sluice import kafka-connect` reads it: the JSON of
// Connect's REST API ({"name": ..., "config": {...}} or the flat config object) or a standalone
// worker's .properties file, as ordered key/value pairs.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sluice::cli {

struct ConnectorConfig {
  std::string name;
  std::vector<std::pair<std::string, std::string>> entries;  // in the file's order

  // The value of `key`, or nullptr.
  const std::string* find(const std::string& key) const;
  std::string get(const std::string& key, const std::string& fallback = "") const;
};

// Reads `file`: .properties (Java's syntax: `=`, `:` or blanks between key and value, `#`/`!`
// comments, backslash escapes and continuation lines) or JSON (anything else). A file that cannot
// be read or parsed is a config::ConfigError naming FILE:LINE:COL.
ConnectorConfig read_connector_config(const std::string& file);

// The same for a text already read; `file` only names it in errors.
ConnectorConfig parse_properties(const std::string& text, const std::string& file);
ConnectorConfig parse_connector_json(const std::string& text, const std::string& file);

}  // namespace sluice::cli
