// SIGTERM of `sluice run` while clients that never read hold big /metrics answers: the admin
// server cuts those answers off, so the stop takes about as long as without them.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "../../e2e/process.hpp"
#include "../../e2e/scratch.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using sluice::test::bin;

// A loopback port nothing listens on right now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A connection that has sent `GET path`, with a small receive buffer; -1 if refused.
int request(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int small = 64 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const std::string text = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Whether /health answers (any status) within a second.
bool admin_answers(int port) {
  const int fd = request(port, "/health");
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  char buf[16] = {};
  const bool answered = ::poll(&p, 1, 1000) == 1 && ::recv(fd, buf, sizeof buf, 0) > 0 &&
                        std::string(buf, 7) == "HTTP/1.";
  ::close(fd);
  return answered;
}

// Starts `sluice run` of `file` with the admin API on `port`, waits for it, opens `readers`
// connections that ask for /metrics and never read, sends SIGTERM and returns the seconds from
// the signal to the exit.
double seconds_to_stop(const std::filesystem::path& file, int port, int readers,
                       const std::filesystem::path& dir) {
  const int pid =
      sluice::test::start_process({bin(), "run", "--no-plugin-watch", "--admin",
                                   "127.0.0.1:" + std::to_string(port), file.string()},
                                  (dir / "out.txt").string(), (dir / "err.txt").string());
  const auto started = Clock::now();
  while (!admin_answers(port)) {
    REQUIRE_MESSAGE(Clock::now() - started < std::chrono::seconds(60),
                    sluice::test::read_file((dir / "err.txt").string()));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::vector<int> held;
  for (int i = 0; i < readers; ++i) {
    const int fd = request(port, "/metrics");
    REQUIRE(fd >= 0);
    held.push_back(fd);
  }
  // The workers take the requests and write until the clients' buffers are full.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto signalled = Clock::now();
  ::kill(pid, SIGTERM);
  const int code = sluice::test::wait_process(pid);
  const double seconds = std::chrono::duration<double>(Clock::now() - signalled).count();
  for (const int fd : held) ::close(fd);
  CHECK(code == 0);
  return seconds;
}

}  // namespace

// 16 clients, 4 workers: each worker waited 2 s per stalled write, and the 12 queued requests
// were each made (4.8 MB of /metrics) and written in turn: SIGTERM took 28 s instead of 8 s
// (probe19a admin_slow_reader_sigterm.sh).
TEST_CASE("SIGTERM with clients that never read their /metrics takes about as long as without") {
  const auto dir = sluice::test::scratch("admin-sigterm-readers");
  // 3000 stages: /metrics is about 4.8 MB, more than a loopback socket's buffers hold.
  std::string yaml = "name: p\nsource: {type: generator, rate: 10}\ntransforms:\n";
  for (int i = 1; i <= 3000; ++i)
    yaml += "  - {type: fields, add: {f" + std::to_string(i) + ": x}}\n";
  yaml += "sink: {type: null}\n";
  sluice::test::write_file((dir / "huge.yaml").string(), yaml);
  const int port = free_port();

  const double without = seconds_to_stop(dir / "huge.yaml", port, 0, dir);
  const double with = seconds_to_stop(dir / "huge.yaml", port, 16, dir);
  MESSAGE("SIGTERM to exit: " << without << " s without readers, " << with << " s with 16");
  // The admin server is stopped once the pipelines have drained; until then it served the queued
  // requests beside the drain, which a loaded machine felt (seen up to +3 s, once +14 s while two
  // builds ran). From the stop request it answers them 503 and cuts off the answers being
  // written (admin_test); the bound still leaves room for a loaded machine.
  CHECK(with < without + 8);
}
