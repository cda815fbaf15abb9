// The file source: JSON lines from a file, committed positions kept in an offset file.
#include <fcntl.h>
#include <rapidjson/error/en.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>
#include <sluice/safe_files.hpp>
#include <thread>
#include <utility>

#include "file_plugins.hpp"

namespace sluice_plugins {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr const char* kErrorHeader = "sluice.error";

std::string errno_text() { return std::strerror(errno); }

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r") == std::string_view::npos; }

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void fsync_parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  FileDescriptor d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.valid()) ::fsync(d.get());
}

uint64_t fnv1a(std::string_view bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

// The first `bytes` bytes of the file as they are now; nullopt if it has fewer.
std::optional<std::string> head_of(int fd, int64_t bytes) {
  if (bytes < 0 || bytes > FileIdentity::kFingerprintBytes) return std::nullopt;
  std::string head(static_cast<size_t>(bytes), '\0');
  if (::pread(fd, head.data(), head.size(), 0) != bytes) return std::nullopt;
  return head;
}

// FNV-1a of the first `bytes` bytes of the file; nullopt if it has fewer.
std::optional<uint64_t> fingerprint(int fd, int64_t bytes) {
  const auto head = head_of(fd, bytes);
  if (!head) return std::nullopt;
  return fnv1a(*head);
}

bool get_uint64(const rapidjson::Value& doc, const char* name, uint64_t& out) {
  if (!doc.HasMember(name) || !doc[name].IsUint64()) return false;
  out = doc[name].GetUint64();
  return true;
}

// The identity kept in an offset file, if it has one.
std::optional<FileIdentity> stored_identity(const rapidjson::Value& doc) {
  FileIdentity id;
  uint64_t bytes = 0;
  if (!get_uint64(doc, "device", id.device) || !get_uint64(doc, "inode", id.inode) ||
      !get_uint64(doc, "fingerprint", id.fingerprint) ||
      !get_uint64(doc, "fingerprint_bytes", bytes))
    return std::nullopt;
  id.fingerprint_bytes = static_cast<int64_t>(bytes);
  return id;
}

}  // namespace

sluice::ConfigSchema FileSource::schema() {
  sluice::ConfigSchema s;
  s.string("path")
      .required()
      .path(sluice::ConfigSchema::PathKind::input)
      .doc("The JSON-lines file to read.");
  s.string("offset_file")
      .default_value("")
      .path(sluice::ConfigSchema::PathKind::output)
      .doc("Where committed positions are kept; default <path>.sluice-offset.");
  s.string("topic").default_value("").doc("Topic of every record; default the file's path.");
  s.boolean("follow").default_value(false).doc(
      "false: end of stream at end of file; true: keep reading lines appended later.");
  s.integer("poll_interval_ms")
      .default_value(100)
      .min(1)
      .max(60000)
      .doc("With follow: how often to look for new data.");
  s.integer("max_record_bytes")
      .default_value(1 << 20)
      .min(1)
      .doc(
          "A longer line is never held whole: its record carries the first max_record_bytes "
          "bytes and a sluice.error header with the line's length and offset (a later stage "
          "rejects or dead-letters it; the whole line stays in the file). Under a memory "
          "limit, at most an eighth of it.");
  s.boolean("validate_json")
      .default_value(true)
      .doc(
          "Flag lines that are not valid UTF-8 JSON with a sluice.error header (they are still "
          "emitted unchanged; a later stage rejects them).");
  s.string("key_field")
      .default_value("")
      .doc(
          "A top-level JSON string field whose value becomes the record key (a line that is not "
          "a JSON object, or has no such string field, has no key).");
  return s;
}

