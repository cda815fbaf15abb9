// The file source and sink through the launcher: a second run (or a second pipeline of one run)
// on the same offset file or output file is refused with exit 2, a hot reload keeps the locks,
// and a stale offset stops the run before anything is read.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using namespace sluice::test;

namespace {

std::string numbered_lines(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) text += "{\"n\":" + std::to_string(i) + "}\n";
  return text;
}

// Waits until `file` holds `count` lines, at most a few seconds.
bool wait_for_lines(const fs::path& file, size_t count) {
  for (int i = 0; i < 200; ++i) {
    const std::string text = read_file(file.string());
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

// Writes `yaml` to dir/name and runs it to its end.
ProcessResult run_yaml(const fs::path& dir, const std::string& name, const std::string& yaml) {
  write_file((dir / name).string(), yaml);
  return run_process({bin(), "run", (dir / name).string()});
}

// Starts `sluice run` on a pipeline "follow" that follows dir/in.jsonl (100 lines) into
// dir/out.jsonl, so it holds both files until it is stopped; returns once all 100 are written.
int start_following(const fs::path& dir) {
  write_file((dir / "in.jsonl").string(), numbered_lines(100));
  write_file((dir / "follow.yaml").string(),
             "name: follow\nsource: {type: file, path: in.jsonl, follow: true, "
             "poll_interval_ms: 10}\nsink: {type: file, path: out.jsonl}\n");
  const int pid = start_process({bin(), "run", "--admin", "off", (dir / "follow.yaml").string()},
                                (dir / "stdout").string(), (dir / "stderr").string());
  REQUIRE(wait_for_lines(dir / "out.jsonl", 100));
  return pid;
}

}  // namespace

TEST_CASE("a second sluice on the same offset file or output file exits 2 naming the holder") {
  auto dir = scratch("file-lock");
  const int pid = start_following(dir);
  struct Case {
    const char* what;
    std::string yaml, expected;
  };
  for (const Case& c :
       {Case{"same offset file",
             "name: second\nsource: {type: file, path: in.jsonl}\n"
             "sink: {type: file, path: other.jsonl}\n",
             "offset file " + (dir / "in.jsonl.sluice-offset").string() +
                 " is in use by another sluice (pid " + std::to_string(pid) + ")"},
        Case{"same output file",
             "name: second\nsource: {type: generator, count: 10}\n"
             "sink: {type: file, path: out.jsonl}\n",
             "output file " + (dir / "out.jsonl").string() + " is in use by another sluice (pid " +
                 std::to_string(pid) + ")"}}) {
    CAPTURE(c.what);
    auto r = run_yaml(dir, "second.yaml", c.yaml);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.expected) != std::string::npos);
  }
  kill(pid, SIGTERM);
  CHECK(wait_process(pid) == 0);
  // Once the first run is gone, its files are free again, and nothing was lost.
  auto r = run_yaml(dir, "second.yaml",
                    "name: second\nsource: {type: file, path: in.jsonl}\n"
                    "sink: {type: file, path: out.jsonl}\n");
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(read_file((dir / "out.jsonl").string()) == numbered_lines(100));
}

TEST_CASE("an offset file whose offset is not a line start stops the run with exit 2") {
  auto dir = scratch("stale-offset");
  write_file((dir / "in.jsonl").string(), numbered_lines(50));
  const fs::path offsets = dir / "in.jsonl.sluice-offset";
  write_file(offsets.string(), "{\"line_offset\":21}\n");  // inside the third line
  auto r = run_yaml(dir, "p.yaml",
                    "name: p\nsource: {type: file, path: in.jsonl}\n"
                    "sink: {type: file, path: out.jsonl}\n");
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("offset file " + offsets.string() +
                   ": line_offset 21 is not the start of a "
                   "line") != std::string::npos);
  // Nothing read, nothing skipped: the offset file is as it was.
  CHECK(read_file(offsets.string()) == "{\"line_offset\":21}\n");
}

TEST_CASE("two pipelines of one sluice writing one output file: the run exits 2 naming the stage") {
  auto dir = scratch("file-lock-one-process");
  fs::create_directories(dir / "pipelines");
  for (const std::string name : {"a", "b"})
    write_file((dir / "pipelines" / (name + ".yaml")).string(),
               "name: " + name + "\nsource: {type: generator, count: 10}\n" +
                   "sink: {type: file, path: ../out.jsonl}\n");
  auto r = run_process({bin(), "run", (dir / "pipelines").string()});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("output file " + (dir / "out.jsonl").lexically_normal().string() +
                   " is in use by stage '") != std::string::npos);
  CHECK(r.err.find("' of this sluice") != std::string::npos);
}

TEST_CASE("a hot reload of the file source and sink keeps their locks and loses nothing") {
  auto dir = scratch("file-lock-reload");
  const int pid = start_following(dir);
  kill(pid, SIGHUP);  // reloads every stage: new instances while the old ones hold the locks
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  std::ofstream(dir / "in.jsonl", std::ios::app | std::ios::binary) << "{\"n\":100}\n";
  CHECK(wait_for_lines(dir / "out.jsonl", 101));
  // The reloaded instances hold the locks: another run is still refused.
  auto r = run_yaml(dir, "second.yaml",
                    "name: second\nsource: {type: file, path: in.jsonl}\n"
                    "sink: {type: null}\n");
  CHECK(r.exit_code == 2);
  kill(pid, SIGTERM);
  CHECK(wait_process(pid) == 0);
  const std::string log = read_file((dir / "stderr").string());
  INFO(log);
  CHECK(log.find("stage follow.source reloaded") != std::string::npos);
  CHECK(log.find("stage follow.sink reloaded") != std::string::npos);
  CHECK(log.find("in use") == std::string::npos);
  CHECK(read_file((dir / "out.jsonl").string()) == numbered_lines(101));
}
