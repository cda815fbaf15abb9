// Keeps secrets out of core files and out of reach of other processes of the same user.
#include "cli/process_hardening.hpp"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace sluice::cli {

void harden_process(bool allow_core_dumps) {
  if (allow_core_dumps) return;
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    spdlog::warn("cannot make the process non-dumpable: {}", std::strerror(errno));
  // With fs.suid_dumpable=2 the kernel still writes a root-only core of a non-dumpable process.
  const rlimit no_core{0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0)
    spdlog::warn("cannot turn core dumps off: {}", std::strerror(errno));
}

}  // namespace sluice::cli
