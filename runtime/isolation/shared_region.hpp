// Batches and outputs in shared memory: a growable memfd region and the record layout in it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "sluice/abi.h"

namespace sluice::isolation {

// One memfd mapped MAP_SHARED; both processes map the same file. The writer grows it
// (ftruncate), the reader maps at least the size the writer reports.
class SharedRegion {
 public:
  // Creates a new memfd (the parent does this for both directions).
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
  explicit RegionWriter(SharedRegion& region) : region_(region) {}
  void reset();
  void add_record(size_t input_index, const sluice_record& record);
  void add_reject(size_t input_index, sluice_status status, std::string_view message);
  // Raw bytes as one record's value (snapshot and restore state).
  void add_blob(std::string_view bytes);
  size_t finish();

 private:
  uint64_t put_bytes(const void* data, size_t len);  // returns offset + 1, 0 for null
  uint64_t put_aligned(const void* data, size_t len);
  uint64_t reserve(size_t len);

  SharedRegion& region_;
  size_t used_ = 0;
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
