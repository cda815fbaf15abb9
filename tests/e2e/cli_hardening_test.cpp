// `sluice run` keeps its memory to itself: non-dumpable unless --allow-core-dumps; and `sluice
// reload` keeps its token from another user's listener.
//
// How it is observed from outside: the kernel makes every file of /proc/PID owned by root
// while a process is non-dumpable (so another process of the same user cannot read its
// environ, mem or maps). sluice is run as nobody, where a dumpable process's /proc/PID/environ
// would be owned by nobody: root ownership there can only come from PR_SET_DUMPABLE 0.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

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

// `sluice reload` sends the admin token; a process of another user that took the admin port of
// this machine must not get it, however the URL spells this machine's address.
TEST_CASE("reload sends no token to a port another user listens on, whatever names this machine") {
  REQUIRE_MESSAGE(::geteuid() == 0, "the test listens as nobody: it must run as root");
  int port_pipe[2], seen_pipe[2];
  REQUIRE(::pipe(port_pipe) == 0);
  REQUIRE(::pipe(seen_pipe) == 0);
  const pid_t listener = ::fork();
  REQUIRE(listener >= 0);
  if (listener == 0) {
    // nobody, on every address of this machine: it copies whatever a client sends it.
    ::close(port_pipe[0]);
    ::close(seen_pipe[0]);
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(1);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      ::_exit(1);
    const uint16_t port = ntohs(addr.sin_port);
    if (::write(port_pipe[1], &port, sizeof port) != sizeof port) ::_exit(1);
    for (;;) {
      const int client = ::accept(fd, nullptr, nullptr);
      if (client < 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n > 0 && ::write(seen_pipe[1], buf, static_cast<size_t>(n)) < 0) ::_exit(1);
      ::close(client);
    }
  }
  ::close(port_pipe[1]);
  ::close(seen_pipe[1]);
  uint16_t port = 0;
  REQUIRE(::read(port_pipe[0], &port, sizeof port) == sizeof port);
  std::vector<std::string> hosts = {"127.0.0.1", "localhost",  "LOCALHOST",
                                    "127.1",     "0x7f000001", "2130706433",
                                    "0",         "0.0.0.0",    "[::ffff:127.0.0.1]"};
  if (ifaddrs* list = nullptr; ::getifaddrs(&list) == 0) {  // an address of an interface
    for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
      char text[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text,
                  sizeof text);
      if (std::string(text).rfind("127.", 0) != 0) {
        hosts.emplace_back(text);
        break;
      }
    }
    ::freeifaddrs(list);
  }
  const std::string token = "Tok3n-for-the-admin-API";
  for (const auto& host : hosts) {
    const auto r = sluice::test::run_process(
        {bin(), "reload", "--url", "http://" + host + ":" + std::to_string(port)},
        {"SLUICE_ADMIN_TOKEN=" + token});
    CAPTURE(host);
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("uid 65534") != std::string::npos);
  }
  ::kill(listener, SIGKILL);
  ::waitpid(listener, nullptr, 0);
  std::string received;
  char buf[4096];
  for (ssize_t n; (n = ::read(seen_pipe[0], buf, sizeof buf)) > 0;)
    received.append(buf, static_cast<size_t>(n));
  ::close(seen_pipe[0]);
  ::close(port_pipe[0]);
  CHECK(received.find(token) == std::string::npos);
}
