// The launcher end to end: config and plugin errors with their exit status, clean stops on
// signals, file-source resume across runs, secrets kept out of output, the demo pipeline
// checked record by record, the shipped pipelines and README's example, usage errors, the admin
// clients' address, and validate's path checks and --create.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using sluice::test::bin;
using sluice::test::binary_dir;
using sluice::test::read_file;
using sluice::test::run_process;
using sluice::test::scratch;
using sluice::test::source_dir;
using sluice::test::write_file;

namespace {

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

// A sink or dead-letter sink writing the file the source reads would feed the pipeline its own
// output without end (probed: 300,000 lines became 14.7 million and 205 MB in 20 s). Refused at
// the output's value, by `run` and `validate`, whether the file exists yet or not.
TEST_CASE("a pipeline whose sink writes the file its source reads is refused at the sink's path") {
  auto dir = scratch("own-output");
  write_file(dir / "in.jsonl", "{\"id\":1}\n");
  struct Case {
    std::string name, yaml, expected;
  };
  const std::string source = "name: p\nsource: {type: file, path: in.jsonl}\n";
  const std::vector<Case> cases = {
      {"sink.yaml", source + "sink: {type: file, path: ./in.jsonl}\n", ":3:26: sink 'file'"},
      {"dead_letter.yaml",
       source + "sink: {type: null}\nerrors: {tolerance: all}\ndead_letter: {type: file, path: " +
           (dir / "in.jsonl").string() + "}\n",
       ":5:33: dead_letter 'file'"},
      {"offsets.yaml",
       "name: p\nsource: {type: file, path: new.jsonl, offset_file: sub/../new.jsonl}\nsink: "
       "{type: null}\n",
       ":2:52: source 'file': field 'offset_file'"},
      // A link to a file still to come (probed: one appended line became 385 in 4 s).
      {"dangling.yaml",
       "name: p\nsource: {type: file, path: later.jsonl, follow: true}\n"
       "sink: {type: file, path: link.jsonl}\n",
       ":3:26: sink 'file'"}};
  fs::create_symlink("later.jsonl", dir / "link.jsonl");
  for (const auto& c : cases) {
    CAPTURE(c.name);
    write_file(dir / c.name, c.yaml);
    const std::string file = (dir / c.name).string();
    for (const auto& args : {std::vector<std::string>{bin(), "run", "--admin", "off", file},
                             std::vector<std::string>{bin(), "validate", file}}) {
      CAPTURE(args[1]);
      auto r = run_process(args);
      CHECK(r.exit_code == 2);
      CHECK(r.err.rfind((dir / c.name).string() + c.expected, 0) == 0);
      CHECK(r.err.find("would read its own output without end") != std::string::npos);
    }
  }
  CHECK(read_file((dir / "in.jsonl").string()) == "{\"id\":1}\n");
}

// Two pipelines each writing the file the other reads fed each other without end (probed: 5
// lines became over 2,000 in 5 s and kept growing). Refused at the output closing the cycle; a
// chain of pipelines through files without a cycle still runs.
TEST_CASE("pipelines that feed each other through files in a cycle are refused; a chain is not") {
  auto dir = scratch("file-cycle");
  write_file(dir / "a.jsonl", "{\"id\":1}\n");
  write_file(dir / "b.jsonl", "");
  write_file(dir / "c.jsonl", "");
  const auto pipelines = [](const std::string& last_output) {
    return "pipelines:\n"
           "  - name: ab\n    source: {type: file, path: a.jsonl}\n"
           "    sink: {type: file, path: b.jsonl}\n"
           "  - name: bc\n    source: {type: file, path: b.jsonl, offset_file: b.offset}\n"
           "    sink: {type: file, path: c.jsonl}\n"
           "  - name: ca\n    source: {type: file, path: c.jsonl, offset_file: c.offset}\n"
           "    sink: {type: file, path: " +
           last_output + "}\n";
  };
  write_file(dir / "cycle.yaml", pipelines("a.jsonl"));
  const std::string file = (dir / "cycle.yaml").string();
  for (const auto& args : {std::vector<std::string>{bin(), "run", "--admin", "off", file},
                           std::vector<std::string>{bin(), "validate", file}}) {
    CAPTURE(args[1]);
    auto r = run_process(args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind(file + ":10:", 0) == 0);
    CHECK(r.err.find("(ab -> bc -> ca -> ab)") != std::string::npos);
    CHECK(r.err.find("would read their own output without end") != std::string::npos);
  }
  CHECK(read_file((dir / "a.jsonl").string()) == "{\"id\":1}\n");
  write_file(dir / "chain.yaml", pipelines("d.jsonl"));
  auto r = run_process({bin(), "validate", (dir / "chain.yaml").string()});
  INFO(r.err);
  CHECK(r.exit_code == 0);
}

TEST_CASE("under --watch, a changed pipeline file that reads its own output is refused") {
  auto dir = scratch("own-output-watch");
  write_file(dir / "in.jsonl", "{\"id\":1}\n");
  const std::string head = "name: w\nsource: {type: file, path: in.jsonl, follow: true}\n";
  write_file(dir / "w.yaml", head + "sink: {type: file, path: out.jsonl}\n");
  const std::string err = (dir / "stderr").string();
  int pid = sluice::test::start_process(
      {bin(), "run", "--admin", "off", "--watch", (dir / "w.yaml").string()},
      (dir / "stdout").string(), err);
  const auto wait_for = [&](const std::string& path, const std::string& text) {
    for (int i = 0; i < 300 && read_file(path).find(text) == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return read_file(path).find(text) != std::string::npos;
  };
  REQUIRE(wait_for((dir / "out.jsonl").string(), "\"id\":1"));
  write_file(dir / "w.yaml", head + "sink: {type: file, path: in.jsonl}\n");
  CHECK(wait_for(err, "would read its own output without end"));
  kill(pid, SIGTERM);
  CHECK(sluice::test::wait_process(pid) == 0);
  CHECK(read_file((dir / "in.jsonl").string()) == "{\"id\":1}\n");
}

TEST_CASE("a --stats-file that names a folder, a file in no folder or no file is a usage error") {
  auto dir = scratch("stats-file");
  write_file(dir / "p.yaml", "name: p\nsource: {type: generator, count: 10}\nsink: {type: null}\n");
  // Replaced by a rename every second, these became regular files (/dev/null too, as root).
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0644) == 0);
  std::filesystem::create_symlink("/dev/null", dir / "to-null");
  for (const auto& [path, why] :
       {std::pair<std::string, std::string>{dir.string(), "is a folder, not a file"},
        {(dir / "missing" / "s.json").string(), "does not exist"},
        {(dir / "fifo").string(), "is not a regular file"},
        {(dir / "to-null").string(), "is not a regular file"}}) {
    CAPTURE(path);
    auto r = run_process(
        {bin(), "run", "--admin", "off", "--stats-file", path, (dir / "p.yaml").string()});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--stats-file") != std::string::npos);
    CHECK(r.err.find(why) != std::string::npos);
    CHECK(r.out.empty());
  }
  CHECK(std::filesystem::is_fifo(dir / "fifo"));
  CHECK(std::filesystem::is_symlink(dir / "to-null"));
}

