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
#include "pipeline/batch_steps.hpp"
#include "pipeline/call_guard.hpp"
#include "pipeline/circuit_breaker.hpp"
#include "pipeline/crash_journal.hpp"
#include "pipeline/quarantine.hpp"
#include "pipeline/secret_list.hpp"
#include "pipeline/stage_error.hpp"
#include "pipeline/stage_slots.hpp"
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
  // Exactly-once: records delivered or dead-lettered into a Kafka transaction that did not commit
  // (aborted, fenced, or still open at the end), so not in `delivered` or `dead_lettered`.
  uint64_t not_committed = 0;
  double seconds = 0;
  bool failed = false;
  std::string failure;
};

// A stage's plugin, its checked config and where it was declared.
struct StagePlan {
  config::StageSpec spec;
  const plugin::PluginInfo* plugin = nullptr;
  std::string config_json;
  std::vector<std::string> secret_values;
};

class Pipeline {
 public:
  // Checks every stage against its plugin's schema; throws config::ConfigError. Nothing runs yet.
  Pipeline(config::PipelineSpec spec, const plugin::PluginRegistry& registry);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Creates the plugin instances (a failure is a config::ConfigError at the stage or field) and
  // starts the source thread and the stage. The calling thread is the pipeline's control thread:
  // instances are created and destroyed there (or on the thread that asks for a reload).
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
  bool started() const { return started_.load(std::memory_order_acquire); }
  // From the supervisor's thread, every tick: once a stop is asked for, a source thread stuck
  // inside a source call past the stop grace ends the process (status 71), since that thread
  // cannot time its own grace.
  void enforce_stop_grace();

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
  // and in-flight batches drained so no record is lost, reordered or duplicated. On failure
  // returns why (redacted, also kept in stage_errors()) and the old instance keeps running.
  // With `new_spec` the stage takes that config (a changed pipeline file) instead of its
  // current one. The old instance is destroyed on the calling thread before this returns.
  StageResult reload_stage(const std::string& instance_name, const plugin::PluginRegistry& registry,
                           const config::StageSpec* new_spec = nullptr);
  const config::PipelineSpec& spec() const { return spec_; }
  // The last reload error of each stage that has one (cleared by a successful reload).
  std::map<std::string, std::string> stage_errors() const;
  // The plugin name (`type:`) of a stage, "" if there is no such stage.
  std::string stage_type(const std::string& instance_name) const;
  void set_stage_error(const std::string& instance_name, const std::string& message) {
    std::lock_guard lock(errors_mu_);
    stage_errors_[instance_name] = redact(message);
  }
  // Secret config values to keep out of logs, stats and errors (those of the configs the
  // pipeline was built with; redact() also knows those of configs reloaded since).
  const std::vector<std::string>& secrets() const { return secrets_; }
  std::string redact(std::string text) const { return secret_list_.redact(std::move(text)); }
  // Values masked in this pipeline's texts besides its secret fields' (the admin token).
  void add_secrets(const std::vector<std::string>& values) { secret_list_.add(values); }

  // Memory pressure (from the adaptive stage's monitor, any thread): transforms and sink are told
  // at once; the source on its own source thread, before its next poll (abi.h threading rule).
  void on_memory_pressure(double level);
  // Calls, records and time spent in each stage position, by label ("orders.transform[1].x").
  std::vector<StageSlots::Reading> call_counters() const { return slots_.counters(); }
  // Every stage position's profile, for stats().
  std::vector<middleware::StageStats::Profile> stage_profiles() const;
  static const char* role_name(StageSlots::Role role);

