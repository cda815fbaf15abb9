// The child side of an isolated stage: `sluice plugin-host` (hidden subcommand).
#pragma once

namespace sluice::isolation {

// Loads one plugin library, creates one instance and serves the host's calls over fd 3 (socket)
// with batches in fds 4 (input) and 5 (output). argv[1] is "plugin-host". Returns the exit code.
int plugin_host_main(int argc, char** argv);

}  // namespace sluice::isolation
