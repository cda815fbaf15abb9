// Hot reload in process: a running pipeline's transform swapped many times, state carried over,
// broken versions refused with the old one kept, and every old library really unloaded.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "config/pipeline_spec.hpp"
#include "pipeline/reloader.hpp"
#include "pipeline/supervisor.hpp"
#include "plugin/plugin_registry.hpp"

namespace fs = std::filesystem;
using namespace sluice;

namespace {

fs::path test_plugins() { return fs::path(std::getenv("SLUICE_BINARY_DIR")) / "test-plugins"; }

// Copies a file over `target` the way `cp` does: truncate and rewrite the same inode.
void copy_over(const fs::path& from, const fs::path& target) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

size_t rss_kb() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * (static_cast<size_t>(sysconf(_SC_PAGESIZE)) / 1024);
}

struct Running {
  fs::path dir;
  std::unique_ptr<plugin::PluginRegistry> registry;
  std::unique_ptr<pipeline::Supervisor> supervisor;
  std::thread runner;
  int exit_code = -1;

  explicit Running(const std::string& name) {
    dir = fs::temp_directory_path() / ("sluice-reload-" + name);
    fs::remove_all(dir);
    fs::create_directories(dir / "plugins");
    ::chmod(dir.c_str(), 0755);
    ::chmod((dir / "plugins").c_str(), 0755);
    fs::copy_file(test_plugins() / "stamp_v1" / "sluice-stamp.so",
                  dir / "plugins" / "sluice-stamp.so");
    registry = std::make_unique<plugin::PluginRegistry>();
    registry->load_search_path({dir / "plugins", fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR"))});
    auto file = config::parse_pipelines(
        "name: r\nsource: {type: generator, count: 0, rate: 20000, key_cardinality: 20}\n"
        "transforms:\n  - {type: stamp, name: stamp}\nsink: {type: null}\n"
        // One worker, so the process's memory settles quickly and reload costs stand out.
        "performance: {adaptive_concurrency: false, concurrency: 1, max_concurrency: 1}\n",
        (dir / "p.yaml").string());
    std::vector<std::unique_ptr<pipeline::Pipeline>> ps;
    ps.push_back(std::make_unique<pipeline::Pipeline>(file.pipelines[0], *registry));
    supervisor =
        std::make_unique<pipeline::Supervisor>(std::move(ps), pipeline::Supervisor::Options{});
    runner = std::thread([this] { exit_code = supervisor->run(); });
    while (supervisor->stats().empty() || supervisor->stats()[0].performance.records_in == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Running() {
    supervisor->request_stop();
    if (runner.joinable()) runner.join();
    supervisor.reset();
    registry.reset();
    fs::remove_all(dir);
  }
  fs::path stamp_file() const { return dir / "plugins" / "sluice-stamp.so"; }
  double records_seen() const {
    auto s = supervisor->stats();
    auto it = s[0].extra.find("stamp.records_seen");
    return it == s[0].extra.end() ? -1 : it->second;
  }
  fs::path mapped_stamp_copy() const {
    for (const auto* info : registry->all())
      if (info->name == "stamp") return info->library->loaded_from();
    return {};
  }
};

}  // namespace

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
