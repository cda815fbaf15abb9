// Plugins out of process through the launcher: a poison record that segfaults, aborts, exits or
// hangs an isolated transform is dead-lettered alone and the other 99,999 are delivered; a
// leaking plugin is restarted at its memory limit and loses nothing; the same .so gives the same
// output in and out of process; a hot reload to a library that aborts while loading is refused
// and the old one keeps running, in process and out; a source that segfaults, aborts, exits or
// hangs is restarted out of process and delivers every record once (in process, the crash is
// named and a rerun resumes from the committed position); an isolated source hot-reloads with
// its state crossing through snapshot/restore.
#include <doctest/doctest.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using namespace sluice::test;

namespace {

// The non-empty lines of a file.
std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> out;
  const std::string text = read_file(file.string());
  for (size_t at = 0, end = 0; at < text.size(); at = end + 1) {
    end = std::min(text.find('\n', at), text.size());
    if (end > at) out.push_back(text.substr(at, end - at));
  }
  return out;
}

fs::path crashy_dir(const char* variant = "crashy") {
  return binary_dir() / "test-plugins" / variant;
}

// generator (values {"seq":N}) -> `transform` -> file sink, dead letters to dlq.jsonl.
std::string pipeline(int count, const std::string& transform, const std::string& extra = "") {
  return "name: iso\nsource: {type: generator, count: " + std::to_string(count) +
         ", template: '{\"seq\":{{seq}}}'}\ntransforms:\n  - " + transform +
         "\nsink: {type: file, path: out.jsonl, fsync: none" + extra +
         "}\ndead_letter: {type: file, path: dlq.jsonl, format: envelope, fsync: none}\n"
         "errors: {tolerance: all}\n";
}

sluice::test::ProcessResult run_in(const fs::path& dir, const std::string& yaml) {
  write_file((dir / "p.yaml").string(), yaml);
  return run_process({bin(), "run", "--admin", "off", "--no-plugin-watch", "--plugin-path",
                      crashy_dir().string(), (dir / "p.yaml").string()});
}

}  // namespace

