// A stop while the source waits inside its own poll for the host's drain (sluice_host_drain, as
// a Kafka source does at a rebalance or at the end of an exactly-once transaction) behind a slow
// sink ends like any other stop: exit 0 within the 10 s grace, what was not begun left
// uncommitted, nothing committed that was not delivered. Before, the drain waited out its
// timeout (30 s here, as the kafka source's drain_timeout_ms) past the grace, and the run ended
// with 71 ("stuck").
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using namespace sluice::test;

namespace {

// The seqs of the {"seq":N} lines the sink wrote.
std::set<long> delivered_seqs(const fs::path& file) {
  std::set<long> seqs;
  std::istringstream in(read_file(file.string()));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("{\"seq\":", 0) == 0) seqs.insert(std::stol(line.substr(7)));
  return seqs;
}

}  // namespace

TEST_CASE(
    "a stop while the source drains inside its poll behind a slow sink exits 0 in the grace") {
  const fs::path dir = scratch("drain-stop");
  // The first poll takes 4096 records (kMaxPollRecords); the second drains them before it
  // hands on more: 41 s behind a sink that takes 1 s a batch of 100.
  write_file((dir / "p.yaml").string(),
             "name: drain\n"
             "source: {type: crashy, count: 0, drain_at: 4096, position_file: position}\n"
             "sink: {type: faulty, path: out.txt, put_delay_ms: 1000}\n"
             "performance: {adaptive_batching: false, batch_size: 100, linger_ms: 10,\n"
             "  adaptive_concurrency: false, concurrency: 1, backpressure_threshold: 5000}\n");
  const int pid = start_process(
      {bin(), "run", "--admin", "off", "--no-plugin-watch", "--plugin-path",
       (binary_dir() / "test-plugins" / "crashy").string(), (dir / "p.yaml").string()},
      (dir / "stdout").string(), (dir / "stderr").string());
  // Two batches delivered: the source is inside its drain, with about 39 s of it to go.
  for (int i = 0; i < 300 && delivered_seqs(dir / "out.txt").size() < 200; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(delivered_seqs(dir / "out.txt").size() >= 200);
  ::kill(pid, SIGTERM);
  const auto stop = std::chrono::steady_clock::now();
  const int code = wait_within(pid, std::chrono::seconds(60));
  const auto took = std::chrono::steady_clock::now() - stop;
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  INFO(read_file((dir / "stdout").string()));
  CHECK(code == 0);
  // The grace, then the put under way (1 s).
  CHECK(took < std::chrono::seconds(20));
  CHECK(err.find("stuck") == std::string::npos);
  CHECK(err.find("not begun within the stop's 10 s grace are not committed") != std::string::npos);
  // At least once: the committed position is past delivered records only, and short of the
  // records left undone, which the next run reads again.
  const std::set<long> seqs = delivered_seqs(dir / "out.txt");
  const std::string position = read_file((dir / "position").string());
  const long committed = position.empty() ? -1 : std::stol(position);
  CHECK(committed < 4095);
  for (long seq = 0; seq <= committed; ++seq) REQUIRE(seqs.count(seq) == 1);
}
