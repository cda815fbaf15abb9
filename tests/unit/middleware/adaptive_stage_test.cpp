// The adaptive stage with real threads: per-key order under concurrency, fixed mode as a plain
// loop, bounded intake, and drains that do not wait for linger.
#include "middleware/adaptive_stage.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

using namespace sluice;
using middleware::AdaptiveStage;
using middleware::BatchOutcome;
using middleware::SourceChunk;
using middleware::WorkBatch;

namespace {

// Records "key-K" with value "N" (N counting per key), in one chunk.
std::shared_ptr<SourceChunk> make_chunk(core::OffsetWatermark& w, int from, int count, int keys,
                                        std::map<int, int>& next_per_key) {
  auto chunk = std::make_shared<SourceChunk>();
  std::vector<std::string> keep;
  for (int i = from; i < from + count; ++i) {
    int k = i % keys;
    std::string key = "key-" + std::to_string(k);
    std::string value = std::to_string(next_per_key[k]++);
    sluice_record r{};
    r.struct_size = sizeof r;
    r.key = {reinterpret_cast<const uint8_t*>(key.data()), key.size()};
    r.value = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
    r.topic = {reinterpret_cast<const uint8_t*>("t"), 1};
    r.offset = i;
    chunk->records.append_copy(r);
  }
  chunk->intake_time = std::chrono::steady_clock::now();
  w.take_all(chunk->records.records(), chunk->runs);
  return chunk;
}

std::string text(sluice_bytes b) { return {reinterpret_cast<const char*>(b.ptr), b.len}; }

core::PerformanceSettings fixed(uint32_t batch, uint32_t concurrency, core::Ordering ordering) {
  core::PerformanceSettings s;
  s.adaptive_batching = false;
  s.adaptive_concurrency = false;
  s.min_batch_size = 1;
  s.batch_size = batch;
  s.max_batch_size = std::max(batch, s.max_batch_size);
  s.concurrency = concurrency;
  s.max_concurrency = std::max(concurrency, s.min_concurrency);
  s.ordering = ordering;
  return s;
}

// Processes batches of make_chunk's records slowly (up to 2 ms, at random, so batches in flight
// side by side finish out of order) and checks that each key's values come 0, 1, 2, ...: a
// record that overtook, was lost or came twice breaks the count.
struct KeyOrderCheck {
  std::mutex mu;
  std::map<std::string, int> last_seen;
  int violations = 0;
  std::atomic<int> in_flight{0}, max_in_flight{0};
  std::atomic<uint64_t> processed{0};

  BatchOutcome operator()(WorkBatch& b) {
    int now = ++in_flight;
    int prev = max_in_flight.load();
    while (now > prev && !max_in_flight.compare_exchange_weak(prev, now)) {
    }
    thread_local std::mt19937 rng(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    {
      std::lock_guard lock(mu);
      for (const auto& r : b.records) {
        int v = std::stoi(text(r.value));
        auto [it, fresh] = last_seen.try_emplace(text(r.key), v);
        if (!fresh) {
          if (v != it->second + 1) ++violations;
          it->second = v;
        } else if (v != 0) {
          ++violations;
        }
      }
    }
    processed += b.records.size();
    --in_flight;
    return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
  }
};

// Pushes `count` records from `from` in chunks of `chunk`, each when the stage has room.
void push_records(AdaptiveStage& stage, core::OffsetWatermark& w, int from, int count, int chunk,
                  int keys, std::map<int, int>& next) {
  for (int at = from; at < from + count; at += chunk) {
    while (stage.room() == 0) stage.wait_for_room(std::chrono::milliseconds(50));
    stage.push(make_chunk(w, at, chunk, keys, next));
  }
}

// A concurrency limit the test sets.
class SetLimiter : public middleware::ConcurrencyLimiter {
 public:
  std::atomic<uint32_t> value{1};

  void on_batch_done(core::Duration, uint32_t) override {}
  uint32_t update(const middleware::LoadSignals&) override { return value.load(); }
  uint32_t limit() const override { return value.load(); }
  std::string_view phase() const override { return "set"; }
  const middleware::DecisionTrace& trace() const override { return trace_; }

