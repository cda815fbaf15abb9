// A stage's plugin config checked against the plugin's schema, turned into the JSON it gets.
#pragma once

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
// "unknown source plugin 'fiel'; did you mean 'file'? known: file, generator".
[[noreturn]] void throw_unknown_plugin(const StageSpec& stage,
                                       const std::vector<std::string>& known_names);

// Where a field a plugin complained about is written: its value (a dotted path such as
// "tls.ca" reaches into mappings, a number into lists), else the stage mapping.
Location field_location(const StageSpec& stage, std::string_view field);

// Replaces every occurrence of each secret value by "***".
std::string redact(std::string text, const std::vector<std::string>& secret_values);

}  // namespace sluice::config
