// A pipeline's life: config checks, instance creation, the source loop, batch processing with
// retries and the error policy, acks into the offset watermark, and the final drain and commit.
#include "pipeline/pipeline.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <numeric>

#include "isolation/proxy.hpp"
#include "pipeline/backoff.hpp"

namespace sluice::pipeline {

namespace {

constexpr uint32_t kPollTimeoutMs = 100;
constexpr size_t kMaxPollRecords = 4096;
constexpr auto kCommitEvery = std::chrono::milliseconds(200);
constexpr size_t kLoggedRejectsPerBatch = 5;
// A source marks a record it could not read properly with this header; its value is the reason.
constexpr std::string_view kSourceErrorHeader = "sluice.error";

std::string status_name(sluice_status s) {
  switch (s) {
    case SLUICE_OK:
      return "OK";
    case SLUICE_RETRY:
      return "RETRY";
    case SLUICE_ERROR:
      return "ERROR";
    case SLUICE_FATAL:
      return "FATAL";
  }
  return fmt::format("ERROR (unknown status {})", s);
}

// Unknown status values count as ERROR.
sluice_status normalize(sluice_status s) {
  return s == SLUICE_OK || s == SLUICE_RETRY || s == SLUICE_FATAL ? s : SLUICE_ERROR;
}

std::string text(sluice_bytes b) {
  return b.ptr ? std::string(reinterpret_cast<const char*>(b.ptr), b.len) : std::string();
}

}  // namespace

// The created instances; destroyed in reverse order of creation.
struct Pipeline::Stages {
  std::unique_ptr<plugin::PluginInstance> source;
  std::vector<std::unique_ptr<plugin::PluginInstance>> transforms;
  std::unique_ptr<plugin::PluginInstance> sink;
  std::unique_ptr<plugin::PluginInstance> dead_letter;
};

Pipeline::Pipeline(config::PipelineSpec spec, const plugin::PluginRegistry& registry)
    : spec_(std::move(spec)) {
  source_plan_ = plan(spec_.source, SLUICE_KIND_SOURCE, registry);
  for (const auto& t : spec_.transforms)
    transform_plans_.push_back(plan(t, SLUICE_KIND_TRANSFORM, registry));
  sink_plan_ = plan(spec_.sink, SLUICE_KIND_SINK, registry);
  if (spec_.dead_letter) dead_letter_plan_ = plan(*spec_.dead_letter, SLUICE_KIND_SINK, registry);
}

Pipeline::~Pipeline() {
  request_stop();
  if (source_thread_.joinable()) source_thread_.join();
  if (stage_) stage_->stop();
  stage_.reset();
  stages_.reset();
}

StagePlan Pipeline::plan(const config::StageSpec& stage, sluice_kind kind,
                         const plugin::PluginRegistry& registry) {
  StagePlan p;
  p.spec = stage;
  p.plugin = registry.find(kind, stage.type);
  if (p.plugin == nullptr) config::throw_unknown_plugin(stage, registry.names(kind));
  config::CheckedConfig checked = config::check_stage(stage, p.plugin->schema_json);
  p.config_json = std::move(checked.json);
  secrets_.insert(secrets_.end(), checked.secret_values.begin(), checked.secret_values.end());
  try {
    plugin::validate_config(*p.plugin, p.config_json);
  } catch (const plugin::PluginCreateError& e) {
    throw config::ConfigError(config::field_location(stage, e.field()),
                              config::redact(e.what(), secrets_));
  }
  return p;
}

std::unique_ptr<plugin::PluginInstance> Pipeline::create(const StagePlan& p) {
  try {
    const plugin::PluginInfo info =
        isolation::plugin_info_for(*p.plugin, p.spec.instance_name, p.spec.isolation);
    return std::make_unique<plugin::PluginInstance>(info, p.spec.instance_name, p.config_json);
  } catch (const plugin::PluginCreateError& e) {
    throw config::ConfigError(
        config::field_location(p.spec, e.field()),
        fmt::format("{} '{}' ({}) failed to start: {}", p.spec.role, p.spec.type,
                    p.plugin->file.string(), config::redact(e.what(), secrets_)));
  }
}

void Pipeline::start() {
  stages_ = std::make_unique<Stages>();
  stages_->source = create(source_plan_);
  for (const auto& t : transform_plans_) stages_->transforms.push_back(create(t));
  stages_->sink = create(sink_plan_);
  if (dead_letter_plan_) stages_->dead_letter = create(*dead_letter_plan_);
  stages_->source->host().set_drain(
      [this](std::span<const sluice_position> ps, uint32_t timeout_ms) {
        return drain_partitions(ps, timeout_ms);
      });

  auto on_pressure = [this](double level) {
    auto call = [level](plugin::PluginInstance& inst) {
      if (inst.has(&sluice_plugin::on_memory_pressure))
        inst.table().on_memory_pressure(inst.handle(), level);
    };
    for (auto& t : stages_->transforms) call(*t);
    call(*stages_->sink);
    call(*stages_->source);
  };
  stage_ = std::make_unique<middleware::AdaptiveStage>(
      spec_.name, spec_.sink.instance_name, spec_.performance, core::SteadyClock::instance(),
      [this](middleware::WorkBatch& b) { return process(b); },
      [this](const middleware::WorkBatch& b, const middleware::BatchOutcome& o) {
        if (!o.failed) watermark_.done_all(b.tickets);
      },
      on_pressure);
  breaker_ = std::make_unique<CircuitBreaker>(spec_.errors.circuit_breaker);
  started_at_ = std::chrono::steady_clock::now();
  stage_->start();
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
  summary_.failure = config::redact(reason, secrets_);
  spdlog::error("pipeline {}: {}", spec_.name, summary_.failure);
  stop_requested_.store(true);
}

bool Pipeline::sleep_unless_stopping(std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (stop_requested_.load()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(20), std::chrono::duration_cast<std::chrono::milliseconds>(
                                           until - std::chrono::steady_clock::now())));
  }
  return true;
}

