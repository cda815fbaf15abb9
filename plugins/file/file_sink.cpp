// The file sink: records appended to a file as JSON lines, made durable per the fsync policy.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "file_plugins.hpp"

namespace sluice_plugins {

namespace {

FileSink::Fsync parse_fsync(const std::string& name) {
  if (name == "none") return FileSink::Fsync::none;
  if (name == "batch") return FileSink::Fsync::batch;
  if (name == "always") return FileSink::Fsync::always;
  throw sluice::ConfigError("fsync", "fsync must be none, batch or always, not '" + name + "'");
}

}  // namespace

sluice::ConfigSchema FileSink::schema() {
  sluice::ConfigSchema s;
  s.string("path").required().path().doc("The file to append to (created if missing).");
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
  fd_ = FileDescriptor(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd_.valid())
    throw sluice::ConfigError("path", "cannot open " + path_ + ": " + std::strerror(errno));
}

void FileSink::write_all(std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    // A partial batch may be on disk now; the retry appends it again (at-least-once).
    if (n < 0) throw sluice::Retriable("cannot write " + path_ + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

void FileSink::sync() {
  if (::fdatasync(fd_.get()) != 0)
    throw sluice::Retriable("cannot fsync " + path_ + ": " + std::strerror(errno));
}

void FileSink::put(const sluice::Batch& in, sluice::Output& /*rejects*/) {
  std::lock_guard lock(mutex_);
  pending_.clear();
  for (const auto& r : in) {
    encoder_.append(r, pending_);
    if (fsync_ == Fsync::always) {
      write_all(pending_);
      sync();
      pending_.clear();
    }
  }
  write_all(pending_);
  if (fsync_ == Fsync::batch && !in.empty()) sync();
  host_.counter_add("records", static_cast<double>(in.size()));
}

void FileSink::flush() {
  std::lock_guard lock(mutex_);
  sync();
}

}  // namespace sluice_plugins
