// `sluice run` keeps its memory to itself: non-dumpable unless --allow-core-dumps.
//
// How it is observed from outside: the kernel makes every file of /proc/PID owned by root
// while a process is non-dumpable (so another process of the same user cannot read its
// environ, mem or maps). sluice is run as nobody, where a dumpable process's /proc/PID/environ
// would be owned by nobody: root ownership there can only come from PR_SET_DUMPABLE 0.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "process.hpp"

namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;

std::string bin() { return std::getenv("SLUICE_BIN"); }

// A folder nobody may write, for the pipeline's output.
fs::path scratch(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("sluice-hardening-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  REQUIRE(::chown(dir.c_str(), kNobody, kNobody) == 0);
  return dir;
}

// The owner of /proc/PID/environ while `sluice run` (as nobody, with `extra` flags) is running.
uid_t environ_owner_of_running_sluice(const std::string& name, const std::string& extra) {
  const fs::path dir = scratch(name);
  const fs::path out = dir / "out.jsonl";
  sluice::test::write_file((dir / "p.yaml").string(),
                           "name: endless\nsource: {type: generator, count: 0, rate: 1000}\n"
                           "sink: {type: file, path: " +
                               out.string() + "}\n");
  std::vector<std::string> argv = {"/usr/bin/setpriv",        "--reuid=65534", "--regid=65534",
                                   "--clear-groups",          bin(),           "run",
                                   (dir / "p.yaml").string(), "--admin",       "off"};
  if (!extra.empty()) argv.push_back(extra);
  const int pid =
      sluice::test::start_process(argv, (dir / "stdout").string(), (dir / "stderr").string());
  // Records in the output mean sluice has parsed its arguments and runs the pipeline.
  for (int i = 0; i < 200 && (!fs::exists(out) || fs::file_size(out) == 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  struct stat proc_status {
  }, proc_environ{};
  const std::string proc = "/proc/" + std::to_string(pid);
  const bool seen = ::stat(proc.c_str(), &proc_status) == 0 &&
                    ::stat((proc + "/environ").c_str(), &proc_environ) == 0;
  ::kill(pid, SIGTERM);
  const int code = sluice::test::wait_process(pid);
  INFO(sluice::test::read_file((dir / "stderr").string()));
  CHECK(seen);
  CHECK(code == 0);
  CHECK(fs::file_size(out) > 0);
  fs::remove_all(dir);
  return proc_environ.st_uid;
}

}  // namespace

TEST_CASE("sluice run is not dumpable: its /proc files belong to root even when run as nobody") {
  REQUIRE_MESSAGE(::geteuid() == 0, "the test runs sluice as nobody: it must run as root");
  CHECK(environ_owner_of_running_sluice("default", "") == 0);
}

TEST_CASE("--allow-core-dumps leaves sluice dumpable: its /proc files belong to its user") {
  REQUIRE_MESSAGE(::geteuid() == 0, "the test runs sluice as nobody: it must run as root");
  CHECK(environ_owner_of_running_sluice("allowed", "--allow-core-dumps") == kNobody);
}
