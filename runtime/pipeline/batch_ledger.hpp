// The per-batch ledger: the records at the current step, the source record each derives from,
// and the fate of every source record of the batch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "pipeline/stage_error.hpp"
#include "pipeline/writers.hpp"
#include "sluice/abi.h"

namespace sluice::pipeline {

// Every source record ends exactly one way. A record any of whose derived records failed has
// failed (the first failure is the one reported); otherwise it is delivered if one of them
// reached the sink, else filtered.
enum class Fate : uint8_t { pending, delivered, failed, filtered };

class BatchLedger {
 public:
  struct Failure {
    size_t origin;  // index of the source record in the batch
    StageError error;
  };
  struct Tally {
    uint64_t delivered = 0, filtered = 0, failed = 0;
  };

  // Every source record starts as current, deriving from itself.
  explicit BatchLedger(std::span<const sluice_record> source) : source_(source), current_(source) {
    fate_.assign(source.size(), Fate::pending);
    origin_.resize(source.size());
    for (size_t i = 0; i < source.size(); ++i) origin_[i] = i;
  }
  BatchLedger(const BatchLedger&) = delete;
  BatchLedger& operator=(const BatchLedger&) = delete;

  std::span<const sluice_record> source() const { return source_; }
  const sluice_record& source_record(size_t origin) const { return source_[origin]; }
  // The records the next step works on; each views the batch or the last transform's output.
  std::span<const sluice_record> current() const { return current_; }
  size_t origin(size_t current_index) const { return origin_[current_index]; }
  Fate fate(size_t origin) const { return fate_[origin]; }

  // The source record behind a current record fails (unless it already has).
  void fail(size_t current_index, StageError error) { fail_origin(origin_[current_index], error); }
  void fail_origin(size_t origin, StageError error) {
    if (fate_[origin] == Fate::failed) return;
    fate_[origin] = Fate::failed;
    failures_.push_back({origin, std::move(error)});
  }
  // Every current record fails with `error`, and nothing goes on.
  void fail_all_current(const StageError& error) {
    for (size_t i = 0; i < current_.size(); ++i) fail(i, error);
    keep({});
  }
  void deliver(size_t current_index) {
    auto& f = fate_[origin_[current_index]];
    if (f == Fate::pending) f = Fate::delivered;
  }

  // Only the current records at `indexes` (ascending) go on.
  void keep(const std::vector<size_t>& indexes) {
    std::vector<sluice_record> records;
    std::vector<size_t> origins;
    records.reserve(indexes.size());
    origins.reserve(indexes.size());
    for (size_t i : indexes) {
      records.push_back(current_[i]);
      origins.push_back(origin_[i]);
    }
    kept_.swap(records);
    origin_.swap(origins);
    current_ = kept_;  // the records still view the batch or `output_`: only the list is new
  }
  // A transform's output becomes current; its origins (indexes into current) are mapped back to
  // source records. The writer is kept: the records view its buffer.
  void replace(std::unique_ptr<CollectingWriter> output) {
    std::vector<size_t> origins;
    origins.reserve(output->origins().size());
    for (size_t o : output->origins()) origins.push_back(origin_[o]);
    origin_.swap(origins);
    output_ = std::move(output);
    current_ = output_->records().records();
    kept_.clear();
  }

  // Current records whose source record has failed go no further: a record ends one way only,
  // so what a transform appended for an input it also rejected (or for a record that failed at an
  // earlier step) is dropped with it rather than delivered beside its dead letter.
  void drop_failed() {
    if (failures_.empty()) return;
    std::vector<size_t> live;
    live.reserve(current_.size());
    for (size_t i = 0; i < current_.size(); ++i)
      if (fate_[origin_[i]] != Fate::failed) live.push_back(i);
    if (live.size() != current_.size()) keep(live);
  }

  // Settles every source record still pending as filtered; returns the counts.
  Tally settle() {
    Tally t;
    for (auto& f : fate_) {
      if (f == Fate::pending) f = Fate::filtered;
      if (f == Fate::delivered) ++t.delivered;
      if (f == Fate::filtered) ++t.filtered;
    }
    t.failed = failures_.size();
    return t;
  }
  const std::vector<Failure>& failures() const { return failures_; }

 private:
  std::span<const sluice_record> source_;
  std::span<const sluice_record> current_;
  std::vector<size_t> origin_;  // per current record
  std::vector<Fate> fate_;      // per source record
  std::vector<Failure> failures_;
  std::unique_ptr<CollectingWriter> output_;  // owns the bytes of the last transform's output
  std::vector<sluice_record> kept_;
};

}  // namespace sluice::pipeline
