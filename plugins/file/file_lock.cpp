// The sidecar lock that keeps two sluice runs off one offset file or output file.
#include "file_lock.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sluice/safe_files.hpp>
#include <sluice/sdk.hpp>

namespace sluice_plugins {

namespace {

struct Holder {
  long pid = 0;
  std::string stage;
};

Holder parse_holder(const std::string& text) {
  Holder h;
  char stage[256] = {};
  if (std::sscanf(text.c_str(), "pid %ld stage %255s", &h.pid, stage) == 2) h.stage = stage;
  return h;
}

std::string read_all(int fd) {
  std::string text(512, '\0');
  const ssize_t n = ::pread(fd, text.data(), text.size() - 1, 0);
  text.resize(static_cast<size_t>(std::max<ssize_t>(n, 0)));
  return text;
}

bool same_file(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

// The first other descriptor of this process open on the same file as `fd` for which
// `take(other)` returns true, or -1.
int other_descriptor_of(
    int fd, const std::function<bool(int)>& take = [](int) { return true; }) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (const dirent* entry = ::readdir(dir)) {
    const int other = std::atoi(entry->d_name);
    if (entry->d_name[0] == '.' || other == fd || other == ::dirfd(dir)) continue;
    if (same_file(other, fd) && take(other)) {
      found = other;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// The path the kernel keeps for the file open at `fd` (links resolved), or "".
std::string opened_path(int fd) {
  std::string link(4096, '\0');
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(proc.c_str(), link.data(), link.size());
  if (n <= 0 || static_cast<size_t>(n) >= link.size()) return {};
  link.resize(static_cast<size_t>(n));
  if (link.front() != '/' || link.ends_with(" (deleted)")) return {};
  return link;
}

}  // namespace

std::string lock_path_for(const std::string& file) {
  std::string error;
  // The same checks as every state file's open: a link another user planted in a folder others
  // can write is not followed (then the lock is named as written, and the file's own open
  // refuses it with its reason).
  const FileDescriptor fd(sluice::files::open_checked(file, O_RDONLY | O_NONBLOCK, 0,
                                                      sluice::files::Use::state, error));
  struct stat st {};
  if (fd.valid() && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode))
    if (const std::string opened = opened_path(fd.get()); !opened.empty()) return opened + ".lock";
  return file + ".lock";
}

OpenFileLock::OpenFileLock(int fd, std::string_view what, bool reload, const std::string& field)
    : fd_(::fcntl(fd, F_DUPFD_CLOEXEC, 0)) {
  if (!fd_.valid())
    throw sluice::ConfigError(field,
                              "cannot lock " + std::string(what) + ": " + std::strerror(errno));
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) return;
  if (errno != EWOULDBLOCK)
    throw sluice::ConfigError(field,
                              "cannot lock " + std::string(what) + ": " + std::strerror(errno));
  if (reload) {
    // The old instance's descriptor whose open file description holds the lock: locking it
    // again through a copy succeeds (the same description), through any other it would not.
    FileDescriptor copy;
    const int held = other_descriptor_of(fd_.get(), [&](int other) {
      if (other == fd) return false;
      copy = FileDescriptor(::fcntl(other, F_DUPFD_CLOEXEC, 0));
      return copy.valid() && ::flock(copy.get(), LOCK_EX | LOCK_NB) == 0;
    });
    if (held >= 0) {
      fd_ = std::move(copy);
      return;
    }
  }
  throw sluice::ConfigError(field, std::string(what) +
                                       " is the file another sluice run (or another stage) writes, "
                                       "under another name (a hard link)");
}

FileLock::FileLock(std::string lock_path, std::string_view what, std::string_view stage,
                   const std::string& field)
    : path_(std::move(lock_path)), what_(what), stage_(stage), field_(field) {
  std::string error;
  fd_ = FileDescriptor(
      sluice::files::open_checked(path_, O_RDWR | O_CREAT, 0644, sluice::files::Use::state, error));
  if (!fd_.valid()) throw sluice::ConfigError(field, "lock file: " + error);
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) {
    write_holder(stage);
    return;
  }
  if (errno != EWOULDBLOCK)
    throw sluice::ConfigError(field, "cannot lock " + path_ + ": " + std::strerror(errno));
  const std::string text = read_all(fd_.get());
  if (take_over_from_same_stage(text, stage)) return;
  const Holder h = parse_holder(text);
  std::string who = "another sluice";
  if (h.pid == static_cast<long>(::getpid()))
    who = "stage '" + h.stage + "' of this sluice";
  else if (h.pid > 0)
    who += " (pid " + std::to_string(h.pid) + ")";
  throw sluice::ConfigError(
      field, std::string(what) + " is in use by " + who + " (lock file " + path_ + ")");
}

std::string FileLock::reassert() {
  if (!fd_.valid()) return {};
  struct stat held {};
  struct stat named {};
  if (::fstat(fd_.get(), &held) == 0 && held.st_nlink > 0 && ::stat(path_.c_str(), &named) == 0 &&
      held.st_dev == named.st_dev && held.st_ino == named.st_ino)
    return {};
  try {
    FileLock again(path_, what_, stage_, field_);
    *this = std::move(again);
  } catch (const sluice::ConfigError& e) {
    throw sluice::Fatal("lock file " + path_ + " was deleted or replaced while this run held it: " +
                        e.what() + "; stopping, so that two runs do not share the " + what_);
  }
  return "lock file " + path_ + " was deleted or replaced while this run held it; locked again";
}

// A reload creates the stage's new instance while the old one still holds the lock: the new one
// shares the old one's open file description (dup), so the lock outlives the old instance.
bool FileLock::take_over_from_same_stage(std::string_view holder_text, std::string_view stage) {
  const Holder h = parse_holder(std::string(holder_text));
  if (h.pid != static_cast<long>(::getpid()) || h.stage != stage) return false;
  const int held = other_descriptor_of(fd_.get());
  if (held < 0) return false;
  FileDescriptor shared(::fcntl(held, F_DUPFD_CLOEXEC, 0));
  if (!shared.valid()) return false;
  fd_ = std::move(shared);
  shared_ = true;
  return true;
}

void FileLock::write_holder(std::string_view stage) {
  const std::string text =
      "pid " + std::to_string(::getpid()) + " stage " + std::string(stage) + "\n";
  if (::ftruncate(fd_.get(), 0) != 0) return;  // the lock holds even if its note is missing
  [[maybe_unused]] ssize_t n = ::pwrite(fd_.get(), text.data(), text.size(), 0);
}

}  // namespace sluice_plugins
