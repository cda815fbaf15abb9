// Unit tests of the projection row cache: LRU, LFU, TTL and adaptive (W-TinyLFU) eviction.
#include "row_cache.hpp"

#include <doctest/doctest.h>

#include <random>

using sluice_projection::EvictionPolicy;
using sluice_projection::RowCache;

namespace {

RowCache<int> make(EvictionPolicy policy, size_t capacity, std::function<int64_t()> now = {}) {
  RowCache<int>::Options o;
  o.capacity = capacity;
  o.policy = policy;
  o.ttl_ms = 1000;
  return RowCache<int>(o, std::move(now));
}

std::string k(int i) { return "k" + std::to_string(i); }

// Hot keys read again and again, interrupted by scans of keys that are read once: a full table
// read, a report, a backfill. Returns the hit rate on the hot keys' reads.
double hot_hit_rate_under_scans(EvictionPolicy policy) {
  constexpr size_t kCapacity = 100;
  constexpr int kHot = 60;
  auto cache = make(policy, kCapacity);
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> hot(0, kHot - 1);
  int next_scan_key = 1'000'000;
  uint64_t hot_reads = 0, hot_hits = 0;
  for (int round = 0; round < 500; ++round) {
    for (int i = 0; i < 60; ++i) {
      const std::string key = k(hot(rng));
      ++hot_reads;
      if (cache.get(key)) {
        ++hot_hits;
      } else {
        cache.put(key, 1);
      }
    }
    for (int i = 0; i < 150; ++i) {  // the scan: more keys than the cache holds
      const std::string key = k(next_scan_key++);
      if (!cache.get(key)) cache.put(key, 2);
    }
  }
  return static_cast<double>(hot_hits) / static_cast<double>(hot_reads);
}

}  // namespace

TEST_CASE("lru evicts the least recently used row") {
  auto c = make(EvictionPolicy::lru, 3);
  c.put(k(1), 1);
  c.put(k(2), 2);
  c.put(k(3), 3);
  REQUIRE(c.get(k(1)));  // 2 is now the oldest
  c.put(k(4), 4);
  CHECK(c.get(k(2)) == nullptr);
  CHECK(c.get(k(1)));
  CHECK(c.get(k(3)));
  CHECK(c.get(k(4)));
  CHECK(c.counts().evictions == 1);
  CHECK(c.counts().misses == 1);
  CHECK(c.counts().hits == 4);
}

TEST_CASE("lfu evicts the least frequently used row, the older one on a tie") {
  auto c = make(EvictionPolicy::lfu, 3);
  c.put(k(1), 1);
  c.put(k(2), 2);
  c.put(k(3), 3);
  for (int i = 0; i < 3; ++i) c.get(k(1));
  c.get(k(3));
  c.put(k(4), 4);  // 2 was read least
  CHECK(c.get(k(2)) == nullptr);
  c.put(k(5), 5);  // 4 and 3 ... 4 has fewer reads
  CHECK(c.get(k(4)) == nullptr);
  CHECK(c.get(k(1)));
  CHECK(c.get(k(3)));
}

TEST_CASE("ttl expires rows a fixed time after they were written, whatever the reads") {
  int64_t now = 0;
  auto c = make(EvictionPolicy::ttl, 10, [&] { return now; });
  c.put(k(1), 1);
  now = 600;
  c.put(k(2), 2);
  CHECK(c.get(k(1)));  // reads do not extend the time to live
  now = 1000;
  CHECK(c.get(k(1)) == nullptr);
  CHECK(c.get(k(2)));
  c.put(k(2), 22);  // a rewrite does
  now = 1700;
  REQUIRE(c.get(k(2)));
  CHECK(*c.get(k(2)) == 22);
  CHECK(c.counts().evictions == 1);
}

TEST_CASE("every policy keeps at most its capacity and counts its evictions") {
  for (auto policy :
       {EvictionPolicy::lru, EvictionPolicy::lfu, EvictionPolicy::ttl, EvictionPolicy::adaptive}) {
    CAPTURE(static_cast<int>(policy));
    auto c = make(policy, 50);
    for (int i = 0; i < 500; ++i) c.put(k(i), i);
    CHECK(c.size() == 50);
    CHECK(c.counts().evictions == 450);
    c.put(k(499), 7);  // replacing is not an eviction
    CHECK(c.counts().evictions == 450);
  }
}

TEST_CASE("shrinking the capacity under memory pressure evicts down to it") {
  for (auto policy : {EvictionPolicy::lru, EvictionPolicy::lfu, EvictionPolicy::adaptive}) {
    auto c = make(policy, 200);
    for (int i = 0; i < 200; ++i) c.put(k(i), i);
    c.set_capacity(20);
    CHECK(c.size() <= 20);
    CHECK(c.capacity() == 20);
    CHECK(c.configured_capacity() == 200);
    c.set_capacity(200);
    for (int i = 0; i < 200; ++i) c.put(k(i), i);
    CHECK(c.size() > 20);
  }
}

TEST_CASE("adaptive (W-TinyLFU) beats lru's hit rate on a scan-polluted workload") {
  const double lru = hot_hit_rate_under_scans(EvictionPolicy::lru);
  const double adaptive = hot_hit_rate_under_scans(EvictionPolicy::adaptive);
  MESSAGE("hot-row hit rate: lru " << lru << ", adaptive " << adaptive);
  CHECK(adaptive > lru + 0.3);
  CHECK(adaptive > 0.8);
}

TEST_CASE("adaptive still admits a new row that becomes hot") {
  auto c = make(EvictionPolicy::adaptive, 100);
  for (int i = 0; i < 100; ++i) {
    c.put(k(i), i);
    c.get(k(i));
  }
  // k(1000) is read often while absent (a miss each time), then cached: it must stay.
  for (int i = 0; i < 20; ++i) c.get(k(1000));
  c.put(k(1000), 1);
  for (int i = 200; i < 260; ++i) c.put(k(i), i);  // one-off rows
  CHECK(c.get(k(1000)));
}
