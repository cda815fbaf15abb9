// Opening files where another local user could have planted something: the checks sluice's own
// file plugins and state files use, for plugin authors who write files too.
//
// sluice often runs as root and is often pointed at a shared folder (/tmp, a group-writable
// data folder). Another user who can write that folder can plant a symbolic link at a name
// sluice is about to open — `out.jsonl -> /etc/passwd`, `offsets.json.tmp -> /root/.bashrc` — or
// a file of their own that sluice would then read as its state or append its records to. The
// kernel refuses both in sticky world-writable folders when fs.protected_symlinks and
// fs.protected_regular are on, but they are often off (containers, older systems). These
// functions apply the same rules themselves, in any folder that group or others can write:
//
//   - a symbolic link there is followed only if it belongs to us, to root or to the folder's
//     owner (fs.protected_symlinks);
//   - a file sluice keeps state in or writes to (Use::state) that is already there must belong
//     to us, to root or to the folder's owner (fs.protected_regular);
//   - a file there with a second hard link is refused for any use (fs.protected_hardlinks);
//   - a temporary file is created exclusively, never through a link, and renamed into place.
//
// A refusal names the path, the owner and the folder. In a folder only its owner can write,
// nothing is refused: its owner could change the files anyway.
#pragma once

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace sluice::files {

// What a file is opened for. read_data: records to read (a planted link is refused, a file of
// another user is their data and is read). state: an offset, a journal, a lock, a sink's
// output, anything whose content sluice trusts or another user must not receive.
enum class Use { read_data, state };

namespace detail {

inline std::string user_text(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  char buffer[1024];
  if (::getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) == 0 && found != nullptr)
    return std::string(found->pw_name) + " (uid " + std::to_string(uid) + ")";
  return "uid " + std::to_string(uid);
}

inline std::string folder_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

inline bool others_can_write(const struct stat& st) {
  return (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

// True when `owner` may have put a file in `folder` (whose stat is `dir`) without it being a
// trap: ourselves, root, or whoever owns the folder.
inline bool trusted_owner(uid_t owner, const struct stat& dir) {
  return owner == ::geteuid() || owner == 0 || owner == dir.st_uid;
}

inline std::string errno_text(const std::string& what, const std::string& path) {
  return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

// Why the file `entry` (not a link) at `path` in a folder others can write must not be used.
// A second hard link is refused for any use: without fs.protected_hardlinks another user can
// link a file of ours or root's here (one they cannot even read), and its owner looks trusted.
inline std::string untrusted_file(const std::string& path, const struct stat& entry,
                                  const struct stat& dir, Use use, const std::string& where) {
  if (S_ISREG(entry.st_mode) && entry.st_nlink > 1)
    return path + " has " + std::to_string(entry.st_nlink) + " hard links" + where +
           ": refused (another user could have linked a file of someone else here; use a folder "
           "only you can write)";
  if (use == Use::state && !trusted_owner(entry.st_uid, dir))
    return path + " is owned by " + user_text(entry.st_uid) + where +
           ": refused (its owner could read or change it; use a folder only you can write)";
  return {};
}

}  // namespace detail

// Why opening `path` for `use` would let another local user choose what is read or written;
// empty when nothing is wrong (or nothing is there yet). Only the last part of the path is
// judged, as the kernel's own protections do.
inline std::string distrust_reason(const std::string& path, Use use) {
  struct stat entry {};
  if (::lstat(path.c_str(), &entry) != 0) return {};
  const std::string folder = detail::folder_of(path);
  struct stat dir {};
  if (::stat(folder.c_str(), &dir) != 0 || !detail::others_can_write(dir)) return {};
  const std::string where = " in " + folder + ", a folder that others can write";
  if (S_ISLNK(entry.st_mode)) {
    if (detail::trusted_owner(entry.st_uid, dir)) return {};
    return path + " is a symbolic link owned by " + detail::user_text(entry.st_uid) + where +
           ": refused (it could point anywhere; use a folder only you can write)";
  }
  return detail::untrusted_file(path, entry, dir, use, where);
}

// open(2) after distrust_reason's check: the descriptor, or -1 with `error` set (and errno: a
// refusal sets EACCES, so that a caller that takes ENOENT for "nothing there yet" never takes a
// refused file for a missing one). The last part of the path is opened with O_NOFOLLOW first, so
// a file swapped for a link after the check is not followed; a link that passed the check is
// followed and must still be the one checked.
inline int open_checked(const std::string& path, int flags, mode_t mode, Use use,
                        std::string& error) {
  if (auto why = distrust_reason(path, use); !why.empty()) {
    error = std::move(why);
    errno = EACCES;
    return -1;
  }
  int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd >= 0) {
    // What was opened is judged again: a file planted (or linked) between the check and the
    // open, where nothing was yet, is refused all the same.
    struct stat opened {};
    struct stat dir {};
    const std::string folder = detail::folder_of(path);
    if (::fstat(fd, &opened) == 0 && ::stat(folder.c_str(), &dir) == 0 &&
        detail::others_can_write(dir)) {
      auto why = detail::untrusted_file(path, opened, dir, use,
                                        " in " + folder + ", a folder that others can write");
      if (!why.empty()) {
        ::close(fd);
        error = std::move(why);
        errno = EACCES;
        return -1;
      }
    }
    return fd;
  }
  if (errno != ELOOP) {
    error = detail::errno_text("open", path);
    return fd;
  }
  struct stat before {};
  if (::lstat(path.c_str(), &before) != 0) {
    error = detail::errno_text("open", path);
    return -1;
  }
  fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    error = detail::errno_text("open", path);
    return -1;
  }
  struct stat after {};
  if (::lstat(path.c_str(), &after) != 0 || after.st_ino != before.st_ino ||
      after.st_uid != before.st_uid) {
    ::close(fd);
    error = path + " was replaced while it was being opened: refused";
    errno = EACCES;
    return -1;
  }
  return fd;
}

// Replaces `path` with `text`: written to `path`.tmp, created exclusively and never through a
// link (a leftover of ours from a crash is removed first; anything else there is refused),
// fsync'ed when `sync`, then renamed over `path` (which replaces a link rather than follow it).
// False with `error` set on failure; `path` is then unchanged.
inline bool replace_file(const std::string& path, std::string_view text, mode_t mode, bool sync,
                         std::string& error) {
  const std::string tmp = path + ".tmp";
  int fd = -1;
  for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) break;
    if (errno != EEXIST) break;
    struct stat st {};
    if (::lstat(tmp.c_str(), &st) != 0) continue;  // gone meanwhile: try again
    if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) {
      error = tmp + " is in the way (" + (S_ISLNK(st.st_mode) ? "a symbolic link" : "a file") +
              " owned by " + detail::user_text(st.st_uid) + "): refused; remove it";
      return false;
    }
    ::unlink(tmp.c_str());  // our own leftover from an interrupted write
  }
  if (fd < 0) {
    error = detail::errno_text("create", tmp);
    return false;
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    done += static_cast<size_t>(n);
  }
  const bool written = done == text.size() && (!sync || ::fsync(fd) == 0);
  if (!written) error = detail::errno_text("write", tmp);
  ::close(fd);
  if (written && ::rename(tmp.c_str(), path.c_str()) == 0) return true;
  if (written) error = detail::errno_text("rename " + tmp + " to", path);
  ::unlink(tmp.c_str());
  return false;
}

}  // namespace sluice::files