// Hands every position that moved to the source's commit hook. Source thread only.
void Pipeline::commit_ready() {
  auto ready = watermark_.take_ready();
  if (ready.empty()) return;
  auto& src = *stages_->source;
  if (!src.has(&sluice_plugin::commit)) return;
  std::vector<sluice_position> ps;
  ps.reserve(ready.size());
  for (const auto& r : ready)
    ps.push_back({sizeof(sluice_position),
                  {reinterpret_cast<const uint8_t*>(r.topic.data()), r.topic.size()},
                  r.partition,
                  r.offset});
  plugin::CallError err;
  Backoff backoff(spec_.errors.retry);
  for (;;) {
    sluice_status st = normalize(src.table().commit(src.handle(), ps.data(), ps.size(), err.get()));
    if (st == SLUICE_OK) return;
    std::chrono::milliseconds delay;
    if (st == SLUICE_RETRY && backoff.next(delay)) {
      spdlog::warn("pipeline {}: commit failed ({}), retrying in {} ms", spec_.name, err.message,
                   delay.count());
      std::this_thread::sleep_for(delay);
      continue;
    }
    // The positions are not lost: the next commit carries later ones; a restart re-reads.
    spdlog::error("pipeline {}: commit failed: {}", spec_.name, err.message);
    return;
  }
}

