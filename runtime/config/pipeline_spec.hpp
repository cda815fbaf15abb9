// Pipeline YAML files -> validated pipeline specs; every error names its FILE:LINE:COL.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/location.hpp"
#include "config/stage_config.hpp"
#include "config/stage_spec.hpp"
#include "core/settings.hpp"

namespace sluice::config {

// Pipelines in one process (a file, or every file of a directory). Each pipeline runs a source
// thread, a dispatcher and its workers (max_concurrency, 16 by default, or concurrency when
// adaptive_concurrency is off), so 256 default pipelines are already 4,608 threads.
inline constexpr size_t kMaxPipelines = 256;

struct PipelineSpec {
  std::string name;
  Location location;       // of the pipeline mapping
  Location name_location;  // of the `name` value
  StageSpec source;
  std::vector<StageSpec> transforms;
  StageSpec sink;
  std::optional<StageSpec> dead_letter;  // `dead_letter:` or `errors.dead_letter:`
  core::PerformanceSettings performance;
  core::ErrorSettings errors;
  // `delivery: exactly_once` (Kafka -> Kafka only): the kafka source and sink get the key
  // `exactly_once_pipeline: <name>` and share a transaction (docs/kafka.md).
  bool exactly_once = false;
};

struct PipelineFile {
  std::vector<PipelineSpec> pipelines;
  core::AdminSettings admin;
  Location admin_location;  // line 0 when no file has an `admin:` section
};

// A file holds one pipeline (a mapping with `name:`) or `pipelines:` (a list) plus an optional
// file-level `admin:`. A directory means every *.yaml / *.yml in it, in name order; pipeline
// names and stage instance names are unique across them, and at most one file sets `admin:`.
// Throws ConfigError.
PipelineFile load_pipelines(const std::filesystem::path& file_or_dir);

// The same from memory (tests, fuzzing); `file_name` is used in errors and as the base of
// relative ${file:PATH} references.
PipelineFile parse_pipelines(std::string_view yaml_text, const std::string& file_name);

// Folds each run of two or more adjacent transforms that the `chain` transform can run as its
// steps (Kafka/Debezium SMTs with the same schemas.enable and no host keys: name, isolation,
// call_timeout_ms, memory_limit_mb) into one `chain` stage, which parses and writes a record
// once for the run instead of once per stage; unless `performance.fuse_transforms: false`. The
// chain keeps the first stage's instance name and lists the types in `folded`. `sluice run`
// fuses; `sluice test` keeps the stages as written (its ranges name them).
void fuse_transforms(PipelineSpec& spec);
PipelineFile fuse_transforms(PipelineFile file);

}  // namespace sluice::config