FileSource::FileSource(const sluice::Config& c, sluice::Host& host)
    : host_(host),
      path_(c.get_string("path")),
      offset_file_(c.get_string("offset_file")),
      topic_(c.get_string("topic")),
      follow_(c.get_bool("follow", false)),
      poll_interval_ms_(static_cast<uint32_t>(c.get_int("poll_interval_ms", 100))),
      max_record_bytes_(static_cast<size_t>(c.get_int("max_record_bytes", 1 << 20))),
      validate_json_(c.get_bool("validate_json", true)),
      key_field_(c.get_string("key_field")) {
  if (path_.empty()) throw sluice::ConfigError("path", "path must not be empty");
  // One line is held whole and copied on its way (the poll's output, the stage's records, a
  // dead letter): a line of max_record_bytes may cost several times its size. Under a memory
  // limit a line is held up to an eighth of it; past that it goes on as its flagged prefix, like
  // any line over max_record_bytes.
  if (const uint64_t limit = host_.memory_limit(); limit > 0 && max_record_bytes_ > limit / 8) {
    const auto cap = static_cast<size_t>(std::max<uint64_t>(limit / 8, 1));
    host_.warn("max_record_bytes " + std::to_string(max_record_bytes_) +
               " is over an eighth of the memory limit (" + std::to_string(limit) +
               " bytes): lines are held up to " + std::to_string(cap) +
               " bytes, and a longer one goes on as that prefix, flagged with its length");
    max_record_bytes_ = cap;
    capped_by_memory_ = true;
  }
  if (offset_file_.empty()) offset_file_ = path_ + ".sluice-offset";
  if (topic_.empty()) topic_ = path_;
  offset_lock_ = FileLock(lock_path_for(offset_file_), "offset file " + offset_file_,
                          host_.instance_name(), "offset_file");
  const std::optional<StoredOffset> stored = load_stored_offset();
  if (::access(path_.c_str(), R_OK) != 0 && !follow_)
    throw sluice::ConfigError("path", "cannot read " + path_ + ": " + errno_text());
  open_at(0);
  if (stored) resume(*stored);
}

// Resumes after the committed line if the offset file was written for this very file.
void FileSource::resume(const StoredOffset& stored) {
  if (!fd_.valid()) return;  // follow mode, the file is not there yet: read it from its start
  if (const std::string why = why_not_resumable(stored); !why.empty()) {
    host_.warn("file " + path_ + " " + why + " (offset file " + offset_file_ +
               "); reading it from the start");
    return;
  }
  require_line_start(stored.line_offset);
  committed_ = stored.line_offset;
  // Seek to the committed line's start and skip it.
  open_at(committed_);
  if (stored.unterminated_bytes && line_grew(stored.line_offset, *stored.unterminated_bytes)) {
    host_.warn("the last line of " + path_ + " (offset " + std::to_string(stored.line_offset) +
               ") was read without its newline, as " + std::to_string(*stored.unterminated_bytes) +
               " bytes, and has grown since: it is read again whole");
    committed_ = stored.line_offset - 1;  // so that its commit is written
    return;
  }
  std::string_view line;
  int64_t offset = 0;
  next_line(line, offset, /*at_eof_is_end=*/true);
}

// Whether the line at `offset`, read as `bytes` bytes without a '\n', continues now: more bytes
// follow it and the next is not its '\n' (a '\n' alone completes the same line).
bool FileSource::line_grew(int64_t offset, int64_t bytes) const {
  char next = 0;
  return ::pread(fd_.get(), &next, 1, offset + bytes) == 1 && next != '\n';
}

// Empty if the stored offset belongs to the open file, else why it does not.
std::string FileSource::why_not_resumable(const StoredOffset& stored) const {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return "cannot be examined: " + errno_text();
  if (st.st_size <= stored.line_offset)
    return "is shorter than its committed offset " + std::to_string(stored.line_offset);
  if (!stored.identity) return "";  // an offset file from an older sluice: no identity to check
  const FileIdentity& id = *stored.identity;
  if (static_cast<uint64_t>(st.st_dev) != id.device || static_cast<uint64_t>(st.st_ino) != id.inode)
    return "is another file (device/inode) than the one its committed offset belongs to";
  if (fingerprint(fd_.get(), id.fingerprint_bytes) != id.fingerprint)
    return "begins with other bytes than the file its committed offset belongs to";
  return "";
}

// A committed offset is a line's start. Anything else means the offset file was edited or
// belongs elsewhere; resuming there would silently skip or split records, so refuse to start.
void FileSource::require_line_start(int64_t offset) const {
  if (offset == 0) return;
  char before = 0;
  if (::pread(fd_.get(), &before, 1, offset - 1) == 1 && before == '\n') return;
  throw sluice::ConfigError(
      "offset_file", "offset file " + offset_file_ + ": line_offset " + std::to_string(offset) +
                         " is not the start of a line of " + path_ +
                         " (the offset file is stale or was edited); fix it, or delete it to "
                         "read the file from the start");
}