 private:
  StagePlan plan(const config::StageSpec& stage, sluice_kind kind,
                 const plugin::PluginRegistry& registry);
  std::shared_ptr<plugin::PluginInstance> create(const StagePlan& plan);
  void create_stages();
  void offer_drain(plugin::PluginInstance& source);
  BatchContext batch_context();
  void take_chunk(core::RecordBuffer records);
  void source_loop();
  void relay_memory_pressure(const SourceCall& source);
  bool stopped_for_memory();
  std::string in_process_stages() const;
  void finish_source_loop();
  void open_crash_journal();
  CallPolicy call_policy(const StagePlan& plan) const;
  void drain_within_grace();
  [[noreturn]] void give_up_on_stuck_calls(const std::vector<StuckCall>& stuck);
  [[noreturn]] void give_up_on_stuck_source(const CallInFlight& call);
  // `last`: the final commit, or the one before a stream is forgotten, which carries refused
  // positions again even when nothing moved since.
  bool commit_ready(bool last = false);
  sluice_status drain_partitions(std::span<const sluice_position> partitions, uint32_t timeout_ms);
  void settle_transactions();
  middleware::BatchOutcome process(middleware::WorkBatch& batch);
  void fail(const std::string& reason);
  StagePlan* plan_of(const std::string& instance_name);
  StageResult replace_stage(const std::string& instance_name,
                            const plugin::PluginRegistry& registry,
                            const config::StageSpec* new_spec);
  std::string kafka_reload_refusal(const StagePlan& stage, StageSlots::Role role) const;
  void adopt(StagePlan& current, StagePlan fresh, const config::StageSpec* new_spec);
  StageResult swap_stage(size_t slot, std::shared_ptr<plugin::PluginInstance> next);
  StageResult swap_source(std::shared_ptr<plugin::PluginInstance> next);
  void swap_source_if_asked();
  void refuse_source_swaps();
  void add_isolation_crashes(std::map<std::string, std::string>& errors) const;
  void stop_isolated_starts_at(std::chrono::steady_clock::time_point when) const;
  void journal_load_crash(const std::string& stage, const std::string& plugin, int signal) const;
  bool isolated(const std::string& instance_name) const;

  config::PipelineSpec spec_;
  // The memory limit and pressure the plugins see through the host API.
  std::shared_ptr<core::HostMemory> host_memory_;
  StagePlan source_plan_;
  std::vector<StagePlan> transform_plans_;
  StagePlan sink_plan_;
  std::optional<StagePlan> dead_letter_plan_;
  std::vector<std::string> secrets_;
  SecretList secret_list_;

  std::unique_ptr<CrashJournal> journal_;
  std::unique_ptr<Quarantine> quarantine_;
  StageSlots slots_;
  BatchContext batch_context_;
  std::unique_ptr<middleware::AdaptiveStage> stage_;
  std::unique_ptr<CircuitBreaker> breaker_;
  core::OffsetWatermark watermark_;
  // Positions a commit could not store through every retry: the next commit carries them again
  // (unless a later position of the same stream supersedes it), the final one too. Source thread.
  std::vector<core::StreamPosition> uncommitted_;
  std::thread source_thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> started_{false};
  std::atomic<bool> source_looping_{false};  // the source thread has not left its loop yet
  std::chrono::steady_clock::time_point stop_seen_at_{};  // enforce_stop_grace()'s thread only
  // Set by drain_within_grace() once a stop's drain has run kShutdownGrace: process() then leaves
  // each batch not yet begun undone, and counts its records in left_at_stop_.
  std::atomic<bool> past_stop_grace_{false};
  std::atomic<uint64_t> left_at_stop_{0};
  std::chrono::steady_clock::time_point started_at_{};
  std::chrono::steady_clock::time_point ended_at_{};

  // A source swap is done by the source thread itself, between polls; the instance that leaves
  // (the old one, or the new one if the swap failed) goes back to the asking thread, which
  // destroys it.
  struct SwapDone {
    std::shared_ptr<plugin::PluginInstance> retired;
    StageResult error;
  };
  struct SourceSwap {
    std::shared_ptr<plugin::PluginInstance> instance;
    std::promise<SwapDone> done;
  };
  mutable std::mutex swap_mu_;
  std::unique_ptr<SourceSwap> source_swap_;
  bool source_swaps_open_ = false;  // until the source loop ends
  // Memory pressure for the source to hear on its own thread; negative: none pending.
  std::atomic<double> source_pressure_{-1};
  mutable std::mutex errors_mu_;
  std::map<std::string, std::string> stage_errors_;

  mutable std::mutex summary_mu_;
  Summary summary_;
  RecordCounts counts_;
  // Exactly-once: counts_ split by how the transaction of their records ended
  // (settle_transactions(), source thread; summary() reads them).
  struct Settled {
    uint64_t delivered = 0, dead_lettered = 0;  // counts_ when the last transaction ended
    uint64_t committed_delivered = 0, committed_dead_lettered = 0, aborted = 0;
    double transactions_committed = 0, transactions_aborted = 0;  // the source's counters then
  };
  mutable std::mutex settled_mu_;
  Settled settled_;
};

}  // namespace sluice::pipeline