TEST_CASE("an isolated transform that crashes on one record in 100,000 dead-letters only it") {
  struct Case {
    const char* mode;
    const char* extra;
    const char* reason;
  };
  for (const Case& c :
       {Case{"segfault", "", "killed by signal 11 (SIGSEGV)"},
        Case{"abort", "", "killed by signal 6 (SIGABRT)"},
        Case{"exit", "", "exited with status 0 inside process()"},
        Case{"hang", ", call_timeout_ms: 300", "call exceeded call_timeout_ms=300"}}) {
    CAPTURE(c.mode);
    const fs::path dir = scratch(std::string("isolation-") + c.mode);
    const auto r =
        run_in(dir, pipeline(100000, std::string("{type: crashy, isolation: process, poison: "
                                                 "'\"seq\":54321}', on_poison: ") +
                                         c.mode + c.extra + "}"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto out = lines_of(dir / "out.jsonl");
    CHECK(out.size() == 99999);
    CHECK(std::find(out.begin(), out.end(), "{\"seq\":54321}") == out.end());
    const auto dlq = lines_of(dir / "dlq.jsonl");
    REQUIRE(dlq.size() == 1);
    CHECK(dlq[0].find("54321") != std::string::npos);
    CHECK(dlq[0].find(std::string("plugin crashed on this record: ") + c.reason) !=
          std::string::npos);
  }
}

TEST_CASE("a leaking isolated transform is restarted at its memory limit and loses nothing") {
  const fs::path dir = scratch("isolation-leak");
  // 20,000 records x 16 KiB = 312 MiB leaked in all, against a 256 MiB address-space limit.
  const auto r = run_in(dir, pipeline(20000,
                                      "{type: crashy, isolation: process, leak_kb: 16, "
                                      "memory_limit_mb: 256}"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(lines_of(dir / "out.jsonl").size() == 20000);
  CHECK(lines_of(dir / "dlq.jsonl").empty());
  CHECK(r.err.find("plugin process killed by signal 6 (SIGABRT)") != std::string::npos);
}

TEST_CASE("the same .so gives the same output in process and out of process") {
  std::vector<std::vector<std::string>> outputs;
  for (const char* isolation : {"none", "process"}) {
    const fs::path dir = scratch(std::string("isolation-same-") + isolation);
    const std::string iso = std::string(", isolation: ") + isolation;
    const auto r = run_in(
        dir, pipeline(20000, "{type: fields, add: {tag: x}, rename: {seq: n}" + iso + "}", iso));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    // Records of different keys may interleave differently from run to run: compare sorted.
    auto lines = lines_of(dir / "out.jsonl");
    std::sort(lines.begin(), lines.end());
    outputs.push_back(std::move(lines));
  }
  CHECK(outputs[0].size() == 20000);
  CHECK(outputs[0].front() == "{\"n\":0,\"tag\":\"x\"}");
  CHECK(outputs[0] == outputs[1]);
}

// Starts `yaml` in `dir` with an admin port and `plugins` as the plugin path; returns the pid.
int start_in(const fs::path& dir, const std::string& yaml, const fs::path& plugins, int port) {
  write_file((dir / "p.yaml").string(), yaml);
  return sluice::test::start_process({bin(), "run", "--admin", "127.0.0.1:" + std::to_string(port),
                                      "--plugin-path", plugins.string(), (dir / "p.yaml").string()},
                                     (dir / "stdout").string(), (dir / "stderr").string());
}

// Rewrites `to` in place with the bytes of `from` (as `cp` does): a plugin watch sees a change.
void overwrite(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

// Waits until the launcher in `dir` says its plugin watch runs: its stages are built, so a plugin
// replaced from then on is a hot reload (a fixed sleep is too short on a loaded machine).
void wait_until_watching(const fs::path& dir) {
  for (int i = 0; i < 300; ++i) {
    if (read_file((dir / "stderr").string()).find("plugin folder(s) for changes") !=
        std::string::npos)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// A folder of plugins (mode 0755, as the strict permission check wants) holding `so`'s copy.
fs::path plugin_folder(const fs::path& dir, const fs::path& so) {
  fs::create_directories(dir / "plugins");
  ::chmod((dir / "plugins").c_str(), 0755);
  fs::copy_file(so, dir / "plugins" / so.filename(), fs::copy_options::overwrite_existing);
  return dir / "plugins";
}

TEST_CASE("a hot reload to a library that aborts while loading is refused; the old one runs on") {
  for (const char* isolation : {"none", "process"}) {
    CAPTURE(isolation);
    const fs::path dir = scratch(std::string("isolation-reload-") + isolation);
    const fs::path plugins = plugin_folder(dir, crashy_dir() / "sluice-crashy.so");
    const int port = 20000 + (::getpid() + (isolation[0] == 'p' ? 7 : 0)) % 20000;
    const int pid = start_in(
        dir,
        "name: iso\nsource: {type: generator, count: 60000, rate: 10000, template: "
        "'{\"seq\":{{seq}}}'}\ntransforms:\n  - {type: crashy, name: crashy, isolation: " +
            std::string(isolation) + "}\nsink: {type: file, path: out.jsonl, fsync: none}\n",
        plugins, port);
    wait_until_watching(dir);
    overwrite(crashy_dir("crashy_ctor_abort") / "sluice-crashy.so", plugins / "sluice-crashy.so");
    httplib::Client admin("127.0.0.1", port);
    std::string health;
    for (int i = 0; i < 200 && health.find("SIGABRT") == std::string::npos; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (auto res = admin.Get("/health")) health = res->body;
    }
    CHECK(health.find("killed by signal 6 (SIGABRT) while loading in a trial process") !=
          std::string::npos);
    const int code = sluice::test::wait_process(pid);
    const std::string err = read_file((dir / "stderr").string());
    INFO(err);
    CHECK(code == 0);
    CHECK(err.find("refused, old version keeps running") != std::string::npos);
    CHECK(lines_of(dir / "out.jsonl").size() == 60000);
  }
}

namespace {

// crashy source: `count` records {"seq":N}, crashing once (`mode`) at seq `crash_at`, its
// commits kept in `pos`; to a file sink.
std::string source_pipeline(int count, int crash_at, const std::string& mode,
                            const std::string& extra) {
  return "name: iso\nsource: {type: crashy, count: " + std::to_string(count) +
         ", crash_at: " + std::to_string(crash_at) + ", on_poison: " + mode +
         ", crash_marker: marker, position_file: pos" + extra +
         "}\nsink: {type: file, path: out.jsonl, fsync: none}\n";
}

// Every seq of 0..count-1 is in out.jsonl; with `once`, each exactly once.
void check_every_seq(const fs::path& dir, int count, bool once) {
  const auto out = lines_of(dir / "out.jsonl");
  const std::set<std::string> distinct(out.begin(), out.end());
  CHECK(distinct.size() == static_cast<size_t>(count));
  CHECK(distinct.count("{\"seq\":0}") == 1);
  CHECK(distinct.count("{\"seq\":" + std::to_string(count - 1) + "}") == 1);
  if (once) CHECK(out.size() == static_cast<size_t>(count));
}

}  // namespace

TEST_CASE("an isolated source that crashes mid-stream is restarted; every record arrives once") {
  struct Case {
    const char* mode;
    const char* extra;
    const char* reason;
  };
  for (const Case& c :
       {Case{"segfault", "", "killed by signal 11 (SIGSEGV) in poll()"},
        Case{"abort", "", "killed by signal 6 (SIGABRT) in poll()"},
        Case{"exit", "", "exited with status 0 inside poll()"},
        Case{"hang", ", call_timeout_ms: 300", "call exceeded call_timeout_ms=300"}}) {
    CAPTURE(c.mode);
    const fs::path dir = scratch(std::string("isolation-source-") + c.mode);
    const auto r = run_in(
        dir, source_pipeline(50000, 30000, c.mode, std::string(", isolation: process") + c.extra));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find(std::string("[iso.source] plugin process ") + c.reason) != std::string::npos);
    CHECK(fs::exists(dir / "marker"));  // it did crash
    check_every_seq(dir, 50000, true);
    CHECK(read_file((dir / "pos").string()) == "49999");
  }
}

TEST_CASE(
    "a source that crashes in process is named; a rerun resumes from the committed position") {
  struct Case {
    const char* mode;
    int exit_code;
    const char* said;
  };
  for (const Case& c : {Case{"segfault", 128 + SIGSEGV, "SIGSEGV in plugin 'crashy'"},
                        Case{"abort", 128 + SIGABRT, "SIGABRT in plugin 'crashy'"},
                        Case{"exit", 70, "exit(0) in plugin 'crashy'"}}) {
    CAPTURE(c.mode);
    const fs::path dir = scratch(std::string("inprocess-source-") + c.mode);
    const std::string yaml = source_pipeline(50000, 30000, c.mode, "");
    const auto first = run_in(dir, yaml);
    INFO(first.err);
    CHECK(first.exit_code == c.exit_code);
    CHECK(first.err.find(std::string(c.said) +
                         " (stage iso.source of pipeline iso), call poll()") != std::string::npos);
    const auto second = run_in(dir, yaml);
    INFO(second.err);
    REQUIRE(second.exit_code == 0);
    // At least once: records after the last commit before the crash come again.
    check_every_seq(dir, 50000, false);
    CHECK(read_file((dir / "pos").string()) == "49999");
  }
}

namespace {

// /health polled until its body holds `part` (at most `tries` x 100 ms): the HTTP status and
// the body.
std::pair<int, std::string> health_once_it_says(int port, const std::string& part,
                                                int tries = 100) {
  httplib::Client admin("127.0.0.1", port);
  std::pair<int, std::string> health{0, ""};
  for (int i = 0; i < tries && health.second.find(part) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (auto res = admin.Get("/health")) health = {res->status, res->body};
  }
  return health;
}

// The exit status of `pid` if it ends within `limit`; else it is killed and -1 returned.
int exit_within(int pid, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= until) {
      ::kill(pid, SIGKILL);
      sluice::test::wait_process(pid);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("a source that hangs in poll in process: /health says stuck, a stop exits 71 in grace") {
  const fs::path dir = scratch("inprocess-source-hang");
  const int port = 20000 + (::getpid() + 13) % 20000;
  // It hangs once a commit came (commits come every 200 ms), so some positions are committed.
  constexpr int kHangAt = 2'000'000;
  const int pid = start_in(dir,
                           source_pipeline(4'000'000, kHangAt, "hang",
                                           ", call_timeout_ms: 300, crash_after_commit: true"),
                           crashy_dir(), port);
  const auto [status, body] = health_once_it_says(port, "\"stuck\"");
  INFO(body);
  CHECK(status == 503);
  CHECK(body.find("\"state\":\"stuck\"") != std::string::npos);
  CHECK(body.find("(stage iso.source of pipeline iso), call poll()") != std::string::npos);
  ::kill(pid, SIGTERM);
  // The stop grace is 10 s (docs/containment.md); the margin is for a loaded machine.
  CHECK(exit_within(pid, std::chrono::seconds(25)) == 71);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(err.find("stop cannot drain: stuck: plugin 'crashy' (stage iso.source of pipeline iso), "
                 "call poll()") != std::string::npos);
  // Nothing past what reached the sink is committed (and never the stuck poll's records).
  REQUIRE(fs::exists(dir / "pos"));
  const int committed = std::stoi(read_file((dir / "pos").string()));
  CHECK(committed < kHangAt);
  const auto out = lines_of(dir / "out.jsonl");
  const std::set<std::string> distinct(out.begin(), out.end());
  for (int seq = 0; seq <= committed; ++seq)
    if (distinct.count("{\"seq\":" + std::to_string(seq) + "}") == 0) FAIL("missing " << seq);
}

namespace {

// crashy source (`count` records, commits kept in `pos`) -> crashy transform leaking `leak_kb`
// per record, in process -> file sink, under a 96 MB memory limit.
std::string leak_pipeline(int count, int leak_kb) {
  return "name: iso\nsource: {type: crashy, count: " + std::to_string(count) +
         ", position_file: pos}\ntransforms:\n  - {type: crashy, leak_kb: " +
         std::to_string(leak_kb) +
         "}\nsink: {type: file, path: out.jsonl, fsync: none}\n"
         "performance: {memory_limit_mb: 96, gc_interval_ms: 1000}\n";
}

}  // namespace

TEST_CASE(
    "a transform leaking in process stops the run at the hard bound, named; a rerun resumes") {
  const fs::path dir = scratch("inprocess-leak");
  // 100,000 records x 8 KiB would be 800 MB leaked; the run must stop near 96 MB instead.
  const auto first = run_in(dir, leak_pipeline(100000, 8));
  INFO(first.err);
  CHECK(first.exit_code == 1);
  for (const char* said :
       {"memory: RSS ", "of the 96 MB memory limit", "the runtime holds only ",
        "(in process: iso.source (crashy), iso.transform0 (crashy), iso.sink (file))",
        "`isolation: process` and `memory_limit_mb`"})
    CHECK(first.err.find(said) != std::string::npos);
  // It drained and committed what was delivered: the committed position is in out.jsonl.
  REQUIRE(fs::exists(dir / "pos"));
  const int committed = std::stoi(read_file((dir / "pos").string()));
  CHECK(committed < 99999);
  const auto out = lines_of(dir / "out.jsonl");
  CHECK(std::find(out.begin(), out.end(), "{\"seq\":" + std::to_string(committed) + "}") !=
        out.end());
  const auto second = run_in(dir, leak_pipeline(100000, 0));
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  check_every_seq(dir, 100000, false);  // at least once
  CHECK(read_file((dir / "pos").string()) == "99999");
}

TEST_CASE("a leaking isolated source is restarted at its memory limit and loses nothing") {
  const fs::path dir = scratch("isolation-source-leak");
  // 20,000 records x 16 KiB = 312 MiB leaked in all, against a 256 MiB address-space limit.
  const auto r = run_in(dir, source_pipeline(20000, -1, "segfault",
                                             ", leak_kb: 16, isolation: process, "
                                             "memory_limit_mb: 256"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("[iso.source] plugin process killed by signal 6 (SIGABRT) in poll()") !=
        std::string::npos);
  check_every_seq(dir, 20000, true);
}

TEST_CASE("an isolated source hot-reloads; its position crosses by snapshot and restore") {
  const fs::path dir = scratch("isolation-source-reload");
  const fs::path generator = binary_dir() / "plugins-out" / "sluice-generator.so";
  const fs::path plugins = plugin_folder(dir, generator);
  const int port = 20000 + (::getpid() + 11) % 20000;
  const int pid = start_in(
      dir,
      "name: iso\nsource: {type: generator, count: 60000, rate: 10000, isolation: process, "
      "template: '{\"seq\":{{seq}}}'}\nsink: {type: file, path: out.jsonl, fsync: none}\n",
      plugins, port);
  wait_until_watching(dir);
  overwrite(generator, plugins / "sluice-generator.so");
  const int code = sluice::test::wait_process(pid);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(code == 0);
  CHECK(err.find("changed: reloading") != std::string::npos);
  CHECK(err.find("failed") == std::string::npos);
  // A new child took the generator's next seq: nothing was repeated, nothing skipped.
  check_every_seq(dir, 60000, true);
}

namespace {

// generator at 4,000 records/s -> crashy isolated, crashing on values holding `poison`. Batches
// of 50 keep the search for the poisoned records short (each costs a few crashes), so the crashes
// that count for the breaker (a batch's first attempt) come quickly even on a loaded machine.
std::string crashing_isolated(const std::string& poison) {
  return "name: iso\nsource: {type: generator, count: 200000, rate: 4000, template: "
         "'{\"seq\":{{seq}}}'}\ntransforms:\n  - {type: crashy, isolation: process, poison: '" +
         poison +
         "'}\nsink: {type: file, path: out.jsonl, fsync: none}\n"
         "dead_letter: {type: file, path: dlq.jsonl, format: envelope, fsync: none}\n"
         "errors: {tolerance: all}\nperformance: {batch_size: 50, adaptive_batching: false}\n";
}

}  // namespace

TEST_CASE(
    "/health shows an isolated stage's crashes: healthy while it works, 503 past its breaker") {
  {
    const fs::path dir = scratch("isolation-health-restarted");
    const int port = 20000 + (::getpid() + 19) % 20000;
    const int pid = start_in(dir, crashing_isolated("\"seq\":300}"), crashy_dir(), port);
    const auto [status, body] = health_once_it_says(port, "restarted: plugin process crashed");
    INFO(body);
    CHECK(status == 200);
    CHECK(body.find("\"state\":\"running\"") != std::string::npos);
    CHECK(body.find(" times, restarted ") != std::string::npos);
    CHECK(body.find("last: killed by signal 11 (SIGSEGV)") != std::string::npos);
    ::kill(pid, SIGTERM);
    CHECK(exit_within(pid, std::chrono::seconds(30)) == 0);
  }
  {
    // One record in 100 crashes it: more than 5 crashes in the window opens its breaker.
    const fs::path dir = scratch("isolation-health-breaker");
    const int port = 20000 + (::getpid() + 23) % 20000;
    const int pid = start_in(dir, crashing_isolated("99}"), crashy_dir(), port);
    const auto [status, body] = health_once_it_says(port, "too often in its crash window", 300);
    INFO(body);
    CHECK(status == 503);
    CHECK(body.find("\"state\":\"degraded\"") != std::string::npos);
    CHECK(body.find("too often in its crash window: its calls fail until it passes; last: killed "
                    "by signal 11 (SIGSEGV)") != std::string::npos);
    ::kill(pid, SIGTERM);
    exit_within(pid, std::chrono::seconds(30));
  }
}

TEST_CASE("a plugin whose destroy hangs at the end of the run: a SIGTERM ends it, nothing lost") {
  // Everything was delivered and committed; then the transform's destroy never returns. Signals
  // were no longer taken by then, so sluice stayed for good, SIGTERM or not.
  const fs::path dir = scratch("destroy-hang");
  const int port = 20000 + (::getpid() + 29) % 20000;
  const int pid =
      start_in(dir,
               "name: iso\nsource: {type: generator, count: 500, template: '{\"seq\":{{seq}}}'}\n"
               "transforms:\n  - {type: crashy, on_destroy: hang}\n"
               "sink: {type: file, path: out.jsonl, fsync: none}\n",
               crashy_dir(), port);
  bool summarised = false;
  for (int i = 0; i < 400 && !summarised; ++i) {
    summarised = read_file((dir / "stdout").string()).find("pipeline iso: 500 records in") !=
                 std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  REQUIRE(summarised);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the hanging destroy
  ::kill(pid, SIGTERM);
  CHECK(exit_within(pid, std::chrono::seconds(10)) == 0);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(err.find("signal 15 received while sluice was shutting down (destroying the plugin "
                 "instances; the run is over and committed); exiting with status 0") !=
        std::string::npos);
  CHECK(lines_of(dir / "out.jsonl").size() == 500);
}

TEST_CASE(
    "an isolated stage whose restarts hang in create: 503, no dead letters, a stop in grace") {
  // The first child runs until a poison record kills it; every start after that hangs in create.
  // Before, each batch waited call_timeout_ms for a create (three times, as the pipeline narrowed
  // it), /health stayed 200 and a SIGTERM drained for minutes; then every batch was dead-lettered
  // while the plugin was down, and /health called the failed restart a crash window.
  const fs::path dir = scratch("isolation-create-hang");
  const int port = 20000 + (::getpid() + 31) % 20000;
  const fs::path fault = dir / "hang-in-create";
  const int pid = start_in(
      dir,
      "name: iso\nsource: {type: generator, count: 2000000, rate: 5000, template: "
      "'{\"seq\":{{seq}}}'}\ntransforms:\n  - {type: crashy, isolation: process, "
      "call_timeout_ms: 3000, poison: '\"seq\":10000}', on_create: hang, create_fault_file: '" +
          fault.string() +
          "'}\nsink: {type: file, path: out.jsonl, fsync: none}\n"
          "dead_letter: {type: file, path: dlq.jsonl, format: envelope, fsync: none}\n"
          "errors: {tolerance: all}\n",
      crashy_dir(), port);
  wait_until_watching(dir);  // the first child is created
  write_file(fault.string(), "hang\n");
  const auto [status, body] = health_once_it_says(port, "\"degraded\"", 300);
  INFO(body);
  CHECK(status == 503);
  // The child said its library had loaded: the hang was create's.
  CHECK(body.find("restart failed: call exceeded call_timeout_ms=3000 in create() (1 in a row); "
                  "next attempt in ") != std::string::npos);
  CHECK(body.find("too often in its crash window") == std::string::npos);
  ::kill(pid, SIGTERM);
  const auto stopping = std::chrono::steady_clock::now();
  // The stop grace is 10 s (docs/containment.md); the margin is for a loaded machine.
  CHECK(exit_within(pid, std::chrono::seconds(25)) == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < std::chrono::seconds(25));
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(err.find("call exceeded call_timeout_ms=3000 in create(); the next start in 1000 ms") !=
        std::string::npos);
  // The plugin being down is no record's fault: nothing was dead-lettered for it.
  CHECK(read_file((dir / "dlq.jsonl").string()).find("not running") == std::string::npos);
}

namespace {

// generator -> a crashy transform in a child whose poison record (seq 3000) kills it and makes
// every create after it do `on_create` (while `fault` exists) -> file sink, dead letters kept.
std::string down_after_poison(const fs::path& fault, const std::string& on_create,
                              const std::string& source, const std::string& extra) {
  return "name: iso\nsource: " + source +
         "\ntransforms:\n  - {type: crashy, isolation: process, poison: '\"seq\":3000}', "
         "poison_arms_create_fault: true, on_create: " +
         on_create + ", create_fault_file: '" + fault.string() + "'" + extra +
         "}\nsink: {type: file, path: out.jsonl, fsync: none}\n"
         "dead_letter: {type: file, path: dlq.jsonl, format: envelope, fsync: none}\n";
}

}  // namespace

TEST_CASE("an isolated stage whose restarts fail holds its records: none is dead-lettered for it") {
  // Before, while the child could not be restarted (backoff 1 s, 2 s, ...), every batch failed
  // at once and tolerance all dead-lettered it: here nearly all 20,000 records. Now the calls
  // are retried (errors.retry) and the records wait; once a start succeeds, only the poison
  // record is dead-lettered, for what it did.
  const fs::path dir = scratch("isolation-restart-fails-recovers");
  const int port = 20000 + (::getpid() + 37) % 20000;
  const fs::path fault = dir / "abort-in-create";
  const int pid = start_in(
      dir,
      down_after_poison(fault, "abort",
                        "{type: generator, count: 20000, template: '{\"seq\":{{seq}}}'}", "") +
          "errors: {tolerance: all, retry: {initial_backoff_ms: 100, max_backoff_ms: 500, "
          "max_attempts: 0, max_elapsed_ms: 60000}}\n",
      crashy_dir(), port);
  const auto [status, body] = health_once_it_says(port, "restart failed", 300);
  INFO(body);
  CHECK(status == 503);
  CHECK(body.find("restart failed: killed by signal 6 (SIGABRT) in create() (") !=
        std::string::npos);
  CHECK(body.find("; next attempt in ") != std::string::npos);
  CHECK(body.find("too often in its crash window") == std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // through a backoff or two
  CHECK(lines_of(dir / "dlq.jsonl").empty());
  fs::remove(fault);  // creates work again: the next start succeeds
  CHECK(exit_within(pid, std::chrono::seconds(60)) == 0);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  const auto out = lines_of(dir / "out.jsonl");
  CHECK(out.size() == 19999);
  const auto dlq = lines_of(dir / "dlq.jsonl");
  REQUIRE(dlq.size() == 1);
  CHECK(dlq[0].find("plugin crashed on this record: killed by signal 11 (SIGSEGV)") !=
        std::string::npos);
}

TEST_CASE("an isolated stage that stays down: the run fails once retries are spent, nothing lost") {
  // Before: exit 0, the records after the crash dead-lettered as "the plugin process is not
  // running" and their positions committed. Now: exit 1, nothing dead-lettered, and the commit
  // stops before the first record not delivered, so the next run reads them again.
  const fs::path dir = scratch("isolation-restart-fails-stays-down");
  const fs::path fault = dir / "abort-in-create";
  const auto r = run_in(
      dir,
      down_after_poison(fault, "abort", "{type: crashy, count: 20000, position_file: pos}", "") +
          "errors: {tolerance: all, retry: {initial_backoff_ms: 20, max_backoff_ms: 50, "
          "max_attempts: 3}}\n");
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("is not running and its retries are spent") != std::string::npos);
  CHECK(lines_of(dir / "dlq.jsonl").empty());
  const auto out = lines_of(dir / "out.jsonl");
  const std::set<std::string> delivered(out.begin(), out.end());
  CHECK(delivered.count("{\"seq\":3000}") == 0);
  const std::string pos = read_file((dir / "pos").string());
  const int committed = pos.empty() ? -1 : std::stoi(pos);
  CHECK(committed < 3000);
  for (int seq = 0; seq <= committed; ++seq)  // what was committed was delivered
    if (delivered.count("{\"seq\":" + std::to_string(seq) + "}") == 0) {
      FAIL("seq " << seq << " committed but not delivered");
      break;
    }
}

namespace {

// Once `fault` exists (the crash armed it: the restart's create hangs), a SIGTERM to `pid`: it
// must exit 0 within the 10 s stop grace and a margin for a loaded machine.
void stop_while_create_hangs(int pid, const fs::path& fault) {
  for (int i = 0; i < 600 && !fs::exists(fault); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(fs::exists(fault));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the restart's create hangs
  ::kill(pid, SIGTERM);
  const auto stopping = std::chrono::steady_clock::now();
  CHECK(exit_within(pid, std::chrono::seconds(16)) == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < std::chrono::seconds(16));
}

}  // namespace

TEST_CASE("a stop while a restart hangs in create ends within the stop's grace") {
  // call_timeout_ms is 120 s: before, the stop waited for the restart's create that long (the
  // drain awaits the calls under way). Now the start is killed when the 10 s grace ends.
  const fs::path dir = scratch("isolation-restart-hangs-stop");
  const int port = 20000 + (::getpid() + 41) % 20000;
  const fs::path fault = dir / "hang-in-create";
  const int pid =
      start_in(dir,
               down_after_poison(fault, "hang",
                                 "{type: generator, count: 2000000, rate: 20000, template: "
                                 "'{\"seq\":{{seq}}}'}",
                                 ", call_timeout_ms: 120000") +
                   "errors: {tolerance: all}\n",
               crashy_dir(), port);
  stop_while_create_hangs(pid, fault);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(lines_of(dir / "dlq.jsonl").empty());
}

TEST_CASE("a stop while an isolated source's restart hangs in create ends in grace, nothing lost") {
  // The source's child crashes at seq 30000 and its restart hangs in create (call_timeout_ms
  // 120 s). Before, the source thread stayed in that create, and when the 10 s grace ended the
  // stop gave up on it as stuck: exit 71. Now the start is killed when the grace ends, the stop
  // ends with 0, and what was read since the last commit is read again by the next run.
  const fs::path dir = scratch("isolation-source-restart-hangs-stop");
  const int port = 20000 + (::getpid() + 43) % 20000;
  const fs::path fault = dir / "hang-in-create";
  const std::string yaml =
      source_pipeline(50000, 30000, "segfault",
                      ", isolation: process, call_timeout_ms: 120000, on_create: hang, "
                      "create_fault_file: '" +
                          fault.string() + "', crash_arms_create_fault: true");
  const int pid = start_in(dir, yaml, crashy_dir(), port);
  stop_while_create_hangs(pid, fault);
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(err.find("killed at the stop's grace while it started") != std::string::npos);
  CHECK(err.find("is not committed: the next run reads it again") != std::string::npos);
  const std::string pos = read_file((dir / "pos").string());
  CHECK((pos.empty() || std::stoi(pos) < 30000));
  fs::remove(fault);  // the next run's create works
  const auto second = run_in(dir, yaml);
  INFO(second.err);
  REQUIRE(second.exit_code == 0);
  check_every_seq(dir, 50000, false);  // at least once: nothing lost
  CHECK(read_file((dir / "pos").string()) == "49999");
}

TEST_CASE("an isolated stage's child that crashes loading its library is journaled by the host") {
  // Before, such a crash was only a line on stderr: the child has no journal, and the host did
  // not tell a crash while loading from one in create.
  const fs::path dir = scratch("isolation-child-load-crash");
  const fs::path plugins = crashy_dir("crashy_ctor_child_abort");  // aborts in a child only
  write_file((dir / "p.yaml").string(),
             "name: iso\nsource: {type: generator, count: 10}\ntransforms:\n  - {type: crashy, "
             "isolation: process}\nsink: {type: file, path: out.jsonl}\n");
  auto run = [&] {
    return run_process({bin(), "run", "--admin", "off", "--no-plugin-watch", "--plugin-path",
                        plugins.string(), (dir / "p.yaml").string()});
  };
  const auto first = run();
  INFO(first.err);
  CHECK(first.exit_code != 0);  // the stage cannot be set up
  CHECK(first.err.find("(stage iso.transform0) crashed while loading: signal 6 (SIGABRT)") !=
        std::string::npos);
  // .sluice beside the pipeline file; .sluice-<uid> where others can write that folder.
  const std::string journal =
      read_file((dir / ".sluice" / "iso.crash-journal").string()) +
      read_file((dir / (".sluice-" + std::to_string(::geteuid())) / "iso.crash-journal").string());
  CHECK(journal ==
        "cause=SIGABRT\tpipeline=iso\tstage=iso%2Etransform0\tplugin=crashy\tcall=load\t"
        "records=0\tranges=\n");
  const auto second = run();
  INFO(second.err);
  CHECK(second.err.find("pipeline iso: plugin 'crashy' (stage iso.transform0) crashed (SIGABRT) "
                        "loading its library in a plugin process in an earlier run") !=
        std::string::npos);
}

TEST_CASE("a plugin library that aborts while loading: sluice's last words name the file") {
  // Before, sluice died of SIGABRT without a word (exit 134, empty stderr).
  const fs::path dir = scratch("isolation-ctor-abort");
  const fs::path plugins = crashy_dir("crashy_ctor_abort");
  for (const char* isolation : {"none", "process"}) {
    CAPTURE(isolation);
    write_file((dir / "p.yaml").string(),
               "name: iso\nsource: {type: generator, count: 10}\ntransforms:\n  - {type: crashy, "
               "isolation: " +
                   std::string(isolation) + "}\nsink: {type: file, path: out.jsonl}\n");
    const auto run = run_process({bin(), "run", "--admin", "off", "--no-plugin-watch",
                                  "--plugin-path", plugins.string(), (dir / "p.yaml").string()});
    INFO(run.err);
    CHECK(run.exit_code == 128 + SIGABRT);
    CHECK(run.err.find("sluice: plugin " + (plugins / "sluice-crashy.so").string() +
                       " crashed while loading: signal 6 (SIGABRT)\n") != std::string::npos);
  }
}

TEST_CASE("with --log-format json a crash while loading is a JSON log line, in a child too") {
  // Before, the load crash handler wrote a text line among the JSON ones, in the launcher and in
  // an isolated stage's child.
  const fs::path dir = scratch("isolation-ctor-abort-json");
  for (const std::string variant : {"crashy_ctor_abort", "crashy_ctor_child_abort"}) {
    CAPTURE(variant);
    const fs::path plugins = crashy_dir(variant.c_str());
    write_file((dir / "p.yaml").string(),
               "name: iso\nsource: {type: generator, count: 10}\ntransforms:\n  - {type: crashy, "
               "isolation: process}\nsink: {type: file, path: out.jsonl}\n");
    const auto run =
        run_process({bin(), "--log-format", "json", "run", "--admin", "off", "--no-plugin-watch",
                     "--plugin-path", plugins.string(), (dir / "p.yaml").string()});
    INFO(run.err);
    CHECK(run.exit_code != 0);
    std::string said;
    std::istringstream in(run.err);
    for (std::string line; std::getline(in, line);) {
      CAPTURE(line);
      rapidjson::Document doc;
      doc.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size());
      REQUIRE_FALSE(doc.HasParseError());
      REQUIRE(doc.IsObject());
      CHECK(doc.MemberCount() == 3);
      CHECK((doc.HasMember("ts_ms") && doc["ts_ms"].IsInt64()));
      CHECK((doc.HasMember("level") && doc["level"].IsString()));
      REQUIRE((doc.HasMember("msg") && doc["msg"].IsString()));
      const std::string msg = doc["msg"].GetString();
      if (msg.find("crashed while loading") != std::string::npos) said = msg;
    }
    const std::string file = (plugins / "sluice-crashy.so").string();
    CHECK(said == (variant == "crashy_ctor_abort"
                       ? "sluice: plugin " + file + " crashed while loading: signal 6 (SIGABRT)"
                       : "sluice: plugin " + file +
                             " (stage iso.transform0) crashed while loading: signal 6 (SIGABRT)"));
  }
}
