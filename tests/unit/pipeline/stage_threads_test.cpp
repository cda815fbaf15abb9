// abi.h's threading rule, checked hook by hook: a source's hooks run on its source thread
// (memory pressure included, whichever thread reports it), create and destroy on the control
// thread (a source swapped out by a reload included).
#include <doctest/doctest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "running_pipeline.hpp"

namespace fs = std::filesystem;
using namespace sluice;
using namespace sluice::test;

namespace {

// hook -> the threads it was called on, from the probe's file.
std::map<std::string, std::set<long>> hook_threads(const fs::path& file) {
  std::map<std::string, std::set<long>> out;
  std::ifstream in(file);
  std::string hook;
  long tid = 0;
  while (in >> hook >> tid) out[hook].insert(tid);
  return out;
}

// Waits (bounded) until the probe has called `hook` at least `n` times.
bool wait_for_hook(const fs::path& file, const std::string& hook, size_t n = 1) {
  for (int i = 0; i < 1000; ++i) {
    std::ifstream in(file);
    std::string h;
    long tid;
    size_t seen = 0;
    while (in >> h >> tid) seen += h == hook;
    if (seen >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("a source's hooks run on its source thread, create and destroy on the control thread") {
  const fs::path dir =
      fs::temp_directory_path() / ("sluice-stage-threads-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path calls = dir / "hooks.txt";
  plugin::PluginRegistry registry;
  registry.load_search_path(
      {test_plugins() / "probes", fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR"))});
  auto file = config::parse_pipelines(
      "name: r\nsource: {type: thread_probe, path: " + calls.string() + "}\nsink: {type: null}\n",
      (dir / "p.yaml").string());
  const long control = ::syscall(SYS_gettid);
  {
    pipeline::Pipeline p(file.pipelines[0], registry);
    p.start();
    REQUIRE(wait_for_hook(calls, "commit"));
    p.on_memory_pressure(0.95);  // reported from this thread, heard on the source thread
    REQUIRE(wait_for_hook(calls, "on_memory_pressure"));
    // A source swap: snapshot and restore on the source thread, the old instance destroyed here.
    CHECK_FALSE(p.reload_stage("r.source", registry).has_value());
    REQUIRE(wait_for_hook(calls, "destroy"));
    REQUIRE(wait_for_hook(calls, "commit", 3));
    p.request_stop();
    p.wait();
    // The adapters counted every position's calls across the swap, under its label.
    std::map<std::string, pipeline::StageSlots::Reading> counters;
    for (const auto& c : p.call_counters()) counters.emplace(c.label, c);
    REQUIRE(counters.count("r.source.thread_probe") == 1);
    REQUIRE(counters.count("r.sink.null") == 1);
    CHECK(counters.at("r.source.thread_probe").calls > 0);
    CHECK(counters.at("r.source.thread_probe").records_out > 0);
    CHECK(counters.at("r.sink.null").records_in ==
          counters.at("r.source.thread_probe").records_out);
  }
  auto threads = hook_threads(calls);
  CHECK(threads["create"] == std::set<long>{control});
  CHECK(threads["destroy"] == std::set<long>{control});
  REQUIRE(threads["poll"].size() == 1);
  const long source_thread = *threads["poll"].begin();
  CHECK(source_thread != control);
  for (const char* hook : {"commit", "on_memory_pressure", "snapshot", "restore", "set_paused"}) {
    INFO(hook);
    for (long tid : threads[hook]) CHECK(tid == source_thread);
  }
  CHECK(threads.count("snapshot") == 1);
  CHECK(threads.count("restore") == 1);
  fs::remove_all(dir);
}
