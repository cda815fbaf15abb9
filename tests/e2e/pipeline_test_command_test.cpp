// `sluice test` end to end: tests in a pipeline's `tests:` and in FILE.tests.yaml run through
// the transforms without source and sink; a failing test prints a diff and exits 1; ranges of
// the chain, tombstones, rejections and partial values; malformed tests name FILE:LINE:COL.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using sluice::test::bin;
using sluice::test::run_process;
using sluice::test::scratch;
using sluice::test::write_file;

namespace {

// A pipeline whose source and sink `sluice test` never starts (a Kafka broker need not exist).
const std::string kPipeline = R"x(name: orders
source: {type: kafka, bootstrap_servers: "127.0.0.1:1", group_id: g, topics: [orders.eu]}
transforms:
  - type: mask_field
    name: mask
    fields: card
  - type: regex_router
    name: route
    regex: "orders\\.(.*)"
    replacement: "clean.$1"
sink: {type: kafka, bootstrap_servers: "127.0.0.1:1"}
)x";

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Writes dir/orders.yaml: kPipeline and then `tests`; returns its path.
std::string write_pipeline(const fs::path& dir, const std::string& tests = "") {
  const auto file = (dir / "orders.yaml").string();
  write_file(file, kPipeline + tests);
  return file;
}

sluice::test::ProcessResult sluice_test(const std::vector<std::string>& files) {
  std::vector<std::string> argv = {bin(), "test"};
  argv.insert(argv.end(), files.begin(), files.end());
  return run_process(argv);
}

}  // namespace

TEST_CASE("passing tests in tests: exit 0; the whole chain runs, source and sink do not") {
  auto dir = scratch("test-pass");
  const auto file = write_pipeline(dir, R"x(tests:
  - name: masks and routes
    input:
      - {topic: orders.eu, key: k1, value: {id: 1, card: "4111"}, headers: {trace: abc}}
    expect:
      - {topic: clean.eu, key: k1, value: {card: "", id: 1}, headers: {trace: abc}}
  - name: a tombstone is rejected by MaskField, as Kafka does
    input:
      - {topic: orders.eu, key: k2, value: null}
    expect: []
    expect_rejected: 1
)x");
  const auto r = sluice_test({file});
  CHECK_MESSAGE(r.exit_code == 0, (r.out + r.err));
  CHECK(has(r.out, "ok   " + file + ":13:5 masks and routes\n"));
  CHECK(has(r.out, "ok   " + file + ":18:5 a tombstone is rejected by MaskField"));
  CHECK(has(r.out, "2 passed, 0 failed\n"));
}

TEST_CASE("a failing test prints a diff of each differing field and the output; exit 1") {
  auto dir = scratch("test-fail");
  const auto file = write_pipeline(dir, R"x(tests:
  - name: wrong on purpose
    input:
      - {topic: orders.eu, key: k1, value: {id: 1, card: "4111"}}
    expect:
      - {topic: clean.us, key: k1, value: {id: 2, card: ""}}
)x");
  const auto r = sluice_test({file});
  CHECK(r.exit_code == 1);
  CHECK(has(r.out, "FAIL " + file + ":13:5 wrong on purpose\n"));
  CHECK(has(r.out, "  record 0 topic:\n    - clean.us\n    + clean.eu\n"));
  CHECK(has(r.out,
            "  record 0 value:\n    - {\"id\":2,\"card\":\"\"}\n    + "
            "{\"id\":1,\"card\":\"\"}\n"));
  CHECK_FALSE(has(r.out, "record 0 key"));  // the key matched
  CHECK(has(r.out,
            "  output:\n    0: topic=clean.eu key=k1 value={\"id\":1,\"card\":\"\"} "
            "headers={}\n"));
  CHECK(has(r.out, "0 passed, 1 failed\n"));
}

