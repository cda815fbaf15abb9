// A pipeline's life: config checks, instance creation, the source loop, acks into the offset
// watermark, and the final drain and commit. A batch's steps are in batch_steps.cpp, every
// plugin call in plugin_calls.cpp, hot reload of a stage in reloader.cpp's half of this class.
#include "pipeline/pipeline.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "isolation/proxy.hpp"
#include "pipeline/backoff.hpp"
#include "pipeline/retrier.hpp"

namespace sluice::pipeline {

namespace {

constexpr uint32_t kPollTimeoutMs = 100;
constexpr size_t kMaxPollRecords = 4096;
constexpr auto kCommitEvery = std::chrono::milliseconds(200);
// Default call deadlines: a source's poll blocks by design; transforms and sinks should not.
constexpr uint32_t kDefaultCallTimeoutMs = 60'000;
// How long a stop waits for a stuck call before it gives up (docs/containment.md).
constexpr auto kShutdownGrace = std::chrono::seconds(10);
// How long past the grace an isolated source's restart, killed when the grace ends, has to
// return before the stop gives up on the source as stuck (the kill waits up to 1 s for it).
constexpr auto kKilledStartReturns = std::chrono::seconds(3);

std::string text(sluice_bytes b) {
  return b.ptr ? std::string(reinterpret_cast<const char*>(b.ptr), b.len) : std::string();
}

// A stuck thread cannot be stopped from outside: the process ends without waiting for it.
[[noreturn]] void exit_stuck_at_stop() {
  spdlog::default_logger()->flush();
  exit_now(kExitStuckAtStop);
}

}  // namespace

Pipeline::Pipeline(config::PipelineSpec spec, const plugin::PluginRegistry& registry)
    : spec_(std::move(spec)),
      host_memory_(std::make_shared<core::HostMemory>(
          middleware::MemoryMonitor::limit_for(spec_.performance))) {
  source_plan_ = plan(spec_.source, SLUICE_KIND_SOURCE, registry);
  for (const auto& t : spec_.transforms)
    transform_plans_.push_back(plan(t, SLUICE_KIND_TRANSFORM, registry));
  sink_plan_ = plan(spec_.sink, SLUICE_KIND_SINK, registry);
  if (spec_.dead_letter) dead_letter_plan_ = plan(*spec_.dead_letter, SLUICE_KIND_SINK, registry);
  for (const auto* p : {&source_plan_, &sink_plan_})
    secrets_.insert(secrets_.end(), p->secret_values.begin(), p->secret_values.end());
  for (const auto& p : transform_plans_)
    secrets_.insert(secrets_.end(), p.secret_values.begin(), p.secret_values.end());
  if (dead_letter_plan_)
    secrets_.insert(secrets_.end(), dead_letter_plan_->secret_values.begin(),
                    dead_letter_plan_->secret_values.end());
}

Pipeline::~Pipeline() {
  request_stop();
  if (source_thread_.joinable()) source_thread_.join();
  if (stage_) stage_->stop();
  stage_.reset();
  slots_.clear();  // destroyed here, on the control thread, last created first
}

StagePlan Pipeline::plan(const config::StageSpec& stage, sluice_kind kind,
                         const plugin::PluginRegistry& registry) {
  StagePlan p;
  p.spec = stage;
  p.plugin = registry.find(kind, stage.type);
  if (p.plugin == nullptr)
    config::throw_unknown_plugin(stage, registry.names(kind), registry.unusable(kind, stage.type),
                                 registry.skipped_note());
  if (!stage.folded.empty())
    spdlog::info(
        "pipeline {}: transforms {} run as one stage {} (performance.fuse_transforms: "
        "false keeps them apart)",
        spec_.name, fmt::join(stage.folded, ", "), config::shown_type(stage));
  config::CheckedConfig checked = config::check_stage(stage, p.plugin->schema_json);
  p.config_json = std::move(checked.json);
  p.secret_values = std::move(checked.secret_values);
  secret_list_.add(p.secret_values);
  try {
    plugin::validate_config(*p.plugin, p.config_json);
  } catch (const plugin::PluginCreateError& e) {
    throw config::ConfigError(config::field_location(stage, e.field()), redact(e.what()));
  }
  return p;
}

std::shared_ptr<plugin::PluginInstance> Pipeline::create(const StagePlan& p) {
  try {
    auto journal = [this, stage = p.spec.instance_name, plugin = p.spec.type](int signal) {
      journal_load_crash(stage, plugin, signal);
    };
    const plugin::PluginInfo info = isolation::plugin_info_for(
        *p.plugin, p.spec.instance_name, p.spec.isolation, std::move(journal));
    return std::make_shared<plugin::PluginInstance>(info, p.spec.instance_name, p.config_json,
                                                    host_memory_);
  } catch (const plugin::PluginCreateError& e) {
    throw config::ConfigError(config::field_location(p.spec, e.field()),
                              fmt::format("{} '{}' ({}) failed to start: {}", p.spec.role,
                                          p.spec.type, p.plugin->file.string(), redact(e.what())));
  }
}

// Each position is labelled by pipeline, role, index and plugin: "orders.transform[1].fields".
void Pipeline::create_stages() {
  using Role = StageSlots::Role;
  auto label = [this](const StagePlan& p, const std::string& role) {
    return fmt::format("{}.{}.{}", spec_.name, role, config::shown_type(p.spec));
  };
  slots_.add(Role::source, label(source_plan_, "source"), create(source_plan_),
             call_policy(source_plan_));
  for (size_t i = 0; i < transform_plans_.size(); ++i)
    slots_.add(Role::transform, label(transform_plans_[i], fmt::format("transform[{}]", i)),
               create(transform_plans_[i]), call_policy(transform_plans_[i]));
  slots_.add(Role::sink, label(sink_plan_, "sink"), create(sink_plan_), call_policy(sink_plan_));
  if (dead_letter_plan_)
    slots_.add(Role::dead_letter, label(*dead_letter_plan_, "dead_letter"),
               create(*dead_letter_plan_), call_policy(*dead_letter_plan_));
}

CallPolicy Pipeline::call_policy(const StagePlan& p) const {
  const uint32_t fallback = p.spec.role == "source" ? 0 : kDefaultCallTimeoutMs;
  uint32_t timeout_ms = p.spec.call_timeout_ms.value_or(fallback);
  // An isolated stage's child is killed at the same deadline and the call fails alone; the
  // watchdog reports it stuck only if the proxy itself does not return well after that.
  if (p.spec.isolation.process) timeout_ms = p.spec.isolation.call_timeout_ms * 2 + 1000;
  return {spec_.name, timeout_ms, journal_.get()};
}

// The journal of earlier crashes decides the quarantine of this run; its fd stays open for the
// crash handler.
void Pipeline::open_crash_journal() {
  install_call_guard();
  quarantine_ = std::make_unique<Quarantine>(std::vector<JournalEntry>{});
  if (spec_.location.file.empty()) return;  // a pipeline built in memory (tests): no journal
  journal_ =
      std::make_unique<CrashJournal>(journal_path(spec_.location.file, spec_.name), spec_.name);
  for (const auto& e : journal_->entries())
    if (e.call == kLoadCall)
      spdlog::warn(
          "pipeline {}: plugin '{}' (stage {}) crashed ({}) loading its library in a plugin "
          "process in an earlier run",
          spec_.name, e.plugin, e.stage, e.cause);
    else
      spdlog::warn(
          "pipeline {}: plugin '{}' (stage {}) ended an earlier run ({}) in {}() on {}: {}",
          spec_.name, e.plugin, e.stage, e.cause, e.call, describe_ranges(e.ranges, e.records),
          e.records == 1 ? "that record goes to the dead letters"
                         : "those records run one per call");
  quarantine_ = std::make_unique<Quarantine>(journal_->entries());
}

// An isolated stage's child that died loading its library: the host lives on, so the journal
// gets the line the child's own crash handler could not write (it has no journal). It names no
// records (none was in a call), so it quarantines none, and the end of the next run drops it.
// A library that crashes while it loads in process is not journaled: see LoadCrashGuard.
void Pipeline::journal_load_crash(const std::string& stage, const std::string& plugin,
                                  int signal) const {
  if (!journal_) return;
  JournalEntry entry;
  const char* abbrev = ::sigabbrev_np(signal);
  entry.cause = abbrev ? std::string("SIG") + abbrev : std::to_string(signal);
  entry.pipeline = spec_.name;
  entry.stage = stage;
  entry.plugin = plugin;
  entry.call = kLoadCall;
  journal_->append(entry);
}

BatchContext Pipeline::batch_context() {
  BatchContext c;
  c.pipeline = spec_.name;
  c.errors = spec_.errors;
  const uint64_t limit = stage_->memory().limit_bytes();
  c.transform_output_budget = transform_output_budget(limit);
  c.output_budget_rule = fmt::format(
      "its input's size plus a quarter of the memory limit of {} MB per transform "
      "call",
      limit >> 20);
  c.secrets = &secret_list_;
  c.breaker = breaker_.get();
  c.counts = &counts_;
  c.quarantine = quarantine_.get();
  c.stopping = [this] { return stop_requested_.load(); };
  c.fail = [this](const std::string& reason) { fail(reason); };
  return c;
}

// A source's sluice_host_drain (from inside its poll) reaches drain_partitions.
void Pipeline::offer_drain(plugin::PluginInstance& source) {
  source.host().set_drain([this](std::span<const sluice_position> ps, uint32_t timeout_ms) {
    return drain_partitions(ps, timeout_ms);
  });
}

void Pipeline::start() {
  open_crash_journal();
  create_stages();
  offer_drain(slots_.source().instance());
  stage_ = std::make_unique<middleware::AdaptiveStage>(
      spec_.name, spec_.sink.instance_name, spec_.performance, core::SteadyClock::instance(),
      [this](middleware::WorkBatch& b) { return process(b); },
      [this](const middleware::WorkBatch& b, const middleware::BatchOutcome& o) {
        if (o.stopped) {
          // Batches left at the stop's grace are counted and said once, at the drain's end.
          if (!past_stop_grace_.load())
            spdlog::warn(
                "pipeline {}: stopped while a batch of {} records was retrying: they are not "
                "committed, and the next run reads them again",
                spec_.name, b.records.size());
        } else if (!o.failed) {
          watermark_.done_all(b.tickets);
        }
      },
      [this](double level) { on_memory_pressure(level); });
  stage_->publish_memory(host_memory_);
  breaker_ = std::make_unique<CircuitBreaker>(spec_.errors.circuit_breaker);
  batch_context_ = batch_context();
  {
    std::lock_guard lock(swap_mu_);
    source_swaps_open_ = true;
  }
  started_at_ = std::chrono::steady_clock::now();
  stage_->start();
  source_looping_.store(true);
  source_thread_ = std::thread([this] { source_loop(); });
  started_.store(true, std::memory_order_release);  // stats() may look at the stages now
}

void Pipeline::request_stop() { stop_requested_.store(true); }

void Pipeline::wait() {
  if (source_thread_.joinable()) source_thread_.join();
}

void Pipeline::fail(const std::string& reason) {
  std::lock_guard lock(summary_mu_);
  if (summary_.failed) return;
  summary_.failed = true;
  summary_.failure = redact(reason);
  spdlog::error("pipeline {}: {}", spec_.name, summary_.failure);
  stop_requested_.store(true);
}

void Pipeline::on_memory_pressure(double level) {
  const StageSet stages = slots_.snapshot();
  if (!stages.sink) return;  // nothing created yet
  for (const auto& t : stages.transforms) t.on_memory_pressure(level);
  stages.sink.on_memory_pressure(level);
  if (stages.dead_letter) stages.dead_letter.on_memory_pressure(level);
  source_pressure_.store(level);
}

// Source thread: passes on memory pressure the monitor reported since the last poll.
void Pipeline::relay_memory_pressure(const SourceCall& source) {
  const double level = source_pressure_.exchange(-1);
  if (level >= 0) source.on_memory_pressure(level);
}

// Source thread: RSS past the monitor's hard bound that the runtime's records do not explain ends
// the run here, drained and committed, before a cgroup's OOM killer would end it without a word.
bool Pipeline::stopped_for_memory() {
  const auto over = stage_->memory().past_hard_bound();
  if (!over) return false;
  constexpr double kMb = 1 << 20;
  fail(fmt::format(
      "memory: RSS {:.0f} MB is past {:.0f}% of the {:.0f} MB memory limit "
      "(performance.memory_limit_mb, else the cgroup's memory.max or physical memory) and the "
      "runtime holds only {:.1f} MB of records, so a plugin keeps the rest (in process: {}); "
      "stopping after a drain instead of running into the limit. Give the stage that leaks "
      "`isolation: process` and `memory_limit_mb`, so that its own process is restarted at its "
      "limit instead",
      static_cast<double>(over->rss) / kMb, middleware::MemoryMonitor::kHardBound * 100,
      static_cast<double>(over->limit) / kMb, static_cast<double>(over->accounted) / kMb,
      in_process_stages()));
  return true;
}

// "transform0 (crashy), sink (file)": the stages whose plugins share this process's memory.
std::string Pipeline::in_process_stages() const {
  std::vector<std::string> names;
  auto add = [&names](const StagePlan& p) {
    if (!p.spec.isolation.process)
      names.push_back(fmt::format("{} ({})", p.spec.instance_name, p.spec.type));
  };
  add(source_plan_);
  for (const auto& t : transform_plans_) add(t);
  add(sink_plan_);
  if (dead_letter_plan_) add(*dead_letter_plan_);
  return fmt::format("{}", fmt::join(names, ", "));
}

// Hands every position that moved to the source's commit hook. Source thread only. False when
// the source refused them through every retry.
bool Pipeline::commit_ready(bool last) {
  auto ready = watermark_.take_ready();
  if (ready.empty() && !last) return true;  // a refused position waits for news or the end
  for (auto& old : uncommitted_) {
    const bool superseded = std::any_of(ready.begin(), ready.end(), [&](const auto& r) {
      return r.topic == old.topic && r.partition == old.partition;
    });
    if (!superseded) ready.push_back(std::move(old));
  }
  uncommitted_.clear();
  if (ready.empty()) return true;
  std::vector<sluice_position> ps;
  ps.reserve(ready.size());
  for (const auto& r : ready) quarantine_->committed(r.topic, r.partition, r.offset);
  for (const auto& r : ready)
    ps.push_back({sizeof(sluice_position),
                  {reinterpret_cast<const uint8_t*>(r.topic.data()), r.topic.size()},
                  r.partition,
                  r.offset});
  // Retried even while stopping: the final commit comes after the stop. Not when the source's
  // plugin process is not running at a stop (its restart failed, or the stop's grace ended it):
  // no commit can be made, and a retry would hold the stop.
  const SourceCall source = slots_.source();
  bool down_at_stop = false;
  const Retrier::Result result = Retrier(spec_.errors.retry, [&] { return down_at_stop; }).run([&] {
    StageResult error = source.commit(ps);
    down_at_stop = error && error->unavailable && stop_requested_.load();
    return error;
  });
  settle_transactions();
  if (result.error && down_at_stop) {  // the next run reads it again: nothing is lost
    spdlog::warn(
        "pipeline {}: the source's plugin is not running at the stop ({}): what it read since "
        "its last commit is not committed: the next run reads it again",
        spec_.name, redact(result.error->message));
    uncommitted_ = std::move(ready);
    return true;
  }
  // The positions are not lost: the next commit carries them or later ones (so a final commit
  // with nothing new still fails, exit 1); a restart re-reads.
  if (result.error) {
    spdlog::error("pipeline {}: commit failed after {} attempts: {}", spec_.name,
                  result.error->attempts, redact(result.error->message));
    uncommitted_ = std::move(ready);
  }
  return !result.error;
}

sluice_status Pipeline::drain_partitions(std::span<const sluice_position> partitions,
                                         uint32_t timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto outstanding = [&] {
    size_t n = 0;
    for (const auto& p : partitions) n += watermark_.outstanding(text(p.topic), p.partition);
    return n;
  };
  // Partial batches are dispatched at once; the wait ends early as the one below would.
  stage_->drain([&] {
    return stop_requested_.load() || summary().failed ||
           std::chrono::steady_clock::now() >= deadline;
  });
  while (outstanding() > 0) {
    // A failed pipeline finishes no more records: waiting out `timeout_ms` (a kafka source's
    // 30 s) would hold the source's poll past the stop grace, and the run would end as stuck
    // (71) instead of failed (1).
    if (stage_->failed() || summary().failed) return SLUICE_ERROR;
    // A stop: the source's poll returns at once, its loop ends and the stop drains with its
    // grace like any other. Waiting out `timeout_ms` behind a slow sink held the poll past the
    // grace, and the run ended as stuck (71) instead of 0. The source leaves what is not done
    // uncommitted (an exactly-once transaction commits at the final commit only if all is done).
    if (stop_requested_.load()) return SLUICE_RETRY;
    if (std::chrono::steady_clock::now() >= deadline) return SLUICE_RETRY;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  commit_ready(/*last=*/true);
  for (const auto& p : partitions) {
    watermark_.forget(text(p.topic), p.partition);
    // A revoked partition's refused position is no longer this consumer's to commit.
    std::erase_if(uncommitted_, [&](const core::StreamPosition& u) {
      return u.topic == text(p.topic) && u.partition == p.partition;
    });
  }
  return SLUICE_OK;
}

// Exactly-once: a transaction ends (commits or aborts) only with every record taken done (the
// kafka source drains the pipeline first, or ends it at the final commit), so when its
// `transactions_committed` or `transactions_aborted` counter has moved by the end of a source
// call, every record counted since the last end was in a transaction that ended that way. If both
// moved, the later one is not known: the records count as not committed, never claimed delivered.
// Called on the source thread after each poll and commit.
void Pipeline::settle_transactions() {
  if (!spec_.exactly_once) return;
  const plugin::HostContext& host = slots_.source().instance().host();
  const double committed = host.metric("transactions_committed");
  const double aborted = host.metric("transactions_aborted");
  std::lock_guard lock(settled_mu_);
  Settled& s = settled_;
  if (committed == s.transactions_committed && aborted == s.transactions_aborted) return;
  const uint64_t delivered = counts_.delivered.load();
  const uint64_t dead_lettered = counts_.dead_lettered.load();
  if (aborted != s.transactions_aborted) {
    s.aborted += (delivered - s.delivered) + (dead_lettered - s.dead_lettered);
  } else {
    s.committed_delivered += delivered - s.delivered;
    s.committed_dead_lettered += dead_lettered - s.dead_lettered;
  }
  s.delivered = delivered;
  s.dead_lettered = dead_lettered;
  s.transactions_committed = committed;
  s.transactions_aborted = aborted;
}

void Pipeline::source_loop() {
  bool paused = false;
  auto last_commit = std::chrono::steady_clock::now();
  Backoff errors(spec_.errors.retry);
  while (!stop_requested_.load()) {
    swap_source_if_asked();
    const SourceCall src = slots_.source();
    relay_memory_pressure(src);
    // Room is in records and bytes: a source that ignores max_bytes and goes over gets room 0
    // (paused) until the stage holds less than its byte bound again.
    const middleware::IntakeRoom room = stage_->intake_room();
    if (room.records == 0 && spec_.performance.backpressure) {
      if (!paused) src.set_paused(true);
      paused = true;
    } else if (paused) {
      src.set_paused(false);
      paused = false;
    }
    // Paused, the source is still polled (a Kafka consumer must keep polling to stay in its
    // group) but without a timeout: the wait is wait_for_room() below, which ends as soon as the
    // stage has room again rather than after a fixed sleep.
    sluice_poll_args args{sizeof(sluice_poll_args),
                          static_cast<uint32_t>(std::min(room.records, kMaxPollRecords)),
                          paused ? 0u : kPollTimeoutMs, 0, room.bytes};
    CollectingWriter out(SIZE_MAX);
    out.records().reserve(args.max_records);  // one allocation, not one per doubling
    const StageResult err = src.poll(args, out);
    settle_transactions();
    // Records appended despite max_records == 0 are still taken: nothing is dropped.
    if (!out.records().empty()) take_chunk(std::move(out.records()));
    if (err && err->status == SLUICE_FATAL) {
      fail(fmt::format("source '{}' failed: {}", spec_.source.type, err->message));
      break;
    }
    if (err) {
      std::chrono::milliseconds delay;
      if (!errors.next(delay)) {
        fail(fmt::format("source '{}' kept failing: {}", spec_.source.type, err->message));
        break;
      }
      spdlog::warn("pipeline {}: source poll {}: {}; retrying in {} ms", spec_.name,
                   status_name(err->status), redact(err->message), delay.count());
      Retrier(spec_.errors.retry, [this] { return stop_requested_.load(); }).sleep(delay);
      continue;
    }
    errors = Backoff(spec_.errors.retry);
    if (args.end_of_stream) break;
    if (stage_->failed() || stopped_for_memory()) break;
    if (paused) {
      const auto waited_from = std::chrono::steady_clock::now();
      stage_->wait_for_room(std::chrono::milliseconds(kPollTimeoutMs));
      src.add_wait(Wait::downstream, std::chrono::steady_clock::now() - waited_from);
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_commit >= kCommitEvery) {
      commit_ready();
      last_commit = now;
    }
  }
  finish_source_loop();
}

// Source thread: a poll's records get one ack ticket per run of one stream and go to the stage.
void Pipeline::take_chunk(core::RecordBuffer records) {
  auto chunk = std::make_shared<middleware::SourceChunk>();
  chunk->records = std::move(records);
  chunk->intake_time = std::chrono::steady_clock::now();
  watermark_.take_all(chunk->records.records(), chunk->runs);
  counts_.records_in += chunk->records.size();
  stage_->push(std::move(chunk));
}

// Drain: everything taken is processed (or the stage failed), then the final commit.
void Pipeline::finish_source_loop() {
  source_looping_.store(false);
  refuse_source_swaps();
  drain_within_grace();
  if (const uint64_t left = left_at_stop_.load())
    spdlog::warn(
        "pipeline {}: {} records not begun within the stop's {} s grace are not committed: the "
        "next run reads them again",
        spec_.name, left, kShutdownGrace.count());
  // What the sink could not make durable, or refused to see committed, is not committed: the
  // next run reads it again (at-least-once) rather than lose it.
  const SinkCall sink = slots_.sink();
  if (auto error = sink.flush())
    fail(fmt::format("sink flush failed, so the last positions are not committed: {}",
                     error->message));
  else if (auto refused = sink.pre_commit())
    fail(fmt::format("sink pre_commit failed, so the last positions are not committed: {}",
                     refused->message));
  // Records delivered but not committed are read again by the next run: not a clean end.
  else if (!commit_ready(/*last=*/true))
    fail(
        "the final commit failed (see above): the next run reads again what was delivered "
        "since the last commit");
  // The journal keeps what is not yet resolved; a run without crashes leaves no file behind.
  if (journal_) journal_->rewrite(quarantine_->unresolved());
  stage_->stop();
  if (stage_->failed() && !summary().failed) fail("the stage stopped on a failed batch");
  ended_at_ = std::chrono::steady_clock::now();
  finished_.store(true);
}

// The stage drains. Once a stop is asked for, the drain has kShutdownGrace (behind a slow sink it
// could take minutes, with nothing committed, as the final commit waits for the sink's flush):
// after it, batches not begun are left undone, to be read again by the next run, and the drain
// ends when the calls under way return; a plugin call stuck past its deadline gets the same
// grace, then the run gives up on it.
void Pipeline::drain_within_grace() {
  auto drained = std::async(std::launch::async, [this] { stage_->drain(); });
  using Clock = std::chrono::steady_clock;
  Clock::time_point give_up_at = Clock::time_point::max();  // max: no stuck call at a stop
  Clock::time_point stop_grace_ends = Clock::time_point::max();
  while (drained.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (stop_requested_.load() && stop_grace_ends == Clock::time_point::max()) {
      stop_grace_ends = Clock::now() + kShutdownGrace;
      stop_isolated_starts_at(stop_grace_ends);
    }
    if (Clock::now() >= stop_grace_ends && !past_stop_grace_.exchange(true))
      spdlog::warn(
          "pipeline {}: the drain has not ended {} s after the stop: batches not begun are left "
          "undone, and what is under way is awaited",
          spec_.name, kShutdownGrace.count());
    const auto stuck = stuck_calls(spec_.name);
    if (!stop_requested_.load() || stuck.empty()) {
      give_up_at = Clock::time_point::max();
      continue;
    }
    const auto now = Clock::now();
    if (give_up_at == Clock::time_point::max()) give_up_at = now + kShutdownGrace;
    if (now >= give_up_at) give_up_on_stuck_calls(stuck);
  }
}

// What is done is committed (never the stuck records: their batch is not acked), then the
// process ends with kExitStuckAtStop: the stuck thread cannot be stopped from outside.
void Pipeline::give_up_on_stuck_calls(const std::vector<StuckCall>& stuck) {
  commit_ready();
  for (const auto& s : stuck)
    spdlog::error("pipeline {}: stop cannot drain: {}", spec_.name, redact(s.description));
  spdlog::error(
      "pipeline {}: committed what was done; exiting with status {} without waiting "
      "for the stuck call",
      spec_.name, kExitStuckAtStop);
  exit_stuck_at_stop();
}

void Pipeline::enforce_stop_grace() {
  // Once the source loop has ended, drain_within_grace() times the grace on that thread.
  if (!stop_requested_.load() || !source_looping_.load()) return;
  using Clock = std::chrono::steady_clock;
  const SourceCall source = slots_.source();
  const bool isolated_source = isolated(source.name());
  if (stop_seen_at_ == Clock::time_point{}) {
    stop_seen_at_ = Clock::now();
    // An isolated source's restart (a create may hang up to call_timeout_ms) is killed when the
    // grace ends; its poll then returns RETRY, and the loop ends.
    if (isolated_source)
      isolation::stop_starts_at(source.instance().handle(), stop_seen_at_ + kShutdownGrace);
  }
  const auto waited = Clock::now() - stop_seen_at_;
  if (waited < kShutdownGrace) return;
  if (isolated_source && waited < kShutdownGrace + kKilledStartReturns &&
      isolation::restarting(source.instance().handle()))
    return;
  // Between two calls the source thread sees the stop by itself.
  if (const auto call = call_in_flight(spec_.name, source.name())) give_up_on_stuck_source(*call);
}

// Nothing more is committed: commits go through the source, whose thread is inside it (abi.h:
// one call at a time per instance). Positions since its last commit are read again.
void Pipeline::give_up_on_stuck_source(const CallInFlight& call) {
  spdlog::error("pipeline {}: stop cannot drain: stuck: {} has not returned for {:.1f} s",
                spec_.name, redact(call.description),
                std::chrono::duration<double>(call.elapsed).count());
  spdlog::error(
      "pipeline {}: the source cannot commit while it is stuck, so what it read since its last "
      "commit will be read again; exiting with status {} without waiting for the stuck call",
      spec_.name, kExitStuckAtStop);
  exit_stuck_at_stop();
}

middleware::BatchOutcome Pipeline::process(middleware::WorkBatch& batch) {
  if (past_stop_grace_.load()) {  // left undone, unacked: the next run reads it again
    left_at_stop_ += batch.records.size();
    middleware::BatchOutcome left;
    left.stopped = true;
    return left;
  }
  // The batch works with the instances of this moment from start to end (StageSlots' rule).
  return run_batch(batch_context_, slots_.snapshot(), batch.records);
}

Summary Pipeline::summary() const {
  Summary s;
  {
    std::lock_guard lock(summary_mu_);
    s.failed = summary_.failed;
    s.failure = summary_.failure;
  }
  s.pipeline = spec_.name;
  s.records_in = counts_.records_in.load();
  s.delivered = counts_.delivered.load();
  s.dead_lettered = counts_.dead_lettered.load();
  s.filtered = counts_.filtered.load();
  s.rejected = counts_.rejected.load();
  s.sink_records = counts_.sink_records.load();
  if (spec_.exactly_once) {
    // Delivered only once their transaction committed; the rest did not (yet) commit.
    std::lock_guard lock(settled_mu_);
    const uint64_t delivered = counts_.delivered.load();  // read after settled_: never behind
    const uint64_t dead_lettered = counts_.dead_lettered.load();
    s.not_committed = settled_.aborted + (delivered - settled_.delivered) +
                      (dead_lettered - settled_.dead_lettered);
    s.delivered = settled_.committed_delivered;
    s.dead_lettered = settled_.committed_dead_lettered;
  }
  auto end = finished_.load() ? ended_at_ : std::chrono::steady_clock::now();
  if (started_.load(std::memory_order_acquire))
    s.seconds = std::chrono::duration<double>(end - started_at_).count();
  return s;
}

std::vector<middleware::StageStats> Pipeline::stats() const {
  std::vector<middleware::StageStats> out;
  if (!started_.load(std::memory_order_acquire)) return out;
  middleware::StageStats s = stage_->stats();
  s.performance.records_dead_lettered = counts_.dead_lettered.load();
  if (breaker_) {
    s.circuit_breaker.state = spec_.errors.circuit_breaker.enabled
                                  ? std::string(CircuitBreaker::name(breaker_->state()))
                                  : "disabled";
    s.circuit_breaker.consecutive_failures = breaker_->consecutive_failures();
    s.circuit_breaker.opened_total = breaker_->opened_total();
  }
  const StageSet stages = slots_.snapshot();
  // A metric's name is the plugin's text: a secret in it is masked like one in a message.
  auto describe = [this, &s](const StageCall& call, const char* role) {
    const auto& inst = call.instance();
    for (const auto& [k, v] : inst.host().metrics()) s.extra[redact(inst.name() + "." + k)] = v;
    for (const auto& k : inst.host().counter_names())
      s.extra_counters.insert(redact(inst.name() + "." + k));
    s.plugins.push_back(
        {inst.name(), role, inst.info().name, inst.info().version, inst.info().file.string()});
  };
  for (const auto& stuck : stuck_calls(spec_.name)) s.extra[stuck.stage + ".stuck_calls"] += 1;
  describe(stages.source, "source");
  for (const auto& t : stages.transforms) describe(t, "transform");
  describe(stages.sink, "sink");
  if (stages.dead_letter) describe(stages.dead_letter, "dead_letter");
  s.stages = stage_profiles();
  out.push_back(std::move(s));
  return out;
}

const char* Pipeline::role_name(StageSlots::Role role) {
  switch (role) {
    case StageSlots::Role::source:
      return "source";
    case StageSlots::Role::transform:
      return "transform";
    case StageSlots::Role::sink:
      return "sink";
    case StageSlots::Role::dead_letter:
      return "dead_letter";
  }
  return "?";
}

std::vector<middleware::StageStats::Profile> Pipeline::stage_profiles() const {
  constexpr double kNsPerMs = 1e6;
  std::vector<middleware::StageStats::Profile> out;
  for (const auto& r : slots_.counters()) {
    out.push_back({r.label, role_name(r.role), r.plugin, r.calls, r.failed_calls, r.records_in,
                   r.records_out, r.elapsed_ns / kNsPerMs, r.busy_ns / kNsPerMs,
                   r.p50_ns / kNsPerMs, r.p99_ns / kNsPerMs, r.wait_input_ns / kNsPerMs,
                   r.wait_downstream_ns / kNsPerMs, r.wait_breaker_ns / kNsPerMs});
  }
  return out;
}

// ---- Hot reload of one stage ----

namespace {

// Hands a stateful plugin's state from the old instance to its replacement.
StageResult transfer_state(const StageCall& from, const StageCall& to) {
  if (!from.instance().has(&sluice_plugin::snapshot) || !to.instance().has(&sluice_plugin::restore))
    return std::nullopt;
  std::string state;
  if (auto error = from.snapshot(state)) {
    error->message = "snapshot of the old instance failed: " + error->message;
    return error;
  }
  if (auto error = to.restore(state)) {
    error->message = "restore into the new instance failed: " + error->message;
    return error;
  }
  return std::nullopt;
}

sluice_kind kind_of(StageSlots::Role role) {
  switch (role) {
    case StageSlots::Role::source:
      return SLUICE_KIND_SOURCE;
    case StageSlots::Role::transform:
      return SLUICE_KIND_TRANSFORM;
    default:
      return SLUICE_KIND_SINK;
  }
}

}  // namespace

std::vector<Pipeline::StageFile> Pipeline::stage_files() const {
  std::vector<StageFile> out;
  if (!started_.load(std::memory_order_acquire)) return out;
  const StageSet stages = slots_.snapshot();
  auto add = [&out](const StageCall& call, const char* role) {
    out.push_back({call.name(), role, call.instance().info().file});
  };
  add(stages.source, "source");
  for (const auto& t : stages.transforms) add(t, "transform");
  add(stages.sink, "sink");
  if (stages.dead_letter) add(stages.dead_letter, "dead_letter");
  return out;
}

StagePlan* Pipeline::plan_of(const std::string& instance_name) {
  if (source_plan_.spec.instance_name == instance_name) return &source_plan_;
  for (auto& t : transform_plans_)
    if (t.spec.instance_name == instance_name) return &t;
  if (sink_plan_.spec.instance_name == instance_name) return &sink_plan_;
  if (dead_letter_plan_ && dead_letter_plan_->spec.instance_name == instance_name)
    return &*dead_letter_plan_;
  return nullptr;
}

std::string Pipeline::stage_type(const std::string& instance_name) const {
  if (source_plan_.spec.instance_name == instance_name) return source_plan_.spec.type;
  for (const auto& t : transform_plans_)
    if (t.spec.instance_name == instance_name) return t.spec.type;
  if (sink_plan_.spec.instance_name == instance_name) return sink_plan_.spec.type;
  if (dead_letter_plan_ && dead_letter_plan_->spec.instance_name == instance_name)
    return dead_letter_plan_->spec.type;
  return "";
}

std::map<std::string, std::string> Pipeline::stage_errors() const {
  std::map<std::string, std::string> errors;
  {
    std::lock_guard lock(errors_mu_);
    errors = stage_errors_;
  }
  add_isolation_crashes(errors);
  // A stuck call is the worse news for its stage ("stuck:", which /health shows as stuck).
  for (const auto& s : stuck_calls(spec_.name)) errors[s.stage] = redact(s.description);
  return errors;
}

// An isolated stage whose child crashed: "restarted: ..." while it works on (/health shows it,
// still healthy); a plain error (degraded, 503) while its crash breaker is open.
void Pipeline::add_isolation_crashes(std::map<std::string, std::string>& errors) const {
  if (!started_.load(std::memory_order_acquire)) return;
  const StageSet stages = slots_.snapshot();
  std::vector<const StageCall*> calls{&stages.source, &stages.sink};
  for (const auto& t : stages.transforms) calls.push_back(&t);
  if (stages.dead_letter) calls.push_back(&stages.dead_letter);
  for (const StageCall* call : calls) {
    if (!isolated(call->name()) || errors.count(call->name()) > 0) continue;
    const isolation::CrashState c = isolation::crash_state(call->instance().handle());
    if (c.crashes == 0) continue;
    if (c.start_failing)  // no plugin process runs: a failed restart, not a crash window
      errors[call->name()] = redact(fmt::format(
          "plugin process crashed {} times, restarted {} times; restart failed: {} ({} in a "
          "row); next attempt in {} s; its calls are retried and their records held meanwhile",
          c.crashes, c.restarts, c.start_failure, c.failed_starts,
          (c.next_start_in_ms + 999) / 1000));
    else
      errors[call->name()] = redact(fmt::format(
          "{}plugin process crashed {} times, restarted {} times{}; last: {}",
          c.breaker_open ? "" : "restarted: ", c.crashes, c.restarts,
          c.breaker_open ? ", too often in its crash window: its calls fail until it passes" : "",
          c.last_crash));
  }
}

// From `when` on, no isolated stage's restart holds the stop up: one in flight is killed and
// none is begun (a create may hang up to call_timeout_ms, longer than the stop's grace).
void Pipeline::stop_isolated_starts_at(std::chrono::steady_clock::time_point when) const {
  const StageSet stages = slots_.snapshot();
  std::vector<const StageCall*> calls{&stages.source, &stages.sink};
  for (const auto& t : stages.transforms) calls.push_back(&t);
  if (stages.dead_letter) calls.push_back(&stages.dead_letter);
  for (const StageCall* call : calls)
    if (isolated(call->name())) isolation::stop_starts_at(call->instance().handle(), when);
}

bool Pipeline::isolated(const std::string& instance_name) const {
  std::vector<const StagePlan*> plans{&source_plan_, &sink_plan_};
  for (const auto& t : transform_plans_) plans.push_back(&t);
  if (dead_letter_plan_) plans.push_back(&*dead_letter_plan_);
  return std::any_of(plans.begin(), plans.end(), [&](const StagePlan* p) {
    return p->spec.instance_name == instance_name && p->spec.isolation.process;
  });
}

StageResult Pipeline::reload_stage(const std::string& instance_name,
                                   const plugin::PluginRegistry& registry,
                                   const config::StageSpec* new_spec) {
  StageResult error = replace_stage(instance_name, registry, new_spec);
  std::lock_guard lock(errors_mu_);
  if (!error) {
    stage_errors_.erase(instance_name);
    return error;
  }
  error->message = redact(error->message);
  stage_errors_[instance_name] = error->message;
  return error;
}

// Why a hot reload of this kafka stage is refused ("" when it is not): the new instance would
// run beside the old one, and two Kafka clients of one role in one process do not hand over.
//  - exactly-once: the source and sink share one transactional producer (found through the
//    plugin's own statics, which a reload maps anew); a new sink's producer fenced the running
//    one (_FENCED, the pipeline failed), a new source found no producer (exit 1).
//  - a source: its new consumer joined the group while the old one held the partitions;
//    librdkafka then aborted in its sticky assignor or the process crashed (6 of 10 probes).
std::string Pipeline::kafka_reload_refusal(const StagePlan& stage, StageSlots::Role role) const {
  if (stage.spec.type != "kafka") return "";
  const char* restart = "; restart sluice to run a new kafka plugin (the old instance runs on)";
  if (spec_.exactly_once)
    return std::string(
               "a hot reload of a kafka stage of an exactly-once pipeline is refused: its "
               "source and sink share one transactional producer, which a new instance "
               "would fence") +
           restart;
  if (role == StageSlots::Role::source)
    return std::string(
               "a hot reload of a kafka source is refused: its new consumer would join "
               "the consumer group while the old one still holds the partitions") +
           restart;
  return "";
}

// Everything that can fail happens before the swap, while the old instance runs on.
StageResult Pipeline::replace_stage(const std::string& instance_name,
                                    const plugin::PluginRegistry& registry,
                                    const config::StageSpec* new_spec) {
  auto refused = [&](std::string why) { return StageError{instance_name, "", std::move(why)}; };
  if (!started_.load(std::memory_order_acquire) || finished())
    return refused("the pipeline is not running");
  const auto found = slots_.find(instance_name);
  StagePlan* current = plan_of(instance_name);
  if (!found || current == nullptr) return refused("no stage named '" + instance_name + "'");
  if (const std::string why = kafka_reload_refusal(*current, found->role); !why.empty())
    return StageError{instance_name, current->spec.type, why};
  StagePlan fresh;
  std::shared_ptr<plugin::PluginInstance> next;
  try {  // the config module reports a bad config or a failed create as a ConfigError
    fresh = plan(new_spec ? *new_spec : current->spec, kind_of(found->role), registry);
    next = create(fresh);
  } catch (const std::exception& e) {
    return StageError{instance_name, current->spec.type, e.what()};
  }
  StageResult error = found->role == StageSlots::Role::source
                          ? swap_source(std::move(next))
                          : swap_stage(found->slot, std::move(next));
  if (error) return error;
  adopt(*current, std::move(fresh), new_spec);
  spdlog::info("pipeline {}: stage {} reloaded{} from {}", spec_.name, instance_name,
               new_spec ? " with its new config" : "", current->plugin->file.string());
  return std::nullopt;
}

// The swap done: the plan, and the spec when the config changed, follow the new instance, so a
// later file change is compared with what runs.
void Pipeline::adopt(StagePlan& current, StagePlan fresh, const config::StageSpec* new_spec) {
  const std::string name = current.spec.instance_name;
  current = std::move(fresh);
  if (!new_spec) return;
  for (auto* st : {&spec_.source, &spec_.sink})
    if (st->instance_name == name) *st = *new_spec;
  for (auto& st : spec_.transforms)
    if (st.instance_name == name) st = *new_spec;
  if (spec_.dead_letter && spec_.dead_letter->instance_name == name) spec_.dead_letter = *new_spec;
}

// A transform or sink: with no batch in flight (quiesced) the state moves and the slot swaps;
// the instance that leaves is destroyed here, on the control thread.
StageResult Pipeline::swap_stage(size_t slot, std::shared_ptr<plugin::PluginInstance> next) {
  stage_->quiesce();
  StageResult error = transfer_state(slots_.call(slot), slots_.candidate(slot, next));
  std::shared_ptr<plugin::PluginInstance> leaving =
      error ? std::move(next) : slots_.exchange(slot, std::move(next));
  stage_->resume();
  retire(std::move(leaving));
  return error;
}

// A source: its own thread swaps it between polls (swap_source_if_asked) and hands back the
// instance that leaves, to be destroyed here.
StageResult Pipeline::swap_source(std::shared_ptr<plugin::PluginInstance> next) {
  auto swap = std::make_unique<SourceSwap>();
  swap->instance = std::move(next);
  std::future<SwapDone> done = swap->done.get_future();
  {
    std::lock_guard lock(swap_mu_);
    if (!source_swaps_open_) {
      retire(std::move(swap->instance));
      return StageError{spec_.source.instance_name, spec_.source.type,
                        "the pipeline stopped before the swap"};
    }
    source_swap_ = std::move(swap);
  }
  SwapDone result = done.get();
  retire(std::move(result.retired));
  return std::move(result.error);
}

// Source thread only: completes a source swap asked for by reload_stage().
void Pipeline::swap_source_if_asked() {
  std::unique_ptr<SourceSwap> swap;
  {
    std::lock_guard lock(swap_mu_);
    swap = std::move(source_swap_);
  }
  if (!swap) return;
  // Everything taken so far is finished and committed, so the new instance resumes exactly
  // after it.
  stage_->drain();
  commit_ready();
  const size_t slot = slots_.find(spec_.source.instance_name)->slot;
  StageResult error = transfer_state(slots_.call(slot), slots_.candidate(slot, swap->instance));
  if (error) {
    swap->done.set_value({std::move(swap->instance), std::move(error)});
    return;
  }
  offer_drain(*swap->instance);
  swap->done.set_value({slots_.exchange(slot, std::move(swap->instance)), std::nullopt});
}

// The source loop ends: a swap asked for now is refused, and one still waiting is answered.
void Pipeline::refuse_source_swaps() {
  std::lock_guard lock(swap_mu_);
  source_swaps_open_ = false;
  if (!source_swap_) return;
  source_swap_->done.set_value(
      {std::move(source_swap_->instance), StageError{spec_.source.instance_name, spec_.source.type,
                                                     "the pipeline stopped before the swap"}});
  source_swap_.reset();
}

}  // namespace sluice::pipeline
