// A stage's plugin config checked against the plugin's schema, turned into the JSON it gets.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/stage_spec.hpp"

namespace sluice::config {

struct CheckedConfig {
  std::string json;                        // the object handed to the plugin's create()
  std::vector<std::string> secret_values;  // values of secret fields, for redact()
};

// Checks a stage's plugin config (every key but `type` and `name`) against the plugin's schema
// JSON (see sluice_plugin::config_schema_json in sdk/include/sluice/abi.h). Unknown keys (with a
// did-you-mean among the schema's fields), missing required keys, wrong types (int takes YAML
// integers; double takes integers and floats; bool only true/false; list is a YAML sequence;
// object a YAML mapping, converted recursively), enum and min/max violations: ConfigError at the
// key's or value's position. Applies ${env:NAME} / ${file:PATH} substitution to scalars (paths
// relative to the YAML file's folder) and fills the schema's defaults. A secret field's value
// never appears in an error.
CheckedConfig check_stage(const StageSpec& stage, std::string_view schema_json);

// ConfigError at stage.type_location:
// "unknown source plugin 'fiel'; did you mean 'file'? known: file, generator" and `note`
// (the plugin files that were not loaded). `unusable`, when given, is the whole message
// instead: why the plugin path holds the plugin but it cannot be used.
[[noreturn]] void throw_unknown_plugin(const StageSpec& stage,
                                       const std::vector<std::string>& known_names,
                                       const std::optional<std::string>& unusable = std::nullopt,
                                       std::string_view note = {});

// Where a field a plugin complained about is written: its value (a dotted path such as
// "tls.ca" reaches into mappings, a number into lists), else the stage mapping.
Location field_location(const StageSpec& stage, std::string_view field);

// The strings redact() must hide for one secret field's value: the value itself and, when it
// holds a URL (scheme://user:PASSWORD@host/...?password=PASSWORD) or a libpq keyword/value
// conninfo (host=... password=PASSWORD), each password as written, unquoted, percent-decoded and
// percent-encoded, since a plugin may print a rewritten URL or the password alone.
std::vector<std::string> secret_values_of(std::string_view value);

// Returns `text` with every occurrence of each secret value replaced by "***". Occurrences that
// overlap or touch become one "***", so no fragment of a longer secret is left. The password of
// any URL (scheme://user:PASSWORD@) and any `password=VALUE` in the text is masked too, declared
// or not. A secret shorter than 4 characters is masked only where it stands as a whole word
// (not inside a longer word), so that a short secret does not mask every "a" of a message.
std::string redact(std::string_view text, const std::vector<std::string>& secret_values);

}  // namespace sluice::config
