// Misbehaving plugins (plugins/faults) through `sluice run`: a transform that throws on one
// record, sinks that fail forever or every second batch, a source with garbage positions, FATAL.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "fault_run.hpp"

namespace {

using namespace sluice::faults;
using sluice::test::read_file;

constexpr const char* kFastRetries =
    "  retry: {initial_backoff_ms: 1, max_backoff_ms: 5, multiplier: 2, max_attempts: 3}\n";

// faulty source ({"id":K}) -> [transform] -> sink, with a file dead-letter queue.
std::string pipeline(const fs::path& dir, const std::string& source, const std::string& transform,
                     const std::string& sink, const std::string& errors,
                     const std::string& performance = "") {
  return "name: faults\nadmin: {enabled: false}\nsource: " + source + "\n" +
         (transform.empty() ? "" : "transforms:\n  - " + transform + "\n") + "sink: " + sink +
         "\ndead_letter: {type: file, format: envelope, path: " + (dir / "dlq.jsonl").string() +
         "}\nerrors:\n" + errors + performance;
}

std::string faulty_sink(const fs::path& dir, const std::string& extra = "") {
  return "{type: faulty, path: " + (dir / "out.jsonl").string() + extra + "}";
}

// How often each id arrived in a file of {"id":K} lines or envelopes of them.
std::map<int64_t, int> ids_in(const fs::path& file) {
  std::map<int64_t, int> seen;
  for (const auto& d : read_json_lines(file)) {
    if (d.IsObject() && d.HasMember("value"))
      ++seen[id_of(d["value"])];
    else
      ++seen[id_of(d)];
  }
  return seen;
}

// A pipeline whose sink fails every put (RETRY), one worker, with `errors` as its errors
// section; written to DIR/pipeline.yaml, whose path is returned.
fs::path failing_sink_pipeline(const fs::path& dir, const std::string& source,
                               const std::string& errors) {
  const fs::path yaml = dir / "pipeline.yaml";
  sluice::test::write_file(
      yaml.string(), pipeline(dir, source, "", faulty_sink(dir, ", mode: fail_forever"), errors,
                              "performance: {adaptive_concurrency: false, concurrency: 1}\n"));
  return yaml;
}

void check_counts_add_up(const Summary& s) {
  CHECK(s.in == s.delivered + s.dead_lettered + s.filtered + s.rejected);
}

}  // namespace

TEST_CASE("a transform that throws on one record dead-letters that record's batch only") {
  auto dir = scratch("transform-throws");
  auto r = run_pipeline(
      dir, pipeline(dir, "{type: faulty, count: 500}", "{type: faulty, poison: '\"id\":137}'}",
                    faulty_sink(dir), "  tolerance: all\n" + std::string(kFastRetries)));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 500);
  CHECK(s->dead_lettered >= 1);
  CHECK(s->dead_lettered < 500);
  CHECK(s->delivered == 500 - s->dead_lettered);
  check_counts_add_up(*s);
  auto out = ids_in(dir / "out.jsonl");
  auto dlq = ids_in(dir / "dlq.jsonl");
  CHECK(dlq.count(137) == 1);
  CHECK(out.count(137) == 0);
  CHECK(dlq.size() == s->dead_lettered);
  // Every record ends exactly once: delivered or dead-lettered, never both, never neither.
  for (int64_t id = 0; id < 500; ++id) CHECK(out.count(id) + dlq.count(id) == 1);
  std::set<std::string> messages, plugins;
  for (const auto& d : read_json_lines(dir / "dlq.jsonl")) {
    messages.insert(header_of(d, "sluice.error.message"));
    plugins.insert(header_of(d, "sluice.error.plugin"));
  }
  CHECK(messages == std::set<std::string>{"faulty transform: threw on a poison record"});
  CHECK(plugins == std::set<std::string>{"faulty"});
}

