// The file sink: records appended to a file as JSON lines, made durable per the fsync policy.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sluice/safe_files.hpp>

#include "file_plugins.hpp"

namespace sluice_plugins {

namespace {

FileSink::Fsync parse_fsync(const std::string& name) {
  if (name == "none") return FileSink::Fsync::none;
  if (name == "batch") return FileSink::Fsync::batch;
  if (name == "always") return FileSink::Fsync::always;
  throw sluice::ConfigError("fsync", "fsync must be none, batch or always, not '" + name + "'");
}

// The output, opened for appending: never through a link or into a file that another user
// planted in a folder others can write (sluice/safe_files.hpp). -1 with `error` set.
int open_output(const std::string& path, std::string& error) {
  return sluice::files::open_checked(path, O_RDWR | O_CREAT | O_APPEND, 0644,
                                     sluice::files::Use::state, error);
}

}  // namespace

sluice::ConfigSchema FileSink::schema() {
  sluice::ConfigSchema s;
  s.string("path")
      .required()
      .path(sluice::ConfigSchema::PathKind::output)
      .doc("The file to append to (created if missing).");
  s.string("fsync")
      .default_value("batch")
      .one_of({"none", "batch", "always"})
      .doc(
          "none: leave flushing to the OS; batch: fsync once at the end of each put; always: "
          "fsync after every record.");
  declare_line_format(s);
  return s;
}

FileSink::FileSink(const sluice::Config& c, sluice::Host& host)
    : host_(host),
      path_(c.get_string("path")),
      fsync_(parse_fsync(c.get_string("fsync", "batch"))),
      encoder_(parse_line_format(c.get_string("format", "value"))) {
  if (path_.empty()) throw sluice::ConfigError("path", "path must not be empty");
  std::string error;
  fd_ = FileDescriptor(open_output(path_, error));
  if (!fd_.valid()) throw sluice::ConfigError("path", error);
  struct stat st {};
  if (::fstat(fd_.get(), &st) == 0 && S_ISREG(st.st_mode)) {  // not /dev/null, a pipe, ...
    output_lock_ =
        FileLock(lock_path_for(path_), "output file " + path_, host_.instance_name(), "path");
    lock_open_file(output_lock_.shared());
  }
  // Only once no other run writes the file: a line another run is writing is not torn.
  drop_torn_tail();
}

// Two runs writing one file under two names (a symbolic link: lock_path_for resolves it; a hard
// link: only the file itself can tell) interleaved their lines, and the second one's start cut
// the first one's line in progress as torn (acknowledged records lost).
void FileSink::lock_open_file(bool reload) {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  output_file_lock_ = OpenFileLock(fd_.get(), "output file " + path_, reload, "path");
}

off_t FileSink::size() const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0)
    throw sluice::Retriable("cannot stat " + path_ + ": " + std::strerror(errno));
  return st.st_size;
}

// A run killed inside a write can leave a last line without its newline. That record was never
// acknowledged, so it is delivered again; the torn bytes are cut so no line is corrupt.
void FileSink::drop_torn_tail() {
  off_t end = size();
  if (end == 0) return;
  char buf[4096];
  off_t pos = end;
  bool last_byte = true;
  while (pos > 0) {
    const off_t from =
        pos > static_cast<off_t>(sizeof buf) ? pos - static_cast<off_t>(sizeof buf) : 0;
    const ssize_t n = ::pread(fd_.get(), buf, static_cast<size_t>(pos - from), from);
    if (n <= 0)
      throw sluice::ConfigError("path", "cannot read " + path_ + ": " + std::strerror(errno));
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[i] == '\n') {
        if (last_byte) return;  // ends with a whole line
        truncate_to(from + i + 1);
        host_.warn("file " + path_ + ": cut a torn last line (" +
                   std::to_string(end - (from + i + 1)) + " bytes) left by an interrupted run");
        return;
      }
      last_byte = false;
    }
    pos = from;
  }
  truncate_to(0);
  host_.warn("file " + path_ + ": cut a torn line (" + std::to_string(end) +
             " bytes, no newline) left by an interrupted run");
}

