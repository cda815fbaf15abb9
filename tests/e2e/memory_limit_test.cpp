// The memory limit end to end: `sluice run` with large records stays under memory_limit_mb
// (peak RSS of the whole process, as the kernel counts it) and still delivers every record.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "process.hpp"

namespace fs = std::filesystem;
using sluice::test::read_file;
using sluice::test::write_file;

namespace {

constexpr uint64_t kLimitMb = 64;

std::string bin() { return std::getenv("SLUICE_BIN"); }

fs::path scratch(const std::string& name) {
  fs::path dir = fs::path(std::getenv("SLUICE_BINARY_DIR")) / "e2e-scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

struct MeasuredRun {
  int exit_code = -1;
  uint64_t peak_rss_mb = 0;  // the child's high-water mark of resident memory
  std::string out;
  std::string err;
};

// Runs `sluice run` on a YAML text to its end; wait4 reports the child's peak RSS. Linux carries
// the high-water mark across fork + exec, so it is at least this small test process's RSS: the
// figure can only err high.
// `plugin_path`: a folder of more plugins (--plugin-path), or none.
MeasuredRun run_measured(const fs::path& dir, const std::string& yaml,
                         const std::string& plugin_path = "") {
  write_file(dir / "p.yaml", yaml);
  std::vector<std::string> args = {bin(), "run", "--admin", "off", (dir / "p.yaml").string()};
  if (!plugin_path.empty()) args.insert(args.begin() + 1, {"--plugin-path", plugin_path});
  const int pid =
      sluice::test::start_process(args, (dir / "stdout").string(), (dir / "stderr").string());
  int status = 0;
  rusage usage{};
  MeasuredRun run;
  REQUIRE(::wait4(pid, &status, 0, &usage) == pid);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.peak_rss_mb = static_cast<uint64_t>(usage.ru_maxrss) / 1024;  // ru_maxrss is in KiB
  run.out = read_file((dir / "stdout").string());
  run.err = read_file((dir / "stderr").string());
  return run;
}

// A generator of `count` records of `payload` bytes into `sink`, under a kLimitMb limit.
std::string big_records(const std::string& name, int count, int payload, const std::string& sink) {
  return "name: " + name + "\nsource: {type: generator, count: " + std::to_string(count) +
         ", payload_size: " + std::to_string(payload) + "}\nsink: " + sink +
         "\nperformance: {memory_limit_mb: " + std::to_string(kLimitMb) + "}\n";
}

// "N records in, M delivered" from the summary; {-1, -1} if it is missing.
std::pair<long, long> in_and_delivered(const std::string& summary) {
  std::smatch m;
  static const std::regex kCounts(R"((\d+) records in, (\d+) delivered)");
  if (!std::regex_search(summary, m, kCounts)) return {-1, -1};
  return {std::stol(m[1]), std::stol(m[2])};
}

void check_bounded_and_complete(const MeasuredRun& run, long count) {
  INFO(run.out);
  INFO(run.err);
  INFO("peak RSS " << run.peak_rss_mb << " MB, limit " << kLimitMb << " MB");
  CHECK(run.exit_code == 0);
  CHECK(run.peak_rss_mb <= kLimitMb);
  const auto [in, delivered] = in_and_delivered(run.out);
  CHECK(in == count);
  CHECK(delivered == count);
}

}  // namespace

TEST_CASE("1 MB records stay under memory_limit_mb and are all delivered") {
  auto dir = scratch("memory-1mb");
  const int count = 400;
  check_bounded_and_complete(run_measured(dir, big_records("mb1", count, 1 << 20, "{type: null}")),
                             count);
}

TEST_CASE("64 KB records into a slow sink stay under memory_limit_mb and are all delivered") {
  auto dir = scratch("memory-64kb");
  const int count = 4000;
  check_bounded_and_complete(
      run_measured(dir, big_records("kb64", count, 64 << 10,
                                    "{type: latency, batch_cost_ms: 2, record_cost_us: 20}")),
      count);
}

// The file sink's envelope lines embed each value as parsed JSON; a parser's memory pool kept
// per sink once grew by every record it parsed (300 MB for 300 records of 1 MB).
TEST_CASE("256 KB records written as envelope lines stay under memory_limit_mb") {
  auto dir = scratch("memory-envelope");
  const int count = 400;
  check_bounded_and_complete(
      run_measured(
          dir, big_records("envelope", count, 256 << 10,
                           "{type: file, format: envelope, path: " + dir.string() + "/out.jsonl}")),
      count);
}

// A transform's copies and the file sink's lines of 900 KB records: the heap must give their
// pages back (an allocator that kept them once stopped this run as a leak at 95% of the limit,
// with under 1 MB of records held).
TEST_CASE("900 KB records through a transform into a file stay under memory_limit_mb") {
  auto dir = scratch("memory-900kb-transform");
  const int count = 300;
  const std::string yaml =
      "name: t900\nsource: {type: generator, count: " + std::to_string(count) +
      ", payload_size: " + std::to_string(900 << 10) +
      "}\ntransforms: [{type: fields, add: {copied: true}}]\nsink: {type: "
      "file, path: " +
      dir.string() + "/out.jsonl}\nperformance: {memory_limit_mb: " + std::to_string(kLimitMb) +
      "}\n";
  // The stage's records (a quarter of the limit) and the transform's output (its input plus a
  // quarter) are bounded; the process's baseline (about 30 MB) comes on top (README).
  const auto run = run_measured(dir, yaml);
  INFO(run.out);
  INFO(run.err);
  INFO("peak RSS " << run.peak_rss_mb << " MB, limit " << kLimitMb << " MB");
  CHECK(run.exit_code == 0);
  CHECK(in_and_delivered(run.out) == std::pair<long, long>{count, count});
  CHECK(run.peak_rss_mb <= kLimitMb + 32);
}

// A transform that makes 20,000 records of each input: one input's output (about 2 MB) fits the
// budget of a call, a batch's does not. The batch runs again in parts, each delivered before the
// next is made: every record arrives, none is dead-lettered, and the process stays under the
// limit (the whole output, 400,000 records, would be some 60 MB). Isolated (`isolation:
// process`), the child writes its outputs into shared memory before the host sees them, so it
// must stop at the same budget (it once wrote a whole batch's: 93 MB, 288 MB with 500-byte
// copies).
TEST_CASE(
    "a transform's fan-out too large for a batch but not for a record stays under the "
    "limit") {
  for (const std::string isolation : {"none", "process"}) {
    CAPTURE(isolation);
    auto dir = scratch("memory-fanout-" + isolation);
    const std::string yaml =
        "name: fanout\nsource: {type: generator, count: 20}\ntransforms: [{type: fanout, copies: "
        "20000, bytes: 0, isolation: " +
        isolation + "}]\nsink: {type: null}\ndead_letter: {type: file, path: " + dir.string() +
        "/dlq.jsonl}\nerrors: {tolerance: all}\nperformance: {memory_limit_mb: " +
        std::to_string(kLimitMb) + "}\n";
    const auto probes = fs::path(std::getenv("SLUICE_BINARY_DIR")) / "test-plugins" / "probes";
    const auto run = run_measured(dir, yaml, probes.string());
    check_bounded_and_complete(run, 20);
    CHECK(run.out.find("400000 written by the sink") != std::string::npos);
    const bool dead_letters = fs::exists(dir / "dlq.jsonl") && fs::file_size(dir / "dlq.jsonl") > 0;
    CHECK_FALSE(dead_letters);
  }
}

TEST_CASE("small records run as before under the same limit (the baseline of the other cases)") {
  auto dir = scratch("memory-1kb");
  const int count = 50000;
  check_bounded_and_complete(run_measured(dir, big_records("kb1", count, 1 << 10, "{type: null}")),
                             count);
}

// A record 1,000x bigger than the others, and bigger than the whole limit: a 128 MB line among
// 100-byte ones in the file source. The source never holds it (it emits its first
// max_record_bytes, flagged), so the run stays under the limit, dead-letters that one line with
// its true length and offset, and delivers every other line.
TEST_CASE("a 128 MB line in a 64 MB limit is dead-lettered with its length, not held") {
  auto dir = scratch("memory-long-line");
  {
    std::ofstream in(dir / "in.jsonl");
    const std::string line = "{\"pad\":\"" + std::string(90, 'x') + "\"}\n";
    for (int i = 0; i < 500; ++i) in << line;
    in << "{\"pad\":\"" << std::string(128 << 20, 'x') << "\"}\n";
    for (int i = 0; i < 500; ++i) in << line;
  }
  const std::string d = dir.string();
  auto run = run_measured(
      dir, "name: long-line\nsource: {type: file, path: " + d + "/in.jsonl}\nsink: {type: file, " +
               "path: " + d +
               "/out.jsonl}\nperformance: {memory_limit_mb: " + std::to_string(kLimitMb) +
               "}\nerrors:\n  tolerance: all\n  dead_letter: {type: " + "file, path: " + d +
               "/dlq.jsonl}\n");
  INFO(run.out);
  INFO(run.err);
  INFO("peak RSS " << run.peak_rss_mb << " MB, limit " << kLimitMb << " MB");
  CHECK(run.exit_code == 0);
  CHECK(run.peak_rss_mb <= kLimitMb);
  CHECK(in_and_delivered(run.out) == std::pair<long, long>{1001, 1000});
  CHECK(run.out.find("1 dead-lettered") != std::string::npos);
  CHECK(run.err.find("line of " + std::to_string((128 << 20) + 10) + " bytes") !=
        std::string::npos);
  fs::remove(dir / "in.jsonl");
}