TEST_CASE("a transform that rejects one record dead-letters exactly that record") {
  auto dir = scratch("transform-rejects");
  auto r = run_pipeline(dir, pipeline(dir, "{type: faulty, count: 300}",
                                      "{type: faulty, poison: '\"id\":42}', on_poison: reject}",
                                      faulty_sink(dir), "  tolerance: all\n"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 300);
  CHECK(s->delivered == 299);
  CHECK(s->dead_lettered == 1);
  check_counts_add_up(*s);
  auto dlq = read_json_lines(dir / "dlq.jsonl");
  REQUIRE(dlq.size() == 1);
  CHECK(id_of(dlq[0]["value"]) == 42);
  CHECK(header_of(dlq[0], "sluice.error.offset") == "42");
  CHECK(header_of(dlq[0], "sluice.error.topic") == "faulty");
  CHECK(header_of(dlq[0], "sluice.error.timestamp") == "42");
  CHECK(header_of(dlq[0], "sluice.error.attempts") == "1");
}

TEST_CASE("a record failing under tolerance none stops the pipeline, exit 1 with the reason") {
  auto dir = scratch("transform-throws-tolerance-none");
  auto r = run_pipeline(
      dir, pipeline(dir, "{type: faulty, count: 300}", "{type: faulty, poison: '\"id\":100}'}",
                    faulty_sink(dir), "  tolerance: none\n" + std::string(kFastRetries)));
  CHECK(r.exit_code == 1);
  CHECK((r.out + r.err).find("threw on a poison record") != std::string::npos);
  CHECK(ids_in(dir / "out.jsonl").count(100) == 0);
  CHECK(read_lines(dir / "dlq.jsonl").empty());
}

TEST_CASE("FATAL from a transform stops the pipeline with exit 1 and the plugin's message") {
  auto dir = scratch("transform-fatal");
  auto r = run_pipeline(dir, pipeline(dir, "{type: faulty, count: 300}",
                                      "{type: faulty, poison: '\"id\":7}', on_poison: fatal}",
                                      faulty_sink(dir), "  tolerance: all\n"));
  CHECK(r.exit_code == 1);
  CHECK((r.out + r.err).find("poison record is fatal") != std::string::npos);
  CHECK(ids_in(dir / "out.jsonl").count(7) == 0);
}

TEST_CASE("FATAL from a source stops the pipeline with exit 1 and the message") {
  auto dir = scratch("source-fatal");
  auto r = run_pipeline(dir, pipeline(dir, "{type: faulty, fail_poll: fatal}", "", faulty_sink(dir),
                                      "  tolerance: all\n"));
  CHECK(r.exit_code == 1);
  CHECK((r.out + r.err).find("asked to fail fatally") != std::string::npos);
}

TEST_CASE("a source that keeps returning RETRY stops once the retries are used up") {
  auto dir = scratch("source-retry-forever");
  auto r = run_pipeline(
      dir, pipeline(dir, "{type: faulty, fail_poll: retry_forever}", "", faulty_sink(dir),
                    "  tolerance: all\n" + std::string(kFastRetries)));
  CHECK(r.exit_code == 1);
  CHECK((r.out + r.err).find("never ready") != std::string::npos);
}

TEST_CASE("a sink that fails forever: retries are bounded, every record ends dead-lettered") {
  auto dir = scratch("sink-fails-forever");
  auto r = run_pipeline(
      dir, pipeline(dir, "{type: faulty, count: 200}", "", faulty_sink(dir, ", mode: fail_forever"),
                    "  tolerance: all\n" + std::string(kFastRetries) +
                        "  circuit_breaker: {enabled: false}\n"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 200);
  CHECK(s->delivered == 0);
  CHECK(s->dead_lettered == 200);
  check_counts_add_up(*s);
  CHECK(read_lines(dir / "out.jsonl").empty());
  auto dlq = ids_in(dir / "dlq.jsonl");
  CHECK(dlq.size() == 200);
  std::set<std::string> stages, attempts;
  for (const auto& d : read_json_lines(dir / "dlq.jsonl")) {
    stages.insert(header_of(d, "sluice.error.stage"));
    attempts.insert(header_of(d, "sluice.error.attempts"));
  }
  CHECK(stages == std::set<std::string>{"faults.sink"});
  // max_attempts counts retries: the first put plus 3 retries.
  CHECK(attempts == std::set<std::string>{"4"});
}

TEST_CASE("a sink that fails forever under tolerance none stops the pipeline with exit 1") {
  auto dir = scratch("sink-fails-forever-none");
  auto r = run_pipeline(dir, pipeline(dir, "{type: faulty, count: 200}", "",
                                      faulty_sink(dir, ", mode: fail_forever, failure: error"),
                                      "  tolerance: none\n" + std::string(kFastRetries) +
                                          "  circuit_breaker: {enabled: false}\n"));
  CHECK(r.exit_code == 1);
  CHECK((r.out + r.err).find("faulty sink") != std::string::npos);
  CHECK(read_lines(dir / "dlq.jsonl").empty());
}

TEST_CASE("a sink that fails every second batch delivers every record exactly once") {
  auto dir = scratch("sink-fails-every-second");
  auto r = run_pipeline(dir, pipeline(dir, "{type: faulty, count: 3000, per_poll: 50}", "",
                                      faulty_sink(dir, ", mode: fail_every_second_batch"),
                                      "  tolerance: none\n" + std::string(kFastRetries)));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto s = parse_summary(r.out);
  REQUIRE(s);
  CHECK(s->in == 3000);
  CHECK(s->delivered == 3000);
  CHECK(s->dead_lettered == 0);
  check_counts_add_up(*s);
  auto out = ids_in(dir / "out.jsonl");
  CHECK(out.size() == 3000);
  for (const auto& [id, n] : out) {
    CHECK(id >= 0);
    CHECK(n == 1);  // a failed put writes nothing, so a retry does not duplicate
  }
}

TEST_CASE("a failing sink opens its circuit breaker: calls pause instead of spinning") {
  auto dir = scratch("circuit-breaker");
  const fs::path stats = dir / "stats.json";
  const fs::path yaml = failing_sink_pipeline(
      dir, "{type: faulty, count: 100000, per_poll: 100}",
      "  tolerance: all\n"
      "  retry: {initial_backoff_ms: 1, max_backoff_ms: 2, max_attempts: 0, max_elapsed_ms: 0}\n"
      "  circuit_breaker: {enabled: true, failure_threshold: 3, cooldown_ms: 400}\n");
  const int pid = sluice::test::start_process(
      {sluice_bin(), "run", yaml.string(), "--plugin-path", plugin_dir().string(), "--stats-file",
       stats.string(), "--log-level", "warn"},
      (dir / "stdout").string(), (dir / "stderr").string());
  // Wait until the stats show the breaker open (the stats file is rewritten every second).
  rapidjson::Document doc;
  bool open_seen = false;
  for (int i = 0; i < 100 && !open_seen; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string text = fs::exists(stats) ? read_file(stats.string()) : "";
    doc.Parse(text.data(), text.size());
    open_seen = !doc.HasParseError() && text.find("\"opened_total\"") != std::string::npos &&
                text.find("\"state\":\"closed\"") == std::string::npos;
  }
  const auto at_open = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const std::string text = read_file(stats.string());
  ::kill(pid, SIGTERM);
  const int code = sluice::test::wait_process(pid);
  INFO("stats: " << text);
  INFO("stderr: " << read_file((dir / "stderr").string()));
  CHECK(open_seen);
  // The breaker state and counters are in the stats under the stage.
  CHECK(text.find("\"circuit_breaker\"") != std::string::npos);
  CHECK(text.find("\"consecutive_failures\"") != std::string::npos);
  // The sink's own put counter: with a 400 ms cool-down and one probe each, about 5 calls
  // in 2 s once open; a hot loop with 1-2 ms backoff would make hundreds.
  doc.Parse(text.data(), text.size());
  double puts = -1;
  const std::string key = "faults.sink.puts";
  const auto pos = text.find("\"" + key + "\":");
  if (pos != std::string::npos) puts = std::stod(text.substr(pos + key.size() + 3));
  MESSAGE("sink puts after about " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - at_open)
                                          .count()
                                   << " ms: " << puts);
  CHECK(puts > 0);
  CHECK(puts < 60);
  CHECK(code != 137);  // stopped on SIGTERM, not hung until killed
}

TEST_CASE("a stop while a sink's put waits out its retry backoff ends cleanly, uncommitted") {
  auto dir = scratch("stop-while-retrying");
  const fs::path commits = dir / "commits.log";
  const fs::path yaml =
      failing_sink_pipeline(dir, "{type: faulty, count: 500, commit_log: " + commits.string() + "}",
                            "  tolerance: all\n  retry: {initial_backoff_ms: 5000, max_attempts: "
                            "0, max_elapsed_ms: 0}\n");
  const fs::path stats = dir / "stats.json";
  const int pid =
      sluice::test::start_process({sluice_bin(), "run", yaml.string(), "--plugin-path",
                                   plugin_dir().string(), "--stats-file", stats.string()},
                                  (dir / "stdout").string(), (dir / "stderr").string());
  // Stop once the first put has failed (the stats file shows the sink's counter; slow under
  // sanitizers): the batch then waits out its 5 s backoff.
  for (int i = 0; i < 300; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (fs::exists(stats) &&
        read_file(stats.string()).find("faults.sink.failed_puts") != std::string::npos)
      break;
  }
  ::kill(pid, SIGTERM);
  const int code = sluice::test::wait_process(pid);
  const std::string out = read_file((dir / "stdout").string());
  const std::string err = read_file((dir / "stderr").string());
  INFO("stdout: " << out);
  INFO("stderr: " << err);
  // The operator asked for the stop: not a failure, and nothing undelivered is committed.
  CHECK(code == 0);
  CHECK(out.find("FAILED") == std::string::npos);
  CHECK(err.find("the next run reads them again") != std::string::npos);
  CHECK(read_file(commits.string()).empty());
  CHECK(ids_in(dir / "out.jsonl").empty());
}

TEST_CASE("a source with garbage positions loses nothing; commits follow intake order") {
  for (const std::string offsets : {"backwards", "repeating", "negative", "random"}) {
    CAPTURE(offsets);
    auto dir = scratch("garbage-positions-" + offsets);
    const fs::path commits = dir / "commits.log";
    auto r = run_pipeline(
        dir, pipeline(dir,
                      "{type: faulty, count: 2000, per_poll: 37, poll_delay_ms: 10, offsets: " +
                          offsets + ", commit_log: " + commits.string() + "}",
                      "", faulty_sink(dir), "  tolerance: none\n",
                      "performance: {concurrency: 4, ordering: none}\n"));
    INFO(r.err);
    CHECK(r.exit_code == 0);
    auto s = parse_summary(r.out);
    REQUIRE(s);
    CHECK(s->in == 2000);
    CHECK(s->delivered == 2000);
    check_counts_add_up(*s);
    auto out = ids_in(dir / "out.jsonl");
    CHECK(out.size() == 2000);
    for (const auto& [id, n] : out) CHECK(n == 1);
    // The watermark is kept in intake order, whatever the offsets say: the final commit is the
    // offset of the last record taken, even when an earlier commit was higher.
    auto lines = read_lines(commits);
    REQUIRE_FALSE(lines.empty());
    int64_t last_id = 1999;
    int64_t expected = offsets == "backwards"   ? 0
                       : offsets == "repeating" ? last_id % 10
                       : offsets == "negative"  ? -last_id - 1
                                                : INT64_MIN;
    long long partition = -1, last = 0, max_seen = INT64_MIN;
    bool decreasing = true;
    for (const auto& l : lines) {
      long long previous = last;
      std::sscanf(l.c_str(), "%lld %lld", &partition, &last);
      if (&l != &lines.front() && last >= previous) decreasing = false;
      max_seen = std::max(max_seen, last);
    }
    CHECK(partition == 0);
    if (expected != INT64_MIN) CHECK(last == expected);
    // Backwards offsets: each commit is lower than the one before; the runtime passes them on.
    if (offsets == "backwards") {
      CHECK(lines.size() >= 2);
      CHECK(decreasing);
    }
    MESSAGE(offsets << ": " << lines.size() << " commits, last " << last << ", highest "
                    << max_seen);
  }
}

TEST_CASE(
    "a sink whose flush or pre_commit fails at the end: exit 1, the last records uncommitted") {
  for (const std::string hook : {"flush", "pre_commit"}) {
    CAPTURE(hook);
    auto dir = scratch("fails-at-end-" + hook);
    const fs::path commits = dir / "commits.log";
    // The last poll brings the last records and the end of the stream together, so no commit
    // inside the run can cover them: only the final one, which the failed hook must prevent.
    auto r = run_pipeline(
        dir,
        pipeline(dir,
                 "{type: faulty, count: 200, per_poll: 50, commit_log: " + commits.string() + "}",
                 "", faulty_sink(dir, ", fail_at_end: " + hook), "  tolerance: none\n"));
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("sink " + hook + " failed, so the last positions are not committed") !=
          std::string::npos);
    CHECK(ids_in(dir / "out.jsonl").size() == 200);  // delivered; a rerun reads them again
    for (const auto& line : read_lines(commits)) {
      long long partition = -1, offset = -1;
      std::sscanf(line.c_str(), "%lld %lld", &partition, &offset);
      CHECK(offset < 199);
    }
  }
}

