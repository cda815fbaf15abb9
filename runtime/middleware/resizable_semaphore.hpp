// A counting semaphore whose limit can change while permits are held; bounds batches in flight.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace sluice::middleware {

// Shrinking the limit never revokes a permit already held: the holders finish, and new acquires
// wait until in_use() drops below the new limit. close() wakes every waiter (acquire returns false)
// so a stopping stage never hangs on a full semaphore.
//
// Thread-safety: every member may be called from any thread.
class ResizableSemaphore {
 public:
  explicit ResizableSemaphore(uint32_t limit) : limit_(limit) {}
  ResizableSemaphore(const ResizableSemaphore&) = delete;
  ResizableSemaphore& operator=(const ResizableSemaphore&) = delete;

  // Blocks until a permit is free. False if the semaphore was closed (no permit taken).
  bool acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return closed_ || in_use_ < limit_; });
    if (closed_) return false;
    ++in_use_;
    return true;
  }

  // As acquire(), giving up after `timeout`. False on timeout or when closed.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> timeout) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [&] { return closed_ || in_use_ < limit_; })) return false;
    if (closed_) return false;
    ++in_use_;
    return true;
  }

  bool try_acquire() { return try_acquire_for(std::chrono::nanoseconds(0)); }

  void release() {
    {
      std::lock_guard lock(mutex_);
      if (in_use_ > 0) --in_use_;
    }
    cv_.notify_one();
  }

  void set_limit(uint32_t limit) {
    bool grew;
    {
      std::lock_guard lock(mutex_);
      grew = limit > limit_;
      limit_ = limit;
    }
    if (grew) cv_.notify_all();
  }

  // Wakes every waiter; later acquires fail at once. Permits held stay valid and may be released.
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  // Accepts acquires again after close(), e.g. when a drained stage resumes.
  void reopen() {
    std::lock_guard lock(mutex_);
    closed_ = false;
  }

  uint32_t in_use() const {
    std::lock_guard lock(mutex_);
    return in_use_;
  }
  uint32_t limit() const {
    std::lock_guard lock(mutex_);
    return limit_;
  }
  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  uint32_t limit_;
  uint32_t in_use_ = 0;
  bool closed_ = false;
};

// Holds one permit and gives it back when destroyed; empty if the acquire failed.
class SemaphorePermit {
 public:
  SemaphorePermit() = default;
  static SemaphorePermit acquire(ResizableSemaphore& semaphore) {
    return semaphore.acquire() ? SemaphorePermit(&semaphore) : SemaphorePermit();
  }
  SemaphorePermit(SemaphorePermit&& other) noexcept : semaphore_(other.semaphore_) {
    other.semaphore_ = nullptr;
  }
  SemaphorePermit& operator=(SemaphorePermit&& other) noexcept {
    if (this != &other) {
      reset();
      semaphore_ = other.semaphore_;
      other.semaphore_ = nullptr;
    }
    return *this;
  }
  SemaphorePermit(const SemaphorePermit&) = delete;
  SemaphorePermit& operator=(const SemaphorePermit&) = delete;
  ~SemaphorePermit() { reset(); }

  explicit operator bool() const { return semaphore_ != nullptr; }
  void reset() {
    if (semaphore_ != nullptr) semaphore_->release();
    semaphore_ = nullptr;
  }

 private:
  explicit SemaphorePermit(ResizableSemaphore* semaphore) : semaphore_(semaphore) {}
  ResizableSemaphore* semaphore_ = nullptr;  // not owned
};

}  // namespace sluice::middleware
