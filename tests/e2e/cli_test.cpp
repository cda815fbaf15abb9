// The launcher end to end: config and plugin errors with their exit status, clean stops on
// signals, file-source resume across runs, secrets kept out of output, and the demo pipeline
// checked record by record.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "process.hpp"

namespace fs = std::filesystem;
using sluice::test::read_file;
using sluice::test::run_process;
using sluice::test::write_file;

namespace {

std::string bin() { return std::getenv("SLUICE_BIN"); }
fs::path source_dir() { return std::getenv("SLUICE_SOURCE_DIR"); }
fs::path binary_dir() { return std::getenv("SLUICE_BINARY_DIR"); }

// A fresh scratch folder per test case.
fs::path scratch(const std::string& name) {
  fs::path dir = binary_dir() / "e2e-scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// Runs `sluice validate` on a YAML text and returns exit code and stderr.
sluice::test::ProcessResult validate(const fs::path& dir, const std::string& name,
                                     const std::string& yaml) {
  auto file = dir / name;
  write_file(file, yaml);
  return run_process({bin(), "validate", file.string()});
}

}  // namespace

TEST_CASE("config errors exit 2 with FILE:LINE:COL and a useful message") {
  auto dir = scratch("config-errors");
  struct Case {
    std::string name, yaml, expected;
  };
  const std::vector<Case> cases = {
      {"unknown_key.yaml",
       "name: p\nsource: {type: generator, count: 10}\nsink:\n  type: file\n  pth: /tmp/x\n",
       ":5:3: p.sink: unknown field 'pth' for sink plugin 'file'; did you mean 'path'?"},
      {"missing.yaml", "name: p\nsource: {type: generator, count: 10}\nsink:\n  type: file\n",
       ":4:3: p.sink: sink plugin 'file' needs field 'path'"},
      {"wrong_type.yaml", "name: p\nsource: {type: generator, count: ten}\nsink: {type: null}\n",
       ":2:34: p.source: field 'count' must be an int, got 'ten'"},
      {"unknown_plugin.yaml", "name: p\nsource: {type: generatr}\nsink: {type: null}\n",
       ":2:16: unknown source plugin 'generatr'; did you mean 'generator'? known: "},
      {"syntax.yaml", "name: p\nsource: {type: generator\nsink: {type: null}\n",
       ":3:5: YAML syntax error"},
      {"performance.yaml",
       "name: p\nsource: {type: generator}\nsink: {type: null}\nperformance:\n  "
       "max_batch_sise: 10\n",
       ":5:3: unknown key 'max_batch_sise' in performance; did you mean 'max_batch_size'?"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto r = validate(dir, c.name, c.yaml);
    CHECK(r.exit_code == 2);
    // The message starts with the file and position, on one line.
    CHECK(r.err.rfind((dir / c.name).string() + c.expected, 0) == 0);
    CHECK(r.out.empty());
  }
}

TEST_CASE("run refuses a bad config before starting anything") {
  auto dir = scratch("run-refuses");
  auto out = dir / "out.jsonl";
  write_file(dir / "p.yaml",
             "name: p\nsource: {type: generator, count: 10}\nsink: {type: file, "
             "path: " +
                 out.string() + ", fsync: sometimes}\n");
  auto r = run_process({bin(), "run", (dir / "p.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("p.yaml:3:") != std::string::npos);
  CHECK(r.err.find("fsync") != std::string::npos);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("plugin load failures name the file and the reason, and nothing starts") {
  auto dir = scratch("plugin-errors");
  auto out = dir / "out.jsonl";
  write_file(dir / "p.yaml",
             "name: p\nsource: {type: generator, count: 10}\nsink: {type: file, "
             "path: " +
                 out.string() + "}\n");
  auto plugins = binary_dir() / "test-plugins";
  auto r = run_process(
      {bin(), "run", "--plugin-path", (plugins / "bad_major").string(), (dir / "p.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err == (plugins / "bad_major" / "sluice-bad_major.so").string() +
                     ": ABI major mismatch: plugin 2.1, host 1.1\n");  // ABI 1.1: max_bytes
  CHECK_FALSE(fs::exists(out));

  // A plugin whose create throws: the stage's position and the exception's text.
  write_file(dir / "t.yaml",
             "name: p\nsource: {type: generator, count: 10}\ntransforms:\n  - "
             "type: throws_create\nsink: {type: null}\n");
  r = run_process({bin(), "run", "--plugin-path", (plugins / "throws_create").string(),
                   (dir / "t.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("t.yaml:4:5: transform 'throws_create'") != std::string::npos);
  CHECK(r.err.find("boom in create") != std::string::npos);
}

TEST_CASE("plugins list and inspect show names, versions, files and schemas") {
  auto r = run_process({bin(), "plugins", "list"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("source     generator") != std::string::npos);
  CHECK(r.out.find("transform  fields") != std::string::npos);
  CHECK(r.out.find("sink       null") != std::string::npos);
  auto so = fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR")) / "sluice-generator.so";
  r = run_process({bin(), "plugins", "inspect", so.string()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("source generator") != std::string::npos);
  CHECK(r.out.find("count") != std::string::npos);
  r = run_process({bin(), "version"});
  CHECK(r.out.rfind("sluice ", 0) == 0);
}

TEST_CASE("SIGTERM drains what is in flight: every record read is written, exit 0") {
  auto dir = scratch("sigterm");
  auto out = dir / "out.jsonl";
  write_file(dir / "p.yaml",
             "name: endless\nsource: {type: generator, count: 0, rate: 20000, "
             "key_cardinality: 50}\nsink: {type: file, path: " +
                 out.string() + "}\n");
  int pid = sluice::test::start_process({bin(), "run", (dir / "p.yaml").string()},
                                        (dir / "stdout").string(), (dir / "stderr").string());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(pid, SIGTERM);
  int code = sluice::test::wait_process(pid);
  CHECK(code == 0);
  std::string summary = read_file((dir / "stdout").string());
  INFO(summary);
  INFO(read_file((dir / "stderr").string()));
  auto written = lines_of(read_file(out.string()));
  CHECK(written.size() > 1000);
  // The summary's counts match what reached the file.
  CHECK(summary.find(std::to_string(written.size()) + " records in, " +
                     std::to_string(written.size()) + " delivered") != std::string::npos);
  std::set<int64_t> seqs;
  for (const auto& line : written) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    REQUIRE(d.IsObject());
    seqs.insert(d["seq"].GetInt64());
  }
  CHECK(seqs.size() == written.size());                               // no duplicates
  CHECK(*seqs.rbegin() == static_cast<int64_t>(written.size()) - 1);  // no gaps
}

TEST_CASE("the file source resumes after its committed position across runs") {
  auto dir = scratch("resume");
  auto in = dir / "in.jsonl";
  auto out = dir / "out.jsonl";
  std::string input;
  for (int i = 0; i < 100; ++i) input += "{\"n\":" + std::to_string(i) + "}\n";
  write_file(in, input);
  write_file(dir / "p.yaml",
             "name: r\nsource: {type: file, path: in.jsonl}\nsink: {type: file, "
             "path: out.jsonl}\nperformance: {ordering: none, concurrency: 1, "
             "adaptive_concurrency: false}\n");
  auto run = [&] { return run_process({bin(), "run", (dir / "p.yaml").string()}); };
  auto r = run();
  CHECK(r.exit_code == 0);
  CHECK(lines_of(read_file(out.string())).size() == 100);
  r = run();  // nothing new
  CHECK(r.out.find("0 records in") != std::string::npos);
  CHECK(lines_of(read_file(out.string())).size() == 100);
  std::string more;
  for (int i = 100; i < 150; ++i) more += "{\"n\":" + std::to_string(i) + "}\n";
  write_file(in, input + more);
  r = run();
  CHECK(r.out.find("50 records in") != std::string::npos);
  auto all = lines_of(read_file(out.string()));
  REQUIRE(all.size() == 150);
  for (int i = 0; i < 150; ++i) CHECK(all[i] == "{\"n\":" + std::to_string(i) + "}");
}

TEST_CASE("the fields demo writes exactly the transformed input, per-key order kept") {
  auto dir = scratch("fields-demo");
  auto r = run_process({bin(), "run", (source_dir() / "pipelines" / "fields-demo.yaml").string()},
                       {"SLUICE_QUICKSTART_OUT=" + dir.string()});
  REQUIRE(r.exit_code == 0);
  auto input = lines_of(read_file((source_dir() / "pipelines/data/events.jsonl").string()));
  auto output = lines_of(read_file((dir / "fields-demo.jsonl").string()));
  REQUIRE(output.size() == input.size());
  // Expected: the input record with ts_ms renamed to timestamp_ms, currency dropped and a
  // `source` field naming topic and byte offset.
  std::map<std::string, std::vector<int64_t>> expected_ids, actual_ids;
  std::map<int64_t, std::string> by_id;
  for (const auto& line : input) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    expected_ids[d["customer"].GetString()].push_back(d["id"].GetInt64());
    by_id[d["id"].GetInt64()] = line;
  }
  for (const auto& line : output) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    REQUIRE(d.IsObject());
    CHECK_FALSE(d.HasMember("currency"));
    CHECK_FALSE(d.HasMember("ts_ms"));
    REQUIRE(d.HasMember("timestamp_ms"));
    REQUIRE(d.HasMember("source"));
    int64_t id = d["id"].GetInt64();
    rapidjson::Document orig;
    orig.Parse(by_id.at(id).c_str());
    CHECK(d["timestamp_ms"].GetInt64() == orig["ts_ms"].GetInt64());
    CHECK(d["amount"].GetDouble() == orig["amount"].GetDouble());
    CHECK(std::string(d["status"].GetString()) == orig["status"].GetString());
    // The byte offset in `source` points at the original line in the input file.
    std::string src = d["source"].GetString();
    auto at = src.rfind('@');
    REQUIRE(at != std::string::npos);
    auto offset = std::stoll(src.substr(at + 1));
    std::string file = read_file((source_dir() / "pipelines/data/events.jsonl").string());
    CHECK(file.substr(offset, by_id.at(id).size()) == by_id.at(id));
    actual_ids[d["customer"].GetString()].push_back(id);
  }
  CHECK(actual_ids == expected_ids);  // every record once, and per-key order as in the input
  CHECK(r.out.find("200 records in, 200 delivered") != std::string::npos);
}

TEST_CASE("secret values never reach the output, even in a failing create") {
  auto dir = scratch("secrets");
  write_file(dir / "p.yaml",
             "name: s\nsource: {type: generator, count: 10}\ntransforms:\n  - type: projection\n"
             "    store: postgres\n    conninfo: \"host=127.0.0.1 port=1 user=x "
             "password=hunter2-very-secret connect_timeout=2\"\n"
             "    projections: [{name: m, kind: mirror, table: t}]\n"
             "sink: {type: null}\n");
  auto r = run_process({bin(), "--log-level", "debug", "run", (dir / "p.yaml").string()});
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("hunter2-very-secret") == std::string::npos);
  CHECK(r.out.find("hunter2-very-secret") == std::string::npos);
}
