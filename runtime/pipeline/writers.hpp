// Host-side sluice_writer implementations: where plugins append records and report rejects.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/record_buffer.hpp"
#include "sluice/abi.h"

namespace sluice::pipeline {

// A rejected record: its index in the batch the stage was given, and why.
struct Reject {
  size_t index;
  sluice_status status;
  std::string message;
};

// Collects a call's output records (with the input index each came from) and its rejects. What
// a plugin must not do is refused and remembered, for the adapter to report as the plugin's
// error: an input index outside the batch, or output past the byte budget. A record rejected
// more than once counts once, with its first reason.
class CollectingWriter {
 public:
  static constexpr uint64_t kNoBudget = UINT64_MAX;

  // `input_count`: the size of the batch handed to the plugin, to check indexes against
  // (SIZE_MAX: a source, which has no input). `byte_budget`: the record bytes that may be
  // appended in all.
  explicit CollectingWriter(size_t input_count, uint64_t byte_budget = kNoBudget)
      : input_count_(input_count), byte_budget_(byte_budget) {
    writer_.struct_size = sizeof(writer_);
    writer_.host_ctx = this;
    writer_.append = &CollectingWriter::append;
    writer_.append_owned = &CollectingWriter::append_owned;
    writer_.reject = &CollectingWriter::reject;
  }
  CollectingWriter(const CollectingWriter&) = delete;
  CollectingWriter& operator=(const CollectingWriter&) = delete;

  sluice_writer* get() { return &writer_; }
  size_t input_count() const { return input_count_; }
  core::RecordBuffer& records() { return records_; }
  std::vector<size_t>& origins() { return origins_; }
  std::vector<Reject>& rejects() { return rejects_; }
  // The first index outside the batch a plugin passed, if any (a plugin bug, never trusted).
  const std::optional<size_t>& bad_index() const { return bad_index_; }
  // Whether an append was refused for going past the byte budget.
  bool over_budget() const { return over_budget_; }
  uint64_t byte_budget() const { return byte_budget_; }
  uint64_t bytes_appended() const { return bytes_; }

 private:
  bool valid(size_t index) {
    if (input_count_ == SIZE_MAX || index < input_count_) return true;
    if (!bad_index_) bad_index_ = index;
    return false;
  }
  // Counts the record's bytes against the budget; false (and remembered) when it would pass it.
  bool within_budget(const sluice_record& record) {
    const uint64_t size = core::record_bytes(record);
    if (over_budget_ || size > byte_budget_ - bytes_) {
      over_budget_ = true;
      return false;
    }
    bytes_ += size;
    return true;
  }
  static sluice_status append(void* ctx, size_t input_index, const sluice_record* record) {
    auto* self = static_cast<CollectingWriter*>(ctx);
    if (record == nullptr || !self->valid(input_index) || !self->within_budget(*record))
      return SLUICE_ERROR;
    self->records_.append_copy(*record);
    self->origins_.push_back(input_index);
    return SLUICE_OK;
  }
  static sluice_status append_owned(void* ctx, size_t input_index, const sluice_record* record,
                                    void (*release)(void*), void* release_ctx) {
    auto* self = static_cast<CollectingWriter*>(ctx);
    if (record == nullptr || !self->valid(input_index) || !self->within_budget(*record)) {
      if (release) release(release_ctx);
      return SLUICE_ERROR;
    }
    self->records_.append_owned(*record, release, release_ctx);
    self->origins_.push_back(input_index);
    return SLUICE_OK;
  }
  static void reject(void* ctx, size_t input_index, sluice_status status, const char* message,
                     size_t len) {
    auto* self = static_cast<CollectingWriter*>(ctx);
    if (input_index >= self->input_count_) {
      if (!self->bad_index_) self->bad_index_ = input_index;
      return;
    }
    // A record rejected again is one failure: the first reason stands.
    if (self->rejected_.empty()) self->rejected_.resize(self->input_count_);
    if (self->rejected_[input_index]) return;
    self->rejected_[input_index] = true;
    self->rejects_.push_back(
        {input_index, status, message ? std::string(message, len) : std::string("rejected")});
  }

  size_t input_count_;
  uint64_t byte_budget_;
  sluice_writer writer_{};
  core::RecordBuffer records_;
  std::vector<size_t> origins_;
  std::vector<Reject> rejects_;
  std::vector<bool> rejected_;  // by input index, sized at the first reject
  std::optional<size_t> bad_index_;
  bool over_budget_ = false;
  uint64_t bytes_ = 0;
};

}  // namespace sluice::pipeline
