// One `sluice plugin-host` child: started with posix_spawn of the host's own executable, its
// socket and shared regions, and how it ended.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "isolation/channel.hpp"
#include "isolation/shared_region.hpp"

namespace sluice::isolation {

// The executable that serves `plugin-host`: /proc/self/exe in the sluice launcher (linking
// plugin_host.cpp, which main() calls, sets it); empty elsewhere unless a test sets it.
void set_host_executable(std::filesystem::path path);
std::filesystem::path host_executable();

struct ChildOptions {
  std::filesystem::path file;  // the plugin library
  std::string plugin;          // the plugin's name in it
  int kind = 0;                // sluice_kind
  std::string instance_name;
  uint64_t memory_limit_mb = 0;
  bool check = false;  // --check: create, destroy and exit (a trial load)
  // The pipeline's memory limit in bytes (sluice_host_memory_limit; 0: unknown). The child shows
  // its plugin the smaller of it and memory_limit_mb.
  uint64_t pipeline_memory_limit = 0;
};

// Text for a wait status: "killed by signal 11 (SIGSEGV)", "exited with status 0".
std::string describe_wait_status(int status);

class ChildProcess {
 public:
  // Starts the child; throws std::system_error if it cannot be spawned.
  explicit ChildProcess(const ChildOptions& options);
  ~ChildProcess();  // kills it (SIGKILL) if it still runs, and reaps it
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  Channel& channel() { return *channel_; }
  SharedRegion& input() { return input_; }
  OutputRegion& output(size_t i) { return *outputs_[i]; }
  // An output region no record views (the last one, never viewed, if all others are).
  size_t free_output() const;
  // Whether records may view output region i (all but the last).
  static bool viewable(size_t i) { return i + 1 < kOutputRegions; }
  pid_t pid() const { return pid_; }
  // Puts the child's serving thread on `cpu`, if it is not there already; false (and nothing
  // changed) where the child may not run on it.
  bool move_to_cpu(int cpu);

  void kill();
  // Waits for the child to end (SIGKILL after `grace_ms`); returns its wait status.
  int wait(int grace_ms);

 private:
  pid_t pid_ = -1;
  int socket_ = -1;
  std::unique_ptr<Channel> channel_;
  SharedRegion input_;
  SharedRegion doorbell_;                 // a Doorbell the channel and the child count messages in
  std::vector<OutputRegionPtr> outputs_;  // records viewing one keep it after the child is gone
  int cpu_ = -1;                          // the CPU share_cpu() last put the child on
  bool reaped_ = false;
  int status_ = 0;
};

// For one call, the calling thread and the child's serving thread on one CPU, the caller's. The
// caller only waits while the child works, so the round trip then wakes each on the CPU it
// sleeps on, with the batch still in that CPU's cache; a wake-up across CPUs costs tens of µs
// (far more in a virtual machine), and left free, the scheduler would move the caller to the
// idle CPU at each reply. Inactive (nothing changed) where the CPU is unknown or the child may
// not run on it. The destructor gives the caller back its own CPUs.
class SharedCpu {
 public:
  explicit SharedCpu(ChildProcess& child);
  ~SharedCpu();
  SharedCpu(const SharedCpu&) = delete;
  SharedCpu& operator=(const SharedCpu&) = delete;
  bool active() const { return active_; }

 private:
  bool active_ = false;
  cpu_set_t own_{};  // the caller's CPUs before
};

}  // namespace sluice::isolation
