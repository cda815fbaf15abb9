// The ack watermark under out-of-order completion.
#include "core/offset_watermark.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>

using sluice::core::OffsetWatermark;
using sluice::core::Ticket;

TEST_CASE("watermark never passes an unacked record") {
  OffsetWatermark w;
  std::vector<Ticket> t;
  for (int64_t off = 10; off < 15; ++off) t.push_back(w.take("orders", 0, off));
  w.done(t[1]);
  w.done(t[2]);
  CHECK(w.take_ready().empty());
  CHECK_FALSE(w.watermark("orders", 0).has_value());
  w.done(t[0]);
  auto ready = w.take_ready();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].topic == "orders");
  CHECK(ready[0].offset == 12);  // 10, 11, 12 done; 13 is not
  w.done(t[4]);
  CHECK(w.take_ready().empty());
  w.done(t[3]);
  ready = w.take_ready();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].offset == 14);
  CHECK(w.outstanding() == 0);
}

TEST_CASE("partitions advance independently") {
  OffsetWatermark w;
  auto a0 = w.take("t", 0, 100);
  auto b0 = w.take("t", 1, 7);
  auto a1 = w.take("t", 0, 101);
  w.done(a1);
  w.done(b0);
  auto ready = w.take_ready();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].partition == 1);
  CHECK(ready[0].offset == 7);
  w.done(a0);
  ready = w.take_ready();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].partition == 0);
  CHECK(ready[0].offset == 101);
}

TEST_CASE("offsets with gaps (compacted topics, byte offsets) follow intake order") {
  OffsetWatermark w;
  auto a = w.take("f", 0, 0);
  auto b = w.take("f", 0, 57);
  auto c = w.take("f", 0, 130);
  w.done(c);
  w.done(a);
  CHECK(w.take_ready().at(0).offset == 0);
  w.done(b);
  CHECK(w.take_ready().at(0).offset == 130);
}

TEST_CASE("random completion order: the watermark is always the contiguous done prefix") {
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    OffsetWatermark w;
    const int n = 500;
    std::vector<Ticket> tickets;
    for (int i = 0; i < n; ++i) tickets.push_back(w.take("x", 3, i * 2));
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<bool> done(n, false);
    int64_t committed = -1;
    for (int i : order) {
      w.done(tickets[i]);
      done[i] = true;
      int prefix = 0;
      while (prefix < n && done[prefix]) ++prefix;
      for (const auto& p : w.take_ready()) committed = p.offset;
      CHECK(committed == (prefix == 0 ? -1 : (prefix - 1) * 2));
    }
    CHECK(committed == (n - 1) * 2);
  }
}

TEST_CASE("a forgotten (revoked) partition drops its pending records") {
  OffsetWatermark w;
  auto a = w.take("t", 0, 1);
  w.take("t", 0, 2);
  CHECK(w.outstanding("t", 0) == 2);
  w.forget("t", 0);
  CHECK(w.outstanding("t", 0) == 0);
  CHECK(w.outstanding() == 0);
  w.done(a);  // a late ack of a forgotten record changes nothing
  CHECK(w.take_ready().empty());
  auto b = w.take("t", 0, 50);  // reassigned later: starts afresh
  w.done(b);
  CHECK(w.take_ready().at(0).offset == 50);
}