TEST_CASE("FILE.tests.yaml beside the pipeline, a range of the chain, value_includes") {
  auto dir = scratch("test-sibling");
  const auto file = write_pipeline(dir);
  write_file(dir / "orders.tests.yaml", R"x(- name: only the mask
  transforms: mask
  input:
    - {topic: orders.eu, value: {id: 1, card: "4111", note: x}}
  expect:
    - {topic: orders.eu, value_includes: {card: ""}}
- name: only the router, by type
  transforms: regex_router..route
  input:
    - {topic: orders.us, value: "not json", key: null}
  expect:
    - {topic: clean.us, value: "not json", key: null}
)x");
  for (const auto& given : {file, (dir / "orders.tests.yaml").string()}) {
    const auto r = sluice_test({given});
    CHECK_MESSAGE(r.exit_code == 0, (r.out + r.err));
    CHECK(has(r.out, "2 passed, 0 failed\n"));
  }
  // The same range expecting the router's work: the mask alone does not route.
  write_file(dir / "orders.tests.yaml", R"x(tests:
  - name: the mask alone does not route
    transforms: mask..mask
    input: [{topic: orders.eu, value: {card: "1"}}]
    expect: [{topic: clean.eu}]
)x");
  const auto r = sluice_test({file});
  CHECK(r.exit_code == 1);
  CHECK(has(r.out, "record 0 topic:\n    - clean.eu\n    + orders.eu\n"));
}

TEST_CASE("no tests, unknown keys, unknown transforms: errors that say where") {
  auto dir = scratch("test-errors");
  const auto file = write_pipeline(dir);
  auto r = sluice_test({file});
  CHECK(r.exit_code == 1);
  CHECK(has(r.out, "FAIL " + file + ": no tests"));

  write_file(file, kPipeline + "tests:\n  - name: x\n    input: []\n    expext: []\n");
  r = sluice_test({file});
  CHECK(r.exit_code == 2);
  CHECK(has(r.err, file + ":15:5: unknown key 'expext' in a test"));

  write_file(file, kPipeline +
                       "tests:\n  - name: x\n    transforms: flatten\n    input: []\n"
                       "    expect: []\n");
  r = sluice_test({file});
  CHECK(r.exit_code == 2);
  CHECK(has(r.err, file + ":13:5: test 'x': pipeline 'orders' has no transform 'flatten'"));

  // A mapping or a list where a text belongs: exit 2 at its place (it was yaml-cpp's "bad
  // conversion", exit 1, without the file).
  const std::vector<std::pair<std::string, std::string>> odd = {
      {"  - name: {a: 1}\n    input: []\n    expect: []\n",
       ":13:11: a test's name must be a string, got a mapping"},
      {"  - name: x\n    transforms: [mask]\n    input: []\n    expect: []\n",
       ":14:17: transforms must be a string, got a list"},
      {"  - name: x\n    input: []\n    conditions: [{a: 1}]\n",
       ":15:18: a condition must be a string, got a mapping"},
      {"  - name: x\n    input: [{value: v, topic: [t]}]\n    expect: []\n",
       ":14:31: topic must be a string, got a list"},
  };
  for (const auto& [tests, error] : odd) {
    CAPTURE(tests);
    write_file(file, kPipeline + "tests:\n" + tests);
    r = sluice_test({file});
    CHECK(r.exit_code == 2);
    CHECK(has(r.err, file + error));
  }
}

TEST_CASE("conditions: expressions every output record must satisfy, checked per record") {
  auto dir = scratch("test-conditions");
  const auto file = write_pipeline(dir, R"x(tests:
  - name: masked and routed
    input:
      - {topic: orders.eu, value: {id: 1, card: "4111"}}
      - {topic: orders.us, value: {id: 2, card: "5500"}}
    conditions:
      - "value.card == '' && topic =~ '^clean\\.'"
      - "value.id < 2"
)x");
  auto r = sluice_test({file});
  CHECK(r.exit_code == 1);
  CHECK(has(r.out, "  record 1: condition is false: value.id < 2\n"));
  CHECK_FALSE(has(r.out, "record 0: condition"));
  CHECK_FALSE(has(r.out, "condition is false: value.card"));

  write_file(file, kPipeline +
                       "tests:\n  - name: x\n    input: []\n    conditions:\n"
                       "      - \"value.id < (2\"\n");
  r = sluice_test({file});
  CHECK(r.exit_code == 2);
  CHECK(has(r.err, file + ":16:9: condition: expected ')' (at character 14 of the expression)"));
}
