// Poison-record quarantine: what the crash journal says about a record read again after a
// crash. A record a crash narrowed down to (an entry of one record) is dead-lettered before
// any plugin sees it; a record inside the range of a larger crashed call is processed one per
// call, so a second crash names the one record.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/crash_journal.hpp"
#include "sluice/abi.h"

namespace sluice::pipeline {

class Quarantine {
 public:
  enum class Verdict : uint8_t { pass, alone, dead_letter };
  struct Decision {
    Verdict verdict = Verdict::pass;
    const JournalEntry* entry = nullptr;  // the entry behind the verdict
  };

  explicit Quarantine(std::vector<JournalEntry> entries);

  bool empty() const { return entries_.empty(); }
  // A single-record entry naming `record` wins over a range that contains it.
  Decision decide(const sluice_record& record) const;
  // "plugin 'x' crashed (SIGSEGV) on this record in an earlier run".
  static std::string reason(const JournalEntry& entry);

  // The source committed up to `offset` (inclusive) of a stream. Any thread.
  void committed(const std::string& topic, int32_t partition, int64_t offset);
  // The entries some record of which is not committed yet: those still to keep.
  std::vector<JournalEntry> unresolved() const;

 private:
  struct Committed {
    std::string topic;
    int32_t partition;
    int64_t offset;
  };
  bool passed(const StreamRange& r) const;

  std::vector<JournalEntry> entries_;
  mutable std::mutex mu_;
  std::vector<Committed> committed_;
};

}  // namespace sluice::pipeline
