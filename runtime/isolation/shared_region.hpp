// Batches and outputs in shared memory: a growable memfd region and the record layout in it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/abi.h"

namespace sluice::isolation {

// One memfd mapped MAP_SHARED; both processes map the same file. The writer grows it
// (ftruncate), the reader maps at least the size the writer reports. The file is sealed against
// shrinking from its creation (F_SEAL_SHRINK, and F_SEAL_SEAL so no seal can be added or taken
// away): a child cannot cut a region short under the host's mapping, where the host's next
// access past the new end would die of SIGBUS.
class SharedRegion {
 public:
  // Creates a new memfd, sealed against shrinking (the parent does this for both directions).
  static SharedRegion create(const char* name);
  // Adopts an inherited memfd (the child).
  explicit SharedRegion(int fd) : fd_(fd) {}
  SharedRegion(SharedRegion&& other) noexcept;
  SharedRegion& operator=(SharedRegion&& other) noexcept;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion();

  int fd() const { return fd_; }
  uint8_t* data() const { return data_; }
  // Makes the file at least `size` bytes long (writer side) and maps all of it.
  void grow(size_t size);
  // Maps at least `size` bytes of a file the other side has grown (reader side).
  void map(size_t size);

 private:
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  size_t mapped_ = 0;
};

// Control-message counters in a region of their own, mapped by the host and its child: each side
// counts the messages it has sent over the socket (after the send). A side about to sleep on the
// socket for the other's next message first spins briefly on the other's count, so a reply that
// comes within the spin is read without a wake-up through the scheduler. The socket stays the
// truth (the messages themselves, the peer's death): a count only says when to look, so a
// count a child scribbles on costs the host at most one spin.
struct Doorbell {
  std::atomic<uint64_t> sent_to_child;
  std::atomic<uint64_t> sent_to_host;
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "a Doorbell is shared by processes");

// How many output regions a child has. While the host's records view one (a transform's outputs
// handed on without a copy), calls use the others; the last one is never viewed, so a call
// always has a region to write into (its outputs are then copied, as before).
constexpr size_t kOutputRegions = 4;

// An output region shared by the child that fills it and the records that view it. It is held
// once by its child process and once per record viewing it; the last release unmaps it. It is
// free for the next call only while no record views it.
class OutputRegion {
 public:
  // A new region, held once by the caller.
  static OutputRegion* create(const char* name);
  OutputRegion(const OutputRegion&) = delete;
  OutputRegion& operator=(const OutputRegion&) = delete;

  SharedRegion& region() { return region_; }
  // Whether a record still views it (with the child's hold, more than one).
  bool viewed() const { return holds_.load(std::memory_order_acquire) > 1; }
  // One more hold, for a record that views the region; returns the context for release().
  void* hold() {
    holds_.fetch_add(1, std::memory_order_relaxed);
    return this;
  }
  // Ends one hold (a sluice_writer release callback: any thread, after the call).
  static void release(void* region);

 private:
  explicit OutputRegion(SharedRegion region) : region_(std::move(region)) {}
  ~OutputRegion() = default;
  SharedRegion region_;
  std::atomic<size_t> holds_{1};
};

struct ReleaseOutputRegion {
  void operator()(OutputRegion* r) const { OutputRegion::release(r); }
};
using OutputRegionPtr = std::unique_ptr<OutputRegion, ReleaseOutputRegion>;

// What a region holds for one call: records (each with the input index it derives from, for
// outputs) and rejects. Pointers inside records are written as offsets + 1 (0 = absent) and
// fixed up by the reader, so each side can map the region at any address.
struct RegionHeader {
  uint64_t records_offset;
  uint64_t record_count;
  uint64_t indices_offset;
  uint64_t rejects_offset;
  uint64_t reject_count;
  uint64_t end;
};

struct WireReject {
  uint64_t input_index;
  int32_t status;
  uint64_t message_offset;
  uint64_t message_len;
};

// Writes records and rejects into a region, growing it as needed; finish() lays out the tables
// after the bytes and returns how many bytes the reader must map.
class RegionWriter {
 public:
  RegionWriter() = default;  // reset(region) names the region before any write
  explicit RegionWriter(SharedRegion& region) : region_(&region) {}
  void reset();
  // Starts over in another region (the output region a call names).
  void reset(SharedRegion& region) {
    region_ = &region;
    reset();
  }
  // Writes the record; false once the records written pass the byte budget (set_budget), as the
  // host's writer counts them (core::record_bytes). The record that passes it is still written, so
  // that the host, appending the outputs in order, refuses it and knows its budget was passed;
  // nothing after it is written.
  bool add_record(size_t input_index, const sluice_record& record);
  // The record bytes this call's outputs may take (reset() keeps it; UINT64_MAX: no bound).
  void set_budget(uint64_t bytes) { budget_ = bytes; }
  void add_reject(size_t input_index, sluice_status status, std::string_view message);
  // Raw bytes as one record's value (snapshot and restore state).
  void add_blob(std::string_view bytes);
  size_t finish();

 private:
  uint64_t put_bytes(const void* data, size_t len);  // returns offset + 1, 0 for null
  uint64_t put_aligned(const void* data, size_t len);
  uint64_t reserve(size_t len);

  SharedRegion* region_ = nullptr;
  size_t used_ = 0;
  uint64_t budget_ = UINT64_MAX;
  uint64_t record_bytes_ = 0;  // of the records written since reset()
  bool over_budget_ = false;
  uint64_t put_topic(sluice_bytes topic);

  // The last topic written (offset + 1, 0 for none): records of one stream share one copy of it.
  uint64_t last_topic_at_ = 0;
  size_t last_topic_len_ = 0;
  std::vector<sluice_record> records_;
  std::vector<uint64_t> indices_;
  std::vector<WireReject> rejects_;
};

// A region's content after pointer fix-up, valid while the region stays mapped and unchanged.
struct RegionView {
  std::span<const sluice_record> records;
  std::span<const uint64_t> indices;
  std::span<const WireReject> rejects;
  const uint8_t* base = nullptr;
  std::string_view reject_message(const WireReject& r) const {
    return {reinterpret_cast<const char*>(base + r.message_offset), r.message_len};
  }
};

// Maps `size` bytes of the region and fixes up its records' pointers in place.
RegionView read_region(SharedRegion& region, size_t size);

}  // namespace sluice::isolation
