// Spawning and reaping plugin-host children.
#include "isolation/child_process.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace sluice::isolation {

namespace {

std::mutex g_exe_mu;

// Empty until set: only a program whose main() serves `plugin-host` may spawn itself, or a test
// binary would spawn copies of itself that run its tests again.
std::filesystem::path& executable() {
  static std::filesystem::path exe;
  return exe;
}

// The fds a child finds its socket and regions on: the socket, the input region, the output
// regions, then the doorbell (plugin_host.cpp reads them there).
constexpr int kChildSocketFd = 3;

[[noreturn]] void fail(int err, const char* what) {
  throw std::system_error(err, std::generic_category(), what);
}

// A close-on-exec copy at fd >= 16, so the spawn's dup2 onto 3..9 never overwrites a source.
int high_copy(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 16);
  if (copy < 0) fail(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return copy;
}

std::vector<std::string> child_arguments(const ChildOptions& o) {
  std::vector<std::string> args = {host_executable().string(),
                                   "plugin-host",
                                   "--file",
                                   o.file.string(),
                                   "--plugin",
                                   o.plugin,
                                   "--kind",
                                   std::to_string(o.kind),
                                   "--instance",
                                   o.instance_name,
                                   "--memory-limit-mb",
                                   std::to_string(o.memory_limit_mb),
                                   "--pipeline-memory-limit",
                                   std::to_string(o.pipeline_memory_limit),
                                   "--parent",
                                   std::to_string(::getpid())};
  if (o.check) args.push_back("--check");
  return args;
}

// posix_spawn (no fork of the multi-threaded host): default signal dispositions, an empty
// mask, and a process group of its own so a terminal's Ctrl-C reaches only the host.
pid_t spawn(const std::vector<std::string>& args, const std::vector<int>& fds) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (size_t i = 0; i < fds.size(); ++i)
    posix_spawn_file_actions_adddup2(&actions, fds[i], kChildSocketFd + static_cast<int>(i));
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, args[0].c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) fail(err, "spawning sluice plugin-host");
  return pid;
}

}  // namespace

void set_host_executable(std::filesystem::path path) {
  std::lock_guard lock(g_exe_mu);
  executable() = std::move(path);
}

std::filesystem::path host_executable() {
  std::lock_guard lock(g_exe_mu);
  return executable();
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended with wait status " + std::to_string(status);
}

ChildProcess::ChildProcess(const ChildOptions& options)
    : input_(SharedRegion::create("sluice-batch-in")),
      doorbell_(SharedRegion::create("sluice-doorbell")) {
  if (host_executable().empty())
    throw std::runtime_error(
        "this program cannot start plugin-host children (the sluice "
        "launcher can)");
  for (size_t i = 0; i < kOutputRegions; ++i)
    outputs_.emplace_back(OutputRegion::create("sluice-batch-out"));
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) fail(errno, "socketpair");
  socket_ = pair[0];
  channel_ = std::make_unique<Channel>(socket_);
  doorbell_.grow(sizeof(Doorbell));
  auto* counts = new (doorbell_.data()) Doorbell{};
  channel_->attach_doorbell(&counts->sent_to_child, &counts->sent_to_host);
  std::vector<int> fds = {high_copy(pair[1]), high_copy(input_.fd())};
  for (const auto& output : outputs_) fds.push_back(high_copy(output->region().fd()));
  fds.push_back(high_copy(doorbell_.fd()));
  ::close(pair[1]);
  try {
    pid_ = spawn(child_arguments(options), fds);
  } catch (...) {
    for (int fd : fds) ::close(fd);
    ::close(socket_);
    throw;
  }
  for (int fd : fds) ::close(fd);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    kill();
    wait(0);
  }
  if (socket_ >= 0) ::close(socket_);
}

void ChildProcess::kill() {
  if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
}

bool ChildProcess::move_to_cpu(int cpu) {
  if (pid_ <= 0 || reaped_) return false;
  if (cpu == cpu_) return true;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (::sched_setaffinity(pid_, sizeof one, &one) != 0) {
    cpu_ = -1;
    return false;
  }
  cpu_ = cpu;
  return true;
}

SharedCpu::SharedCpu(ChildProcess& child) {
  const int cpu = ::sched_getcpu();
  if (cpu < 0 || ::sched_getaffinity(0, sizeof own_, &own_) != 0) return;
  if (!child.move_to_cpu(cpu)) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  active_ = ::sched_setaffinity(0, sizeof one, &one) == 0;
}

SharedCpu::~SharedCpu() {
  if (active_) ::sched_setaffinity(0, sizeof own_, &own_);
}

size_t ChildProcess::free_output() const {
  for (size_t i = 0; i + 1 < outputs_.size(); ++i)
    if (!outputs_[i]->viewed()) return i;
  return outputs_.size() - 1;
}

int ChildProcess::wait(int grace_ms) {
  if (reaped_) return status_;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  for (;;) {
    pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) break;
    if (r < 0 && errno != EINTR) {
      status_ = 0;
      break;
    }
    if (std::chrono::steady_clock::now() >= until) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  reaped_ = true;
  return status_;
}

}  // namespace sluice::isolation
