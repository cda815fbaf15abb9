// Hot reload under load through the launcher: v2 of a transform is copied over v1's file while
// 50,000 records/s flow; nothing is lost, duplicated or reordered, each key switches once.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "process.hpp"

namespace fs = std::filesystem;

TEST_CASE("a transform reloaded under load loses, duplicates and reorders nothing") {
  const fs::path bin_dir = std::getenv("SLUICE_BINARY_DIR");
  const fs::path dir = bin_dir / "e2e-scratch" / "reload-under-load";
  fs::remove_all(dir);
  fs::create_directories(dir / "plugins");
  ::chmod((dir / "plugins").c_str(), 0755);
  const fs::path stamp = dir / "plugins" / "sluice-stamp.so";
  fs::copy_file(bin_dir / "test-plugins" / "stamp_v1" / "sluice-stamp.so", stamp);
  const int total = 150000;
  sluice::test::write_file(
      (dir / "p.yaml").string(),
      "name: reload\nsource: {type: generator, count: " + std::to_string(total) +
          ", rate: 50000, key_cardinality: 100}\ntransforms:\n  - {type: stamp, name: stamp}\n"
          "sink: {type: file, path: out.jsonl, fsync: none}\n");
  int pid = sluice::test::start_process(
      {std::getenv("SLUICE_BIN"), "run", "--admin", "off", "--plugin-path",
       (dir / "plugins").string(), (dir / "p.yaml").string()},
      (dir / "stdout").string(), (dir / "stderr").string());
  // Replaced as soon as records flow: the plugin watch may not have started yet (it starts once
  // the stages exist), so this is also the case of a file replaced while the launcher starts.
  for (int i = 0; i < 600 && !(std::filesystem::exists(dir / "out.jsonl") &&
                               std::filesystem::file_size(dir / "out.jsonl") > 0);
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  {  // Like `cp v2 v1`: the same inode rewritten in place while v1 is running.
    std::ifstream in(bin_dir / "test-plugins" / "stamp_v2" / "sluice-stamp.so", std::ios::binary);
    std::ofstream out(stamp, std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  int code = sluice::test::wait_process(pid);
  std::string err = sluice::test::read_file((dir / "stderr").string());
  INFO(err);
  REQUIRE(code == 0);
  CHECK(err.find("stage stamp reloaded") != std::string::npos);

  std::ifstream out(dir / "out.jsonl");
  std::string line;
  std::map<std::string, std::vector<std::pair<int64_t, int>>> per_key;  // seq, version
  std::vector<int64_t> seqs, times;
  while (std::getline(out, line)) {
    rapidjson::Document d;
    d.Parse(line.c_str());
    REQUIRE(d.IsObject());
    per_key[d["key"].GetString()].emplace_back(d["seq"].GetInt64(), d["version"].GetInt());
    seqs.push_back(d["seq"].GetInt64());
    times.push_back(d["at_us"].GetInt64());
  }
  // Every record exactly once.
  std::sort(seqs.begin(), seqs.end());
  REQUIRE(seqs.size() == static_cast<size_t>(total));
  for (int i = 0; i < total; ++i) REQUIRE(seqs[i] == i);
  // Per key: in order, and v1 then v2 with exactly one switch.
  int switched = 0;
  for (const auto& [key, recs] : per_key) {
    for (size_t i = 1; i < recs.size(); ++i) {
      CHECK(recs[i].first > recs[i - 1].first);
      CHECK(recs[i].second >= recs[i - 1].second);  // never back from v2 to v1
    }
    if (recs.front().second == 1 && recs.back().second == 2) ++switched;
  }
  CHECK(switched == static_cast<int>(per_key.size()));
  // The longest pause in the flow of records through the transform: what the swap cost.
  std::sort(times.begin(), times.end());
  int64_t gap = 0;
  for (size_t i = 1; i < times.size(); ++i) gap = std::max(gap, times[i] - times[i - 1]);
  MESSAGE("longest gap between records through the transform: ", gap / 1000.0,
          " ms (target < 100)");
  std::ofstream(bin_dir / "e2e-scratch" / "reload-gap-ms.txt") << gap / 1000.0 << "\n";
}