TEST_CASE("a stop behind a slow sink ends after the grace, the delivered records committed") {
  auto dir = scratch("stop-behind-slow-sink");
  const fs::path commits = dir / "commits.log";
  const fs::path yaml = dir / "pipeline.yaml";
  // 2 s a put of 100 records while the source reads ahead: draining all that was read would
  // take minutes (the old drain did, with nothing committed until its end). Polls of 100
  // records, so that a commit can cover each put's records.
  sluice::test::write_file(
      yaml.string(),
      pipeline(dir,
               "{type: faulty, count: 20000, per_poll: 100, commit_log: " + commits.string() + "}",
               "", faulty_sink(dir, ", put_delay_ms: 2000"), "  tolerance: none\n",
               "performance: {adaptive_batching: false, batch_size: 100, adaptive_concurrency: "
               "false, concurrency: 2}\n"));
  const int pid = sluice::test::start_process(
      {sluice_bin(), "run", yaml.string(), "--plugin-path", plugin_dir().string()},
      (dir / "stdout").string(), (dir / "stderr").string());
  for (int i = 0; i < 600 && ids_in(dir / "out.jsonl").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(!ids_in(dir / "out.jsonl").empty());
  ::kill(pid, SIGTERM);
  // The grace is 10 s, then the puts under way (2 s) are awaited; 60 s leaves room for a busy
  // machine and is far below the old drain's minutes.
  int status = 0;
  bool ended = false;
  for (int i = 0; i < 600 && !ended; ++i) {
    ended = ::waitpid(pid, &status, WNOHANG) == pid;
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  const std::string out = read_file((dir / "stdout").string());
  const std::string err = read_file((dir / "stderr").string());
  INFO("stdout: " << out);
  INFO("stderr: " << err);
  REQUIRE(ended);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(out.find("FAILED") == std::string::npos);
  CHECK(err.find("the next run reads them again") != std::string::npos);
  // The ids delivered without a gap from the start are committed (to a poll's 100 records);
  // nothing past them is.
  const auto delivered = ids_in(dir / "out.jsonl");
  int64_t prefix = 0;
  while (delivered.contains(prefix)) ++prefix;
  const auto summary = parse_summary(out);
  REQUIRE(summary);
  CHECK(summary->delivered == delivered.size());
  CHECK(summary->in > summary->delivered);  // read ahead, left for the next run
  int64_t committed = -1;
  for (const auto& line : read_lines(commits)) {
    long long partition = -1, offset = -1;
    std::sscanf(line.c_str(), "%lld %lld", &partition, &offset);
    committed = std::max<int64_t>(committed, offset);
  }
  CAPTURE(prefix);
  CHECK(committed < prefix);
  CHECK(committed >= prefix - 100);
}