 private:
  middleware::DecisionTrace trace_{core::SteadyClock::instance()};
};

}  // namespace

TEST_CASE("records of one key never overtake each other at concurrency 8") {
  auto settings = fixed(16, 8, core::Ordering::key);
  core::OffsetWatermark w;
  KeyOrderCheck check;
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(), [&](WorkBatch& b) { return check(b); },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  std::map<int, int> next;
  const int total = 20000;
  push_records(stage, w, 0, total, 500, 37, next);
  stage.drain();
  stage.stop();
  CHECK(check.processed.load() == total);
  CHECK(check.violations == 0);
  CHECK(check.max_in_flight.load() > 1);  // the test really ran batches side by side
  CHECK(check.max_in_flight.load() <= 8);
  CHECK(w.outstanding() == 0);
}

// At limit 1 records go to the whole lane, unrouted; above 1 to the keyed lanes. The switches
// happen while records of the other routing are queued and in flight: the barrier keeps them
// from being overtaken by the same keys' later records.
TEST_CASE("switching the limit 1 -> 4 -> 1 while keyed records flow keeps each key in order") {
  auto settings = fixed(16, 1, core::Ordering::key);
  settings.adaptive_concurrency = true;  // four workers; the limit is the test's
  settings.max_concurrency = 4;
  // A short queue: each phase's pushes wait for processing, so the limit changes mid-flow.
  settings.backpressure_threshold = 400;
  auto limiter = std::make_unique<SetLimiter>();
  SetLimiter& limit = *limiter;
  core::OffsetWatermark w;
  KeyOrderCheck check;
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(), [&](WorkBatch& b) { return check(b); },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); }, {}, {},
      std::move(limiter));
  stage.start();
  std::map<int, int> next;
  const int phases = 12, per_phase = 1000;
  for (int p = 0; p < phases; ++p) {
    limit.value = p % 2 == 0 ? 1 : 4;
    push_records(stage, w, p * per_phase, per_phase, 200, 7, next);
  }
  stage.drain();
  stage.stop();
  CHECK(check.processed.load() == phases * per_phase);
  CHECK(check.violations == 0);
  CHECK(check.max_in_flight.load() > 1);  // keyed lanes ran side by side
  CHECK(stage.route_switches() >= 4);     // routing followed the limit both ways
  CHECK(w.outstanding() == 0);
}

// A limit above 1 with a source that sets the pace: one batch at a time keeps up, so records are
// not routed by key (no hash, no copy): every batch views its chunk in place.
TEST_CASE("at a limit above 1, a stage whose lane is mostly idle keeps records in the whole lane") {
  auto settings = fixed(100, 1, core::Ordering::key);
  settings.adaptive_concurrency = true;
  settings.max_concurrency = 4;
  auto limiter = std::make_unique<SetLimiter>();
  limiter->value = 4;
  core::OffsetWatermark w;
  std::atomic<uint64_t> processed{0}, gathered{0};
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        processed += b.records.size();
        if (!b.gathered.empty()) ++gathered;
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); }, {}, {},
      std::move(limiter));
  stage.start();
  std::map<int, int> next;
  for (int c = 0; c < 10; ++c) {
    stage.push(make_chunk(w, c * 100, 100, 7, next));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stage.drain();
  stage.stop();
  CHECK(processed.load() == 1000);
  CHECK(stage.concurrency_limit() == 4);
  CHECK(stage.route_switches() == 0);
  CHECK(gathered.load() == 0);
  CHECK(w.outstanding() == 0);
}

