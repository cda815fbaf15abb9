// The crash journal: one line per plugin call that took the process down (a crash signal, or
// exit() inside the call), naming the pipeline, stage, plugin, call and the source positions
// the call had. Written by the crash handler (call_guard.cpp); read at the next start to
// quarantine those records (quarantine.hpp). Format in docs/containment.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
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

// The `call` of an entry for an isolated stage's child that crashed while it loaded the library
// (records=0, no ranges): journaled by the host, which lived on (Pipeline::journal_load_crash).
inline constexpr std::string_view kLoadCall = "load";

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

// A pipeline's journal file, opened (O_APPEND) at start so the crash handler only writes.
class CrashJournal {
 public:
  CrashJournal(std::filesystem::path path, std::string pipeline);
  ~CrashJournal();
  CrashJournal(const CrashJournal&) = delete;
  CrashJournal& operator=(const CrashJournal&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // -1 when the file could not be opened (then crashes are reported on stderr only).
  int fd() const { return fd_; }
  // This pipeline's entries, as read when the journal was opened.
  const std::vector<JournalEntry>& entries() const { return entries_; }
  // Rewrites the file with `keep` in place of this pipeline's entries (other pipelines' lines
  // stay, and what append() added this run); the file is removed when nothing is left, and its
  // folder if that is then empty.
  void rewrite(const std::vector<JournalEntry>& keep);
  // Adds an entry of this run that the process lives through (an isolated stage's child that
  // crashed loading its library). Any thread.
  void append(const JournalEntry& entry);

 private:
  void read_entries();

  std::filesystem::path path_;
  std::string pipeline_;
  std::vector<JournalEntry> entries_;
  std::vector<std::string> other_lines_;
  std::mutex appended_mu_;
  std::vector<std::string> appended_;  // lines append() wrote this run
  int fd_ = -1;
};

// Where a pipeline's journal lives: `.sluice/<pipeline>.crash-journal` in the folder of the
// pipeline's YAML file; `.sluice-<uid>/` instead where others can write that folder.
std::filesystem::path journal_path(const std::filesystem::path& pipeline_file,
                                   const std::string& pipeline);

}  // namespace sluice::pipeline