sluice_status Pipeline::drain_partitions(std::span<const sluice_position> partitions,
                                         uint32_t timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto outstanding = [&] {
    size_t n = 0;
    for (const auto& p : partitions) n += watermark_.outstanding(text(p.topic), p.partition);
    return n;
  };
  stage_->drain();
  while (outstanding() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return SLUICE_RETRY;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  commit_ready();
  for (const auto& p : partitions) watermark_.forget(text(p.topic), p.partition);
  return SLUICE_OK;
}

void Pipeline::source_loop() {
  bool paused = false;
  auto last_commit = std::chrono::steady_clock::now();
  Backoff errors(spec_.errors.retry);
  while (!stop_requested_.load()) {
    swap_source_if_asked();
    auto& src = *stages_->source;
    size_t room = stage_->room();
    if (room == 0 && spec_.performance.backpressure) {
      if (!paused && src.has(&sluice_plugin::set_paused)) src.table().set_paused(src.handle(), 1);
      paused = true;
    } else if (paused) {
      if (src.has(&sluice_plugin::set_paused)) src.table().set_paused(src.handle(), 0);
      paused = false;
    }
    // Paused, the source is still polled (a Kafka consumer must keep polling to stay in its
    // group) but without a timeout: the wait is wait_for_room() below, which ends as soon as the
    // stage has room again rather than after a fixed sleep.
    sluice_poll_args args{sizeof(sluice_poll_args),
                          static_cast<uint32_t>(std::min(room, kMaxPollRecords)),
                          paused ? 0u : kPollTimeoutMs, 0};
    CollectingWriter out(SIZE_MAX);
    plugin::CallError err;
    sluice_status st = normalize(src.table().poll(src.handle(), &args, out.get(), err.get()));
    if (!out.records().empty()) {
      // Records appended despite max_records == 0 are still taken: nothing is dropped.
      auto chunk = std::make_shared<middleware::SourceChunk>();
      chunk->records = std::move(out.records());
      chunk->intake_time = std::chrono::steady_clock::now();
      chunk->tickets.reserve(chunk->records.size());
      watermark_.take_all(chunk->records.records(), chunk->tickets);
      records_in_ += chunk->records.size();
      stage_->push(std::move(chunk));
    }
    if (st == SLUICE_FATAL) {
      fail(fmt::format("source '{}' failed: {}", spec_.source.type, err.message));
      break;
    }
    if (st != SLUICE_OK) {
      std::chrono::milliseconds delay;
      if (!errors.next(delay)) {
        fail(fmt::format("source '{}' kept failing: {}", spec_.source.type, err.message));
        break;
      }
      spdlog::warn("pipeline {}: source poll {}: {}; retrying in {} ms", spec_.name,
                   status_name(st), err.message, delay.count());
      sleep_unless_stopping(delay);
      continue;
    }
    errors = Backoff(spec_.errors.retry);
    if (args.end_of_stream) break;
    if (stage_->failed()) break;
    if (paused) stage_->wait_for_room(std::chrono::milliseconds(kPollTimeoutMs));
    auto now = std::chrono::steady_clock::now();
    if (now - last_commit >= kCommitEvery) {
      commit_ready();
      last_commit = now;
    }
  }
  // Drain: everything taken is processed (or the stage failed), then the final commit.
  {
    std::lock_guard lock(swap_mu_);
    if (source_swap_) source_swap_->done.set_value("the pipeline stopped before the swap");
    source_swap_.reset();
  }
  stage_->drain();
  if (stages_->sink->has(&sluice_plugin::flush)) {
    plugin::CallError err;
    if (normalize(stages_->sink->table().flush(stages_->sink->handle(), err.get())) != SLUICE_OK)
      fail(fmt::format("sink flush failed: {}", err.message));
  }
  if (stages_->sink->has(&sluice_plugin::pre_commit)) {
    plugin::CallError err;
    stages_->sink->table().pre_commit(stages_->sink->handle(), err.get());
  }
  commit_ready();
  stage_->stop();
  if (stage_->failed() && !summary().failed) fail("the stage stopped on a failed batch");
  ended_at_ = std::chrono::steady_clock::now();
  finished_.store(true);
}

middleware::BatchOutcome Pipeline::process(middleware::WorkBatch& batch) {
  middleware::BatchOutcome outcome;
  const size_t n = batch.records.size();
  struct Failure {
    size_t origin;
    std::string stage;
    std::string plugin;
    std::string message;
    uint32_t attempts;
  };
  std::vector<Failure> failures;
  std::vector<uint8_t> failed(n, 0);
  std::vector<uint8_t> reached_sink(n, 0);

  // Records the source flagged (header sluice.error) or that are over the size limit are
  // rejected before any transform sees them.
  std::vector<sluice_record> admitted;
  std::vector<size_t> origin;
  admitted.reserve(n);
  origin.reserve(n);
  const uint64_t max_bytes = spec_.errors.max_record_bytes;
  for (size_t i = 0; i < n; ++i) {
    const sluice_record& r = batch.records[i];
    std::string reason;
    for (size_t h = 0; h < r.header_count; ++h)
      if (text(r.headers[h].key) == kSourceErrorHeader) reason = text(r.headers[h].value);
    if (reason.empty() && max_bytes != 0 &&
        core::record_bytes(r) - sizeof(sluice_record) > max_bytes)
      reason = fmt::format("record of {} bytes is over errors.max_record_bytes ({})",
                           core::record_bytes(r) - sizeof(sluice_record), max_bytes);
    if (reason.empty()) {
      admitted.push_back(r);
      origin.push_back(i);
    } else {
      failed[i] = 1;
      failures.push_back({i, spec_.source.instance_name, spec_.source.type, reason, 1});
    }
  }
  std::span<const sluice_record> current(admitted);
  std::unique_ptr<CollectingWriter> holder;  // owns `current` after the first transform

  auto reject_all = [&](const std::string& stage, const std::string& plugin_name,
                        const std::string& message, uint32_t attempts) {
    for (size_t i = 0; i < current.size(); ++i)
      if (!failed[origin[i]]) {
        failed[origin[i]] = 1;
        failures.push_back({origin[i], stage, plugin_name, message, attempts});
      }
  };

  for (auto& t : stages_->transforms) {
    Backoff backoff(spec_.errors.retry);
    for (;;) {
      auto w = std::make_unique<CollectingWriter>(current.size());
      sluice_batch in{sizeof(sluice_batch), current.data(), current.size()};
      plugin::CallError err;
      sluice_status st = normalize(t->table().process(t->handle(), &in, w->get(), err.get()));
      if (st == SLUICE_RETRY) {
        std::chrono::milliseconds delay;
        if (backoff.next(delay) && sleep_unless_stopping(delay)) continue;
        st = SLUICE_ERROR;
      }
      if (st == SLUICE_FATAL) {
        fail(fmt::format("transform '{}' failed fatally: {}", t->name(), err.message));
        outcome.failed = true;
        return outcome;
      }
      if (st == SLUICE_ERROR) {
        reject_all(t->name(), t->info().name, err.message, backoff.attempts() + 1);
        current = {};
        break;
      }
      for (const auto& r : w->rejects())
        if (!failed[origin[r.index]]) {
          failed[origin[r.index]] = 1;
          failures.push_back({origin[r.index], t->name(), t->info().name, r.message, 1});
        }
      std::vector<size_t> next_origin;
      next_origin.reserve(w->origins().size());
      for (size_t o : w->origins()) next_origin.push_back(origin[o]);
      origin = std::move(next_origin);
      holder = std::move(w);
      current = holder->records().records();
      break;
    }
  }

  // With no tolerance, a record already failed stops the batch before the sink writes any of it.
  if (!failures.empty() && spec_.errors.tolerance == core::Tolerance::none) current = {};

  // The sink: retried as a whole on RETRY; records it rejects as retriable are put again alone.
  auto& sink = *stages_->sink;
  Backoff backoff(spec_.errors.retry);
  std::vector<sluice_record> pending, retry_records;
  std::vector<size_t> retry_origin;
  while (!current.empty()) {
    if (!breaker_->acquire([this] { return stop_requested_.load(); })) {
      outcome.failed = true;  // stopping while the breaker is open: not acked, re-read later
      return outcome;
    }
    CollectingWriter rejects(current.size());
    sluice_batch in{sizeof(sluice_batch), current.data(), current.size()};
    plugin::CallError err;
    sluice_status st = normalize(sink.table().put(sink.handle(), &in, rejects.get(), err.get()));
    if (st == SLUICE_OK)
      breaker_->on_success();
    else if (st != SLUICE_FATAL)
      breaker_->on_failure();
    std::chrono::milliseconds delay;
    if (st == SLUICE_RETRY) {
      if (backoff.next(delay) && sleep_unless_stopping(delay)) continue;
      if (stop_requested_.load() && !summary().failed) {
        outcome.failed = true;  // not acked: re-read after restart
        return outcome;
      }
      reject_all(sink.name(), sink.info().name, err.message, backoff.attempts());
      break;
    }
    if (st == SLUICE_FATAL) {
      fail(fmt::format("sink '{}' failed fatally: {}", sink.name(), err.message));
      outcome.failed = true;
      return outcome;
    }
    if (st == SLUICE_ERROR) {
      reject_all(sink.name(), sink.info().name, err.message, backoff.attempts() + 1);
      break;
    }
    std::vector<uint8_t> again(current.size(), 0);
    for (const auto& r : rejects.rejects()) {
      if (normalize(r.status) == SLUICE_RETRY) {
        again[r.index] = 1;
      } else if (!failed[origin[r.index]]) {
        failed[origin[r.index]] = 1;
        failures.push_back({origin[r.index], sink.name(), sink.info().name, r.message, 1});
      }
    }
    retry_records.clear();
    retry_origin.clear();
    for (size_t i = 0; i < current.size(); ++i) {
      if (again[i]) {
        retry_records.push_back(current[i]);
        retry_origin.push_back(origin[i]);
      } else {
        reached_sink[origin[i]] = 1;
        ++outcome.records_out;
      }
    }
    if (retry_records.empty()) break;
    if (!backoff.next(delay) || !sleep_unless_stopping(delay)) {
      pending.swap(retry_records);
      current = std::span<const sluice_record>(pending);
      origin.swap(retry_origin);
      reject_all(sink.name(), sink.info().name, "retriable rejects exhausted the retries",
                 backoff.attempts());
      break;
    }
    // The records still view the batch's chunks or `holder`; only the list is new.
    origin.swap(retry_origin);
    pending.swap(retry_records);
    current = std::span<const sluice_record>(pending);
  }
  sink_records_ += outcome.records_out;

  // Every source record ends exactly one way.
  uint64_t delivered = 0, filtered = 0;
  for (size_t i = 0; i < n; ++i) {
    if (failed[i]) continue;
    if (reached_sink[i])
      ++delivered;
    else
      ++filtered;
  }
  outcome.filtered = static_cast<uint32_t>(filtered);
  outcome.errors = static_cast<uint32_t>(failures.size());

  if (!failures.empty()) {
    const auto& f0 = failures.front();
    if (spec_.errors.tolerance == core::Tolerance::none) {
      const auto& rec = batch.records[f0.origin];
      fail(fmt::format("record {}/{}@{} rejected by {} ({}): {} (errors.tolerance is none)",
                       text(rec.topic), rec.partition, rec.offset, f0.stage, f0.plugin,
                       f0.message));
      outcome.failed = true;
      return outcome;
    }
    if (stages_->dead_letter) {
      core::RecordBuffer dlq;
      for (const auto& f : failures) {
        const sluice_record& rec = batch.records[f.origin];
        std::vector<std::string> values = {f.stage,
                                           f.plugin,
                                           f.message,
                                           std::to_string(f.attempts),
                                           text(rec.topic),
                                           std::to_string(rec.partition),
                                           std::to_string(rec.offset),
                                           std::to_string(rec.timestamp_ms)};
        static const char* const kNames[] = {"sluice.error.stage",   "sluice.error.plugin",
                                             "sluice.error.message", "sluice.error.attempts",
                                             "sluice.error.topic",   "sluice.error.partition",
                                             "sluice.error.offset",  "sluice.error.timestamp"};
        std::vector<sluice_header> hs(rec.headers, rec.headers + rec.header_count);
        for (size_t k = 0; k < values.size(); ++k)
          hs.push_back({{reinterpret_cast<const uint8_t*>(kNames[k]), std::strlen(kNames[k])},
                        {reinterpret_cast<const uint8_t*>(values[k].data()), values[k].size()}});
        sluice_record copy = rec;
        copy.headers = hs.data();
        copy.header_count = hs.size();
        dlq.append_copy(copy);
      }
      auto& dl = *stages_->dead_letter;
      Backoff dl_backoff(spec_.errors.retry);
      for (;;) {
        CollectingWriter rejects(dlq.size());
        sluice_batch in{sizeof(sluice_batch), dlq.records().data(), dlq.size()};
        plugin::CallError err;
        sluice_status st = normalize(dl.table().put(dl.handle(), &in, rejects.get(), err.get()));
        if (st == SLUICE_OK && rejects.rejects().empty()) break;
        std::chrono::milliseconds delay;
        if (st != SLUICE_FATAL && dl_backoff.next(delay) && sleep_unless_stopping(delay)) continue;
        fail(fmt::format("dead-letter sink '{}' failed: {}", dl.name(),
                         st == SLUICE_OK ? rejects.rejects().front().message : err.message));
        outcome.failed = true;
        return outcome;
      }
      dead_lettered_ += failures.size();
    } else {
      rejected_ += failures.size();
    }
    if (spec_.errors.log_errors) {
      for (size_t k = 0; k < failures.size() && k < kLoggedRejectsPerBatch; ++k) {
        const auto& f = failures[k];
        const auto& rec = batch.records[f.origin];
        spdlog::warn("pipeline {}: record {}/{}@{} {} by {}: {}", spec_.name, text(rec.topic),
                     rec.partition, rec.offset, stages_->dead_letter ? "dead-lettered" : "rejected",
                     f.stage, config::redact(f.message, secrets_));
      }
      if (failures.size() > kLoggedRejectsPerBatch)
        spdlog::warn("pipeline {}: ... and {} more records of this batch", spec_.name,
                     failures.size() - kLoggedRejectsPerBatch);
    }
  }
  delivered_ += delivered;
  filtered_ += filtered;
  return outcome;
}

Summary Pipeline::summary() const {
  Summary s;
  {
    std::lock_guard lock(summary_mu_);
    s.failed = summary_.failed;
    s.failure = summary_.failure;
  }
  s.pipeline = spec_.name;
  s.records_in = records_in_.load();
  s.delivered = delivered_.load();
  s.dead_lettered = dead_lettered_.load();
  s.filtered = filtered_.load();
  s.rejected = rejected_.load();
  s.sink_records = sink_records_.load();
  auto end = finished_.load() ? ended_at_ : std::chrono::steady_clock::now();
  if (started_.load(std::memory_order_acquire))
    s.seconds = std::chrono::duration<double>(end - started_at_).count();
  return s;
}

std::vector<middleware::StageStats> Pipeline::stats() const {
  std::vector<middleware::StageStats> out;
  if (!started_.load(std::memory_order_acquire)) return out;
  middleware::StageStats s = stage_->stats();
  s.performance.records_dead_lettered = dead_lettered_.load();
  if (breaker_) {
    s.circuit_breaker.state = spec_.errors.circuit_breaker.enabled
                                  ? std::string(CircuitBreaker::name(breaker_->state()))
                                  : "disabled";
    s.circuit_breaker.consecutive_failures = breaker_->consecutive_failures();
    s.circuit_breaker.opened_total = breaker_->opened_total();
  }
  if (stages_) {
    std::lock_guard lock(swap_mu_);
    for (auto* inst : {stages_->source.get(), stages_->sink.get()})
      for (const auto& [k, v] : inst->host().metrics()) s.extra[inst->name() + "." + k] = v;
    for (const auto& t : stages_->transforms)
      for (const auto& [k, v] : t->host().metrics()) s.extra[t->name() + "." + k] = v;
    auto describe = [&s](const plugin::PluginInstance& inst, const char* role) {
      s.plugins.push_back(
          {inst.name(), role, inst.info().name, inst.info().version, inst.info().file.string()});
    };
    describe(*stages_->source, "source");
    for (const auto& t : stages_->transforms) describe(*t, "transform");
    describe(*stages_->sink, "sink");
    if (stages_->dead_letter) describe(*stages_->dead_letter, "dead_letter");
  }
  out.push_back(std::move(s));
  return out;
}

}  // namespace sluice::pipeline

