// Host-owned records: deep copies in an arena, or zero-copy views whose owner is told when done.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "core/arena.hpp"
#include "sluice/abi.h"

namespace sluice::core {

// Bytes a record occupies, for memory accounting and byte-bounded queues.
inline size_t record_bytes(const sluice_record& r) {
  size_t n = r.key.len + r.value.len + r.topic.len + sizeof(sluice_record);
  for (size_t i = 0; i < r.header_count; ++i)
    n += r.headers[i].key.len + r.headers[i].value.len + sizeof(sluice_header);
  return n;
}

class RecordBuffer {
 public:
  RecordBuffer() = default;
  RecordBuffer(RecordBuffer&&) noexcept = default;
  RecordBuffer& operator=(RecordBuffer&&) noexcept = default;
  RecordBuffer(const RecordBuffer&) = delete;
  RecordBuffer& operator=(const RecordBuffer&) = delete;
  ~RecordBuffer() {
    for (auto& [release, ctx] : releases_) release(ctx);
  }

  void reserve(size_t n) { records_.reserve(n); }

  // Copies the record and every byte it points to.
  void append_copy(const sluice_record& in) {
    sluice_record r{};
    r.struct_size = sizeof(sluice_record);
    r.key = copy(in.key);
    r.value = copy(in.value);
    r.topic = copy_topic(in.topic);
    if (in.header_count > 0) {
      auto* hs = static_cast<sluice_header*>(
          arena_.allocate(sizeof(sluice_header) * in.header_count, alignof(sluice_header)));
      for (size_t i = 0; i < in.header_count; ++i)
        hs[i] = {copy(in.headers[i].key), copy(in.headers[i].value)};
      r.headers = hs;
      r.header_count = in.header_count;
    }
    r.partition = in.partition;
    r.offset = in.offset;
    r.timestamp_ms = in.timestamp_ms;
    records_.push_back(r);
    bytes_ += record_bytes(r);
  }

  // Keeps the record's pointers as they are; `release(ctx)` runs when the buffer dies. Headers
  // array is copied (it is small) so the caller's array may go away.
  void append_owned(const sluice_record& in, void (*release)(void*), void* ctx) {
    sluice_record r = in;
    r.struct_size = sizeof(sluice_record);
    if (in.header_count > 0) {
      auto* hs = static_cast<sluice_header*>(
          arena_.allocate(sizeof(sluice_header) * in.header_count, alignof(sluice_header)));
      for (size_t i = 0; i < in.header_count; ++i) hs[i] = in.headers[i];
      r.headers = hs;
    }
    records_.push_back(r);
    bytes_ += record_bytes(r);
    if (release) releases_.emplace_back(release, ctx);
  }

  std::span<const sluice_record> records() const { return records_; }
  size_t size() const { return records_.size(); }
  bool empty() const { return records_.empty(); }
  size_t bytes() const { return bytes_; }
  // Memory its arena took for the copies (bytes() is what the records count for).
  size_t reserved_bytes() const { return arena_.reserved_bytes(); }
  const sluice_record& operator[](size_t i) const { return records_[i]; }

 private:
  sluice_bytes copy(sluice_bytes b) {
    if (b.ptr == nullptr) return {nullptr, 0};
    return {arena_.copy(b.ptr, b.len), b.len};
  }
  // Records of a poll mostly share their topic: one copy serves a stretch of them, which also
  // lets readers that compare topics (acks, crash ranges) find them equal by pointer.
  sluice_bytes copy_topic(sluice_bytes b) {
    const bool same = b.ptr != nullptr && last_topic_.ptr != nullptr && b.len == last_topic_.len &&
                      std::memcmp(b.ptr, last_topic_.ptr, b.len) == 0;
    if (!same) last_topic_ = copy(b);
    return b.ptr == nullptr ? sluice_bytes{nullptr, 0} : last_topic_;
  }

  Arena arena_;
  std::vector<sluice_record> records_;
  std::vector<std::pair<void (*)(void*), void*>> releases_;
  size_t bytes_ = 0;
  sluice_bytes last_topic_{nullptr, 0};  // in arena_, which never moves its blocks
};

}  // namespace sluice::core