void FileSource::open_at(int64_t offset) {
  std::string error;
  fd_ = FileDescriptor(
      sluice::files::open_checked(path_, O_RDONLY, 0, sluice::files::Use::read_data, error));
  buf_.clear();
  buf_pos_ = 0;
  buf_offset_ = 0;
  eof_ = false;
  long_line_.active = false;
  unterminated_ = {};
  if (!fd_.valid()) {
    if (follow_ && errno == ENOENT) return;  // not there yet: poll keeps trying
    throw std::runtime_error(error);
  }
  if (offset > 0 && ::lseek(fd_.get(), offset, SEEK_SET) < 0)
    throw std::runtime_error("cannot seek in " + path_ + ": " + errno_text());
  buf_offset_ = offset;
  // From the start, fill() keeps the first bytes as it reads them. Resumed further in, they are
  // read now (a resume has just checked them against the stored identity).
  head_.clear();
  if (offset > 0) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) == 0)
      head_ = head_of(fd_.get(), std::min<int64_t>(st.st_size, FileIdentity::kFingerprintBytes))
                  .value_or("");
  }
}

bool FileSource::fill() {
  if (!fd_.valid()) return false;
  if (buf_pos_ > 0) {
    buf_.erase(0, buf_pos_);
    buf_offset_ += static_cast<int64_t>(buf_pos_);
    buf_pos_ = 0;
  }
  const size_t old = buf_.size();
  buf_.resize(old + kReadChunk);
  ssize_t n;
  do {
    n = ::read(fd_.get(), buf_.data() + old, kReadChunk);
  } while (n < 0 && errno == EINTR);
  buf_.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
  if (n < 0) throw sluice::Retriable("cannot read " + path_ + ": " + errno_text());
  const auto head = static_cast<size_t>(FileIdentity::kFingerprintBytes);
  if (n > 0 && head_.size() < head && buf_offset_ + static_cast<int64_t>(old) == std::ssize(head_))
    head_.append(buf_, old, std::min(static_cast<size_t>(n), head - head_.size()));
  eof_ = n == 0;
  return n > 0;
}

bool FileSource::next_line(std::string_view& line, int64_t& line_offset, bool at_eof_is_end) {
  size_t scan = buf_pos_;
  for (;;) {
    const size_t nl = buf_.find('\n', scan);
    if (nl != std::string::npos) {
      take_line(line, line_offset, nl, nl + 1);
      return true;
    }
    size_t scanned = buf_.size() - buf_pos_;
    if (long_line_.active || scanned > max_record_bytes_) {
      read_past_long_line();
      scanned = 0;
    }
    if (fill()) {
      scan = buf_pos_ + scanned;  // fill() moved the unconsumed bytes to the front
      continue;
    }
    // End of the file for now. A last line without '\n' is complete only if nothing is
    // appended any more; while following, it may still be being written.
    if (at_eof_is_end && (buf_pos_ < buf_.size() || long_line_.active)) {
      // Without follow, a file truncated under the reader leaves the line read last cut short:
      // it is emitted flagged (rejected or dead-lettered with the reason), not as a whole line.
      tail_cut_ = !follow_ && truncated_under_reader();
      take_line(line, line_offset, buf_.size(), buf_.size());
      unterminated_ = {line_offset, static_cast<int64_t>(emitted_line_bytes_)};
      return true;
    }
    return false;
  }
}

// The line that ends at buf_[end] (the long line in progress, if one is), consumed up to `next`.
void FileSource::take_line(std::string_view& line, int64_t& line_offset, size_t end, size_t next) {
  const size_t tail = end - buf_pos_;
  if (long_line_.active) {
    long_line_.active = false;
    line = long_line_.prefix;
    line_offset = long_line_.start;
    emitted_line_bytes_ = long_line_.bytes + tail;
  } else {
    line = std::string_view(buf_).substr(buf_pos_, tail);
    line_offset = buf_offset_ + static_cast<int64_t>(buf_pos_);
    emitted_line_bytes_ = tail;
  }
  buf_pos_ = next;
}

