// Checks a plugin's config schema on its own (no pipeline needed), for `sluice plugins list`
// and `sluice plugins inspect`: a broken schema is the plugin author's bug, shown before a user
// meets it in a pipeline.
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice::plugin {

// What is wrong with a config schema JSON (abi.h: config_schema_json), one line each, naming
// the field: malformed JSON, an unknown type, a default of the wrong type, min above max, a
// default outside min..max or not in the enum, an enum that is not a list of strings, a bad
// path_kind. Empty when the schema is sound.
std::vector<std::string> schema_problems(std::string_view schema_json);

// A schema value as compact JSON text, as the messages above and `inspect` show it.
std::string json_text(const rapidjson::Value& value);

}  // namespace sluice::plugin
