// The crash journal's line format and the quarantine decision it leads to (docs/containment.md).
#include "pipeline/crash_journal.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/call_guard.hpp"
#include "pipeline/quarantine.hpp"

using namespace sluice::pipeline;

namespace {

// `topic` is a literal: the record views its bytes.
sluice_record record(const char* topic, int32_t partition, int64_t offset) {
  sluice_record r{};
  r.struct_size = sizeof r;
  r.topic = {reinterpret_cast<const uint8_t*>(topic), std::strlen(topic)};
  r.partition = partition;
  r.offset = offset;
  return r;
}

JournalEntry entry(uint64_t records, std::vector<StreamRange> ranges) {
  return {"SIGSEGV", "orders", "orders.transform0", "crashy",
          "process", records,  std::move(ranges)};
}

}  // namespace

TEST_CASE("a journal entry survives encoding, names with separators included") {
  JournalEntry e{"exit(3)",
                 "p=1",
                 "st\tage",
                 "plug,in",
                 "process",
                 7,
                 {{"in/x@y.jsonl", 0, 5, 9}, {"a%b", -1, -3, 4}}};
  const std::string line = encode_entry(e);
  CHECK(line.find('\n') == std::string::npos);
  const auto back = decode_entry(line);
  REQUIRE(back);
  CHECK(*back == e);
}

TEST_CASE("a torn or foreign line is not an entry") {
  const std::string line = encode_entry(entry(3, {{"t", 0, 1, 3}}));
  CHECK(decode_entry(line));
  CHECK_FALSE(decode_entry(line.substr(0, line.size() - 3)));  // "..3" of the range torn off
  CHECK_FALSE(decode_entry("hello world"));
  CHECK_FALSE(decode_entry("cause=SIGSEGV\tpipeline=p\tplugin=x\tranges=t/0@1"));
  CHECK_FALSE(decode_entry("cause=SIGSEGV\tpipeline=p\tplugin=x\trecords=two"));
  CHECK_FALSE(decode_entry("cause=SIGSEGV\tpipeline=p\tplugin=%4"));
}

TEST_CASE("the ranges of a call are per topic-partition, first to last offset") {
  const std::vector<sluice_record> rs = {record("a", 0, 5), record("b", 1, 2), record("a", 0, 9),
                                         record("a", 0, 7), record("a", 1, 1)};
  const auto ranges = ranges_of(rs);
  CHECK(ranges == std::vector<StreamRange>{{"a", 0, 5, 9}, {"b", 1, 2, 2}, {"a", 1, 1, 1}});
}

TEST_CASE("quarantine: a one-record entry dead-letters that record, a larger one runs alone") {
  const Quarantine q({entry(1, {{"t", 0, 42, 42}}), entry(100, {{"t", 0, 0, 99}})});
  CHECK(q.decide(record("t", 0, 42)).verdict == Quarantine::Verdict::dead_letter);
  CHECK(q.decide(record("t", 0, 41)).verdict == Quarantine::Verdict::alone);
  CHECK(q.decide(record("t", 0, 100)).verdict == Quarantine::Verdict::pass);
  CHECK(q.decide(record("t", 1, 42)).verdict == Quarantine::Verdict::pass);
  CHECK(q.decide(record("u", 0, 42)).verdict == Quarantine::Verdict::pass);
  const auto d = q.decide(record("t", 0, 42));
  REQUIRE(d.entry);
  CHECK(Quarantine::reason(*d.entry) ==
        "plugin 'crashy' crashed (SIGSEGV) on this record in an earlier run");
}

TEST_CASE("quarantine: an entry is resolved once every stream it names is committed past it") {
  Quarantine q({entry(1, {{"t", 0, 42, 42}}), entry(5, {{"t", 0, 40, 44}, {"u", 2, 7, 9}})});
  CHECK(q.unresolved().size() == 2);
  q.committed("t", 0, 43);
  CHECK(q.unresolved() == std::vector<JournalEntry>{entry(5, {{"t", 0, 40, 44}, {"u", 2, 7, 9}})});
  q.committed("t", 0, 44);
  q.committed("u", 2, 8);
  CHECK(q.unresolved().size() == 1);
  q.committed("u", 2, 9);
  CHECK(q.unresolved().empty());
}

