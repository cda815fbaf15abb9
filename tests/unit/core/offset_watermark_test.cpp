// The ack watermark under out-of-order completion.
#include "core/offset_watermark.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "sluice/abi.h"

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

namespace {

using sluice::core::Run;
using sluice::core::RunShare;

// Records of one poll, each (partition, offset) on topic "t".
struct Poll {
  std::vector<sluice_record> records;
  explicit Poll(std::initializer_list<std::pair<int32_t, int64_t>> list) {
    for (auto [partition, offset] : list) {
      sluice_record r{};
      r.struct_size = sizeof r;
      r.topic = {reinterpret_cast<const uint8_t*>("t"), 1};
      r.partition = partition;
      r.offset = offset;
      records.push_back(r);
    }
  }
};

}  // namespace

TEST_CASE("a poll is taken as one run per stretch of one stream") {
  OffsetWatermark w;
  Poll poll({{0, 10}, {0, 11}, {1, 5}, {1, 6}, {1, 7}, {0, 12}});
  std::vector<Run> runs;
  w.take_all(std::span<const sluice_record>(poll.records), runs);
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].first == 0);
  CHECK(runs[0].count == 2);
  CHECK(runs[1].first == 2);
  CHECK(runs[1].count == 3);
  CHECK(runs[2].first == 5);
  CHECK(runs[2].count == 1);
  CHECK(runs[0].ticket.stream == runs[2].ticket.stream);
  CHECK(runs[0].ticket.stream != runs[1].ticket.stream);
  CHECK(w.outstanding() == 6);
  CHECK(w.outstanding("t", 1) == 3);
}

TEST_CASE("runs done out of order: only the contiguous prefix of whole runs commits") {
  OffsetWatermark w;
  std::vector<Run> runs;
  for (int64_t from : {0, 100, 200}) {
    Poll poll({{0, from}, {0, from + 1}, {0, from + 2}});
    w.take_all(std::span<const sluice_record>(poll.records), runs);
  }
  REQUIRE(runs.size() == 3);
  w.done_all(std::vector<RunShare>{{runs[2].ticket, 3}, {runs[1].ticket, 3}});
  CHECK(w.take_ready().empty());  // the first run is not done: nothing after it commits
  CHECK(w.outstanding() == 3);
  w.done(runs[0].ticket, 3);
  auto ready = w.take_ready();
  REQUIRE(ready.size() == 1);
  CHECK(ready[0].offset == 202);  // the last record of the last run
  CHECK(w.outstanding() == 0);
}

TEST_CASE("a run split over batches commits when its last share is done") {
  OffsetWatermark w;
  Poll poll({{0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}});
  std::vector<Run> runs;
  w.take_all(std::span<const sluice_record>(poll.records), runs);
  REQUIRE(runs.size() == 1);
  w.done(runs[0].ticket, 2);  // one batch held two of its records
  CHECK(w.take_ready().empty());
  CHECK(w.outstanding("t", 0) == 3);
  w.done(runs[0].ticket, 3);  // the other batch the rest
  CHECK(w.take_ready().at(0).offset == 5);
  w.done(runs[0].ticket, 3);  // a late duplicate ack changes nothing
  CHECK(w.outstanding() == 0);
  CHECK(w.take_ready().empty());
}

TEST_CASE("random completion of shares: the watermark is the end of the whole-run done prefix") {
  std::mt19937 rng(7);
  OffsetWatermark w;
  std::vector<Run> runs;
  std::vector<RunShare> shares;  // each run cut in two shares
  int64_t offset = 0;
  for (int i = 0; i < 50; ++i) {
    Poll poll({{2, offset}, {2, offset + 1}, {2, offset + 2}, {2, offset + 3}});
    offset += 4;
    w.take_all(std::span<const sluice_record>(poll.records), runs);
    shares.push_back({runs.back().ticket, 1});
    shares.push_back({runs.back().ticket, 3});
  }
  std::vector<size_t> order(shares.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int> left(runs.size(), 2);
  int64_t committed = -1;
  for (size_t k : order) {
    w.done(shares[k].ticket, shares[k].count);
    --left[k / 2];
    size_t prefix = 0;
    while (prefix < runs.size() && left[prefix] == 0) ++prefix;
    for (const auto& p : w.take_ready()) committed = p.offset;
    CHECK(committed == (prefix == 0 ? -1 : static_cast<int64_t>(prefix) * 4 - 1));
  }
  CHECK(w.outstanding() == 0);
}
