// `sluice validate`'s filesystem checks of a stage's path fields, by the schema's path_kind.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/stage_spec.hpp"

namespace sluice::config {

// Checks the stage's config (see check_stage) and then every field the schema marks as a path
// with a non-empty value: an "input" must exist and be readable, an "output" must not be a
// folder and its folder must exist and be writable (and the file too, if it is there), and for
// "any" the folder must exist. A failure is a ConfigError at the field's value.
void check_stage_paths(const StageSpec& stage, std::string_view schema_json);

// One path field of a stage with a value, as its schema marks it ("input", "output", "any").
struct PathField {
  const StageSpec* stage;
  std::string name, value, kind;
};

// The stage's path fields that have a value, after check_stage (substituted, resolved, defaults).
std::vector<PathField> path_fields(const StageSpec& stage, std::string_view schema_json);

// The path fields of one pipeline's stages: an output that is the file an input names (the sink
// or dead-letter sink writing the file the source reads) would feed the pipeline its own output
// for ever, growing the file until the disk is full. A ConfigError at the output's value.
void check_not_own_output(const std::vector<PathField>& fields);

// The path fields of the pipelines of one process, one entry per pipeline (named): pipelines that
// feed each other through files in a cycle (one writes what the next reads, the last what the
// first reads) would read their own output without end as well. A ConfigError at the output
// that closes the cycle, naming the pipelines on it. A chain without a cycle is not affected.
void check_no_file_cycle(const std::vector<std::pair<std::string, std::vector<PathField>>>& runs);

}  // namespace sluice::config
