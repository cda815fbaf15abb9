// Plugins out of process through the launcher: a poison record that segfaults, aborts, exits or
// hangs an isolated transform is dead-lettered alone and the other 99,999 are delivered; a
// leaking plugin is restarted at its memory limit and loses nothing; the same .so gives the same
// output in and out of process; a hot reload to a library that aborts while loading is refused
// and the old one keeps running.
#include <doctest/doctest.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
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

TEST_CASE("a hot reload to a library that aborts while loading is refused; the old one runs on") {
  const fs::path dir = scratch("isolation-reload");
  fs::create_directories(dir / "plugins");
  ::chmod((dir / "plugins").c_str(), 0755);
  const fs::path so = dir / "plugins" / "sluice-crashy.so";
  fs::copy_file(crashy_dir() / "sluice-crashy.so", so);
  const int port = 20000 + ::getpid() % 20000;
  write_file((dir / "p.yaml").string(),
             "name: iso\nsource: {type: generator, count: 30000, rate: 10000, template: "
             "'{\"seq\":{{seq}}}'}\ntransforms:\n  - {type: crashy, name: crashy}\n"
             "sink: {type: file, path: out.jsonl, fsync: none}\n");
  const int pid = sluice::test::start_process(
      {bin(), "run", "--admin", "127.0.0.1:" + std::to_string(port), "--plugin-path",
       (dir / "plugins").string(), (dir / "p.yaml").string()},
      (dir / "stdout").string(), (dir / "stderr").string());
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  {  // `cp` of the aborting build over the running file, in place.
    std::ifstream in(crashy_dir("crashy_ctor_abort") / "sluice-crashy.so", std::ios::binary);
    std::ofstream out(so, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  httplib::Client admin("127.0.0.1", port);
  std::string health;
  for (int i = 0; i < 40 && health.find("SIGABRT") == std::string::npos; ++i) {
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
  CHECK(lines_of(dir / "out.jsonl").size() == 30000);
}