// A line past max_record_bytes without its end in sight: keep its prefix, count and drop the
// rest, so that a line of any length costs at most max_record_bytes plus one read.
void FileSource::read_past_long_line() {
  if (!long_line_.active) {
    long_line_.active = true;
    long_line_.start = buf_offset_ + static_cast<int64_t>(buf_pos_);
    long_line_.bytes = 0;
    long_line_.prefix.assign(buf_, buf_pos_, max_record_bytes_);
  }
  long_line_.bytes += buf_.size() - buf_pos_;
  buf_pos_ = buf_.size();
}

void FileSource::emit(sluice::Output& out, std::string_view line, int64_t line_offset) {
  const bool too_long = emitted_line_bytes_ > max_record_bytes_;
  if (too_long)
    line = line.substr(0, max_record_bytes_);
  else if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  sluice::OutRecord rec;
  rec.value = line;
  rec.topic = topic_;
  rec.partition = 0;
  rec.offset = line_offset;
  rec.timestamp_ms = wall_clock_ms();

  std::string error;
  std::string key;
  if (std::exchange(tail_cut_, false)) {
    error = "line cut short: " + path_ + " was truncated while it was read, to " +
            std::to_string(file_size()) + " bytes; this record holds the " +
            std::to_string(emitted_line_bytes_) + " bytes of the line at offset " +
            std::to_string(line_offset) + " read before that";
  } else if (too_long) {
    error = "line of " + std::to_string(emitted_line_bytes_) + " bytes is over max_record_bytes (" +
            std::to_string(max_record_bytes_) +
            (capped_by_memory_ ? ", an eighth of the memory limit" : "") +
            "); this record holds its first " + std::to_string(max_record_bytes_) +
            " bytes, the whole line is at offset " + std::to_string(line_offset) + " of " + path_;
  } else if (validate_json_ || !key_field_.empty()) {
    // Not validated, the key is still read from a line whose other bytes are not UTF-8.
    rapidjson::Document doc;
    const sluice::JsonParse parsed =
        validate_json_ ? sluice::parse_json_within<rapidjson::kParseValidateEncodingFlag>(doc, line)
                       : sluice::parse_json_within(doc, line);
    if (parsed.too_deep) {
      if (validate_json_)
        error = "JSON nested deeper than " + std::to_string(sluice::kMaxJsonDepth) + " levels";
    } else if (!parsed.ok()) {
      if (validate_json_)
        error = std::string("invalid JSON at byte ") + std::to_string(parsed.error.Offset()) +
                ": " + rapidjson::GetParseError_En(parsed.error.Code());
    } else if (!key_field_.empty() && doc.IsObject()) {
      auto it = doc.FindMember(key_field_.c_str());
      if (it != doc.MemberEnd() && it->value.IsString()) {
        key.assign(it->value.GetString(), it->value.GetStringLength());
        rec.key = std::string_view(key);
      }
    }
  }
  if (!error.empty()) rec.headers.emplace_back(kErrorHeader, error);
  out.emit(rec);
}