TEST_CASE("plugin load failures name the file and the reason, and nothing starts") {
  auto dir = scratch("plugin-errors");
  auto out = dir / "out.jsonl";
  write_file(dir / "p.yaml",
             "name: p\nsource: {type: generator, count: 10}\ntransforms:\n  - type: bad_major\n"
             "sink: {type: file, path: " +
                 out.string() + "}\n");
  auto plugins = binary_dir() / "test-plugins";
  auto r = run_process(
      {bin(), "run", "--plugin-path", (plugins / "bad_major").string(), (dir / "p.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find((dir / "p.yaml").string() +
                   ":4:11: transform plugin 'bad_major': its file "
                   "could not be loaded: " +
                   (plugins / "bad_major" / "sluice-bad_major.so").string() +
                   ": ABI major mismatch: plugin 2.3, host 1.3\n") !=  // 1.3: memory limit
        std::string::npos);
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
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("source     generator") != std::string::npos);
  CHECK(r.out.find("transform  fields") != std::string::npos);
  CHECK(r.out.find("sink       null") != std::string::npos);
  auto so = fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR")) / "sluice-generator.so";
  r = run_process({bin(), "plugins", "inspect", so.string()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("source generator") != std::string::npos);
  CHECK(r.out.find("count") != std::string::npos);
  // Path fields say what validate checks of them.
  r = run_process({bin(), "plugins", "inspect",
                   (fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR")) / "sluice-file.so").string()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("  path                 string  required input path") != std::string::npos);
  CHECK(r.out.find("  offset_file          string  output path") != std::string::npos);
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

TEST_CASE("a SIGTERM while the pipeline file is read ends the run at once, nothing read") {
  // The secret is a FIFO, so sluice waits in the middle of reading its file (signals blocked by
  // then) until this test writes it: the SIGTERM is there before any pipeline starts. It hung
  // for good: a thread waited for the stages of a pipeline that a stop had kept from starting.
  auto dir = scratch("sigterm-setup");
  const auto fifo = dir / "secret";
  const auto out = dir / "out.jsonl";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  write_file(dir / "p.yaml",
             "name: early\nsource: {type: generator, count: 1000, template: "
             "'{\"a\": \"${file:" +
                 fifo.string() + "}\"}'}\nsink: {type: file, path: " + out.string() + "}\n");
  const int pid =
      sluice::test::start_process({bin(), "run", (dir / "p.yaml").string(), "--admin", "off"},
                                  (dir / "stdout").string(), (dir / "stderr").string());
  // sluice may be gone (it takes the SIGTERM while it reads) before a write: EPIPE, no SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  const int fd = ::open(fifo.c_str(), O_WRONLY);  // returns once sluice opens it to read
  REQUIRE(fd >= 0);
  REQUIRE(kill(pid, SIGTERM) == 0);
  (void)!::write(fd, "x", 1);
  ::close(fd);
  // The file may be read again: every later open is fed too, until sluice exits (10 s at most).
  int status = 0;
  bool exited = false;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       !exited && std::chrono::steady_clock::now() < until;) {
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (const int again = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK); again >= 0) {
      (void)!::write(again, "x", 1);
      ::close(again);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  const std::string summary = read_file((dir / "stdout").string());
  INFO(summary);
  INFO(read_file((dir / "stderr").string()));
  REQUIRE_MESSAGE(exited, "sluice was still running 10 s after the SIGTERM");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // Taken while the file is read (the setup's watch), or once it has been, before the start.
  const std::string err = read_file((dir / "stderr").string());
  CHECK((err.find("while sluice was setting up") != std::string::npos ||
         (err.find("before the pipelines started") != std::string::npos &&
          summary.find("pipeline early: 0 records in") != std::string::npos)));
  CHECK(read_file(out.string()).empty());
}

TEST_CASE("a SIGTERM while sluice waits for a FIFO no one writes ends it at once") {
  // The pipeline file itself, or a ${file:} secret, is a FIFO that no process writes: the read
  // never returns. Signals were blocked until after it, so SIGTERM and SIGINT did nothing.
  auto dir = scratch("sigterm-fifo");
  const auto fifo = dir / "pipeline.yaml";
  const auto secret = dir / "secret";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE(mkfifo(secret.c_str(), 0600) == 0);
  write_file(dir / "p.yaml", "name: wait\nsource: {type: generator, count: 10, template: '${file:" +
                                 secret.string() + "}'}\nsink: {type: null}\n");
  for (const auto& file : {fifo, dir / "p.yaml"}) {
    CAPTURE(file);
    const int pid =
        sluice::test::start_process({bin(), "run", file.string(), "--admin", "off"},
                                    (dir / "stdout").string(), (dir / "stderr").string());
    // Once its setup's signal thread runs (a second thread), sluice waits in open or read.
    const auto tasks = fs::path("/proc") / std::to_string(pid) / "task";
    for (int i = 0; i < 400; ++i) {
      std::error_code ec;
      const auto threads = std::distance(fs::directory_iterator(tasks, ec), {});
      if (threads >= 2) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    REQUIRE(kill(pid, SIGTERM) == 0);
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 200 && !exited; ++i) {
      exited = waitpid(pid, &status, WNOHANG) == pid;
      if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!exited) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    REQUIRE_MESSAGE(exited, "sluice was still running 5 s after the SIGTERM");
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(read_file((dir / "stderr").string())
              .find("signal 15 received while sluice was setting up (loading plugins, reading "
                    "the pipeline file): nothing was started; exiting with status 0") !=
          std::string::npos);
  }
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

namespace {

// Every pipeline file shipped in pipelines/.
std::vector<fs::path> shipped_pipelines() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(source_dir() / "pipelines"))
    if (e.path().extension() == ".yaml") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// A loopback port nothing listens on right now.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST_CASE("the admin token is masked where a plugin puts it: a metric name, a dead letter") {
  // `leaky` takes the token as a label that is not secret to it: only the admin token masks it.
  auto dir = scratch("admin-token-metric");
  const std::string token = "Adm1nT0ken-e2e-xyz";
  write_file(dir / "p.yaml",
             "name: t\nsource: {type: generator, count: 20}\ntransforms:\n  - {type: leaky, "
             "token: other-s3cret, label: " +
                 token +
                 "}\nsink: {type: null}\ndead_letter: {type: file, format: envelope, "
                 "path: " +
                 (dir / "dlq.jsonl").string() +
                 "}\nerrors: {tolerance: all}\nadmin: {host: 127.0.0.1, port: " +
                 std::to_string(free_port()) + ", token: " + token + "}\n");
  auto r = run_process({bin(), "--plugin-path", (binary_dir() / "test-plugins" / "probes").string(),
                        "run", (dir / "p.yaml").string(), "--stats-file",
                        (dir / "stats.json").string()});
  INFO(r.out);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  const std::string stats = read_file((dir / "stats.json").string());
  CHECK(stats.find("t.transform0.label_***") != std::string::npos);
  CHECK(stats.find(token) == std::string::npos);
  CHECK(read_file((dir / "dlq.jsonl").string()).find(token) == std::string::npos);
  CHECK(r.out.find(token) == std::string::npos);
  CHECK(r.err.find(token) == std::string::npos);
}

// Every line of `text` parsed as strict UTF-8 JSON; the messages of those that parse.
std::vector<std::string> json_log_messages(const std::string& text) {
  std::vector<std::string> messages;
  for (const auto& line : lines_of(text)) {
    rapidjson::Document d;
    d.Parse<rapidjson::kParseValidateEncodingFlag>(line.c_str(), line.size());
    INFO("line: ", line);
    CHECK(!d.HasParseError());
    if (!d.HasParseError() && d.IsObject() && d.HasMember("msg") && d["msg"].IsString())
      messages.emplace_back(d["msg"].GetString(), d["msg"].GetStringLength());
  }
  return messages;
}

// Runs a pipeline whose transform (probes' garbled_log, in process or isolated) logs bytes that are
// not UTF-8, a NUL, ESC and a newline, with --log-format `format`.
auto run_garbled_log(const std::string& isolation, const std::string& format) {
  auto dir = scratch("log-" + format + "-" + isolation);
  write_file(dir / "p.yaml",
             "name: lg\nsource: {type: generator, count: 10}\ntransforms:\n  - {type: "
             "garbled_log, isolation: " +
                 isolation + "}\nsink: {type: null}\n");
  return run_process({bin(), "--plugin-path", (binary_dir() / "test-plugins" / "probes").string(),
                      "--log-format", format, "run", (dir / "p.yaml").string()});
}

TEST_CASE("with --log-format json every stderr line is UTF-8 JSON, whatever bytes a plugin logs") {
  for (const std::string isolation : {"none", "process"}) {
    CAPTURE(isolation);
    auto r = run_garbled_log(isolation, "json");
    INFO(r.err);
    CHECK(r.exit_code == 0);
    const auto messages = json_log_messages(r.err);
    // The plugin's line is there, its valid text kept and the rest replaced (U+FFFD) or escaped.
    const auto garbled = std::find_if(messages.begin(), messages.end(), [](const auto& m) {
      return m.find("bad utf8:") != std::string::npos;
    });
    REQUIRE(garbled != messages.end());
    CHECK(garbled->find("\xEF\xBF\xBD\xEF\xBF\xBD lone \xEF\xBF\xBD cut") != std::string::npos);
    CHECK(garbled->find("esc \x1b[31m quote \" newline \n end") != std::string::npos);
  }
}

TEST_CASE("in text format a plugin's log line cannot forge a line or reach the terminal raw") {
  for (const std::string isolation : {"none", "process"}) {
    CAPTURE(isolation);
    auto r = run_garbled_log(isolation, "text");
    INFO(r.err);
    CHECK(r.exit_code == 0);
    // The plugin's newline, ESC and NUL are escaped: its text stays on its own prefixed line.
    CHECK(r.err.find('\x1b') == std::string::npos);
    CHECK(r.err.find('\0') == std::string::npos);
    CHECK(r.err.find("esc \\x1b[31m quote \" newline \\n end") != std::string::npos);
    std::istringstream lines(r.err);
    for (std::string line; std::getline(lines, line);) {
      CAPTURE(line);
      CHECK(line.rfind("[", 0) == 0);  // every line is one of sluice's, "[level] ..."
    }
  }
}

TEST_CASE("with --log-format json the error sluice exits on is a JSON line too") {
  auto dir = scratch("log-json-error");
  write_file(dir / "p.yaml",
             "name: bad\nsource: {type: generator, count: 10}\nsink: {type: nope}\n");
  auto r = run_process({bin(), "--log-format", "json", "run", (dir / "p.yaml").string()});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  const auto messages = json_log_messages(r.err);
  REQUIRE(!messages.empty());
  CHECK(messages.back().find("p.yaml:3:") != std::string::npos);
}

TEST_CASE("an isolated stage's child that fails writes its line in the parent's log format") {
  // The child (`sluice plugin-host`, started by an isolated stage) shares the parent's stderr and
  // learns the format from its environment. Here it fails at once: it was given no shared region.
  auto json = run_process({"/usr/bin/env", "SLUICE_PLUGIN_HOST_LOG_FORMAT=json", bin(),
                           "plugin-host", "--instance", "p.transform0"});
  INFO(json.err);
  CHECK(json.exit_code == 4);
  const auto messages = json_log_messages(json.err);
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].find("plugin-host p.transform0: ") == 0);
  auto text = run_process({"/usr/bin/env", "SLUICE_PLUGIN_HOST_LOG_FORMAT=text", bin(),
                           "plugin-host", "--instance", "p.transform0"});
  CHECK(text.exit_code == 4);
  CHECK(text.err.find("[error] plugin-host p.transform0: ") == 0);
}

TEST_CASE("every shipped pipeline validates in a clean environment, as it is") {
  const auto files = shipped_pipelines();
  REQUIRE(files.size() >= 4);
  for (const auto& file : files) {
    CAPTURE(file);
    // env -i: no SLUICE_QUICKSTART_OUT, no Kafka or PostgreSQL address; validate connects to
    // nothing, so the Kafka and PostgreSQL pipelines pass too.
    auto r = run_process({"/usr/bin/env", "-i", bin(), "validate", file.string()});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find(": ok") != std::string::npos);
  }
}

TEST_CASE("stats, top and reload find the admin API in the pipeline file; --url wins") {
  auto dir = scratch("admin-client");
  const int port = free_port();
  const std::string yaml =
      "name: a\nsource: {type: generator, count: 10}\nsink: {type: null}\n"
      "admin: {port: " +
      std::to_string(port) + "}\n";
  write_file(dir / "p.yaml", yaml);
  const std::string file = (dir / "p.yaml").string();
  const std::string address = "http://127.0.0.1:" + std::to_string(port);
  for (const std::string command : {"stats", "top", "reload"}) {
    CAPTURE(command);
    std::vector<std::string> args = {bin(), command, file};
    if (command == "top") args.push_back("--once");
    auto r = run_process(args);
    CHECK(r.exit_code == 1);
    // Which address was tried, where it came from, and how to choose another.
    CHECK(r.err.find("cannot reach the admin API at " + address + " (the admin: section of " +
                     file + ")") != std::string::npos);
    CHECK(r.err.find("--url") != std::string::npos);
    args = {bin(), command, "--config", file, "--url", "http://127.0.0.1:1"};
    if (command == "top") args.push_back("--once");
    r = run_process(args);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot reach the admin API at http://127.0.0.1:1 (--url)") !=
          std::string::npos);
  }
  // A file whose admin API is off: there is nothing to ask, said at the admin: section.
  write_file(dir / "off.yaml",
             "name: a\nsource: {type: generator}\nsink: {type: null}\n"
             "admin: {enabled: false}\n");
  auto r = run_process({bin(), "stats", (dir / "off.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind((dir / "off.yaml").string() + ":4:", 0) == 0);
}

TEST_CASE("sluice stats FILE reads the stats of the process that runs FILE") {
  auto dir = scratch("admin-client-live");
  const int port = free_port();
  write_file(dir / "p.yaml",
             "name: live\nsource: {type: generator, count: 0, rate: 1000}\nsink: {type: null}\n"
             "admin: {port: " +
                 std::to_string(port) + "}\n");
  const std::string file = (dir / "p.yaml").string();
  int pid = sluice::test::start_process({bin(), "run", "--no-plugin-watch", file},
                                        (dir / "stdout").string(), (dir / "stderr").string());
  sluice::test::ProcessResult r;
  for (int attempt = 0; attempt < 100; ++attempt) {  // until the admin API is up
    r = run_process({bin(), "stats", file, "--json"});
    if (r.exit_code == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGTERM);
  CHECK(sluice::test::wait_process(pid) == 0);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("\"live\"") != std::string::npos);
}

TEST_CASE("an unknown command gets a did-you-mean and exit 2; so does any usage error") {
  auto r = run_process({bin(), "rnu", "x.yaml"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("unknown command 'rnu'; did you mean 'run'? commands: run, stats", 0) == 0);
  r = run_process({bin(), "--log-level", "debug", "validat", "x.yaml"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("unknown command 'validat'; did you mean 'validate'?") != std::string::npos);
  r = run_process({bin(), "plugins", "lst"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("unknown command 'lst'; did you mean 'list'?") != std::string::npos);
  r = run_process({bin(), "run", "--no-such-flag", "x.yaml"});
  CHECK(r.exit_code == 2);
  r = run_process({bin()});
  CHECK(r.exit_code == 2);
  r = run_process({bin(), "--help"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("Exit status: 0 done") != std::string::npos);
}

TEST_CASE("global options work before or after any command") {
  for (const std::string command : {"version", "stats", "top", "reload"}) {
    CAPTURE(command);
    std::vector<std::string> before = {bin(), "--log-level", "warn", command};
    std::vector<std::string> after = {bin(),  command,        "--log-level",
                                      "warn", "--log-format", "json"};
    if (command != "version")
      for (auto* args : {&before, &after}) {
        args->push_back("--url");
        args->push_back("http://127.0.0.1:1");
      }
    if (command == "top")
      for (auto* args : {&before, &after}) args->push_back("--once");
    const int expected = command == "version" ? 0 : 1;  // nothing listens on port 1
    CHECK(run_process(before).exit_code == expected);
    auto r = run_process(after);
    INFO(r.err);
    CHECK(r.exit_code == expected);
  }
  auto dir = scratch("global-options");
  write_file(dir / "p.yaml", "name: p\nsource: {type: generator, count: 1}\nsink: {type: null}\n");
  auto r = run_process({bin(), "validate", (dir / "p.yaml").string(), "--plugin-path", dir.string(),
                        "--log-level", "error"});
  CHECK(r.exit_code == 0);
}

TEST_CASE("validate checks that inputs exist and output folders are there, at FILE:LINE:COL") {
  auto dir = scratch("validate-paths");
  write_file(dir / "in.jsonl", "{}\n");
  auto r = validate(dir, "ok.yaml",
                    "name: p\nsource: {type: file, path: in.jsonl}\nsink: {type: file, path: "
                    "out.jsonl}\n");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  r = validate(dir, "no_input.yaml",
               "name: p\nsource:\n  type: file\n  path: missing.jsonl\nsink: {type: null}\n");
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind((dir / "no_input.yaml").string() + ":4:9: source 'file': field 'path': '" +
                        (dir / "missing.jsonl").string() + "': no such file",
                    0) == 0);
  r = validate(dir, "input_folder.yaml",
               "name: p\nsource: {type: file, path: .}\nsink: {type: null}\n");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("input_folder.yaml:2:28: source 'file': field 'path'") != std::string::npos);
  CHECK(r.err.find("a folder, not a file") != std::string::npos);
  r = validate(dir, "no_folder.yaml",
               "name: p\nsource: {type: file, path: in.jsonl}\nsink:\n  type: file\n  path: "
               "nowhere/out.jsonl\n");
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind((dir / "no_folder.yaml").string() + ":5:9: sink 'file': field 'path': '" +
                        (dir / "nowhere/out.jsonl").string() + "': the folder '" +
                        (dir / "nowhere").string() + "' does not exist",
                    0) == 0);
  // The file source's offset file is an output too.
  r = validate(dir, "no_offset_folder.yaml",
               "name: p\nsource: {type: file, path: in.jsonl, offset_file: nowhere/o}\n"
               "sink: {type: null}\n");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("field 'offset_file'") != std::string::npos);
}

TEST_CASE("validate --create builds every stage, so a green validate means run starts") {
  auto dir = scratch("validate-create");
  auto plugins = binary_dir() / "test-plugins" / "throws_create";
  write_file(dir / "t.yaml",
             "name: p\nsource: {type: generator, count: 10}\ntransforms:\n  - "
             "type: throws_create\nsink: {type: null}\n");
  const std::string file = (dir / "t.yaml").string();
  auto r = run_process({bin(), "validate", "--plugin-path", plugins.string(), file});
  CHECK(r.exit_code == 0);  // the config is right; only creating the stage fails
  r = run_process({bin(), "validate", "--create", "--plugin-path", plugins.string(), file});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("t.yaml:4:5: transform 'throws_create'") != std::string::npos);
  CHECK(r.err.find("boom in create") != std::string::npos);
  CHECK(r.out.empty());
  write_file(
      dir / "ok.yaml",
      "name: p\nsource: {type: generator, count: 10}\nsink: {type: file, path: out.jsonl}\n");
  r = run_process({bin(), "validate", "--create", (dir / "ok.yaml").string()});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "pipeline p: ok (every stage created)\n");
}

namespace {
// A private plugin folder (0755) holding a copy of each test plugin file named.
fs::path plugin_folder(const std::string& name, const std::vector<std::string>& files) {
  const auto dir = scratch(name) / "plugins";
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  for (const auto& f : files) {
    const fs::path from = binary_dir() / "test-plugins" / f;
    fs::copy_file(from, dir / from.filename());
    fs::permissions(dir / from.filename(), fs::perms(0644));
  }
  return dir;
}

const std::vector<std::string> kNotPlugins = {
    "notso/sluice-notso.so",         "no_entry/sluice-no_entry.so",
    "bad_major/sluice-bad_major.so", "init_fails/sluice-init_fails.so",
    "dup/sluice-dup_a.so",           "dup/sluice-dup_b.so"};
}  // namespace

TEST_CASE("files of a plugin folder that are not plugins are warnings; loading goes on") {
  const auto plugins = plugin_folder("forgiving", kNotPlugins);
  const auto dir = plugins.parent_path();
  const std::string path = plugins.string();
  auto r = run_process({bin(), "plugins", "list", "--plugin-path", path});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("transform  fields") != std::string::npos);  // the built-in folder still loads
  const auto skipped = r.out.find("\nSKIPPED");
  REQUIRE(skipped != std::string::npos);
  for (const auto& [file, reason] : std::vector<std::pair<std::string, std::string>>{
           {"sluice-notso.so", ": not a shared object"},
           {"sluice-no_entry.so", ": entry symbol sluice_module_get missing"},
           {"sluice-bad_major.so", ": ABI major mismatch"},
           {"sluice-init_fails.so", ": plugin init failed: init refused"},
           {"sluice-dup_b.so", ": transform plugin 'dup' is also provided by " +
                                   (plugins / "sluice-dup_a.so").string()}}) {
    CAPTURE(file);
    CHECK(r.out.find("  " + (plugins / file).string() + reason, skipped) != std::string::npos);
    CHECK(r.err.find("[warning] plugin file skipped: " + (plugins / file).string() + reason) !=
          std::string::npos);
  }

  // A pipeline that uses none of them validates and runs.
  write_file(
      dir / "ok.yaml",
      "name: p\nsource: {type: generator, count: 10}\nsink: {type: file, path: out.jsonl}\n");
  r = run_process({bin(), "validate", "--plugin-path", path, (dir / "ok.yaml").string()});
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("plugin file skipped: " + (plugins / "sluice-notso.so").string()) !=
        std::string::npos);
  r = run_process(
      {bin(), "run", "--admin", "off", "--plugin-path", path, (dir / "ok.yaml").string()});
  CHECK(r.exit_code == 0);
  CHECK(lines_of(read_file((dir / "out.jsonl").string())).size() == 10);
}

