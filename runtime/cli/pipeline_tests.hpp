// `sluice test`: pipeline unit tests, declared in a pipeline's `tests:` section or in
// FILE.tests.yaml beside it, run through the transforms without the source and sink.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/location.hpp"
#include "plugin/plugin_registry.hpp"

namespace sluice::cli {

// A record a test feeds in or expects. In an expected record only the fields written are
// compared (`has`; `value_includes` compares part of the value); a key or value of null is absent
// (a null key, a tombstone).
struct TestRecord {
  std::optional<std::string> key, value;
  // `value_includes`: JSON the value must include (every member of a mapping, recursively; other
  // members are not compared), for expected records.
  std::optional<std::string> value_includes;
  std::string topic = "test";
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
  int32_t partition = 0;
  int64_t offset = 0, timestamp_ms = 0;
  bool has_key = false, has_value = false, has_topic = false, has_headers = false;
  config::Location where;
};

struct PipelineTest {
  std::string name;
  config::Location where;
  std::string pipeline;     // empty: the file's first pipeline
  std::string first, last;  // the range of the chain (`transforms: a..b`); empty: all
  std::vector<TestRecord> input;
  std::optional<std::vector<TestRecord>> expect;  // the output, record by record
  std::optional<size_t> expect_rejected;          // how many records the chain rejects
  // `conditions`: expressions (the expression_filter plugin's language) every output record
  // must satisfy, with where each is written.
  std::vector<std::pair<std::string, config::Location>> conditions;
};

// The tests of one pipeline file: its pipelines' `tests:` and those of FILE.tests.yaml (a list,
// or a mapping with `tests:`). Given a FILE.tests.yaml, its pipeline is FILE.yaml. ConfigError
// (FILE:LINE:COL) for a malformed test.
struct TestFile {
  std::string pipeline_file;
  std::vector<PipelineTest> tests;
};
TestFile read_tests(const std::string& file);

// Runs every test of every file; prints `ok`/`FAIL` per test, a diff per failure and a summary
// to `out`. 0 when every test passed, 1 otherwise (and when a file has no tests).
int run_pipeline_tests(const std::vector<std::string>& files, const plugin::PluginRegistry& reg,
                       std::ostream& out);

}  // namespace sluice::cli
