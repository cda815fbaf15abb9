// The file source (JSON lines in, resumable) and file sink (JSON lines out) of the file module.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <sluice/sdk.hpp>
#include <string>

#include "record_lines.hpp"

namespace sluice_plugins {

// An open POSIX file descriptor, closed on destruction.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Reads JSON lines from `path`. A record's offset is the byte offset of its line's start, so a
// committed offset names a line exactly; on start the source resumes after the last committed
// line, so a restart re-reads nothing that was committed.
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
  void open_at(int64_t offset);
  void emit(sluice::Output& out, std::string_view line, int64_t line_offset);
  int64_t load_committed_offset() const;
  void write_committed_offset(int64_t offset);

  sluice::Host& host_;
  std::string path_;
  std::string offset_file_;
  std::string topic_;
  bool follow_;
  uint32_t poll_interval_ms_;
  size_t max_record_bytes_;
  bool validate_json_;
  std::string key_field_;

  FileDescriptor fd_;
  std::string buf_;         // bytes read but not yet emitted
  size_t buf_pos_ = 0;      // first unconsumed byte of buf_
  int64_t buf_offset_ = 0;  // file offset of buf_[0]
  bool eof_ = false;
  int64_t committed_ = -1;  // line offset last written to the offset file
};

// Appends records as JSON lines to `path`. `put` may run on several threads: one mutex orders
// whole batches, so the lines of one batch stay together.
class FileSink final : public sluice::Sink {
 public:
  enum class Fsync { none, batch, always };
  static sluice::ConfigSchema schema();
  static std::string description() { return "Appends records to a file as JSON lines."; }
  FileSink(const sluice::Config& c, sluice::Host& host);

  void put(const sluice::Batch& in, sluice::Output& rejects) override;
  void flush() override;

 private:
  void write_all(std::string_view bytes);
  void sync();
  off_t size() const;
  void drop_torn_tail();
  void truncate_to(off_t length);

  sluice::Host& host_;
  std::string path_;
  Fsync fsync_;
  std::mutex mutex_;
  FileDescriptor fd_;
  LineEncoder encoder_;  // guarded by mutex_
  std::string pending_;  // guarded by mutex_
};

}  // namespace sluice_plugins
