// The crash journal: one line per plugin call that took the process down (a crash signal, or
// exit() inside the call), naming the pipeline, stage, plugin, call and the source positions
// the call had. Written by the crash handler (call_guard.cpp); read at the next start to
// quarantine those records (quarantine.hpp). Format in docs/containment.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/abi.h"

namespace sluice::pipeline {

// The offsets of one topic-partition a call had, first to last.
struct StreamRange {
  std::string topic;
  int32_t partition = 0;
  int64_t first = 0, last = 0;
  bool operator==(const StreamRange&) const = default;
};

struct JournalEntry {
  std::string cause;  // "SIGSEGV", "SIGABRT", ..., "exit(0)", "_exit(3)"
  std::string pipeline, stage, plugin, call;
  uint64_t records = 0;             // records in the call
  std::vector<StreamRange> ranges;  // at most kMaxRanges streams
  bool operator==(const JournalEntry&) const = default;
};

// Streams listed per entry; a call over more streams lists the first ones only.
inline constexpr size_t kMaxRanges = 16;

// The per-stream ranges of a call's records, in order of first appearance.
std::vector<StreamRange> ranges_of(std::span<const sluice_record> records);

// "pipeline=P\tstage=S\tplugin=X\tcall=process\trecords=N\tranges=t/0@5..9,u/1@3..3": the part
// of a journal line known before the call (the crash handler writes "cause=SIGSEGV\t" before
// it). Names are escaped (%XX for '%', tab, newline, ',', '/', '@', '=').
std::string encode_call(const JournalEntry& entry);
// A whole journal line, without the newline.
std::string encode_entry(const JournalEntry& entry);
// A journal line back into an entry; nullopt when it is not one (a torn write, garbage).
std::optional<JournalEntry> decode_entry(std::string_view line);
// "t/0@5..9 and 1 more stream" for messages.
std::string describe_ranges(const std::vector<StreamRange>& ranges, uint64_t records);

// One call's mark in a journal's in-flight file (CrashJournal::mark).
struct InFlightMark;

// The cause of an entry made from a mark left behind: the process was killed outright inside the
// call (SIGKILL, the kernel's OOM killer, _Exit), where no handler could write a line.
inline constexpr std::string_view kKilledCause = "killed";

// A pipeline's journal file, opened (O_APPEND) at start so the crash handler only writes.
//
// Beside it, each journal opened keeps a small in-flight file
// (`<pipeline>.in-flight.<pid>-<n>`, mapped shared and locked with flock while the journal is
// open) with one mark per plugin call in flight: the call's journal line, set before the call
// and cleared after it (or by the crash handler, which writes the line itself). A process killed
// outright leaves its marks in the page cache; the next start turns the marks of every in-flight
// file nobody holds into entries (cause kKilledCause), appends them to the journal and removes
// the file.
class CrashJournal {
 public:
  CrashJournal(std::filesystem::path path, std::string pipeline);
  ~CrashJournal();  // removes this process's in-flight file (every call has returned)
  CrashJournal(const CrashJournal&) = delete;
  CrashJournal& operator=(const CrashJournal&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // -1 when the file could not be opened (then crashes are reported on stderr only).
  int fd() const { return fd_; }
  // This pipeline's entries, as read when the journal was opened.
  const std::vector<JournalEntry>& entries() const { return entries_; }
  // Rewrites the file with `keep` in place of this pipeline's entries (other pipelines' lines
  // stay); the file is removed when nothing is left, and its folder if that is then empty.
  void rewrite(const std::vector<JournalEntry>& keep);

  // Marks a call in flight with its line (encode_call); nullptr when there is no in-flight file
  // or no free mark (the call then goes unmarked). Thread-safe.
  InFlightMark* mark(std::string_view call_line) const;
  // Clears a mark; async-signal-safe.
  static void unmark(InFlightMark* mark);

 private:
  void read_entries();
  void adopt_dead_marks();  // the in-flight files of processes gone: into entries, then removed
  void open_marks();

  std::filesystem::path path_;
  std::string pipeline_;
  std::vector<JournalEntry> entries_;
  std::vector<std::string> other_lines_;
  int fd_ = -1;
  std::filesystem::path marks_path_;  // this process's in-flight file
  int marks_fd_ = -1;                 // flock'ed while this process lives
  InFlightMark* marks_ = nullptr;     // kMarks of them, mapped shared
};

// Where a pipeline's journal lives: `.sluice/<pipeline>.crash-journal` in the folder of the
// pipeline's YAML file.
std::filesystem::path journal_path(const std::filesystem::path& pipeline_file,
                                   const std::string& pipeline);

}  // namespace sluice::pipeline
