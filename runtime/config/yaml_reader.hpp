// Safe YAML parsing (limits, positions) and typed reads of YAML values with FILE:LINE:COL errors.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/location.hpp"

namespace sluice::config {

// Limits that keep a hostile or broken file from crashing or stalling the host.
inline constexpr int kMaxDepth = 64;
inline constexpr size_t kMaxScalarBytes = size_t{1} << 20;
inline constexpr size_t kMaxFileBytes = size_t{16} << 20;
// Aliases can make a small file expand into a huge tree ("billion laughs").
inline constexpr size_t kMaxNodes = 1'000'000;
// The same for big values: an anchored value reused many times. The size once every alias is
// expanded (scalar bytes, plus one per node) may not pass this.
inline constexpr size_t kMaxExpandedBytes = size_t{64} << 20;

// Parses one YAML document. ConfigError for syntax errors, text that is not UTF-8 (or holds NUL),
// more than one document, nesting deeper than kMaxDepth, scalars over kMaxScalarBytes, more than
// kMaxNodes nodes or kMaxExpandedBytes after alias expansion (at the alias that passes it),
// duplicate or non-scalar mapping keys. An empty document gives a Null node.
YAML::Node parse_document(std::string_view text, const std::string& file_name);

// The whole file, at most kMaxFileBytes. ConfigError at the file (line 0) when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

// 1-based position of a node; line 0 when yaml-cpp has none (a value that was left empty).
Location location_of(const YAML::Node& node, const std::string& file);

// "a mapping", "a list", "a scalar", "null": for "expected X, got Y" messages.
std::string_view kind_name(const YAML::Node& node);

// YAML 1.2 core-schema scalars; nullopt when `text` is not one.
std::optional<bool> parse_bool(std::string_view text);
std::optional<int64_t> parse_int(std::string_view text);    // decimal, 0x hex, 0o octal
std::optional<double> parse_double(std::string_view text);  // finite numbers only

// One key and its value inside a mapping.
struct Entry {
  YAML::Node key;
  YAML::Node value;
};

// The entry with scalar key `key`, or nullopt.
std::optional<Entry> find_entry(const YAML::Node& map, std::string_view key);

// Typed reads of the values of one file. `what` names the value in messages
// ("performance.linger_ms").
class YamlReader {
 public:
  explicit YamlReader(std::string file);

  const std::string& file() const { return file_; }
  // Where relative ${file:PATH} references start: the YAML file's folder.
  const std::filesystem::path& base_dir() const { return base_dir_; }

  Location at(const YAML::Node& node) const { return location_of(node, file_); }
  // The value's position, or its key's when the value was left empty (yaml-cpp then has none).
  Location at(const Entry& entry) const;

  // Unknown keys are errors at the key, with a did-you-mean among `allowed`.
  void check_keys(const YAML::Node& map, const std::vector<std::string>& allowed,
                  std::string_view section) const;
  void expect_map(const Entry& entry, std::string_view what) const;

  // A scalar's text after ${env:}/${file:} substitution. A secret's value never shows in errors.
  std::string text(const Entry& entry, std::string_view what, bool secret = false) const;
  bool boolean(const Entry& entry, std::string_view what) const;
  uint64_t unsigned_int(const Entry& entry, std::string_view what, uint64_t min,
                        uint64_t max) const;
  double number(const Entry& entry, std::string_view what) const;
  // The index of the entry's value among `names`.
  size_t choice(const Entry& entry, std::string_view what,
                const std::vector<std::string>& names) const;

 private:
  std::string file_;
  std::filesystem::path base_dir_;
};

}  // namespace sluice::config