namespace sluice::pipeline {

namespace {

// Hands a stateful plugin's state from the old instance to its replacement.
void transfer_state(plugin::PluginInstance& from, plugin::PluginInstance& to) {
  if (!from.has(&sluice_plugin::snapshot) || !to.has(&sluice_plugin::restore)) return;
  std::string state;
  sluice_buffer buf{sizeof(sluice_buffer), &state, [](void* ctx, const uint8_t* data, size_t len) {
                      static_cast<std::string*>(ctx)->append(reinterpret_cast<const char*>(data),
                                                             len);
                    }};
  plugin::CallError err;
  if (normalize(from.table().snapshot(from.handle(), &buf, err.get())) != SLUICE_OK)
    throw std::runtime_error(fmt::format("snapshot of the old instance failed: {}", err.message));
  if (normalize(to.table().restore(to.handle(), reinterpret_cast<const uint8_t*>(state.data()),
                                   state.size(), err.get())) != SLUICE_OK)
    throw std::runtime_error(fmt::format("restore into the new instance failed: {}", err.message));
}

}  // namespace

std::vector<Pipeline::StageFile> Pipeline::stage_files() const {
  std::vector<StageFile> out;
  if (!started_.load(std::memory_order_acquire)) return out;
  std::lock_guard lock(swap_mu_);
  out.push_back({stages_->source->name(), "source", stages_->source->info().file});
  for (const auto& t : stages_->transforms) out.push_back({t->name(), "transform", t->info().file});
  out.push_back({stages_->sink->name(), "sink", stages_->sink->info().file});
  if (stages_->dead_letter)
    out.push_back({stages_->dead_letter->name(), "dead_letter", stages_->dead_letter->info().file});
  return out;
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
  std::lock_guard lock(errors_mu_);
  return stage_errors_;
}

void Pipeline::reload_stage(const std::string& instance_name,
                            const plugin::PluginRegistry& registry,
                            const config::StageSpec* new_spec) {
  auto record_error = [&](const std::string& message) {
    std::lock_guard lock(errors_mu_);
    stage_errors_[instance_name] = message;
  };
  try {
    if (!started_.load(std::memory_order_acquire) || finished())
      throw std::runtime_error("the pipeline is not running");
    // Find the stage's plan and where its instance lives.
    StagePlan* plan_ptr = nullptr;
    std::unique_ptr<plugin::PluginInstance>* slot = nullptr;
    sluice_kind kind = SLUICE_KIND_TRANSFORM;
    if (source_plan_.spec.instance_name == instance_name) {
      plan_ptr = &source_plan_;
      slot = &stages_->source;
      kind = SLUICE_KIND_SOURCE;
    }
    for (size_t i = 0; i < transform_plans_.size(); ++i)
      if (transform_plans_[i].spec.instance_name == instance_name) {
        plan_ptr = &transform_plans_[i];
        slot = &stages_->transforms[i];
      }
    if (sink_plan_.spec.instance_name == instance_name) {
      plan_ptr = &sink_plan_;
      slot = &stages_->sink;
      kind = SLUICE_KIND_SINK;
    }
    if (dead_letter_plan_ && dead_letter_plan_->spec.instance_name == instance_name) {
      plan_ptr = &*dead_letter_plan_;
      slot = &stages_->dead_letter;
      kind = SLUICE_KIND_SINK;
    }
    if (plan_ptr == nullptr) throw std::runtime_error("no stage named '" + instance_name + "'");

    // Everything that can fail happens before the swap, while the old instance runs on.
    StagePlan fresh = plan(new_spec ? *new_spec : plan_ptr->spec, kind, registry);
    auto next = create(fresh);

    if (kind == SLUICE_KIND_SOURCE) {
      auto swap = std::make_unique<SourceSwap>();
      swap->instance = std::move(next);
      auto result = swap->done.get_future();
      {
        std::lock_guard lock(swap_mu_);
        source_swap_ = std::move(swap);
      }
      std::string error = result.get();
      if (!error.empty()) throw std::runtime_error(error);
    } else {
      // Pause: no new batch starts and those in flight finish, so the swap sees a quiet stage.
      stage_->quiesce();
      try {
        transfer_state(**slot, *next);
      } catch (...) {
        stage_->resume();
        throw;
      }
      std::unique_ptr<plugin::PluginInstance> old;
      {
        std::lock_guard lock(swap_mu_);
        old = std::exchange(*slot, std::move(next));
      }
      stage_->resume();
      old.reset();  // destroys the old instance; its library unloads with its last user
    }
    *plan_ptr = std::move(fresh);
    if (new_spec) {  // the spec follows, so a later file change is compared with what runs
      for (auto* st : {&spec_.source, &spec_.sink})
        if (st->instance_name == instance_name) *st = *new_spec;
      for (auto& st : spec_.transforms)
        if (st.instance_name == instance_name) st = *new_spec;
      if (spec_.dead_letter && spec_.dead_letter->instance_name == instance_name)
        spec_.dead_letter = *new_spec;
    }
    {
      std::lock_guard lock(errors_mu_);
      stage_errors_.erase(instance_name);
    }
    spdlog::info("pipeline {}: stage {} reloaded{} from {}", spec_.name, instance_name,
                 new_spec ? " with its new config" : "", plan_ptr->plugin->file.string());
  } catch (const config::ConfigError& e) {
    record_error(e.what());
    throw std::runtime_error(e.what());
  } catch (const std::exception& e) {
    record_error(e.what());
    throw;
  }
}

// Source thread only: completes a source swap asked for by reload_stage().
void Pipeline::swap_source_if_asked() {
  std::unique_ptr<SourceSwap> swap;
  {
    std::lock_guard lock(swap_mu_);
    swap = std::move(source_swap_);
  }
  if (!swap) return;
  try {
    // Everything taken so far is finished and committed, so the new instance resumes exactly
    // after it.
    stage_->drain();
    commit_ready();
    transfer_state(*stages_->source, *swap->instance);
    swap->instance->host().set_drain(
        [this](std::span<const sluice_position> ps, uint32_t timeout_ms) {
          return drain_partitions(ps, timeout_ms);
        });
    std::unique_ptr<plugin::PluginInstance> old;
    {
      std::lock_guard lock(swap_mu_);
      old = std::exchange(stages_->source, std::move(swap->instance));
    }
    old.reset();
    swap->done.set_value("");
  } catch (const std::exception& e) {
    swap->done.set_value(e.what());
  }
}

}  // namespace sluice::pipeline
