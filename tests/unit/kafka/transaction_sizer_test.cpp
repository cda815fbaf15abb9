// The exactly-once transaction sizer (plugins/kafka/transaction_sizer.hpp): steering the number
// of records per transaction toward a target commit interval, with a simulated clock.
#include "transaction_sizer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>

using sluice::kafka::TransactionSizer;
using namespace std::chrono_literals;

namespace {

// Commits transactions of the sizer's size on a pipeline that takes `per_record` per record
// plus `fixed` per commit (drain and round trip), `rounds` times.
void run(TransactionSizer& sizer, std::chrono::microseconds per_record,
         std::chrono::milliseconds fixed, int rounds) {
  for (int i = 0; i < rounds; ++i) {
    if (sizer.size() == 0) {  // the first transaction ends on the clock, at the target
      const auto room = std::max(sizer.target() - fixed, std::chrono::milliseconds(0));
      sizer.committed(std::max<size_t>(1, static_cast<size_t>(room / per_record)), sizer.target());
      continue;
    }
    const size_t n = sizer.size();
    sizer.committed(n, fixed + per_record * static_cast<int64_t>(n));
  }
}

}  // namespace

TEST_CASE("the size settles where a transaction lasts the target interval") {
  TransactionSizer sizer(1000ms);
  // 10 µs per record, 50 ms per commit: 95,000 records make 1 s.
  run(sizer, 10us, 50ms, 30);
  CHECK(sizer.size() > 90'000);
  CHECK(sizer.size() < 100'000);
}

TEST_CASE("the size follows the throughput down and up") {
  TransactionSizer sizer(500ms);
  run(sizer, 5us, 20ms, 30);
  const size_t fast = sizer.size();
  run(sizer, 50us, 20ms, 30);  // ten times slower per record
  const size_t slow = sizer.size();
  CHECK(slow * 8 < fast);
  CHECK(slow > 8000);  // (500 - 20) ms / 50 µs = 9,600
  run(sizer, 5us, 20ms, 30);
  CHECK(sizer.size() == doctest::Approx(static_cast<double>(fast)).epsilon(0.02));
}

TEST_CASE("one slow commit moves the size by at most half") {
  TransactionSizer sizer(1000ms);
  run(sizer, 10us, 50ms, 30);
  const size_t settled = sizer.size();
  sizer.committed(settled, 60s);  // a rebalance stalled this one
  CHECK(sizer.size() == settled / 2);
  sizer.committed(sizer.size(), 1ms);  // and an instant one doubles at most
  CHECK(sizer.size() == (settled / 2) * 2);
}

TEST_CASE("the first transaction ends at the target and sizes the next from its rate") {
  TransactionSizer sizer(1000ms);
  CHECK(sizer.size() == 0);
  CHECK_FALSE(sizer.due(1'000'000, 999ms));
  CHECK(sizer.due(0, 1000ms));
  sizer.committed(80'000, 1000ms);
  CHECK(sizer.size() == 80'000);  // no ramp from a guessed size
}

TEST_CASE("a transaction ends at its size, or at twice the target on a trickle") {
  TransactionSizer sizer(1000ms);
  sizer.committed(5000, 1000ms);
  const size_t size = sizer.size();
  CHECK_FALSE(sizer.due(size - 1, 100ms));
  CHECK(sizer.due(size, 100ms));
  CHECK_FALSE(sizer.due(3, 1999ms));
  CHECK(sizer.due(3, 2000ms));
  // A trickle cut by the time limit sizes the next transaction from what came in, and the size
  // it had settled on while input kept up stays known.
  sizer.committed(size, 1000ms);
  CHECK(sizer.settled() == size);
  sizer.committed(3, 2000ms);
  CHECK(sizer.size() == TransactionSizer::kMinRecords);
  CHECK(sizer.settled() == size);
}

TEST_CASE("the size stays within its bounds") {
  TransactionSizer sizer(10s);
  run(sizer, 1us, 1ms, 1);  // 9,999,000 records in the first 10 s
  CHECK(sizer.size() == TransactionSizer::kMaxRecords);
  run(sizer, 0us, 1ms, 60);
  CHECK(sizer.size() == TransactionSizer::kMaxRecords);
  TransactionSizer tiny(1ms);
  run(tiny, 1000us, 100ms, 60);
  CHECK(tiny.size() == TransactionSizer::kMinRecords);
}
