// The file source and sink through the launcher: a second run (or a second pipeline of one run)
// on the same offset file or output file is refused with exit 2, a hot reload keeps the locks,
// and a stale offset stops the run before anything is read.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
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
  fs::create_symlink("out.jsonl", dir / "link.jsonl");
  fs::create_hard_link(dir / "out.jsonl", dir / "hard.jsonl");
  fs::create_symlink("in.jsonl.sluice-offset", dir / "link.offset");
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
                 std::to_string(pid) + ")"},
        // Another name of the same file: the two runs interleaved their lines, and the second
        // one's start cut the first one's line in progress as torn (acknowledged records lost).
        Case{"same output file through a symbolic link",
             "name: second\nsource: {type: generator, count: 10}\n"
             "sink: {type: file, path: link.jsonl}\n",
             "output file " + (dir / "link.jsonl").string() + " is in use by another sluice (pid " +
                 std::to_string(pid) + ") (lock file " + (dir / "out.jsonl.lock").string()},
        Case{"same output file through a hard link",
             "name: second\nsource: {type: generator, count: 10}\n"
             "sink: {type: file, path: hard.jsonl}\n",
             "output file " + (dir / "hard.jsonl").string() +
                 " is the file another sluice run (or another stage) writes, "
                 "under another name (a hard link)"},
        Case{"same offset file through a symbolic link",
             "name: second\nsource: {type: file, path: in.jsonl, offset_file: link.offset}\n"
             "sink: {type: file, path: other.jsonl}\n",
             "offset file " + (dir / "link.offset").string() +
                 " is in use by another sluice (pid " + std::to_string(pid) + ")"}}) {
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

TEST_CASE("an offset refused mid-run with nothing read after it still fails the run (exit 1)") {
  auto dir = scratch("offset-refused-mid-run");
  write_file((dir / "in.jsonl").string(), numbered_lines(100));
  write_file((dir / "p.yaml").string(),
             "name: refused\nsource: {type: file, path: in.jsonl, offset_file: in.offset, "
             "follow: true, poll_interval_ms: 10}\nsink: {type: file, path: out.jsonl}\n"
             "errors: {retry: {initial_backoff_ms: 1, max_backoff_ms: 5, max_attempts: 2}}\n");
  const int pid = start_process({bin(), "run", "--admin", "off", (dir / "p.yaml").string()},
                                (dir / "stdout").string(), (dir / "stderr").string());
  REQUIRE(wait_for_lines(dir / "out.jsonl", 100));
  const auto offset = dir / "in.offset";
  for (int i = 0; i < 200 && !fs::exists(offset); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  REQUIRE(fs::exists(offset));
  // The offset file becomes a folder: the commit of the next lines is refused through every
  // retry, and nothing is read after them.
  fs::remove(offset);
  fs::create_directory(offset);
  std::ofstream(dir / "in.jsonl", std::ios::app | std::ios::binary) << "{\"n\":100}\n";
  REQUIRE(wait_for_lines(dir / "out.jsonl", 101));
  std::string log;
  for (int i = 0; i < 200 && log.find("commit failed after") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    log = read_file((dir / "stderr").string());
  }
  REQUIRE(log.find("commit failed after") != std::string::npos);
  kill(pid, SIGTERM);
  // Was exit 0: the refused position was dropped, so the final commit had nothing to store.
  CHECK(wait_process(pid) == 1);
  log = read_file((dir / "stderr").string());
  INFO(log);
  CHECK(log.find("the final commit failed") != std::string::npos);
}

// ---- another local user ---------------------------------------------------------------------
// sluice runs as root and is pointed at a shared folder (mode 1777, like /tmp), where another
// user (uid 65534) planted links to a file of root's, or files of their own. Every such name is
// refused with its reason, and the file the links point at is never touched (needs root to plant
// the entries as that user; elsewhere the case says so and passes).

namespace {

constexpr uid_t kOtherUser = 65534;

struct SharedFolder {
  fs::path dir, shared, victim;
  explicit SharedFolder(const std::string& name) : dir(scratch(name)) {
    shared = dir / "shared";
    fs::create_directories(shared);
    ::chmod(shared.c_str(), 01777);
    victim = dir / "victim";
    write_file(victim.string(), "precious\n");
    write_file((shared / "in.jsonl").string(), numbered_lines(20));
  }
  void plant_link(const std::string& name) const {
    const fs::path at = shared / name;
    fs::create_symlink(victim, at);
    REQUIRE(::lchown(at.c_str(), kOtherUser, kOtherUser) == 0);
  }
  void plant_file(const std::string& name, const std::string& text) const {
    write_file((shared / name).string(), text);
    REQUIRE(::chown((shared / name).c_str(), kOtherUser, kOtherUser) == 0);
  }
  // The pipeline file lives in the private folder; its data in the shared one.
  ProcessResult run(const std::string& extra_args = "") const {
    write_file((dir / "p.yaml").string(),
               "name: p\nsource: {type: file, path: " + (shared / "in.jsonl").string() +
                   "}\nsink: {type: file, path: " + (shared / "out.jsonl").string() +
                   "}\nerrors: {retry: {initial_backoff_ms: 10, max_backoff_ms: 20}}\n");
    std::vector<std::string> argv{bin(), "run", "--admin", "off"};
    if (!extra_args.empty()) argv.insert(argv.end(), {"--stats-file", extra_args});
    argv.push_back((dir / "p.yaml").string());
    return run_process(argv);
  }
};

bool can_plant() {
  if (::geteuid() == 0) return true;
  MESSAGE("skipped: planting another user's files needs root");
  return false;
}

}  // namespace

TEST_CASE("another user's link at the output, its lock or the offset file: exit 2, untouched") {
  if (!can_plant()) return;
  for (const std::string name : {"out.jsonl", "out.jsonl.lock", "in.jsonl.sluice-offset"}) {
    CAPTURE(name);
    SharedFolder f("planted-link");
    f.plant_link(name);
    const auto r = f.run();
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find((f.shared / name).string() + " is a symbolic link owned by nobody") !=
          std::string::npos);
    CHECK(read_file(f.victim.string()) == "precious\n");
  }
}

TEST_CASE("a hard link at the offset file or the stats file: exit 2, the linked file untouched") {
  // Without fs.protected_hardlinks another user can link a file of root's into the shared
  // folder. Both were used with exit 0: the offset file's refusal was taken for a missing file.
  if (!can_plant()) return;
  for (const std::string name : {"in.jsonl.sluice-offset", "stats.json"}) {
    CAPTURE(name);
    SharedFolder f("hard-link");
    fs::create_hard_link(f.victim, f.shared / name);
    const auto r = f.run((f.shared / "stats.json").string());
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find((f.shared / name).string() + " has 2 hard links") != std::string::npos);
    CHECK(read_file(f.victim.string()) == "precious\n");
    CHECK_FALSE(fs::exists(f.shared / "out.jsonl"));
  }
}

