// Hot reload in process: a running pipeline's transform swapped many times, state carried over,
// broken versions refused with the old one kept, and every old library really unloaded.
#include <doctest/doctest.h>

#include "running_pipeline.hpp"

namespace fs = std::filesystem;
using namespace sluice;
using namespace sluice::test;

TEST_CASE("100 reloads in a row: state carried, old libraries unmapped, fds and RSS flat") {
  Running run("hundred");
  pipeline::Reloader reloader(*run.registry, *run.supervisor);
  // Warm up: a few reloads first so allocator pools and caches reach their size.
  for (int i = 0; i < 20; ++i) {
    copy_over(test_plugins() / (i % 2 ? "stamp_v1" : "stamp_v2") / "sluice-stamp.so",
              run.stamp_file());
    REQUIRE(reloader.reload_file(run.stamp_file()) == "");
  }
  const size_t fds_before = open_fds();
  const size_t rss_before = rss_kb();
  double seen_before = run.records_seen();
  for (int i = 0; i < 100; ++i) {
    fs::path old_copy = run.mapped_stamp_copy();
    const char* next = i % 2 ? "stamp_v1" : "stamp_v2";
    copy_over(test_plugins() / next / "sluice-stamp.so", run.stamp_file());
    CHECK(reloader.reload_file(run.stamp_file()) == "");
    fs::path new_copy = run.mapped_stamp_copy();
    CHECK(new_copy != old_copy);
    CHECK_FALSE(plugin::is_mapped(old_copy));  // the old version is really gone
    CHECK(plugin::is_mapped(new_copy));
  }
  CHECK(reloader.reloads() == 120);
  // The record counter lives in the plugin and was handed from each instance to the next.
  CHECK(run.records_seen() >= seen_before);
  CHECK(open_fds() <= fds_before + 2);
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // RSS is the sanitizer's here, not the program's: ASan holds freed memory in quarantine and
  // TSan keeps metadata for every library ever loaded. The plain build checks it.
  MESSAGE("RSS not checked under a sanitizer: " << rss_before << " -> " << rss_kb() << " kB");
#else
  CHECK(rss_kb() <= rss_before + 4 * 1024);
#endif
  CHECK(run.supervisor->pipelines()[0]->stage_errors().empty());
}

TEST_CASE("a broken new version is refused and the old one keeps running") {
  Running run("broken");
  pipeline::Reloader reloader(*run.registry, *run.supervisor);
  fs::path v1_copy = run.mapped_stamp_copy();
  SUBCASE("ABI mismatch") {
    copy_over(test_plugins() / "bad_major" / "sluice-bad_major.so", run.stamp_file());
    std::string err = reloader.reload_file(run.stamp_file());
    CHECK(err.find("ABI major mismatch") != std::string::npos);
  }
  SUBCASE("not a shared object (half written)") {
    std::ofstream(run.stamp_file(), std::ios::trunc) << "garbage";
    CHECK(reloader.reload_file(run.stamp_file()).find("not a shared object") != std::string::npos);
  }
  SUBCASE("a plugin whose create throws") {
    // The throws_create module names its transform throws_create, so it does not provide
    // `stamp`: the stage cannot be reloaded from it.
    copy_over(test_plugins() / "throws_create" / "sluice-throws_create.so", run.stamp_file());
    CHECK_FALSE(reloader.reload_file(run.stamp_file()).empty());
  }
  CHECK(run.mapped_stamp_copy() == v1_copy);
  CHECK(plugin::is_mapped(v1_copy));
  auto errors = run.supervisor->pipelines()[0]->stage_errors();
  CHECK(errors.count("stamp") == 1);
  // Still flowing through v1.
  auto before = run.supervisor->stats()[0].performance.records_out;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(run.supervisor->stats()[0].performance.records_out > before);
  // A good version afterwards clears the error.
  copy_over(test_plugins() / "stamp_v2" / "sluice-stamp.so", run.stamp_file());
  CHECK(reloader.reload_file(run.stamp_file()) == "");
  CHECK(run.supervisor->pipelines()[0]->stage_errors().empty());
}

TEST_CASE("a reloaded stage's plugin counters go on from the old instance's totals") {
  Running run("counters");
  // The null sink counts its records with sluice_host_counter_add ("<instance>.records").
  auto sink_records = [&run] {
    const auto stats = run.supervisor->stats();  // held: a range-for over stats()[0] would dangle
    for (const auto& [name, value] : stats[0].extra)
      if (name.ends_with(".records")) return std::pair(name, value);
    return std::pair(std::string(), -1.0);
  };
  while (sink_records().second < 20'000) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const auto [name, before] = sink_records();
  const std::string instance = name.substr(0, name.size() - std::string(".records").size());
  auto& p = *run.supervisor->pipelines()[0];
  const auto error = p.reload_stage(instance, *run.registry, nullptr);
  if (error) FAIL("reload refused: ", error->message);
  CHECK(sink_records().second >= before);  // not restarted from 0 by the new instance
  const auto stats = run.supervisor->stats()[0];
  CHECK(stats.extra_counters.contains(name));
  CHECK_FALSE(stats.extra_counters.contains("stamp.records_seen"));  // a gauge stays a gauge
}
