// `sluice validate`'s filesystem checks of a stage's path fields, by the schema's path_kind.
#pragma once

#include <string_view>

#include "config/stage_spec.hpp"

namespace sluice::config {

// Checks the stage's config (see check_stage) and then every field the schema marks as a path
// with a non-empty value: an "input" must exist and be readable, an "output" must not be a
// folder and its folder must exist and be writable (and the file too, if it is there), and for
// "any" the folder must exist. A failure is a ConfigError at the field's value.
void check_stage_paths(const StageSpec& stage, std::string_view schema_json);

}  // namespace sluice::config
