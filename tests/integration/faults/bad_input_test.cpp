// Bad input through `sluice run`: every bad record ends dead-lettered (or stops its pipeline
// under tolerance none), every good one is delivered, and the summary counts add up.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "fault_run.hpp"

namespace {

using namespace sluice::faults;
using sluice::test::write_file;

// Summary counts always add up: every record taken ends exactly one way.
void check_counts_add_up(const Summary& s) {
  CHECK(s.in == s.delivered + s.dead_lettered + s.filtered + s.rejected);
}

std::string errors_all(const std::string& extra = "") {
  return "errors:\n  tolerance: all\n  retry: {initial_backoff_ms: 1, max_backoff_ms: 5, "
         "max_attempts: 2}\n" +
         extra;
}

// file -> [transforms] -> file, with a file dead-letter queue in envelope format.
std::string file_pipeline(const fs::path& dir, const std::string& source_extra = "",
                          const std::string& transforms = "", const std::string& errors = "") {
  return "name: bad\nadmin: {enabled: false}\nsource: {type: file, path: " +
         (dir / "in.jsonl").string() + source_extra + "}\n" + transforms +
         "sink: {type: file, path: " + (dir / "out.jsonl").string() +
         "}\ndead_letter: {type: file, format: envelope, path: " + (dir / "dlq.jsonl").string() +
         "}\n" + (errors.empty() ? errors_all() : errors);
}

// Good lines {"id":K} for K in [0, n), with `bad` lines inserted after every 10th good one.
std::string mixed_input(int n, const std::vector<std::string>& bad) {
  std::string text;
  size_t b = 0;
  for (int k = 0; k < n; ++k) {
    text += "{\"id\":" + std::to_string(k) + "}\n";
    if (k % 10 == 9 && b < bad.size()) text += bad[b++] + "\n";
  }
  while (b < bad.size()) text += bad[b++] + "\n";
  return text;
}

// Every good id arrives exactly once in out.jsonl; the DLQ holds exactly `bad_count` records,
// each with the source's error header and the runtime's error headers.
void check_split(const fs::path& dir, int good, size_t bad_count, const std::string& reason) {
  std::map<int64_t, int> seen;
  for (const auto& d : read_json_lines(dir / "out.jsonl")) ++seen[id_of(d)];
  CHECK(seen.size() == static_cast<size_t>(good));
  for (const auto& [id, n] : seen) {
    CHECK(id >= 0);
    CHECK(n == 1);
  }
  const auto dlq = read_lines(dir / "dlq.jsonl");
  CHECK(dlq.size() == bad_count);
  for (const auto& line : dlq) {
    rapidjson::Document d;
    d.Parse(line.data(), line.size());
    REQUIRE_FALSE(d.HasParseError());
    const std::string message = header_of(d, "sluice.error.message");
    INFO("dead-lettered: " << line);
    CHECK(message.find(reason) != std::string::npos);
    CHECK(header_of(d, "sluice.error.stage") != "");
    CHECK(header_of(d, "sluice.error.attempts") != "");
    CHECK(header_of(d, "sluice.error.partition") == "0");
    CHECK(header_of(d, "sluice.error.offset") != "");
    CHECK(header_of(d, "sluice.error.topic") == (dir / "in.jsonl").string());
  }
}

}  // namespace

TEST_CASE("malformed JSON lines are dead-lettered with the parse error, the rest delivered") {
  auto dir = scratch("malformed-json");
  const std::vector<std::string> bad = {
      "{\"id\":",      "not json",       "{\"a\":1}}", "[1,2",       "{\"a\": tru}",
      "{'single': 1}", "\"unterminated", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"ctl\x01\"}"};
  write_file((dir / "in.jsonl").string(), mixed_input(100, bad));
  auto r = run_pipeline(dir, file_pipeline(dir));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 110);
  CHECK(s->delivered == 100);
  CHECK(s->dead_lettered == bad.size());
  check_counts_add_up(*s);
  check_split(dir, 100, bad.size(), "invalid JSON");
}

