// The steps of one batch: admit, transform, deliver, settle. Each reads and writes the batch's
// ledger; plugins are reached only through the calls of the stage set.
#include "pipeline/batch_steps.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <numeric>

#include "pipeline/batch_ledger.hpp"
#include "pipeline/retrier.hpp"

namespace sluice::pipeline {

namespace {

constexpr size_t kLoggedFailuresPerBatch = 5;
// A source marks a record it could not read properly with this header; its value is the reason.
constexpr std::string_view kSourceErrorHeader = "sluice.error";

std::string text(sluice_bytes b) {
  return b.ptr ? std::string(reinterpret_cast<const char*>(b.ptr), b.len) : std::string();
}

// Why a record may not enter the transforms: flagged by its source, or too large; "" if it may.
std::string admission_problem(const sluice_record& r, uint64_t max_bytes) {
  for (size_t h = 0; h < r.header_count; ++h) {
    const sluice_bytes key = r.headers[h].key;
    if (key.ptr &&
        std::string_view(reinterpret_cast<const char*>(key.ptr), key.len) == kSourceErrorHeader)
      return text(r.headers[h].value);
  }
  const uint64_t bytes = core::record_bytes(r) - sizeof(sluice_record);
  if (max_bytes != 0 && bytes > max_bytes)
    return fmt::format("record of {} bytes is over errors.max_record_bytes ({})", bytes, max_bytes);
  return "";
}

// A copy of a failed record for the dead-letter sink, with what failed it in `sluice.error.*`
// headers. The message is redacted: these headers leave the process.
void append_dead_letter(core::RecordBuffer& out, const sluice_record& rec, const StageError& e,
                        const SecretList& secrets) {
  static constexpr std::array<const char*, 8> kNames = {
      "sluice.error.stage",    "sluice.error.plugin",   "sluice.error.message",
      "sluice.error.attempts", "sluice.error.topic",    "sluice.error.partition",
      "sluice.error.offset",   "sluice.error.timestamp"};
  const std::array<std::string, 8> values = {e.stage,
                                             e.plugin,
                                             secrets.redact(e.message),
                                             std::to_string(e.attempts),
                                             text(rec.topic),
                                             std::to_string(rec.partition),
                                             std::to_string(rec.offset),
                                             std::to_string(rec.timestamp_ms)};
  std::vector<sluice_header> hs(rec.headers, rec.headers + rec.header_count);
  for (size_t k = 0; k < values.size(); ++k)
    hs.push_back({{reinterpret_cast<const uint8_t*>(kNames[k]), std::strlen(kNames[k])},
                  {reinterpret_cast<const uint8_t*>(values[k].data()), values[k].size()}});
  sluice_record copy = rec;
  copy.headers = hs.data();
  copy.header_count = hs.size();
  out.append_copy(copy);
}

class BatchRun {
 public:
  BatchRun(const BatchContext& context, const StageSet& stages,
           std::span<const sluice_record> records)
      : ctx_(context),
        stages_(stages),
        ledger_(records),
        retrier_(context.errors.retry, context.stopping) {}

  // Each step returns false when the batch ends there unacked (a FATAL, tolerance none, a stop
  // while retrying, a dead-letter sink that fails, a plugin not running through every retry).
  // Only a stop is no failure.
  middleware::BatchOutcome run() {
    admit();
    const bool acked = run_transforms() && deliver() && settle();
    outcome_.failed = !acked && !outcome_.stopped && !split_;
    return outcome_;
  }

  // The run ended before any record's fate was settled because a transform's output for the
  // batch passed its budget: the batch is to run again as two smaller ones (see run_batch).
  bool split() const { return split_; }

