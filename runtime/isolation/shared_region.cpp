// The memfd region and the record layout that crosses it.
#include "isolation/shared_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace sluice::isolation {

namespace {

constexpr size_t kMinMapping = 1 << 20;

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// In the region, pointer fields carry offsets (plus one, so null stays null) until the reader
// rebases them onto its own mapping: the pointer made here is never dereferenced.
template <typename T>
const T* offset_as_pointer(uint64_t offset) {
  return reinterpret_cast<const T*>(offset);  // NOLINT(performance-no-int-to-ptr)
}

template <typename T>
const T* pointer_at(const uint8_t* base, const T* encoded) {
  const auto offset = reinterpret_cast<uintptr_t>(encoded);
  return offset == 0 ? nullptr : reinterpret_cast<const T*>(base + offset - 1);
}

}  // namespace

SharedRegion SharedRegion::create(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) fail("memfd_create");
  SharedRegion region(fd);
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) fail("sealing a shared region");
  return region;
}

SharedRegion::SharedRegion(SharedRegion&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      mapped_(std::exchange(other.mapped_, 0)) {}

SharedRegion& SharedRegion::operator=(SharedRegion&& other) noexcept {
  if (this != &other) {
    this->~SharedRegion();
    new (this) SharedRegion(std::move(other));
  }
  return *this;
}

SharedRegion::~SharedRegion() {
  if (data_) ::munmap(data_, mapped_);
  if (fd_ >= 0) ::close(fd_);
}

void SharedRegion::grow(size_t size) {
  if (size <= mapped_) return;
  const size_t target = round_up(std::max({size, mapped_ * 2, kMinMapping}), 4096);
  if (::ftruncate(fd_, static_cast<off_t>(target)) != 0) fail("ftruncate of a shared region");
  map(target);
}

void SharedRegion::map(size_t size) {
  if (size <= mapped_) return;
  size = round_up(size, 4096);
  void* p = data_ ? ::mremap(data_, mapped_, size, MREMAP_MAYMOVE)
                  : ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) fail("mapping a shared region");
  data_ = static_cast<uint8_t*>(p);
  mapped_ = size;
}

OutputRegion* OutputRegion::create(const char* name) {
  return new OutputRegion(SharedRegion::create(name));
}