TEST_CASE("a line of a million open brackets is dead-lettered, not a stack overflow") {
  auto dir = scratch("deep-brackets");
  const std::vector<std::string> bad = {std::string(1000000, '['), std::string(100000, '{') + "}"};
  write_file((dir / "in.jsonl").string(), mixed_input(20, bad));
  auto r = run_pipeline(dir, file_pipeline(dir, ", max_record_bytes: 2000000"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->delivered == 20);
  CHECK(s->dead_lettered == 2);
  check_counts_add_up(*s);
}

TEST_CASE("invalid UTF-8 where JSON is expected is dead-lettered") {
  auto dir = scratch("invalid-utf8");
  const std::vector<std::string> bad = {
      "{\"name\":\"\xff\"}",          // never valid in UTF-8
      "{\"name\":\"\xc0\xaf\"}",      // overlong '/'
      "{\"name\":\"\xe2\x82\"}",      // truncated 3-byte sequence
      "{\"name\":\"\xed\xa0\x80\"}",  // a UTF-16 surrogate encoded as UTF-8
      "{\"\xfe\":1}",                 // in a member name
      "\xef\xbb\xbf\xff{\"id\":1}"};  // garbage after a byte-order mark
  write_file((dir / "in.jsonl").string(), mixed_input(60, bad));
  auto r = run_pipeline(dir, file_pipeline(dir));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 66);
  CHECK(s->delivered == 60);
  CHECK(s->dead_lettered == bad.size());
  check_counts_add_up(*s);
  check_split(dir, 60, bad.size(), "invalid JSON");
}

TEST_CASE("records over the size limits are dead-lettered with the size in the reason") {
  auto dir = scratch("oversized");
  // 1,500 bytes: under the source's limit (4,000), over errors.max_record_bytes (1,000): the
  // runtime rejects it. 5,000 bytes: over the source's limit: the source flags it.
  const std::vector<std::string> bad = {"{\"pad\":\"" + std::string(1500, 'x') + "\"}",
                                        "{\"pad\":\"" + std::string(5000, 'y') + "\"}"};
  write_file((dir / "in.jsonl").string(), mixed_input(40, bad));
  auto r = run_pipeline(dir, file_pipeline(dir, ", max_record_bytes: 4000", "",
                                           errors_all("  max_record_bytes: 1000\n")));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 42);
  CHECK(s->delivered == 40);
  CHECK(s->dead_lettered == 2);
  check_counts_add_up(*s);
  std::set<std::string> reasons;
  for (const auto& d : read_json_lines(dir / "dlq.jsonl"))
    reasons.insert(header_of(d, "sluice.error.message"));
  REQUIRE(reasons.size() == 2);
  for (const auto& reason : reasons) {
    INFO(reason);
    CHECK((reason.find("max_record_bytes") != std::string::npos ||
           reason.find("bytes") != std::string::npos));
  }
}

TEST_CASE("bad records without a dead-letter queue are counted as rejected, never dropped") {
  auto dir = scratch("rejected-no-dlq");
  write_file((dir / "in.jsonl").string(), mixed_input(30, {"oops", "{"}));
  const std::string yaml = "name: bad\nadmin: {enabled: false}\nsource: {type: file, path: " +
                           (dir / "in.jsonl").string() +
                           "}\nsink: {type: file, path: " + (dir / "out.jsonl").string() + "}\n" +
                           errors_all();
  auto r = run_pipeline(dir, yaml);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->delivered == 30);
  CHECK(s->rejected == 2);
  CHECK(s->dead_lettered == 0);
  check_counts_add_up(*s);
}

TEST_CASE("a malformed record under tolerance none stops the pipeline with exit 1 and the reason") {
  auto dir = scratch("malformed-tolerance-none");
  write_file((dir / "in.jsonl").string(), mixed_input(30, {"not json"}));
  auto r = run_pipeline(
      dir, file_pipeline(dir, "", "", "errors: {tolerance: none, retry: {max_attempts: 1}}\n"));
  CHECK(r.exit_code == 1);
  CHECK((r.err + r.out).find("invalid JSON") != std::string::npos);
  CHECK((r.err + r.out).find("tolerance") != std::string::npos);
  // Nothing is dead-lettered under tolerance none, and the bad record is not delivered.
  CHECK(read_lines(dir / "dlq.jsonl").empty());
  for (const auto& line : read_lines(dir / "out.jsonl")) CHECK(line != "not json");
}