TEST_CASE("a pipeline that uses a plugin of a skipped file fails, naming the file and reason") {
  const auto plugins = plugin_folder("forgiving-uses", kNotPlugins);
  const auto dir = plugins.parent_path();
  auto uses = [&](const std::string& command, const std::string& type) {
    const auto file = dir / (type + ".yaml");
    write_file(file, "name: p\nsource: {type: generator, count: 10}\ntransforms:\n  - type: " +
                         type + "\nsink: {type: null}\n");
    auto r = run_process({bin(), command, "--plugin-path", plugins.string(), file.string()});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(file.string() + ":4:11: ") != std::string::npos);
    return r.err;
  };
  for (const std::string command : {"validate", "run"}) {
    CAPTURE(command);
    std::string err = uses(command, "dup");
    CHECK(err.find("transform plugin 'dup' is provided by 2 files of one folder, so neither is "
                   "used: " +
                   (plugins / "sluice-dup_a.so").string() + " and " +
                   (plugins / "sluice-dup_b.so").string()) != std::string::npos);
    err = uses(command, "init_fails");
    CHECK(err.find("transform plugin 'init_fails': its file could not be loaded: " +
                   (plugins / "sluice-init_fails.so").string() +
                   ": plugin init failed: init refused") != std::string::npos);
    // A name no file is named after: the unknown-plugin error lists the skipped files.
    err = uses(command, "upper");
    CHECK(err.find("unknown transform plugin 'upper'") != std::string::npos);
    CHECK(err.find("not loaded from the plugin path: ") != std::string::npos);
    CHECK(err.find((plugins / "sluice-notso.so").string() + ": not a shared object") !=
          std::string::npos);
  }
}

