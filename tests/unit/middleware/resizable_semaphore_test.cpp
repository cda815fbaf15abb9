// Resizable semaphore: limits, shrinking without revoking, wake-ups on release, growth and close.
#include "middleware/resizable_semaphore.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using sluice::middleware::ResizableSemaphore;
using sluice::middleware::SemaphorePermit;

TEST_CASE("semaphore hands out no more permits than its limit") {
  ResizableSemaphore sem(2);
  CHECK(sem.try_acquire());
  CHECK(sem.try_acquire());
  CHECK_FALSE(sem.try_acquire());
  CHECK_FALSE(sem.try_acquire_for(std::chrono::milliseconds(1)));
  CHECK(sem.in_use() == 2);
  sem.release();
  CHECK(sem.try_acquire());
}

TEST_CASE("shrinking the limit never revokes held permits; new acquires wait until below it") {
  ResizableSemaphore sem(3);
  for (int i = 0; i < 3; ++i) REQUIRE(sem.try_acquire());
  sem.set_limit(1);
  CHECK(sem.limit() == 1);
  CHECK(sem.in_use() == 3);
  sem.release();
  CHECK_FALSE(sem.try_acquire());  // 2 in use, limit 1
  sem.release();
  CHECK_FALSE(sem.try_acquire());  // 1 in use, limit 1
  sem.release();
  CHECK(sem.try_acquire());
  CHECK(sem.in_use() == 1);
}

TEST_CASE("a blocked acquire proceeds when a permit is released") {
  ResizableSemaphore sem(1);
  REQUIRE(sem.try_acquire());
  std::atomic<bool> got{false};
  std::thread waiter([&] { got = sem.acquire(); });
  sem.release();
  waiter.join();
  CHECK(got);
  CHECK(sem.in_use() == 1);
}

TEST_CASE("growing the limit wakes a blocked acquire") {
  ResizableSemaphore sem(1);
  REQUIRE(sem.try_acquire());
  std::atomic<bool> got{false};
  std::thread waiter([&] { got = sem.acquire(); });
  sem.set_limit(2);
  waiter.join();
  CHECK(got);
  CHECK(sem.in_use() == 2);
}

TEST_CASE("close wakes every waiter without a permit, and later acquires fail") {
  ResizableSemaphore sem(1);
  REQUIRE(sem.try_acquire());
  std::atomic<int> failed{0};
  std::thread a([&] { failed += sem.acquire() ? 0 : 1; });
  std::thread b([&] { failed += sem.try_acquire_for(std::chrono::hours(1)) ? 0 : 1; });
  sem.close();
  a.join();
  b.join();
  CHECK(failed == 2);
  CHECK(sem.in_use() == 1);  // the held permit is still held
  CHECK_FALSE(sem.acquire());
  sem.release();
  sem.reopen();
  CHECK(sem.try_acquire());
}

TEST_CASE("a permit gives its slot back when it goes out of scope") {
  ResizableSemaphore sem(1);
  {
    SemaphorePermit permit = SemaphorePermit::acquire(sem);
    CHECK(static_cast<bool>(permit));
    CHECK(sem.in_use() == 1);
    SemaphorePermit moved = std::move(permit);
    CHECK(sem.in_use() == 1);
  }
  CHECK(sem.in_use() == 0);
  sem.close();
  CHECK_FALSE(static_cast<bool>(SemaphorePermit::acquire(sem)));
}

TEST_CASE("many threads never exceed the limit together") {
  ResizableSemaphore sem(3);
  std::atomic<int> inside{0}, most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        SemaphorePermit p = SemaphorePermit::acquire(sem);
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        --inside;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= 3);
  CHECK(sem.in_use() == 0);
}