TEST_CASE("the journal file keeps other pipelines' lines when one pipeline's entries are cleared") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("sluice-crash-journal-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const auto path = journal_path(dir / "p.yaml", "orders");
  CHECK(path == dir / ".sluice" / "orders.crash-journal");
  std::filesystem::create_directories(path.parent_path());
  JournalEntry other = entry(1, {{"t", 0, 1, 1}});
  other.pipeline = "billing";
  std::ofstream(path) << encode_entry(entry(1, {{"t", 0, 3, 3}})) << "\n"
                      << encode_entry(other) << "\n";
  {
    CrashJournal journal(path, "orders");
    CHECK(journal.fd() >= 0);
    CHECK(journal.entries() == std::vector<JournalEntry>{entry(1, {{"t", 0, 3, 3}})});
    journal.rewrite({});
  }
  CrashJournal again(path, "billing");
  CHECK(again.entries() == std::vector<JournalEntry>{other});
  std::filesystem::remove_all(dir);
}

TEST_CASE("an entry appended during a run (a child's crash while loading) outlives its rewrite") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("sluice-crash-journal-append-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto path = journal_path(dir / "p.yaml", "orders");
  const JournalEntry loading{
      "SIGABRT", "orders", "orders.transform0", "crashy", std::string(kLoadCall), 0, {}};
  {
    CrashJournal journal(path, "orders");
    REQUIRE(journal.fd() >= 0);
    journal.append(loading);
    journal.rewrite({});  // the run's end: the quarantine kept nothing
  }
  CrashJournal next(path, "orders");
  CHECK(next.entries() == std::vector<JournalEntry>{loading});
  // It names no records: it quarantines none, and the next run's end drops it.
  Quarantine q(next.entries());
  CHECK(q.decide(record("t", 0, 3)).verdict == Quarantine::Verdict::pass);
  CHECK(q.unresolved().empty());
  next.rewrite(q.unresolved());
  CHECK_FALSE(std::filesystem::exists(path));
  std::filesystem::remove_all(dir);
}

TEST_CASE("in a folder others can write, each user's journal has its own folder, only theirs") {
  // Another user's `.sluice` (here uid 65534's, which needs root to plant) kept this user's
  // journal out of /tmp; each user now has `.sluice-<uid>`, mode 0700.
  const auto dir = std::filesystem::temp_directory_path() /
                   ("sluice-crash-journal-shared-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  REQUIRE(::chmod(dir.c_str(), 01777) == 0);
  const auto path = journal_path(dir / "p.yaml", "orders");
  CHECK(path == dir / (".sluice-" + std::to_string(::geteuid())) / "orders.crash-journal");
  if (::geteuid() == 0) {
    const auto theirs = dir / ".sluice";
    REQUIRE(::mkdir(theirs.c_str(), 0700) == 0);
    REQUIRE(::chown(theirs.c_str(), 65534, 65534) == 0);
  }
  {
    CrashJournal journal(path, "orders");
    CHECK(journal.fd() >= 0);
    struct stat st {};
    REQUIRE(::stat(path.parent_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a call past its deadline is stuck; threads that end give their call slot back") {
  install_call_guard();
  const CrashJournal* no_journal = nullptr;
  const CallPolicy policy{"slots", 1, no_journal};
  const std::vector<sluice_record> records = {record("t", 0, 7)};
  // More threads, one after the other, than there are slots: each must still get one.
  for (int i = 0; i < 300; ++i) {
    std::vector<StuckCall> seen;
    std::thread([&] {
      const CallScope scope(policy, "slots.transform0", "crashy", "process", records);
      std::this_thread::sleep_for(std::chrono::milliseconds(3));  // past the 1 ms deadline
      seen = stuck_calls("slots");
    }).join();
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].stage == "slots.transform0");
    CHECK(seen[0].description.rfind("stuck: plugin 'crashy' (stage slots.transform0 of pipeline "
                                    "slots), call process() on record t/0@7",
                                    0) == 0);
  }
  CHECK(stuck_calls("slots").empty());  // every call has returned
}
