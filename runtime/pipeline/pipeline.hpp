// One running pipeline: source thread -> adaptive stage (transforms -> sink) -> acks -> commits.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/pipeline_spec.hpp"
#include "core/offset_watermark.hpp"
#include "middleware/adaptive_stage.hpp"
#include "middleware/stats.hpp"
#include "pipeline/circuit_breaker.hpp"
#include "pipeline/writers.hpp"
#include "plugin/plugin_instance.hpp"
#include "plugin/plugin_registry.hpp"

namespace sluice::pipeline {

// What a pipeline did, for the stop summary. Every source record ends in exactly one of
// delivered, dead_lettered, filtered or rejected (tolerated and logged).
struct Summary {
  std::string pipeline;
  uint64_t records_in = 0;
  uint64_t delivered = 0;
  uint64_t dead_lettered = 0;
  uint64_t filtered = 0;
  uint64_t rejected = 0;
  uint64_t sink_records = 0;  // records the sink accepted (transforms may fan out)
  double seconds = 0;
  bool failed = false;
  std::string failure;
};

// A stage's plugin, its checked config and where it was declared.
struct StagePlan {
  config::StageSpec spec;
  const plugin::PluginInfo* plugin = nullptr;
  std::string config_json;
};

class Pipeline {
 public:
  // Checks every stage against its plugin's schema; throws config::ConfigError. Nothing runs yet.
  Pipeline(config::PipelineSpec spec, const plugin::PluginRegistry& registry);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Creates the plugin instances (a failure is a config::ConfigError at the stage or field) and
  // starts the source thread and the stage.
  void start();
  // For `sluice validate --create`: creates every stage's plugin instance with its config and
  // destroys them again, without starting anything; a failure is a config::ConfigError naming
  // the stage (see pipeline_check.cpp).
  void create_and_destroy_stages();
  // Stops intake; what is in flight is drained and committed. Safe from any thread.
  void request_stop();
  // Blocks until the pipeline has ended (input exhausted, stopped, or failed).
  void wait();
  bool finished() const { return finished_.load(); }

  const std::string& name() const { return spec_.name; }
  Summary summary() const;
  std::vector<middleware::StageStats> stats() const;
  // nullptr until start() has made it (the admin server may ask earlier, from its own thread).
  const CircuitBreaker* circuit_breaker() const {
    return started_.load(std::memory_order_acquire) ? breaker_.get() : nullptr;
  }

  // Hot reload. Each stage's instance name, role and the plugin file it came from.
  struct StageFile {
    std::string instance_name;
    std::string role;
    std::filesystem::path file;
  };
  std::vector<StageFile> stage_files() const;
  // Replaces a stage's instance with a new one of the registry's current plugin of that name
  // (checked against its schema, created, handed the old one's snapshot), with intake paused
  // and in-flight batches drained so no record is lost, reordered or duplicated. Throws
  // std::runtime_error with the reason, and the old instance keeps running. With `new_spec`
  // the stage takes that config (a changed pipeline file) instead of its current one.
  void reload_stage(const std::string& instance_name, const plugin::PluginRegistry& registry,
                    const config::StageSpec* new_spec = nullptr);
  const config::PipelineSpec& spec() const { return spec_; }
  // The last reload error of each stage that has one (cleared by a successful reload).
  std::map<std::string, std::string> stage_errors() const;
  // The plugin name (`type:`) of a stage, "" if there is no such stage.
  std::string stage_type(const std::string& instance_name) const;
  void set_stage_error(const std::string& instance_name, const std::string& message) {
    std::lock_guard lock(errors_mu_);
    stage_errors_[instance_name] = message;
  }
  // Secret config values to keep out of logs, stats and errors.
  const std::vector<std::string>& secrets() const { return secrets_; }

 private:
  struct Stages;

  StagePlan plan(const config::StageSpec& stage, sluice_kind kind,
                 const plugin::PluginRegistry& registry);
  std::unique_ptr<plugin::PluginInstance> create(const StagePlan& plan);
  void source_loop();
  void commit_ready();
  sluice_status drain_partitions(std::span<const sluice_position> partitions, uint32_t timeout_ms);
  middleware::BatchOutcome process(middleware::WorkBatch& batch);
  void fail(const std::string& reason);
  void swap_source_if_asked();
  bool sleep_unless_stopping(std::chrono::milliseconds d);

  config::PipelineSpec spec_;
  StagePlan source_plan_;
  std::vector<StagePlan> transform_plans_;
  StagePlan sink_plan_;
  std::optional<StagePlan> dead_letter_plan_;
  std::vector<std::string> secrets_;

  std::unique_ptr<Stages> stages_;
  std::unique_ptr<middleware::AdaptiveStage> stage_;
  std::unique_ptr<CircuitBreaker> breaker_;
  core::OffsetWatermark watermark_;
  std::thread source_thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> started_{false};
  std::chrono::steady_clock::time_point started_at_{};
  std::chrono::steady_clock::time_point ended_at_{};

  // A source swap is done by the source thread itself, between polls.
  struct SourceSwap {
    std::unique_ptr<plugin::PluginInstance> instance;
    std::promise<std::string> done;
  };
  mutable std::mutex swap_mu_;
  std::unique_ptr<SourceSwap> source_swap_;
  mutable std::mutex errors_mu_;
  std::map<std::string, std::string> stage_errors_;

  mutable std::mutex summary_mu_;
  Summary summary_;
  std::atomic<uint64_t> records_in_{0};
  std::atomic<uint64_t> delivered_{0}, dead_lettered_{0}, filtered_{0}, rejected_{0},
      sink_records_{0};
};

}  // namespace sluice::pipeline
