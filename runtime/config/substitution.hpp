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

// A value for an error message: `'value'` (its first 60 characters), or, when the scalar as
// written (`raw`) holds a reference, what it says and not what it stood for: a reference is how
// a pipeline file keeps a secret out of itself, also where a field is not marked secret (a
// `${file:...}` put in the wrong field, a typo in a field's name).
std::string shown_value(std::string_view raw, std::string_view value);

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