TEST_CASE("another user's offset file is not trusted: exit 2, nothing skipped") {
  if (!can_plant()) return;
  SharedFolder f("planted-offset");
  // A well-formed offset that would skip the first 10 lines if it were believed.
  f.plant_file("in.jsonl.sluice-offset",
               "{\"line_offset\":" + std::to_string(numbered_lines(10).size()) + "}\n");
  const auto r = f.run();
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("in.jsonl.sluice-offset is owned by nobody") != std::string::npos);
  CHECK_FALSE(fs::exists(f.shared / "out.jsonl"));
}

TEST_CASE("a planted temporary link: the offset is not committed (exit 1), the stats not written") {
  if (!can_plant()) return;
  SharedFolder f("planted-tmp");
  f.plant_link("in.jsonl.sluice-offset.tmp");
  f.plant_link("stats.json.tmp");
  const auto r = f.run((f.shared / "stats.json").string());
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("the final commit failed") != std::string::npos);
  CHECK(r.err.find("cannot write stats file: " + (f.shared / "stats.json.tmp").string() +
                   " is in the way") != std::string::npos);
  CHECK(read_file(f.victim.string()) == "precious\n");
  // Delivered all the same; a rerun reads them again (at-least-once), it loses none.
  CHECK(read_file((f.shared / "out.jsonl").string()) == numbered_lines(20));
  CHECK_FALSE(fs::exists(f.shared / "in.jsonl.sluice-offset"));
}

TEST_CASE("a ${file:} secret planted by another user is refused at its FILE:LINE:COL") {
  if (!can_plant()) return;
  SharedFolder f("planted-secret");
  f.plant_file("token", "known-to-them\n");
  write_file((f.dir / "p.yaml").string(),
             "name: p\nsource: {type: generator, count: 1}\nsink: {type: null}\n"
             "admin: {token: \"${file:" +
                 (f.shared / "token").string() + "}\"}\n");
  const auto r = run_process({bin(), "validate", (f.dir / "p.yaml").string()});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find((f.dir / "p.yaml").string() + ":4:") != std::string::npos);
  CHECK(r.err.find("token is owned by nobody") != std::string::npos);
}