TEST_CASE("a --plugin-path that does not exist is an error naming it, for every command") {
  auto dir = scratch("plugin-path-missing");
  write_file(dir / "p.yaml", "name: p\nsource: {type: generator, count: 1}\nsink: {type: null}\n");
  const std::string missing = (dir / "plugnis").string();
  for (const std::vector<std::string>& args : {std::vector<std::string>{"plugins", "list"},
                                               {"plugins", "inspect", "generator"},
                                               {"validate", (dir / "p.yaml").string()},
                                               {"run", (dir / "p.yaml").string()}}) {
    std::vector<std::string> command = {bin(), "--plugin-path", missing};
    command.insert(command.end(), args.begin(), args.end());
    auto r = run_process(command);
    CAPTURE(args[0]);
    CHECK(r.exit_code == 2);
    CHECK(r.err == "--plugin-path " + missing + ": no such folder or file\n");
  }
}

TEST_CASE("plugins inspect takes a plugin name or a file and shows every attribute") {
  auto r = run_process({bin(), "plugins", "inspect", "file"});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("source file ") != std::string::npos);  // a name may be a source and a sink
  CHECK(r.out.find("sink file ") != std::string::npos);
  CHECK(r.out.find("  path                 string  required input path") != std::string::npos);
  r = run_process({bin(), "plugins", "inspect", "generator"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("module ") == 0);
  CHECK(r.out.find(" min 1 ") != std::string::npos);  // key_cardinality, as YAML writes it
  r = run_process({bin(), "plugins", "inspect", "nosuch"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("no plugin named 'nosuch' on the plugin path") != std::string::npos);
  const auto plugins = plugin_folder("inspect-dup", {"dup/sluice-dup_a.so", "dup/sluice-dup_b.so"});
  r = run_process({bin(), "plugins", "inspect", "dup", "--plugin-path", plugins.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("transform plugin 'dup' is provided by 2 files") != std::string::npos);
}

TEST_CASE("a broken config schema is an error of inspect and plugins list, by plugin and field") {
  const auto folder = binary_dir() / "test-plugins" / "bad_schema";
  const std::string so = (folder / "sluice-bad_schema.so").string();
  const std::string plugin =
      "error: transform plugin 'bad_schema' (" + so + "): broken config schema: ";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{bin(), "plugins", "inspect", so},
        {bin(), "plugins", "inspect", "bad_schema", "--plugin-path", folder.string()},
        {bin(), "plugins", "list", "--plugin-path", folder.string()}}) {
    CAPTURE(args[2]);
    auto r = run_process(args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(plugin + "field 'level': default \"high\" is not a int\n") !=
          std::string::npos);
    CHECK(r.err.find(plugin + "field 'size': min 10 is above max 1\n") != std::string::npos);
    CHECK(
        r.err.find(plugin +
                   "field 'mode': default \"slow\" is not one of the enum [\"fast\",\"safe\"]\n") !=
        std::string::npos);
    CHECK(r.out.find("bad_schema") != std::string::npos);  // still listed or shown
  }
  // inspect shows every attribute, even of a broken schema.
  auto r = run_process({bin(), "plugins", "inspect", so});
  CHECK(r.out.find("  level                int     = \"high\"  how loud\n") != std::string::npos);
  CHECK(r.out.find("  size                 int     min 10 max 1\n") != std::string::npos);
  CHECK(r.out.find("  mode                 string  = \"slow\" enum [\"fast\",\"safe\"]\n") !=
        std::string::npos);
}

