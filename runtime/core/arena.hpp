// A bump allocator whose blocks never move, so views into it stay valid until it is destroyed.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace sluice::core {

class Arena {
 public:
  explicit Arena(size_t block_size = 64 * 1024) : block_size_(block_size) {}
  Arena(Arena&&) noexcept = default;
  Arena& operator=(Arena&&) noexcept = default;

  void* allocate(size_t size, size_t align = alignof(std::max_align_t)) {
    if (size > block_size_ / 2) return allocate_alone(size);
    size_t pos = (used_ + align - 1) & ~(align - 1);
    if (blocks_.empty() || pos + size > capacity_) {
      size_t cap = size + align > block_size_ ? size + align : block_size_;
      blocks_.push_back(std::make_unique_for_overwrite<std::byte[]>(cap));  // no zeroing
      capacity_ = cap;
      reserved_ += cap;
      pos = 0;
      // make_unique<byte[]> is aligned for max_align_t.
    }
    used_ = pos + size;
    return blocks_.back().get() + pos;
  }

  const uint8_t* copy(const void* data, size_t len) {
    if (len == 0) return reinterpret_cast<const uint8_t*>(this);  // any non-null pointer
    auto* p = static_cast<uint8_t*>(allocate(len, 1));
    std::memcpy(p, data, len);
    return p;
  }

  size_t reserved_bytes() const { return reserved_; }

 private:
  // A large allocation gets a block of its own, kept out of the bump position: otherwise the
  // next small allocation would open a fresh full block after it, and records of a little over
  // half a block (a 64 KB value and its key) would hold twice their size.
  void* allocate_alone(size_t size) {
    auto block = std::make_unique_for_overwrite<std::byte[]>(size);  // aligned for max_align_t
    void* p = block.get();
    const auto at = blocks_.empty() ? blocks_.end() : blocks_.end() - 1;
    blocks_.insert(at, std::move(block));
    reserved_ += size;
    return p;
  }

  size_t block_size_;
  std::vector<std::unique_ptr<std::byte[]>> blocks_;
  size_t used_ = 0;
  size_t capacity_ = 0;
  size_t reserved_ = 0;
};

}  // namespace sluice::core
