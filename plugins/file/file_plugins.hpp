// The file source (JSON lines in, resumable) and file sink (JSON lines out) of the file module.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <sluice/sdk.hpp>
#include <string>

#include "file_descriptor.hpp"
#include "file_lock.hpp"
#include "record_lines.hpp"

namespace sluice_plugins {

// Which file an offset belongs to: device and inode, and a hash of its first bytes (up to
// kFingerprintBytes; fewer while the file is shorter), as log shippers identify files.
struct FileIdentity {
  static constexpr int64_t kFingerprintBytes = 256;
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t fingerprint = 0;
  int64_t fingerprint_bytes = 0;
};

// What an offset file holds. Offset files written before identities were kept have none.
struct StoredOffset {
  int64_t line_offset = 0;
  std::optional<FileIdentity> identity;
  // The committed line was the file's last, read without its '\n' (a run without follow reads
  // a file to its end): its length then. If the file has grown past it by the next run, the
  // line was still being written, and it is read again whole instead of skipped.
  std::optional<int64_t> unterminated_bytes;
};

// Reads JSON lines from `path`. A record's offset is the byte offset of its line's start, so a
// committed offset names a line exactly; on start the source resumes after the last committed
// line, so a restart re-reads nothing that was committed.
// The offset file also keeps the file's identity: another file under the same path is read from
// its start, and an offset that is not a line start is refused (see docs/file.md).
class FileSource final : public sluice::Source {
 public:
  static sluice::ConfigSchema schema();
  static std::string description() { return "Reads JSON lines from a file; resumes after commit."; }
  FileSource(const sluice::Config& c, sluice::Host& host);

  bool poll(sluice::Output& out, size_t max_records, uint32_t timeout_ms) override;
  void commit(std::span<const sluice::Position> positions) override;
  std::string snapshot() override;
  void restore(std::string_view state) override;

 private:
  // Next complete line in the buffer, reading more of the file if needed; false if none yet.
  bool next_line(std::string_view& line, int64_t& line_offset, bool at_eof_is_end);
  bool fill();
  void take_line(std::string_view& line, int64_t& line_offset, size_t end, size_t next);
  void read_past_long_line();
  void open_at(int64_t offset);
  void emit(sluice::Output& out, std::string_view line, int64_t line_offset);
  std::optional<StoredOffset> load_stored_offset() const;
  void resume(const StoredOffset& stored);
  std::string why_not_resumable(const StoredOffset& stored) const;
  void require_line_start(int64_t offset) const;
  bool line_grew(int64_t offset, int64_t bytes) const;
  void write_committed_offset(int64_t offset);
  void notice_replaced_file();
  // Without follow, at the end: says if the file was truncated, replaced or deleted while it was
  // read (once).
  void notice_changes_at_end();
  bool noticed_at_end_ = false;
  // The open file's size (-1 if unknown); whether it is shorter than what was read from it.
  int64_t file_size() const;
  bool truncated_under_reader() const;
  // The line next_line gave last was cut short by a truncation (emit flags it).
  bool tail_cut_ = false;
  bool start_replacement_file(std::chrono::steady_clock::time_point deadline);

  sluice::Host& host_;
  std::string path_;
  std::string offset_file_;
  std::string topic_;
  bool follow_;
  uint32_t poll_interval_ms_;
  size_t max_record_bytes_;
  bool capped_by_memory_ = false;  // max_record_bytes_ lowered to an eighth of the memory limit
  bool validate_json_;
  std::string key_field_;
  FileLock offset_lock_;  // held for the instance's life: one reader per offset file

  FileDescriptor fd_;
  std::string buf_;         // bytes read but not yet emitted
  size_t buf_pos_ = 0;      // first unconsumed byte of buf_
  int64_t buf_offset_ = 0;  // file offset of buf_[0]
  bool eof_ = false;
  // A line longer than max_record_bytes is never held whole: its first max_record_bytes bytes
  // are kept here while the rest is read past, and it is emitted as that prefix, flagged.
  struct LongLine {
    bool active = false;  // between the line's start and its '\n'
    int64_t start = 0;    // file offset of its first byte
    uint64_t bytes = 0;   // its length so far (without the '\n')
    std::string prefix;
  } long_line_;
  uint64_t emitted_line_bytes_ = 0;  // the whole length of the line next_line() just returned
  int64_t committed_ = -1;           // line offset last written to the offset file
  // The line next_line() took at the end of the file without a '\n' (offset -1: none), and its
  // length: a commit of that line says so in the offset file (StoredOffset).
  struct {
    int64_t offset = -1;
    int64_t bytes = 0;
  } unterminated_;
  // The file's first bytes (up to FileIdentity::kFingerprintBytes) as this reader saw them: the
  // identity committed with an offset is of the data read, not of what the path holds by the
  // time the commit runs (a file rewritten in place meanwhile is new data for the next run).
  std::string head_;
  // Follow mode: the path names another file now (rotated) or the file shrank (truncated). The
  // open file is read to its end, then the new one from its start.
  bool replaced_ = false;
};

// Appends records as JSON lines to `path`. `put` may run on several threads: one mutex orders
// whole batches, so the lines of one batch stay together. Before `put` acknowledges a batch it
// checks that `path` still names the file it wrote to; if the file was deleted or replaced, it
// reopens `path` and writes the batch again there, so no acknowledged batch sits only in an
// unlinked file.
class FileSink final : public sluice::Sink {
 public:
  enum class Fsync { none, batch, always };
  static sluice::ConfigSchema schema();
  static std::string description() { return "Appends records to a file as JSON lines."; }
  FileSink(const sluice::Config& c, sluice::Host& host);

  void put(const sluice::Batch& in, sluice::Output& rejects) override;
  void flush() override;

 private:
  void write_batch(const sluice::Batch& in);
  void write_all(std::string_view bytes);
  bool path_names_open_file() const;
  void reopen();
  void sync();
  off_t size() const;
  void drop_torn_tail();
  void truncate_to(off_t length);

  sluice::Host& host_;
  std::string path_;
  Fsync fsync_;
  FileLock output_lock_;           // held for the instance's life: one writer per output file
  OpenFileLock output_file_lock_;  // and on the file itself: one writer whatever its name
  void lock_open_file(bool reload);
  std::mutex mutex_;
  FileDescriptor fd_;
  LineEncoder encoder_;  // guarded by mutex_
  std::string pending_;  // guarded by mutex_
};

}  // namespace sluice_plugins
