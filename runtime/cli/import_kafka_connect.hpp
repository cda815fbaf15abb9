// `sluice import kafka-connect`: a Kafka Connect connector config turned into a pipeline YAML.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/connector_config.hpp"
#include "sluice/abi.h"

namespace sluice::cli {

// The config schema JSON of the plugin `type` of `kind` (abi.h: config_schema_json), or nullopt
// when no plugin on the search path has that name. The import copies an option only when the
// plugin declares it, so what it writes passes `sluice validate`.
using SchemaLookup = std::function<std::optional<std::string>(sluice_kind, const std::string&)>;

struct ImportResult {
  std::string yaml;
  std::vector<std::string> todos;  // what is left for the user, also written as `# TODO:` lines
};

// Maps the connector class onto a source or sink plugin, the transforms.*/predicates.* chain one
// to one onto the kafka_smt and debezium_smt transforms (their option keys are Kafka's and
// Debezium's, so they copy through), errors.* onto the errors section and dead_letter, and
// keeps everything else as `# TODO:` comments. `origin` names the input in the header comment.
ImportResult import_kafka_connect(const ConnectorConfig& connector, const std::string& origin,
                                  const SchemaLookup& schema_of);

// Reads `file`, writes the YAML to `output` (stdout when empty) and the TODOs to stderr.
int run_import_kafka_connect(const std::string& file, const std::string& output,
                             const SchemaLookup& schema_of);

}  // namespace sluice::cli