void OutputRegion::release(void* region) {
  auto* r = static_cast<OutputRegion*>(region);
  if (r->holds_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete r;
}

void RegionWriter::reset() {
  used_ = sizeof(RegionHeader);
  records_.clear();
  indices_.clear();
  rejects_.clear();
  last_topic_at_ = 0;
  record_bytes_ = 0;
  over_budget_ = false;
}

uint64_t RegionWriter::reserve(size_t len) {
  const size_t at = used_;
  used_ += len;
  region_->grow(used_);
  return at;
}

uint64_t RegionWriter::put_bytes(const void* data, size_t len) {
  if (data == nullptr) return 0;
  const uint64_t at = reserve(len);
  if (len) std::memcpy(region_->data() + at, data, len);
  return at + 1;
}

uint64_t RegionWriter::put_aligned(const void* data, size_t len) {
  used_ = round_up(used_, alignof(std::max_align_t));
  const uint64_t at = reserve(len);
  if (len) std::memcpy(region_->data() + at, data, len);
  return at + 1;
}

// A topic equal to the last one written points at the same bytes (compared by content: a plugin
// may reuse one buffer for every record's topic).
uint64_t RegionWriter::put_topic(sluice_bytes topic) {
  if (topic.ptr == nullptr) return 0;
  const bool same = last_topic_at_ != 0 && topic.len == last_topic_len_ &&
                    std::memcmp(region_->data() + last_topic_at_ - 1, topic.ptr, topic.len) == 0;
  if (!same) {
    last_topic_at_ = put_bytes(topic.ptr, topic.len);
    last_topic_len_ = topic.len;
  }
  return last_topic_at_;
}

// The record is laid out in place (its table entry built where it will stay until finish()).
bool RegionWriter::add_record(size_t input_index, const sluice_record& in) {
  if (over_budget_) return false;
  const bool has_headers = SLUICE_HAS_FIELD(&in, sluice_record, header_count);
  const size_t headers = has_headers && in.headers != nullptr ? in.header_count : 0;
  uint64_t bytes = in.key.len + in.value.len + in.topic.len + sizeof(sluice_record);
  for (size_t i = 0; i < headers; ++i)
    bytes += in.headers[i].key.len + in.headers[i].value.len + sizeof(sluice_header);
  if (bytes > budget_ - std::min(budget_, record_bytes_)) over_budget_ = true;
  record_bytes_ += bytes;
  auto encode = [this](sluice_bytes b) {
    return sluice_bytes{offset_as_pointer<uint8_t>(put_bytes(b.ptr, b.len)), b.len};
  };
  sluice_record& out = records_.emplace_back();
  out.struct_size = sizeof(sluice_record);
  out.key = encode(in.key);
  out.value = encode(in.value);
  out.topic = {offset_as_pointer<uint8_t>(put_topic(in.topic)), in.topic.len};
  if (headers > 0) {
    used_ = round_up(used_, alignof(std::max_align_t));
    const uint64_t at = reserve(in.header_count * sizeof(sluice_header));
    for (size_t i = 0; i < in.header_count; ++i) {
      // Encoding may grow (and so move) the mapping: the entry is written after it.
      const sluice_header h{encode(in.headers[i].key), encode(in.headers[i].value)};
      std::memcpy(region_->data() + at + i * sizeof h, &h, sizeof h);
    }
    out.headers = offset_as_pointer<sluice_header>(at + 1);
    out.header_count = in.header_count;
  }
  if (SLUICE_HAS_FIELD(&in, sluice_record, timestamp_ms)) {
    out.partition = in.partition;
    out.offset = in.offset;
    out.timestamp_ms = in.timestamp_ms;
  }
  indices_.push_back(input_index);
  return !over_budget_;
}

void RegionWriter::add_reject(size_t input_index, sluice_status status, std::string_view message) {
  const uint64_t at = put_bytes(message.data(), message.size());
  rejects_.push_back({input_index, status, at ? at - 1 : 0, message.size()});
}

void RegionWriter::add_blob(std::string_view bytes) {
  sluice_record r{};
  r.struct_size = sizeof(sluice_record);
  r.value = {reinterpret_cast<const uint8_t*>(bytes.data() ? bytes.data() : ""), bytes.size()};
  add_record(0, r);
}

size_t RegionWriter::finish() {
  RegionHeader h{};
  h.record_count = records_.size();
  h.records_offset = put_aligned(records_.data(), records_.size() * sizeof(sluice_record)) - 1;
  h.indices_offset = put_aligned(indices_.data(), indices_.size() * sizeof(uint64_t)) - 1;
  h.reject_count = rejects_.size();
  h.rejects_offset = put_aligned(rejects_.data(), rejects_.size() * sizeof(WireReject)) - 1;
  h.end = used_;
  std::memcpy(region_->data(), &h, sizeof h);
  return used_;
}

namespace {

// The other side's tables are checked before they are trusted: a table or pointer outside the
// bytes its writer laid out (a plugin scribbling on the region) fails the call, where reading
// it would crash the reader.
[[noreturn]] void out_of_bounds(const char* what) {
  throw std::runtime_error(std::string("shared region: ") + what + " outside the region");
}

void check_table(uint64_t offset, uint64_t count, size_t entry, uint64_t end, const char* what) {
  if (offset > end || count > (end - offset) / entry) out_of_bounds(what);
}

void fix_checked(const uint8_t* base, uint64_t end, sluice_bytes& b) {
  const auto offset = reinterpret_cast<uintptr_t>(b.ptr);
  if (offset != 0 && (offset - 1 > end || b.len > end - (offset - 1)))
    out_of_bounds("a record's bytes");
  b.ptr = pointer_at(base, b.ptr);
}

void fix_record(uint8_t* base, uint64_t end, sluice_record& r) {
  fix_checked(base, end, r.key);
  fix_checked(base, end, r.value);
  fix_checked(base, end, r.topic);
  const auto offset = reinterpret_cast<uintptr_t>(r.headers);
  if (offset == 0) {
    r.header_count = 0;
    return;
  }
  check_table(offset - 1, r.header_count, sizeof(sluice_header), end, "a record's headers");
  auto* headers = reinterpret_cast<sluice_header*>(base + offset - 1);
  r.headers = headers;
  for (size_t j = 0; j < r.header_count; ++j) {
    fix_checked(base, end, headers[j].key);
    fix_checked(base, end, headers[j].value);
  }
}

}  // namespace

RegionView read_region(SharedRegion& region, size_t size) {
  if (size < sizeof(RegionHeader)) throw std::runtime_error("shared region too small");
  struct stat file {};
  if (::fstat(region.fd(), &file) != 0 || static_cast<uint64_t>(file.st_size) < size)
    out_of_bounds("the size given is");  // mapped past the file's end, a read would SIGBUS
  region.map(size);
  uint8_t* base = region.data();
  RegionHeader h;
  std::memcpy(&h, base, sizeof h);
  if (h.end > size) throw std::runtime_error("shared region header out of bounds");
  check_table(h.records_offset, h.record_count, sizeof(sluice_record), h.end, "the records");
  check_table(h.indices_offset, h.record_count, sizeof(uint64_t), h.end, "the indices");
  check_table(h.rejects_offset, h.reject_count, sizeof(WireReject), h.end, "the rejects");
  auto* records = reinterpret_cast<sluice_record*>(base + h.records_offset);
  for (size_t i = 0; i < h.record_count; ++i) fix_record(base, h.end, records[i]);
  RegionView view;
  view.base = base;
  view.records = {records, h.record_count};
  view.indices = {reinterpret_cast<const uint64_t*>(base + h.indices_offset), h.record_count};
  view.rejects = {reinterpret_cast<const WireReject*>(base + h.rejects_offset), h.reject_count};
  for (const auto& r : view.rejects)
    if (r.message_offset > h.end || r.message_len > h.end - r.message_offset)
      out_of_bounds("a reject's message");
  return view;
}

}  // namespace sluice::isolation
