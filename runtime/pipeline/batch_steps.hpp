// The steps every batch goes through: admit -> transforms -> deliver -> settle, over one ledger.
// Everything they need from the pipeline comes in here, so tests run them over fake stages.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "core/settings.hpp"
#include "middleware/adaptive_stage.hpp"
#include "pipeline/circuit_breaker.hpp"
#include "pipeline/quarantine.hpp"
#include "pipeline/secret_list.hpp"
#include "pipeline/stage_slots.hpp"

namespace sluice::pipeline {

// What a pipeline's records came to, for the stop summary (shared by every worker).
struct RecordCounts {
  std::atomic<uint64_t> records_in{0};
  std::atomic<uint64_t> delivered{0}, dead_lettered{0}, filtered{0}, rejected{0};
  std::atomic<uint64_t> sink_records{0};  // records the sink accepted (transforms may fan out)
};

struct BatchContext {
  std::string pipeline;
  core::ErrorSettings errors;
  // Record bytes one transform call may append beyond its input's bytes (see
  // `output_budget_rule`); kNoBudget: unbounded.
  uint64_t transform_output_budget = CollectingWriter::kNoBudget;
  std::string output_budget_rule;  // why that budget, for the failure reason
  const SecretList* secrets = nullptr;
  CircuitBreaker* breaker = nullptr;
  RecordCounts* counts = nullptr;
  // Records an earlier run crashed a plugin on (nullptr or empty: none).
  const Quarantine* quarantine = nullptr;
  std::function<bool()> stopping;                // the pipeline is stopping
  std::function<void(const std::string&)> fail;  // stops the pipeline with a (redacted) reason
};

// The transform output budget: what one call may append beyond its input's size, a quarter of
// the memory limit, so that a transform passing records on always fits, and even with several
// batches in flight a runaway transform fails its batch before it takes the process past the
// limit.
uint64_t transform_output_budget(uint64_t memory_limit_bytes);

// Runs one batch through `stages`: records a source flagged (header `sluice.error`) or over
// errors.max_record_bytes fail first, and so do records the quarantine dead-letters (a crash of
// an earlier run named them); a batch holding records of a larger crashed call runs one record
// per call; then the transforms and the sink, RETRY retried; then the
// error policy settles the failures (tolerance, dead letter, counts, logs). Returns the outcome
// the adaptive stage acks by: `failed` leaves the batch unacked (a FATAL, tolerance none, or a
// stop while retrying).
middleware::BatchOutcome run_batch(const BatchContext& context, const StageSet& stages,
                                   std::span<const sluice_record> records);

}  // namespace sluice::pipeline
