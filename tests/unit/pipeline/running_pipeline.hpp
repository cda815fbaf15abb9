// A pipeline running in process for reload tests: generator -> stamp (a copy of stamp_v1 in a
// private plugin folder, so tests can copy other versions over it) -> null.
#pragma once

#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "config/pipeline_spec.hpp"
#include "pipeline/reloader.hpp"
#include "pipeline/supervisor.hpp"
#include "plugin/plugin_registry.hpp"

namespace sluice::test {

namespace fs = std::filesystem;

inline fs::path test_plugins() {
  return fs::path(std::getenv("SLUICE_BINARY_DIR")) / "test-plugins";
}

// Copies a file over `target` the way `cp` does: truncate and rewrite the same inode.
inline void copy_over(const fs::path& from, const fs::path& target) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

inline size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Resident memory in kB, after handing the allocator's free pages back to the kernel: what a
// leak keeps (live allocations, mapped libraries) stays, what glibc merely caches (freed chunks,
// per-thread arenas grown under a busy machine) does not count.
inline size_t rss_kb() {
  malloc_trim(0);
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
    // The pid keeps two checkouts' test runs on one machine out of each other's folders.
    dir = fs::temp_directory_path() / ("sluice-reload-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "plugins");
    ::chmod(dir.c_str(), 0755);
    ::chmod((dir / "plugins").c_str(), 0755);
    fs::copy_file(test_plugins() / "stamp_v1" / "sluice-stamp.so",
                  dir / "plugins" / "sluice-stamp.so");
    registry = std::make_unique<plugin::PluginRegistry>();
    registry->load_search_path({dir / "plugins", fs::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR"))});
    auto file = config::parse_pipelines(
        "name: r\nsource: {type: generator, count: 0, rate: 2000, key_cardinality: 20}\n"
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

}  // namespace sluice::test
