// Hot reload of plugin libraries: on a changed file (inotify), SIGHUP or a request, every stage
// whose plugin came from that file gets a new instance from a fresh copy of it.
#pragma once

#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/supervisor.hpp"
#include "plugin/plugin_registry.hpp"

namespace sluice::pipeline {

class Reloader {
 public:
  Reloader(plugin::PluginRegistry& registry, Supervisor& supervisor)
      : registry_(registry), supervisor_(supervisor) {}
  ~Reloader() { stop(); }
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // Reloads one stage (its instance name) or, given "", every stage. Returns "" or the errors,
  // one line per stage; a stage that fails keeps its old instance.
  std::string reload(const std::string& stage = "");
  // Reloads every stage whose plugin came from `file`.
  std::string reload_file(const std::filesystem::path& file);

  // A changed pipeline file: `next` is checked whole first (an invalid change is refused and
  // nothing changes); then every stage whose config changed gets a new instance with it. Changes
  // a stage swap cannot carry (pipelines or stages added or removed, performance or errors
  // sections) are reported as needing a restart. Returns "" or what was refused.
  std::string apply_pipeline_file(const config::PipelineFile& next);

  // Watches the folders of the running stages' plugin files; a changed file is reloaded once it
  // has been quiet for `debounce_ms`. The watch starts once the stages exist, so a stage file
  // written after `loaded_since` (taken before the plugins were read) is reloaded at the start:
  // a replacement made while the launcher was starting is not missed.
  void start_watching(
      std::filesystem::file_time_type loaded_since = std::filesystem::file_time_type::max(),
      uint32_t debounce_ms = 300);
  void stop();

  uint64_t reloads() const { return reloads_.load(); }

 private:
  std::string reload_files(const std::vector<std::filesystem::path>& files,
                           const std::string& only_stage);
  // Reloads one stage from a freshly loaded `library`, which must still provide its plugin.
  StageResult reload_from(Pipeline& pipeline, const std::string& stage,
                          const plugin::PluginLibrary& library);
  void watch_loop(std::filesystem::file_time_type loaded_since, uint32_t debounce_ms);

  plugin::PluginRegistry& registry_;
  Supervisor& supervisor_;
  std::mutex mu_;  // one reload at a time
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> reloads_{0};
  std::thread watcher_;
};

}  // namespace sluice::pipeline
