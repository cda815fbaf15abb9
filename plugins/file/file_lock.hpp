// An exclusive lock on a sidecar `.lock` file, so two sluice runs never share an offset file or
// an output file; the same stage's reloaded instance takes the lock over from the old one.
#pragma once

#include <string>
#include <string_view>

#include "file_descriptor.hpp"

namespace sluice_plugins {

// Holds flock(LOCK_EX) on `lock_path` for its lifetime. The lock file names its holder
// ("pid P stage S"), so a refused run can say who holds it, and a hot reload (a new instance of
// the same stage created in the same process while the old one still runs) shares the holder's
// open file description (found among this process's descriptors) instead of being refused.
class FileLock {
 public:
  FileLock() = default;
  // Takes the lock or throws sluice::ConfigError(field, "<what> is in use by ...").
  FileLock(std::string lock_path, std::string_view what, std::string_view stage,
           const std::string& field);

  const std::string& path() const { return path_; }
  // Whether this instance took the lock over from its stage's old instance (a hot reload).
  bool shared() const { return shared_; }

  // Whether the lock file `path()` names is still the one held. If it was deleted or replaced
  // (a second run could then lock a new one and write the same file), locks what the path names
  // now, creating it, and returns a warning saying so; if another run holds that one already,
  // throws sluice::Fatal naming it. Empty when nothing changed (or no lock is held).
  std::string reassert();

 private:
  bool take_over_from_same_stage(std::string_view holder, std::string_view stage);
  void write_holder(std::string_view stage);

  std::string path_;
  std::string what_, stage_, field_;
  FileDescriptor fd_;
  bool shared_ = false;
};

// A lock on the data file itself (flock on its open file description), beside the sidecar: two
// names of one file (hard links, which the sidecar's name cannot tell apart) are one lock.
class OpenFileLock {
 public:
  OpenFileLock() = default;
  // Locks the file open at `fd` (sharing its open file description) or throws
  // sluice::ConfigError(field, "<what> is the file another sluice run writes ..."). `reload`:
  // the stage's old instance in this process holds it; its lock is shared instead.
  OpenFileLock(int fd, std::string_view what, bool reload, const std::string& field);

 private:
  FileDescriptor fd_;
};

// The sidecar lock path for `file`: beside the file the path leads to, under its own name (a
// symbolic link at `file`, or in the folders on the way, is resolved: every spelling of one
// file shares one lock), or `file` as written when it cannot be opened (not there yet).
std::string lock_path_for(const std::string& file);

}  // namespace sluice_plugins