TEST_CASE("with every adaptive feature off the stage runs fixed batches in order, like a loop") {
  auto settings = fixed(100, 1, core::Ordering::none);
  settings.backpressure = false;
  settings.memory_control = false;
  core::OffsetWatermark w;
  std::vector<size_t> sizes;
  std::vector<int64_t> offsets;
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        sizes.push_back(b.records.size());
        for (const auto& r : b.records) offsets.push_back(r.offset);
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  std::map<int, int> next;
  for (int from = 0; from < 1050; from += 150) stage.push(make_chunk(w, from, 150, 3, next));
  stage.drain();
  stage.stop();
  REQUIRE(offsets.size() == 1050);
  for (size_t i = 0; i < offsets.size(); ++i) CHECK(offsets[i] == static_cast<int64_t>(i));
  // Every batch but a drained remainder is exactly the fixed size.
  for (size_t i = 0; i + 1 < sizes.size(); ++i) CHECK(sizes[i] <= 100);
  size_t full = std::count(sizes.begin(), sizes.end(), size_t{100});
  CHECK(full >= 10);
  CHECK(stage.stats().concurrency.current == 1);
  CHECK(stage.stats().batch_size.current == 100);
}

TEST_CASE("one lane: a batch inside one chunk views it in place, and acks go by runs") {
  auto settings = fixed(100, 1, core::Ordering::none);
  settings.backpressure = false;
  settings.memory_control = false;
  core::OffsetWatermark w;
  std::vector<std::shared_ptr<SourceChunk>> chunks;
  int viewed = 0, gathered = 0;
  std::vector<int64_t> offsets;
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        const bool in_chunk = std::any_of(chunks.begin(), chunks.end(), [&](const auto& c) {
          const auto all = c->records.records();
          return b.records.data() >= all.data() && b.records.data() < all.data() + all.size();
        });
        (in_chunk ? viewed : gathered) += 1;
        CHECK(in_chunk == b.gathered.empty());
        for (const auto& r : b.records) offsets.push_back(r.offset);
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) {
        CHECK(b.tickets.size() <= 2);  // a share of one run, or of two across a chunk boundary
        w.done_all(b.tickets);
      });
  std::map<int, int> next;
  // Chunks of 150 in batches of 100: some batches lie inside a chunk, some straddle two.
  for (int from = 0; from < 600; from += 150) chunks.push_back(make_chunk(w, from, 150, 3, next));
  stage.start();
  for (const auto& c : chunks) stage.push(c);
  stage.drain();
  stage.stop();
  REQUIRE(offsets.size() == 600);
  for (size_t i = 0; i < offsets.size(); ++i) CHECK(offsets[i] == static_cast<int64_t>(i));
  CHECK(viewed > 0);
  CHECK(gathered > 0);
  CHECK(w.outstanding() == 0);
  CHECK(w.take_ready().at(0).offset == 599);
}

// Pushes chunks of up to 100 records (5 keys) while the stage grants room within 200 ms; returns
// how many were pushed (at most 2,000).
static int fill_until_no_room(AdaptiveStage& stage, core::OffsetWatermark& w) {
  std::map<int, int> next;
  int pushed = 0;
  while (stage.wait_for_room(std::chrono::milliseconds(200))) {
    const size_t n = std::min<size_t>(stage.room(), 100);
    if (n == 0) continue;
    stage.push(make_chunk(w, pushed, static_cast<int>(n), 5, next));
    pushed += static_cast<int>(n);
    REQUIRE(pushed <= 2000);
  }
  return pushed;
}