 private:
  void admit();
  bool admissible(size_t i);
  bool quarantined(size_t i);
  bool run_transforms();
  bool transform(const TransformCall& t);
  Retrier::Result process(const TransformCall& t, std::span<const sluice_record> in,
                          std::unique_ptr<CollectingWriter>& out);
  bool narrow(const TransformCall& t, std::span<const sluice_record> range, size_t offset,
              const StageError& error, CollectingWriter& merged);
  uint64_t output_budget(std::span<const sluice_record> in) const;
  bool halted(const Retrier::Result& result, const char* role);
  bool deliver();
  StageResult put_once();
  bool settle();
  bool dead_letter();
  void log_failures(const char* fate) const;
  bool absorb(Retrier::Result result, const char* role);
  // Stops the pipeline; the reason is redacted like every text that leaves the process.
  void fail(const std::string& reason) const { ctx_.fail(ctx_.secrets->redact(reason)); }

  const BatchContext& ctx_;
  const StageSet& stages_;
  BatchLedger ledger_;
  Retrier retrier_;
  middleware::BatchOutcome outcome_;
  bool split_ = false;
};

// Step 1: records the source flagged or that are too large fail before any transform sees them.
// The list of the records that go on is made only once one does not.
void BatchRun::admit() {
  std::vector<size_t> admitted;
  bool all_admitted = true;
  for (size_t i = 0; i < ledger_.current().size(); ++i) {
    if (admissible(i)) {
      if (!all_admitted) admitted.push_back(i);
    } else if (all_admitted) {
      all_admitted = false;
      admitted.resize(i);
      std::iota(admitted.begin(), admitted.end(), size_t{0});
    }
  }
  if (!all_admitted) ledger_.keep(admitted);
}

// Whether current record i may enter the transforms; if not, it has failed in the ledger.
bool BatchRun::admissible(size_t i) {
  if (quarantined(i)) return false;
  const sluice_record& r = ledger_.current()[i];
  // The usual record, with no headers and under the size limit, builds no text.
  const uint64_t max_bytes = ctx_.errors.max_record_bytes;
  if (r.header_count == 0 && (max_bytes == 0 || r.key.len + r.value.len + r.topic.len <= max_bytes))
    return true;
  std::string problem = admission_problem(r, max_bytes);
  if (problem.empty()) return true;
  if (stages_.source)
    ledger_.fail(i, stages_.source.error(std::move(problem)));
  else
    ledger_.fail(i, StageError{"source", "", std::move(problem)});
  return false;
}

// A record a crash of an earlier run was narrowed down to fails here: no plugin sees it again.
bool BatchRun::quarantined(size_t i) {
  if (!ctx_.quarantine || ctx_.quarantine->empty()) return false;
  const auto decision = ctx_.quarantine->decide(ledger_.current()[i]);
  if (decision.verdict != Quarantine::Verdict::dead_letter) return false;
  const JournalEntry& e = *decision.entry;
  ledger_.fail(i, StageError{e.stage, e.plugin, Quarantine::reason(e)});
  return true;
}

// Step 2: each transform in turn, its output becoming the current records.
bool BatchRun::run_transforms() {
  for (const auto& t : stages_.transforms) {
    if (ledger_.current().empty()) break;
    if (!transform(t)) return false;
  }
  return true;
}

bool BatchRun::transform(const TransformCall& t) {
  const auto in = ledger_.current();
  std::unique_ptr<CollectingWriter> out;
  Retrier::Result result = process(t, in, out);
  // Too much output for the batch at once, though it came from several source records: nothing
  // is settled yet, so the batch runs again as two halves, each delivered before the next runs.
  if (result.error && out->over_budget() && ledger_.source().size() > 1) {
    split_ = true;
    return false;
  }
  if (result.error && result.error->status == SLUICE_ERROR && !result.stopped && in.size() > 1) {
    auto merged = std::make_unique<CollectingWriter>(in.size(), output_budget(in));
    if (!narrow(t, in, 0, *result.error, *merged)) return false;
    result.error.reset();
    out = std::move(merged);
  }
  if (result.error) return absorb(std::move(result), "transform");
  for (const auto& r : out->rejects()) ledger_.fail(r.index, t.error(r.message));
  ledger_.replace(std::move(out));
  ledger_.drop_failed();
  return true;
}

// One call of the transform over `in`, retried on RETRY; `out` holds what the last attempt wrote.
Retrier::Result BatchRun::process(const TransformCall& t, std::span<const sluice_record> in,
                                  std::unique_ptr<CollectingWriter>& out) {
  Retrier::Result result = retrier_.run([&] {
    out = std::make_unique<CollectingWriter>(in.size(), output_budget(in));
    return t.process(in, *out);
  });
  if (result.error && out->over_budget())
    result.error->message += " (" + ctx_.output_budget_rule + ")";
  return result;
}

// `range` (the current records from `offset` on) failed with `error` as a whole: its halves run
// again, so that the failure ends up on the records it belongs to and the others go on (their
// outputs and rejects into `merged`, in input order). A half that fails is narrowed in turn; where
// both halves fail, the failure is not one record's (a plugin that fails every call, a store that
// is down), and the whole range fails with `error`, with no more calls. So one bad record costs
// about two calls per halving, and a failure of everything two calls more. False when the
// pipeline must stop (FATAL, or a stop during a retry).
bool BatchRun::narrow(const TransformCall& t, std::span<const sluice_record> range, size_t offset,
                      const StageError& error, CollectingWriter& merged) {
  const size_t half = range.size() / 2;
  const std::span<const sluice_record> parts[2] = {range.first(half), range.subspan(half)};
  std::unique_ptr<CollectingWriter> outs[2];
  Retrier::Result results[2];
  for (int k = 0; k < 2 && range.size() > 1; ++k) {
    results[k] = process(t, parts[k], outs[k]);
    if (halted(results[k], "transform")) return false;
  }
  if (range.size() == 1 || (results[0].error && results[1].error)) {
    for (size_t i = 0; i < range.size(); ++i) ledger_.fail(offset + i, error);
    return true;
  }
  for (int k = 0; k < 2; ++k) {
    const size_t at = offset + (k == 0 ? 0 : half);
    if (results[k].error) {
      if (!narrow(t, parts[k], at, *results[k].error, merged)) return false;
      continue;
    }
    sluice_writer* w = merged.get();
    const auto& records = outs[k]->records().records();
    for (size_t j = 0; j < records.size(); ++j) {
      const size_t origin = at + outs[k]->origins()[j];
      // The halves kept their budgets, their sum may not: a record whose output no longer fits
      // fails with the reason (never dropped as if filtered).
      if (w->append(w->host_ctx, origin, &records[j]) != SLUICE_OK)
        ledger_.fail(origin, t.error(fmt::format(
                                 "transform '{}' ({}) output over {} bytes for a batch of {} "
                                 "records once its parts were merged ({})",
                                 t.name(), t.plugin(), merged.byte_budget(), merged.input_count(),
                                 ctx_.output_budget_rule)));
    }
    for (const auto& r : outs[k]->rejects())
      w->reject(w->host_ctx, at + r.index, r.status, r.message.data(), r.message.size());
  }
  return true;
}

// A FATAL error, a stop during retries, or retries spent while the stage's plugin is not
// running: the batch ends there, unacked (see absorb). A plugin that is down (an isolated
// stage between failed restarts) says nothing about the records: they are never failed (so
// never dead-lettered) for it; once the retries are spent the run fails, and the next run
// reads them again.
bool BatchRun::halted(const Retrier::Result& result, const char* role) {
  if (!result.error) return false;
  const StageError& error = *result.error;
  if (error.status == SLUICE_FATAL) {
    fail(fmt::format("{} '{}' failed fatally: {}", role, error.stage, error.message));
    return true;
  }
  if (result.stopped || (error.unavailable && ctx_.stopping())) {
    outcome_.stopped = true;
    return true;
  }
  if (error.unavailable) {
    fail(fmt::format(
        "{} '{}' is not running and its retries are spent ({} attempts): {}; its records are "
        "neither committed nor dead-lettered, and the next run reads them again",
        role, error.stage, error.attempts, error.message));
    return true;
  }
  return false;
}

// Step 3: the sink takes the current records, retried as a whole on RETRY; records it rejects
// as retriable are put again on their own. With tolerance none and a record already failed,
// nothing of the batch is written.
bool BatchRun::deliver() {
  if (ledger_.current().empty()) return true;
  if (!ledger_.failures().empty() && ctx_.errors.tolerance == core::Tolerance::none) return true;
  bool refused = false;
  Retrier::Result result = retrier_.run([&]() -> StageResult {
    // Waiting here is the breaker's pause; it gives up only when the pipeline stops.
    const auto waited_from = std::chrono::steady_clock::now();
    const bool acquired = ctx_.breaker->acquire(ctx_.stopping);
    stages_.sink.add_wait(Wait::breaker, std::chrono::steady_clock::now() - waited_from);
    if (!acquired) {
      refused = true;
      return stages_.sink.error("stopping while the circuit breaker is open", SLUICE_RETRY);
    }
    return put_once();
  });
  if (refused) {  // not acked: read again by the next run
    outcome_.stopped = true;
    return false;
  }
  return !result.error || absorb(std::move(result), "sink");
}

// One put of the current records. Accepted records are delivered, rejected ones fail, and those
// rejected as retriable stay current for the next attempt (a RETRY of this put).
StageResult BatchRun::put_once() {
  const auto& sink = stages_.sink;
  const auto in = ledger_.current();
  CollectingWriter rejects(in.size());
  StageResult error = sink.put(in, rejects);
  if (!error)
    ctx_.breaker->on_success();
  else if (error->status != SLUICE_FATAL)
    ctx_.breaker->on_failure();
  if (error) return error;
  enum Verdict : uint8_t { accepted, rejected, again };
  std::vector<uint8_t> verdict(in.size(), accepted);
  for (const auto& r : rejects.rejects()) {
    const bool retriable = normalize(r.status) == SLUICE_RETRY;
    verdict[r.index] = retriable ? again : rejected;
    if (!retriable) ledger_.fail(r.index, sink.error(r.message));
  }
  std::vector<size_t> retry;
  for (size_t i = 0; i < in.size(); ++i) {
    if (verdict[i] == again) retry.push_back(i);
    if (verdict[i] != accepted) continue;
    ledger_.deliver(i);
    ++outcome_.records_out;
  }
  ledger_.keep(retry);
  if (retry.empty()) return std::nullopt;
  return sink.error("retriable rejects exhausted the retries", SLUICE_RETRY);
}

// A call that failed for good. FATAL stops the pipeline and a stop while retrying leaves the
// batch unacked (false: the batch ends here); any other error fails every current record.
bool BatchRun::absorb(Retrier::Result result, const char* role) {
  if (halted(result, role)) return false;
  ledger_.fail_all_current(*result.error);
  return true;
}

// Step 4: the error policy over the batch's failures, then the counts.
bool BatchRun::settle() {
  const BatchLedger::Tally tally = ledger_.settle();
  outcome_.filtered = static_cast<uint32_t>(tally.filtered);
  outcome_.errors = static_cast<uint32_t>(tally.failed);
  auto& counts = *ctx_.counts;
  counts.sink_records += outcome_.records_out;
  if (tally.failed > 0) {
    const auto& first = ledger_.failures().front();
    if (ctx_.errors.tolerance == core::Tolerance::none) {
      const auto& rec = ledger_.source_record(first.origin);
      fail(fmt::format("record {}/{}@{} rejected by {} ({}): {} (errors.tolerance is none)",
                       text(rec.topic), rec.partition, rec.offset, first.error.stage,
                       first.error.plugin, first.error.message));
      return false;
    }
    if (stages_.dead_letter && !dead_letter()) return false;
    (stages_.dead_letter ? counts.dead_lettered : counts.rejected) += tally.failed;
    if (ctx_.errors.log_errors) log_failures(stages_.dead_letter ? "dead-lettered" : "rejected");
  }
  counts.delivered += tally.delivered;
  counts.filtered += tally.filtered;
  return true;
}

// The dead-letter sink must take every failed record: any error but FATAL is tried again.
bool BatchRun::dead_letter() {
  core::RecordBuffer dlq;
  for (const auto& f : ledger_.failures())
    append_dead_letter(dlq, ledger_.source_record(f.origin), f.error, *ctx_.secrets);
  const auto& dl = stages_.dead_letter;
  Retrier::Result result = retrier_.run([&] {
    CollectingWriter rejects(dlq.size());
    StageResult error = dl.put(dlq.records(), rejects);
    if (!error && !rejects.rejects().empty()) error = dl.error(rejects.rejects().front().message);
    if (error && error->status == SLUICE_ERROR) error->status = SLUICE_RETRY;
    return error;
  });
  if (!result.error) return true;
  fail(fmt::format("dead-letter sink '{}' failed: {}", dl.name(), result.error->message));
  return false;
}

void BatchRun::log_failures(const char* fate) const {
  const auto& failures = ledger_.failures();
  for (size_t k = 0; k < failures.size() && k < kLoggedFailuresPerBatch; ++k) {
    const auto& f = failures[k];
    const auto& rec = ledger_.source_record(f.origin);
    spdlog::warn("pipeline {}: record {}/{}@{} {} by {}: {}", ctx_.pipeline, text(rec.topic),
                 rec.partition, rec.offset, fate, f.error.stage,
                 ctx_.secrets->redact(f.error.message));
  }
  if (failures.size() > kLoggedFailuresPerBatch)
    spdlog::warn("pipeline {}: ... and {} more records of this batch", ctx_.pipeline,
                 failures.size() - kLoggedFailuresPerBatch);
}

}  // namespace

// What one call over `in` may append: its input's bytes (a transform that passes records on
// always fits) plus the growth budget.
uint64_t BatchRun::output_budget(std::span<const sluice_record> in) const {
  const uint64_t growth = ctx_.transform_output_budget;
  if (growth == CollectingWriter::kNoBudget) return growth;
  uint64_t bytes = 0;
  for (const auto& r : in) bytes += core::record_bytes(r);
  return bytes > CollectingWriter::kNoBudget - growth ? CollectingWriter::kNoBudget
                                                      : bytes + growth;
}

uint64_t transform_output_budget(uint64_t memory_limit_bytes) {
  return memory_limit_bytes == 0 ? CollectingWriter::kNoBudget : memory_limit_bytes / 4;
}

// Whether a record of `records` was in a plugin call of several records that crashed.
static bool holds_suspects(const Quarantine* quarantine, std::span<const sluice_record> records) {
  if (!quarantine || quarantine->empty()) return false;
  return std::any_of(records.begin(), records.end(), [&](const sluice_record& r) {
    return quarantine->decide(r).verdict == Quarantine::Verdict::alone;
  });
}

// Runs `records` as one batch, or, where a transform's output for them passes its budget, as
// two halves in turn (each split again as it needs), their outcomes added to `total`.
static void run_split(const BatchContext& context, const StageSet& stages,
                      std::span<const sluice_record> records, middleware::BatchOutcome& total) {
  BatchRun run(context, stages, records);
  const middleware::BatchOutcome one = run.run();
  if (run.split()) {
    const size_t half = records.size() / 2;
    run_split(context, stages, records.first(half), total);
    if (!total.failed && !total.stopped) run_split(context, stages, records.subspan(half), total);
    return;
  }
  total.records_out += one.records_out;
  total.errors += one.errors;
  total.filtered += one.filtered;
  total.failed = one.failed;
  total.stopped = one.stopped;
}

middleware::BatchOutcome run_batch(const BatchContext& context, const StageSet& stages,
                                   std::span<const sluice_record> records) {
  middleware::BatchOutcome total;
  if (!holds_suspects(context.quarantine, records)) {
    run_split(context, stages, records, total);
    return total;
  }
  // One record per call: a crash now names the one record that caused it.
  for (size_t i = 0; i < records.size() && !total.failed && !total.stopped; ++i)
    run_split(context, stages, records.subspan(i, 1), total);
  return total;
}

}  // namespace sluice::pipeline
