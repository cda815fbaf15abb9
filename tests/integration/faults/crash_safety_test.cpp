// Crash safety: a file -> fields -> file run is killed with SIGKILL at 20 random points and
// restarted each time until it completes; every input record must then be in the output at
// least once. The duplicates (records re-read after a kill) are counted and printed.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "fault_run.hpp"

namespace {

using namespace sluice::faults;

constexpr int kRecords = 50000;
constexpr int kKills = 20;

// The committed line's byte offset, from the file source's offset file; -1 before any commit.
int64_t committed_offset(const fs::path& offset_file) {
  std::error_code ec;
  if (!fs::exists(offset_file, ec)) return -1;
  const std::string text = sluice::test::read_file(offset_file.string());
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("line_offset") ||
      !d["line_offset"].IsInt64())
    return -1;
  return d["line_offset"].GetInt64();
}

uint64_t size_of(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

}  // namespace

TEST_CASE("SIGKILL at 20 random points of a file run loses no record") {
  auto dir = scratch("crash-safety");
  const fs::path in = dir / "in.jsonl", out = dir / "out.jsonl";
  std::mt19937_64 rng(std::random_device{}());
  const uint64_t seed = rng();
  MESSAGE("seed " << seed);
  rng.seed(seed);

  // Input lines {"id":K,"pad":"..."} of varying length.
  std::string text;
  for (int k = 0; k < kRecords; ++k) {
    text +=
        "{\"id\":" + std::to_string(k) + ",\"pad\":\"" + std::string(20 + k % 40, 'p') + "\"}\n";
  }
  sluice::test::write_file(in.string(), text);

  const fs::path yaml = dir / "pipeline.yaml";
  sluice::test::write_file(
      yaml.string(),
      "name: crash\nadmin: {enabled: false}\nsource: {type: file, path: " + in.string() +
          "}\ntransforms:\n  - {type: fields, add: {stage: t}}\nsink: {type: file, path: " +
          out.string() +
          "}\nerrors: {tolerance: none}\n"
          // Small fixed batches, each fsynced: a run long enough to be killed between commits.
          "performance: {adaptive_batching: false, batch_size: 50, adaptive_concurrency: false, "
          "concurrency: 2, backpressure_threshold: 2000}\n");
  const std::vector<std::string> argv = {
      sluice_bin(),          "run",         yaml.string(), "--plugin-path",
      plugin_dir().string(), "--log-level", "warn"};

  // Kill points. While less than 40% of the input is committed, a run is killed a random
  // 0-250 ms after its first commit, or once its output grew by 25% of the input, whichever is
  // first: on a slow machine kills land between commits and the next run resumes further on; on
  // a fast one a run may be killed before it commits at all (and a run without the cap could
  // finish between two commits). Past 40%, a run is killed once its output grew by a random
  // 0.2-1% of the input. So a run starts under 40% committed and grows by at most 25%, or starts
  // later and grows by at most 1%: all 20 kills happen before a run can complete.
  const fs::path offset_file = dir / "in.jsonl.sluice-offset";
  const auto late = static_cast<int64_t>(text.size() * 4 / 10);
  std::uniform_int_distribution<int> delay_ms(0, 250);
  std::uniform_real_distribution<double> growth(0.002, 0.01);

  int kills = 0, runs = 0;
  bool completed = false;
  std::string history;  // per run: committed line at start -> at the kill, in % of the input
  auto percent = [&](int64_t offset) {
    return std::to_string(offset * 100 / static_cast<int64_t>(text.size()));
  };
  for (int t = 0; t <= kKills && !completed; ++t) {
    const bool last = t == kKills;
    const int64_t committed_at_start = committed_offset(offset_file);
    const bool by_commit = committed_at_start < late;
    const uint64_t target =
        size_of(out) + static_cast<uint64_t>((by_commit ? 0.25 : growth(rng)) * text.size());
    const auto delay = std::chrono::milliseconds(delay_ms(rng));
    std::optional<std::chrono::steady_clock::time_point> kill_at;
    history += (history.empty() ? "" : ", ") + percent(committed_offset(offset_file)) + "%->";
    const int pid =
        sluice::test::start_process(argv, (dir / "stdout").string(), (dir / "stderr").string());
    ++runs;
    int status = 0;
    bool exited = false;
    for (;;) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      if (!kill_at && !last) {
        const auto now = std::chrono::steady_clock::now();
        if (size_of(out) >= target)
          kill_at = now;
        else if (by_commit && committed_offset(offset_file) != committed_at_start)
          kill_at = now + delay;
      }
      if (kill_at && std::chrono::steady_clock::now() >= *kill_at) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        // It may have finished on its own in the meantime.
        exited = WIFEXITED(status);
        if (!exited) ++kills;
        history += exited ? "end" : percent(committed_offset(offset_file)) + "%";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (exited) {
      if (history.back() == '>') history += "end";
      INFO("stderr: " << sluice::test::read_file((dir / "stderr").string()));
      REQUIRE(WEXITSTATUS(status) == 0);
      completed = true;
    }
  }
  REQUIRE(completed);

  size_t torn = 0;
  std::vector<int> seen(kRecords, 0);
  size_t lines = 0;
  for (const auto& d : read_json_lines(out, &torn)) {
    ++lines;
    const int64_t id = id_of(d);
    REQUIRE(id >= 0);
    REQUIRE(id < kRecords);
    CHECK(std::string(d["stage"].GetString()) == "t");
    ++seen[id];
  }
  int missing = 0;
  for (int k = 0; k < kRecords; ++k)
    if (seen[k] == 0) ++missing;
  const size_t duplicates = lines - (kRecords - missing);
  MESSAGE("kills " << kills << ", runs " << runs << ", output lines " << lines << ", duplicates "
                   << duplicates << " (" << (kills ? duplicates / kills : 0)
                   << " per kill on average), torn lines " << torn << ", missing " << missing);
  CHECK(missing == 0);
  CHECK(torn == 0);
  MESSAGE("runs (committed at start -> at kill): " << history);
  CHECK(kills == kKills);
}