bool FileSource::poll(sluice::Output& out, size_t max_records, uint32_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const auto nap = [&] {
    auto until = std::min(
        deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(poll_interval_ms_));
    std::this_thread::sleep_until(until);
  };
  if (max_records == 0) {
    nap();
    return false;
  }
  size_t emitted = 0;
  // out.full(): the poll's byte budget (memory bound) is used up, however few lines that is.
  while (emitted < max_records && !out.full()) {
    std::string_view line;
    int64_t offset = 0;
    // A replaced file gets no more appends, so its last line is complete even without '\n'.
    if (next_line(line, offset, !follow_ || replaced_)) {
      if (is_blank(line)) continue;
      emit(out, line, offset);
      ++emitted;
      continue;
    }
    if (!follow_) {
      notice_changes_at_end();
      return true;
    }
    if (emitted > 0) return false;
    if (replaced_) {
      if (!start_replacement_file(deadline)) return false;
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    nap();
    notice_replaced_file();
  }
  return false;
}

// Follow mode, at the end of the open file: has the path been rotated (renamed away and
// created anew) or truncated (copy-truncate rotation)?
void FileSource::notice_replaced_file() {
  if (!fd_.valid()) {
    open_at(0);  // not there before; maybe now
    return;
  }
  struct stat on_disk {};
  struct stat open_file {};
  if (::stat(path_.c_str(), &on_disk) != 0 || ::fstat(fd_.get(), &open_file) != 0) return;
  const int64_t read_to = buf_offset_ + static_cast<int64_t>(buf_.size());
  if (on_disk.st_dev != open_file.st_dev || on_disk.st_ino != open_file.st_ino) {
    host_.warn("file " + path_ + " was rotated; reading the old file to its end, then the new " +
               "one from the start");
    replaced_ = true;
  } else if (open_file.st_size < read_to) {
    host_.warn("file " + path_ + " was truncated; reading it from the start");
    buf_.erase(buf_pos_);  // an unfinished line of the old content: gone with the truncation
    long_line_.active = false;
    replaced_ = true;
  }
}

int64_t FileSource::file_size() const {
  struct stat open_file {};
  return fd_.valid() && ::fstat(fd_.get(), &open_file) == 0 ? open_file.st_size : -1;
}

bool FileSource::truncated_under_reader() const {
  const int64_t size = file_size();
  return size >= 0 && size < buf_offset_ + static_cast<int64_t>(buf_.size());
}

// Without follow, the run ends at the end of the file it opened. A file truncated under the reader
// ends that read early and a replaced one is left unread: neither is a loss of this run's making
// (what was cut was never read; the new file is read from its start by the next run), but a run
// that ends "complete" must not hide it.
void FileSource::notice_changes_at_end() {
  if (noticed_at_end_ || !fd_.valid()) return;
  noticed_at_end_ = true;
  struct stat on_disk {};
  struct stat open_file {};
  if (::fstat(fd_.get(), &open_file) != 0) return;
  if (truncated_under_reader())
    host_.warn("file " + path_ + " was truncated while it was read: it is " +
               std::to_string(open_file.st_size) + " bytes long, but " +
               std::to_string(buf_offset_ + static_cast<int64_t>(buf_.size())) +
               " were read from it (the whole lines read were delivered, a line cut short is "
               "flagged; what was cut before it was read is not in this run; a file that is "
               "rewritten or rotated by copy-truncate wants follow: true)");
  else if (head_of(fd_.get(), std::ssize(head_)) != head_)
    host_.warn("file " + path_ + " was rewritten while it was read: its first bytes are not " +
               "the ones read (the whole lines read were delivered, and the offset committed "
               "belongs to them: the next run reads the new content from its start)");
  if (::stat(path_.c_str(), &on_disk) != 0)
    host_.warn("file " + path_ + " was deleted while it was read; it was read to its end");
  else if (on_disk.st_dev != open_file.st_dev || on_disk.st_ino != open_file.st_ino)
    host_.warn("file " + path_ + " was replaced while it was read: this run read the file it " +
               "opened to its end; the next run reads the new one from its start");
}

// The old file is read to its end. Its records are committed (host drain) before offsets start
// over in the new file, so no position of one file is ever stored for the other.
bool FileSource::start_replacement_file(std::chrono::steady_clock::time_point deadline) {
  if (host_.raw()->struct_size > offsetof(sluice_host_api, sluice_host_drain) &&
      host_.raw()->sluice_host_drain != nullptr) {
    sluice_position partition{};
    partition.struct_size = sizeof(partition);
    partition.topic = sluice::as_bytes(std::string_view(topic_));
    partition.partition = 0;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (!host_.drain({&partition, 1}, static_cast<uint32_t>(std::max<int64_t>(left.count(), 1))))
      return false;  // records still in flight; try again at the next poll
  }
  replaced_ = false;
  committed_ = -1;
  open_at(0);
  return true;
}

std::optional<StoredOffset> FileSource::load_stored_offset() const {
  std::string error;
  // O_NONBLOCK: a FIFO there must not hang the start (open waits for a writer otherwise).
  FileDescriptor fd(sluice::files::open_checked(offset_file_, O_RDONLY | O_NONBLOCK, 0,
                                                sluice::files::Use::state, error));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::nullopt;
    throw sluice::ConfigError("offset_file", error);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw sluice::ConfigError("offset_file", offset_file_ + " is not a regular file");
  std::string text(4096, '\0');
  ssize_t n = ::read(fd.get(), text.data(), text.size());
  text.resize(static_cast<size_t>(std::max<ssize_t>(n, 0)));
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("line_offset") ||
      !doc["line_offset"].IsInt64() || doc["line_offset"].GetInt64() < 0)
    throw sluice::ConfigError("offset_file", offset_file_ + " is not a sluice offset file");
  StoredOffset stored{doc["line_offset"].GetInt64(), stored_identity(doc), std::nullopt};
  if (doc.HasMember("unterminated_line_bytes") && doc["unterminated_line_bytes"].IsInt64() &&
      doc["unterminated_line_bytes"].GetInt64() >= 0)
    stored.unterminated_bytes = doc["unterminated_line_bytes"].GetInt64();
  return stored;
}

