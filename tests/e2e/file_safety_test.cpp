// The file source and sink through the launcher: a second run on the same offset file or output
// file is refused with exit 2, and a stale offset stops the run before anything is read.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
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

// Waits until `file` exists and is not empty, at most a few seconds.
bool wait_for_content(const fs::path& file) {
  for (int i = 0; i < 200; ++i) {
    std::error_code ec;
    if (fs::exists(file, ec) && fs::file_size(file, ec) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

// Writes `yaml` to dir/name and runs it to its end.
ProcessResult run_yaml(const fs::path& dir, const std::string& name, const std::string& yaml) {
  write_file((dir / name).string(), yaml);
  return run_process({bin(), "run", (dir / name).string()});
}

}  // namespace

TEST_CASE("a second sluice on the same offset file or output file exits 2 naming the holder") {
  auto dir = scratch("file-lock");
  write_file((dir / "in.jsonl").string(), numbered_lines(100));
  // The first run follows its input, so it keeps its files until it is stopped.
  write_file((dir / "first.yaml").string(),
             "name: first\nsource: {type: file, path: in.jsonl, follow: true}\n"
             "sink: {type: file, path: out.jsonl}\n");
  const int pid = start_process({bin(), "run", (dir / "first.yaml").string()},
                                (dir / "stdout").string(), (dir / "stderr").string());
  REQUIRE(wait_for_content(dir / "out.jsonl"));
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
