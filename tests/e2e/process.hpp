// Runs a child process with arguments and captures its exit status, stdout and stderr.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace sluice::test {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal if it was killed
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] a path) with extra environment entries "NAME=VALUE"; waits for it.
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {});

// Starts `argv` in the background with stdout/stderr to files; returns its pid.
int start_process(const std::vector<std::string>& argv, const std::string& out_file,
                  const std::string& err_file, const std::vector<std::string>& env = {});
// Waits for a started process; returns its exit code (128 + signal if killed).
int wait_process(int pid);
// wait_process, but a process still running after `limit` is killed: -1.
int wait_within(int pid, std::chrono::seconds limit);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);

}  // namespace sluice::test
