// The stage list's one access rule under load: memory-pressure callbacks and stats reads from
// other threads while a stage is reloaded 100 times (run under TSan to see a race).
#include <doctest/doctest.h>

#include <atomic>

#include "running_pipeline.hpp"

namespace fs = std::filesystem;
using namespace sluice;
using namespace sluice::test;

TEST_CASE("memory pressure and stats reads during 100 reloads see whole stages") {
  Running run("race");
  pipeline::Reloader reloader(*run.registry, *run.supervisor);
  pipeline::Pipeline& p = *run.supervisor->pipelines()[0];
  std::atomic<bool> done{false};
  std::atomic<uint64_t> pressure_calls{0}, stats_reads{0}, incomplete_reads{0};
  std::thread pressure([&] {
    while (!done.load()) {
      p.on_memory_pressure(0.95);
      ++pressure_calls;
    }
  });
  std::thread reader([&] {
    while (!done.load()) {
      auto stats = run.supervisor->stats();
      auto files = p.stage_files();
      // Every read sees the three stages, each with its plugin: never a slot mid-swap.
      if (stats.size() != 1 || stats[0].plugins.size() != 3 || files.size() != 3)
        ++incomplete_reads;
      ++stats_reads;
    }
  });
  std::string errors;
  for (int i = 0; i < 100; ++i) {
    copy_over(test_plugins() / (i % 2 ? "stamp_v1" : "stamp_v2") / "sluice-stamp.so",
              run.stamp_file());
    errors += reloader.reload_file(run.stamp_file());
  }
  done = true;
  pressure.join();
  reader.join();
  CHECK(errors == "");
  CHECK(reloader.reloads() == 100);
  CHECK(pressure_calls > 0);
  CHECK(stats_reads > 0);
  CHECK(incomplete_reads == 0);
  // Records still flow through the last version.
  const auto before = run.supervisor->stats()[0].performance.records_out;
  for (int i = 0; i < 500 && run.supervisor->stats()[0].performance.records_out == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(run.supervisor->stats()[0].performance.records_out > before);
}
