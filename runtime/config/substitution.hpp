// ${env:NAME} and ${file:PATH} references inside YAML string values, so secrets stay out of files.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "config/location.hpp"

namespace sluice::config {

// True when `text` holds a ${env:...} or ${file:...} reference.
bool has_substitution(std::string_view text);

// Replaces every ${env:NAME} by the environment variable, every ${env:NAME:-DEFAULT} by the
// variable or, when it is unset or empty, DEFAULT (up to the first `}`), and every ${file:PATH}
// by the file's contents (less one trailing newline; relative paths start at `base_dir`). `$${`
// stands for a literal `${`; any other `${...}` is left as written. A missing variable without a
// default, an unreadable file or an unterminated reference throws ConfigError at `where`.
// `inserted`, when given, receives each value put in (what the references stood for).
std::string substitute(std::string_view text, const Location& where,
                       const std::filesystem::path& base_dir,
                       std::vector<std::string>* inserted = nullptr);

}  // namespace sluice::config