TEST_CASE("README's pipeline example is pipelines/fields-demo.yaml, word for word") {
  const std::string readme = read_file((source_dir() / "README.md").string());
  const std::string file = read_file((source_dir() / "pipelines/fields-demo.yaml").string());
  const std::string opening = "```yaml\n# pipelines/fields-demo.yaml";
  const auto start = readme.find(opening);
  REQUIRE(start != std::string::npos);
  const auto body = start + std::string("```yaml\n").size();
  const auto end = readme.find("```\n", body);
  REQUIRE(end != std::string::npos);
  CHECK(readme.substr(body, end - body) == file);
}

// The CALLS column of a position's row in `sluice top`'s profile table, or -1 if it has none.
static long position_calls(const std::string& frame, const std::string& position) {
  std::istringstream lines(frame);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word, role;
    words >> word;
    if (word == "*") words >> word;  // the bottleneck's marker
    if (word != position) continue;
    long calls = -1;
    words >> role >> calls;
    return calls;
  }
  return -1;
}

TEST_CASE("sluice top --once shows every stage position and marks the slow sink the bottleneck") {
  auto dir = scratch("top-profile");
  const int port = free_port();
  write_file(dir / "p.yaml",
             "name: prof\nsource: {type: generator, count: 0}\n"
             "sink: {type: latency, batch_cost_ms: 20}\n"
             "admin: {port: " +
                 std::to_string(port) + "}\n");
  const std::string file = (dir / "p.yaml").string();
  int pid = sluice::test::start_process({bin(), "run", "--no-plugin-watch", file},
                                        (dir / "stdout").string(), (dir / "stderr").string());
  sluice::test::ProcessResult r;
  for (int attempt = 0; attempt < 200; ++attempt) {  // until the sink has had a few calls
    r = run_process({bin(), "top", file, "--once"});
    if (r.exit_code == 0 && position_calls(r.out, "prof.sink.latency") >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGTERM);
  CHECK(sluice::test::wait_process(pid) == 0);
  INFO(r.out);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("prof.source.generator") != std::string::npos);
  CHECK(r.out.find("prof.sink.latency") != std::string::npos);
  CHECK(r.out.find("WAIT DOWN MS") != std::string::npos);
  // Twenty milliseconds a put against a generator's microseconds a poll: the sink.
  CHECK(r.out.find("bottleneck: prof.sink.latency") != std::string::npos);
}
