// Process-wide protections the launcher sets up before it reads any secret.
#pragma once

namespace sluice::cli {

// Unless `allow_core_dumps`: makes the process non-dumpable (PR_SET_DUMPABLE 0) and sets its
// core size limit to 0, so neither a core file nor another process of the same user
// (/proc/PID/environ, /proc/PID/mem, ptrace) can read the admin token or plugin secrets out of
// its memory. Non-dumpable also makes the files of /proc/PID owned by root. Logs a warning
// and carries on when the kernel refuses.
void harden_process(bool allow_core_dumps);

}  // namespace sluice::cli