TEST_CASE("intake is bounded: the source sees no room until the stage catches up") {
  auto settings = fixed(50, 1, core::Ordering::none);
  settings.backpressure_threshold = 1000;
  core::OffsetWatermark w;
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<uint64_t> processed{0};
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        std::unique_lock lock(gate_mu);
        gate_cv.wait(lock, [&] { return open; });
        processed += b.records.size();
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  // Push as long as the stage grants room within a while.
  const int pushed = fill_until_no_room(stage, w);
  // Full: the queue holds the threshold, plus the one batch the blocked worker holds.
  CHECK(pushed >= 1000);
  CHECK(pushed <= 1000 + 50);
  CHECK(stage.room() == 0);
  CHECK(stage.stats().backpressure.active);
  {
    std::lock_guard lock(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  CHECK(stage.wait_for_room(std::chrono::seconds(5)));
  stage.drain();
  stage.stop();
  CHECK(processed.load() == static_cast<uint64_t>(pushed));
  CHECK(stage.stats().backpressure.paused_ms_total > 0);
}

TEST_CASE("a paused source resumes only once a quarter of the threshold is free") {
  auto settings = fixed(50, 1, core::Ordering::none);
  settings.backpressure_threshold = 1000;
  core::OffsetWatermark w;
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  uint64_t allowed = 0;  // batches the worker may finish
  std::atomic<uint64_t> finished{0};
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        std::unique_lock lock(gate_mu);
        gate_cv.wait(lock, [&] { return finished.load() < allowed; });
        ++finished;
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  // Lets the worker finish `batches` more; waits for them unless told not to (the last release
  // allows more batches than there are).
  auto release = [&](uint64_t batches, bool wait = true) {
    {
      std::lock_guard lock(gate_mu);
      allowed += batches;
    }
    gate_cv.notify_all();
    while (wait && finished.load() < allowed)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  const int pushed = fill_until_no_room(stage, w);
  REQUIRE(stage.stats().backpressure.active);
  // Three batches done: 150 records left the queue, under the 250 a paused source waits for.
  release(3);
  CHECK_FALSE(stage.wait_for_room(std::chrono::milliseconds(100)));
  CHECK(stage.room() == 0);
  // Enough batches for the queue to fall a quarter under the threshold: room of 250 or more.
  release(3);
  CHECK(stage.wait_for_room(std::chrono::seconds(5)));
  CHECK(stage.room() >= 250);
  CHECK_FALSE(stage.stats().backpressure.active);
  release(1000, false);
  stage.drain();
  stage.stop();
  CHECK(finished.load() * 50 == static_cast<uint64_t>(pushed));
}

TEST_CASE("a drain dispatches partial batches without waiting for the linger time") {
  auto settings = fixed(1000, 1, core::Ordering::key);
  settings.linger_ms = 60000;
  core::OffsetWatermark w;
  std::atomic<uint64_t> processed{0};
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        processed += b.records.size();
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  std::map<int, int> next;
  stage.push(make_chunk(w, 0, 10, 3, next));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(processed.load() == 0);  // lingering: 10 < 1000
  auto t0 = std::chrono::steady_clock::now();
  stage.drain();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(processed.load() == 10);
  stage.stop();
}

TEST_CASE("ordering by a JSON field keeps one account's records in order across keys") {
  auto settings = fixed(8, 8, core::Ordering::field);
  settings.ordering_field = "after.account|before.account";
  core::OffsetWatermark w;
  std::mutex mu;
  std::map<std::string, int> last;
  int violations = 0;
  AdaptiveStage stage(
      "p", "s", settings, core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        std::this_thread::sleep_for(std::chrono::microseconds(300));
        std::lock_guard lock(mu);
        for (const auto& r : b.records) {
          std::string v = text(r.value);
          // {"after":{"account":"aN"},"n":M} or {"before":{"account":"aN"},"n":M}
          auto a = v.find("\"account\":\"") + 11;
          std::string account = v.substr(a, v.find('"', a) - a);
          int n = std::stoi(v.substr(v.find("\"n\":") + 4));
          auto [it, fresh] = last.try_emplace(account, n);
          if (!fresh) {
            if (n <= it->second) ++violations;
            it->second = n;
          }
        }
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage.start();
  for (int c = 0; c < 20; ++c) {
    auto chunk = std::make_shared<SourceChunk>();
    for (int i = 0; i < 100; ++i) {
      int n = c * 100 + i;
      // Record keys are all different; only the value's account ties records together.
      std::string key = "row-" + std::to_string(n);
      std::string side = n % 3 == 0 ? "before" : "after";
      std::string value = "{\"" + side + "\":{\"account\":\"a" + std::to_string(n % 5) +
                          "\"},\"n\":" + std::to_string(n) + "}";
      sluice_record r{};
      r.struct_size = sizeof r;
      r.key = {reinterpret_cast<const uint8_t*>(key.data()), key.size()};
      r.value = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
      r.offset = n;
      chunk->records.append_copy(r);
    }
    w.take_all(chunk->records.records(), chunk->runs);
    chunk->intake_time = std::chrono::steady_clock::now();
    stage.push(chunk);
  }
  stage.drain();
  stage.stop();
  CHECK(violations == 0);
  CHECK(last.size() == 5);
}
