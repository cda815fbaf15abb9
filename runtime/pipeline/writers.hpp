// Host-side sluice_writer implementations: where plugins append records and report rejects.
#pragma once

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

// Collects a call's output records (with the input index each came from) and its rejects.
class CollectingWriter {
 public:
  // `input_count`: the size of the batch handed to the plugin, to check indexes against.
  explicit CollectingWriter(size_t input_count) : input_count_(input_count) {
    writer_.struct_size = sizeof(writer_);
    writer_.host_ctx = this;
    writer_.append = &CollectingWriter::append;
    writer_.append_owned = &CollectingWriter::append_owned;
    writer_.reject = &CollectingWriter::reject;
  }
  CollectingWriter(const CollectingWriter&) = delete;
  CollectingWriter& operator=(const CollectingWriter&) = delete;

  sluice_writer* get() { return &writer_; }
  core::RecordBuffer& records() { return records_; }
  std::vector<size_t>& origins() { return origins_; }
  std::vector<Reject>& rejects() { return rejects_; }
  // Indexes outside the batch that a plugin passed (a plugin bug, reported not trusted).
  size_t bad_indexes() const { return bad_indexes_; }

 private:
  bool valid(size_t index) {
    if (input_count_ == SIZE_MAX || index < input_count_) return true;
    ++bad_indexes_;
    return false;
  }
  static sluice_status append(void* ctx, size_t input_index, const sluice_record* record) {
    auto* self = static_cast<CollectingWriter*>(ctx);
    if (record == nullptr || !self->valid(input_index)) return SLUICE_ERROR;
    self->records_.append_copy(*record);
    self->origins_.push_back(input_index);
    return SLUICE_OK;
  }
  static sluice_status append_owned(void* ctx, size_t input_index, const sluice_record* record,
                                    void (*release)(void*), void* release_ctx) {
    auto* self = static_cast<CollectingWriter*>(ctx);
    if (record == nullptr || !self->valid(input_index)) {
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
      ++self->bad_indexes_;
      return;
    }
    self->rejects_.push_back(
        {input_index, status, message ? std::string(message, len) : std::string("rejected")});
  }

  size_t input_count_;
  sluice_writer writer_{};
  core::RecordBuffer records_;
  std::vector<size_t> origins_;
  std::vector<Reject> rejects_;
  size_t bad_indexes_ = 0;
};

}  // namespace sluice::pipeline