void FileSink::truncate_to(off_t length) {
  if (::ftruncate(fd_.get(), length) != 0)
    throw sluice::Retriable("cannot truncate " + path_ + ": " + std::strerror(errno));
}

void FileSink::write_all(std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw sluice::Retriable("cannot write " + path_ + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

void FileSink::sync() {
  if (::fdatasync(fd_.get()) != 0)
    throw sluice::Retriable("cannot fsync " + path_ + ": " + std::strerror(errno));
}

// A batch is acknowledged only once it is in the file that `path` names: a deleted or replaced
// file is noticed after writing, and the batch written again to a fresh `path`.
void FileSink::put(const sluice::Batch& in, sluice::Output& /*rejects*/) {
  std::lock_guard lock(mutex_);
  if (const std::string note = output_lock_.reassert(); !note.empty()) host_.warn(note);
  write_batch(in);
  if (!path_names_open_file()) {
    host_.warn("file " + path_ + " was deleted or replaced while sluice wrote to it; writing " +
               "the batch again to a new " + path_);
    reopen();
    write_batch(in);
    if (!path_names_open_file())
      throw sluice::Retriable("file " + path_ + " keeps being deleted or replaced");
  }
  host_.counter_add("records", static_cast<double>(in.size()));
}

// The most bytes of lines a put holds before it writes them.
constexpr size_t kWriteChunkBytes = 1 << 20;

void FileSink::write_batch(const sluice::Batch& in) {
  pending_.clear();
  // A failed put is retried whole, so whatever part of it reached the file is cut first: no
  // torn line, and no record written twice by the retry.
  const off_t start = size();
  try {
    for (const auto& r : in) {
      encoder_.append(r, pending_);
      if (fsync_ == Fsync::always) {
        write_all(pending_);
        sync();
        pending_.clear();
      } else if (pending_.size() >= kWriteChunkBytes) {
        // Written as it fills, so the lines of a batch of large records are never held twice.
        write_all(pending_);
        pending_.clear();
      }
    }
    write_all(pending_);
    if (fsync_ == Fsync::batch && !in.empty()) sync();
  } catch (...) {
    if (::ftruncate(fd_.get(), start) != 0)
      host_.warn("file " + path_ + ": cannot cut a failed batch: " + std::strerror(errno));
    throw;
  }
}

// False once the open file is unlinked, or `path` names another file (deleted and created
// again, or renamed over).
bool FileSink::path_names_open_file() const {
  struct stat open_file {};
  struct stat on_disk {};
  if (::fstat(fd_.get(), &open_file) != 0)
    throw sluice::Retriable("cannot stat " + path_ + ": " + std::strerror(errno));
  if (open_file.st_nlink == 0) return false;
  if (::stat(path_.c_str(), &on_disk) != 0) {
    if (errno == ENOENT) return false;
    throw sluice::Retriable("cannot stat " + path_ + ": " + std::strerror(errno));
  }
  return on_disk.st_dev == open_file.st_dev && on_disk.st_ino == open_file.st_ino;
}

void FileSink::reopen() {
  std::string error;
  FileDescriptor fresh(open_output(path_, error));
  if (!fresh.valid()) throw sluice::Retriable(error);
  fd_ = std::move(fresh);
  try {
    lock_open_file(/*reload=*/false);
  } catch (const sluice::ConfigError& e) {
    throw sluice::Fatal(std::string("the new ") + e.what() + "; stopping");
  }
}

// Batches were each checked when acknowledged; a file deleted since then took them with it.
// Later batches go to a fresh `path`.
void FileSink::flush() {
  std::lock_guard lock(mutex_);
  sync();
  if (!path_names_open_file()) {
    host_.warn("file " + path_ + " was deleted or replaced since the last batch; later batches " +
               "go to a new " + path_);
    reopen();
  }
}

}  // namespace sluice_plugins
