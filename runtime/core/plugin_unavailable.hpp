// Whether the plugin call the calling thread just made failed because the stage's plugin is not
// running, not because of its records: an isolated stage's proxy sets it when no plugin process
// runs (its restart failed and the next start waits out a backoff, or the stop's grace passed),
// and the pipeline then holds the records (retried, then the run fails) instead of
// dead-lettering them (docs/isolation.md).
#pragma once

namespace sluice::core {

// Cleared by the host before each plugin call, read right after it, on the same thread.
inline thread_local bool t_plugin_unavailable = false;

}  // namespace sluice::core