void FileSource::write_committed_offset(int64_t offset) {
  FileIdentity id;
  struct stat st {};
  if (::fstat(fd_.get(), &st) == 0) {
    id.device = static_cast<uint64_t>(st.st_dev);
    id.inode = static_cast<uint64_t>(st.st_ino);
  }
  id.fingerprint_bytes = std::ssize(head_);
  id.fingerprint = fnv1a(head_);
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("path");
  w.String(path_.c_str(), static_cast<rapidjson::SizeType>(path_.size()));
  w.Key("line_offset");
  w.Int64(offset);
  w.Key("device");
  w.Uint64(id.device);
  w.Key("inode");
  w.Uint64(id.inode);
  w.Key("fingerprint");
  w.Uint64(id.fingerprint);
  w.Key("fingerprint_bytes");
  w.Uint64(static_cast<uint64_t>(id.fingerprint_bytes));
  if (offset == unterminated_.offset) {
    w.Key("unterminated_line_bytes");
    w.Int64(unterminated_.bytes);
  }
  w.EndObject();
  std::string text(sb.GetString(), sb.GetSize());
  text += '\n';

  // Write a temporary file and rename it over the old one, so a crash leaves either the old
  // or the new position, never a torn one.
  // The temporary file is created exclusively, never through a link another user planted.
  std::string error;
  if (!sluice::files::replace_file(offset_file_, text, 0644, /*sync=*/true, error))
    throw sluice::Retriable(error);
  fsync_parent_dir(offset_file_);
  committed_ = offset;
}

void FileSource::commit(std::span<const sluice::Position> positions) {
  int64_t highest = committed_;
  for (const auto& p : positions)
    if (p.partition == 0) highest = std::max(highest, p.offset);
  if (highest <= committed_) return;
  if (const std::string note = offset_lock_.reassert(); !note.empty()) host_.warn(note);
  write_committed_offset(highest);
}

// State for a hot reload: the next unread byte, the committed line, the device and inode of the
// file they belong to, and the line read last without its '\n' (offset and length).
std::string FileSource::snapshot() {
  struct stat st {};
  if (!fd_.valid() || ::fstat(fd_.get(), &st) != 0) st = {};
  // Inside a long line, the next unread line is that line.
  const int64_t next =
      long_line_.active ? long_line_.start : buf_offset_ + static_cast<int64_t>(buf_pos_);
  return std::to_string(next) + " " + std::to_string(committed_) + " " + std::to_string(st.st_dev) +
         " " + std::to_string(st.st_ino) + " " + std::to_string(unterminated_.offset) + " " +
         std::to_string(unterminated_.bytes);
}

// A snapshot of an older version has no device and inode; it is taken as it is.
void FileSource::restore(std::string_view state) {
  long long next = 0;
  long long committed = 0;
  unsigned long long device = 0;
  unsigned long long inode = 0;
  long long unterminated = -1;
  long long unterminated_bytes = 0;
  const int fields = std::sscanf(std::string(state).c_str(), "%lld %lld %llu %llu %lld %lld", &next,
                                 &committed, &device, &inode, &unterminated, &unterminated_bytes);
  if (fields < 2 || next < 0) throw std::runtime_error("file source: bad snapshot");
  committed_ = committed;
  open_at(next);
  if (fields == 6) unterminated_ = {unterminated, unterminated_bytes};
  struct stat st {};
  if (fields < 4 || !fd_.valid() || ::fstat(fd_.get(), &st) != 0) return;
  if (static_cast<unsigned long long>(st.st_dev) == device &&
      static_cast<unsigned long long>(st.st_ino) == inode)
    return;
  host_.warn("file " + path_ + " was replaced during the reload; reading it from the start");
  committed_ = -1;
  open_at(0);
}

}  // namespace sluice_plugins
