// Expansion of ${env:NAME}, ${env:NAME:-default} and ${file:PATH}.
#include "config/substitution.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sluice/safe_files.hpp>
#include <sstream>

#include "config/yaml_reader.hpp"

namespace sluice::config {
namespace {

constexpr std::string_view kEnvPrefix = "${env:";
constexpr std::string_view kFilePrefix = "${file:";

bool valid_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// `argument` is NAME or NAME:-DEFAULT. As in a shell, the default stands in when the variable is
// unset or empty; without one an unset variable is an error (a set but empty one is "").
std::string env_value(std::string_view argument, const Location& where) {
  const size_t dash = argument.find(":-");
  const std::string_view name = argument.substr(0, dash);
  if (!valid_env_name(name))
    throw ConfigError(
        where, fmt::format("'${{env:{}}}': not a valid environment variable name", argument));
  const char* value = std::getenv(std::string(name).c_str());
  if (dash != std::string_view::npos && (value == nullptr || *value == '\0'))
    return std::string(argument.substr(dash + 2));
  if (value == nullptr)
    throw ConfigError(where, fmt::format("environment variable '{0}' is not set (set it, or give "
                                         "a default: ${{env:{0}:-default}})",
                                         name));
  return value;
}

std::string file_value(std::string_view path_text, const Location& where,
                       const std::filesystem::path& base_dir) {
  if (path_text.empty()) throw ConfigError(where, "'${file:}' needs a path");
  std::filesystem::path path(path_text);
  if (path.is_relative()) path = base_dir / path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(where, fmt::format("cannot read '{}' for ${{file:{}}}: it is a directory",
                                         path.string(), path_text));
  // A secret read from a file another user planted (or linked) in a shared folder would be
  // theirs to choose: an admin token they know, a password that logs in to their server.
  if (auto why = sluice::files::distrust_reason(path.string(), sluice::files::Use::state);
      !why.empty())
    throw ConfigError(where, fmt::format("${{file:{}}}: {}", path_text, why));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ConfigError(where, fmt::format("cannot read '{}' for ${{file:{}}}: {}", path.string(),
                                         path_text, std::strerror(errno)));
  std::string text;
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxScalarBytes)
      throw ConfigError(where, fmt::format("'{}' for ${{file:{}}} is larger than 1 MiB",
                                           path.string(), path_text));
  }
  // Files written by editors and `echo` end in a newline that is never part of the secret.
  if (text.ends_with('\n')) {
    text.pop_back();
    if (text.ends_with('\r')) text.pop_back();
  }
  return text;
}

}  // namespace

bool has_substitution(std::string_view text) {
  return text.find(kEnvPrefix) != std::string_view::npos ||
         text.find(kFilePrefix) != std::string_view::npos;
}

std::string shown_value(std::string_view raw, std::string_view value) {
  constexpr size_t kShown = 60;
  if (has_substitution(raw)) {
    const std::string_view written = raw.substr(0, kShown);
    return fmt::format("the value of '{}{}' (not shown: it comes from a reference)", written,
                       written.size() < raw.size() ? "..." : "");
  }
  if (value.size() <= kShown) return fmt::format("'{}'", value);
  return fmt::format("'{}...'", value.substr(0, kShown));
}

std::string substitute(std::string_view text, const Location& where,
                       const std::filesystem::path& base_dir, std::vector<std::string>* inserted) {
  if (text.find("${") == std::string_view::npos) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("$${")) {
      out += "${";
      i += 3;
      continue;
    }
    const bool is_env = rest.starts_with(kEnvPrefix);
    const bool is_file = !is_env && rest.starts_with(kFilePrefix);
    if (!is_env && !is_file) {
      out += text[i++];
      continue;
    }
    const size_t prefix = is_env ? kEnvPrefix.size() : kFilePrefix.size();
    const size_t close = rest.find('}', prefix);
    if (close == std::string_view::npos)
      throw ConfigError(where, fmt::format("unterminated '{}' reference (missing '}}')",
                                           is_env ? kEnvPrefix : kFilePrefix));
    const std::string_view argument = rest.substr(prefix, close - prefix);
    std::string value = is_env ? env_value(argument, where) : file_value(argument, where, base_dir);
    out += value;
    if (inserted) inserted->push_back(std::move(value));
    i += close + 1;
  }
  return out;
}

}  // namespace sluice::config
