// The adaptive stage's byte accounting: what it holds in intake, lanes and batches in flight,
// and the byte bound that follows from the memory limit.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "middleware/adaptive_stage.hpp"

using namespace sluice;
using namespace sluice::middleware;

namespace {

constexpr uint64_t kMb = 1 << 20;

// `count` records of `value_bytes` each, in one chunk.
std::shared_ptr<SourceChunk> big_chunk(core::OffsetWatermark& w, int count, size_t value_bytes) {
  auto chunk = std::make_shared<SourceChunk>();
  const std::string value(value_bytes, 'v');
  for (int i = 0; i < count; ++i) {
    const std::string key = "key-" + std::to_string(i);
    sluice_record r{};
    r.struct_size = sizeof r;
    r.key = {reinterpret_cast<const uint8_t*>(key.data()), key.size()};
    r.value = {reinterpret_cast<const uint8_t*>(value.data()), value.size()};
    r.offset = i;
    chunk->records.append_copy(r);
  }
  chunk->intake_time = std::chrono::steady_clock::now();
  w.take_all(chunk->records.records(), chunk->runs);
  return chunk;
}

// One batch of everything, one worker, no memory control (RSS of the test process must not
// decide the outcome): only the byte accounting holds intake back.
core::PerformanceSettings one_batch(uint64_t memory_limit_mb) {
  core::PerformanceSettings s;
  s.adaptive_batching = false;
  s.adaptive_concurrency = false;
  s.min_batch_size = 1;
  s.batch_size = 1000;
  s.concurrency = 1;
  s.ordering = core::Ordering::none;
  s.memory_control = false;
  s.memory_limit_mb = memory_limit_mb;
  return s;
}

// A processing function that holds every batch until open() is called.
class Gate {
 public:
  BatchOutcome pass(const WorkBatch& b) {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
  }
  void wait_entered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

// A started stage of one_batch(64) whose batches pass `gate`; acks go to `w`.
std::unique_ptr<AdaptiveStage> gated_stage(Gate& gate, core::OffsetWatermark& w) {
  auto stage = std::make_unique<AdaptiveStage>(
      "p", "s", one_batch(64), core::SteadyClock::instance(),
      [&gate](WorkBatch& b) { return gate.pass(b); },
      [&w](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  stage->start();
  return stage;
}

}  // namespace

TEST_CASE(
    "the stage's byte bound is a quarter of the memory limit unless max_queue_bytes is less") {
  core::OffsetWatermark w;
  auto process = [](WorkBatch&) { return BatchOutcome{}; };
  auto settings = one_batch(64);
  CHECK(
      AdaptiveStage("p", "s", settings, core::SteadyClock::instance(), process, {}).byte_bound() ==
      16 * kMb);
  settings.max_queue_bytes = 4 * kMb;
  CHECK(
      AdaptiveStage("p", "s", settings, core::SteadyClock::instance(), process, {}).byte_bound() ==
      4 * kMb);
}

TEST_CASE("intake room in bytes is the byte bound less what the stage holds") {
  core::OffsetWatermark w;
  Gate gate;
  auto owned = gated_stage(gate, w);
  AdaptiveStage& stage = *owned;
  CHECK(stage.intake_room().bytes == 16 * kMb);
  auto chunk = big_chunk(w, 4, kMb);
  const uint64_t bytes = chunk->records.bytes();
  stage.push(chunk);
  CHECK(stage.held_bytes() == bytes);
  CHECK(stage.intake_room().bytes == 16 * kMb - bytes);
  gate.open();
  stage.drain();
  CHECK(stage.held_bytes() == 0);
  CHECK(stage.intake_room().bytes == 16 * kMb);
  stage.stop();
}

TEST_CASE("a batch in flight counts against the byte bound until it is done") {
  core::OffsetWatermark w;
  Gate gate;
  auto owned = gated_stage(gate, w);
  AdaptiveStage& stage = *owned;
  // 20 MB of 1 MB records with a 64 MB limit: over the 16 MB bound, though far under the
  // record threshold and the default max_queue_bytes.
  auto chunk = big_chunk(w, 20, kMb);
  const uint64_t bytes = chunk->records.bytes();
  stage.push(chunk);
  gate.wait_entered();  // a batch of the batch byte bound's worth in flight, the rest queued
  const auto queued = stage.stats().backpressure.queue_depth;
  CHECK(queued > 0);
  CHECK(queued < 20);
  CHECK(stage.held_bytes() == bytes);
  CHECK(stage.room() == 0);
  CHECK(stage.intake_room().bytes == 0);
  CHECK_FALSE(stage.wait_for_room(std::chrono::milliseconds(20)));
  CHECK(stage.stats().backpressure.active);
  gate.open();
  CHECK(stage.wait_for_room(std::chrono::seconds(10)));
  stage.drain();
  CHECK(stage.room() > 0);
  CHECK(w.outstanding() == 0);
  stage.stop();
}

TEST_CASE("a batch takes at most half the byte bound in records; a record over it goes alone") {
  core::OffsetWatermark w;
  std::mutex mu;
  std::vector<std::pair<size_t, uint64_t>> batches;  // records, bytes
  AdaptiveStage stage(
      "p", "s", one_batch(64), core::SteadyClock::instance(),
      [&](WorkBatch& b) {
        std::lock_guard lock(mu);
        batches.emplace_back(b.records.size(), b.bytes);
        return BatchOutcome{static_cast<uint32_t>(b.records.size()), 0, 0, false};
      },
      [&w](const WorkBatch& b, const BatchOutcome&) { w.done_all(b.tickets); });
  CHECK(stage.batch_byte_bound() == 8 * kMb);
  stage.start();
  // The batch size is 1,000 records: by count all of these would be one batch, 32 MB, which a
  // transform emitting twice its input (old and new images) could not pass on under a 64 MB
  // limit (its output budget: its input plus 16 MB).
  stage.push(big_chunk(w, 20, kMb));
  stage.push(big_chunk(w, 1, 12 * kMb));
  stage.push(big_chunk(w, 12, kMb));
  stage.drain();
  stage.stop();
  size_t records = 0;
  for (const auto& [count, bytes] : batches) {
    CAPTURE(count);
    CAPTURE(bytes);
    records += count;
    CHECK((bytes <= 8 * kMb || count == 1));
  }
  CHECK(records == 33);
  CHECK(batches.size() >= 5);  // 32 MB of 1 MB records at most 7 a batch, and the 12 MB alone
  CHECK(w.outstanding() == 0);
}

TEST_CASE("RSS over the limit that the stage's records do not explain shows in its stats") {
  core::ManualClock clock;
  std::atomic<uint64_t> rss{60 * kMb};  // a leaking plugin: 60 MB of a 64 MB limit, no records
  auto settings = one_batch(64);
  settings.memory_control = true;
  AdaptiveStage stage(
      "p", "s", settings, clock, [](WorkBatch&) { return BatchOutcome{}; }, {}, {},
      [&] { return rss.load(); });
  stage.start();
  // The dispatcher samples on its own thread; let the manual clock run past the grace time.
  auto sampled_until = [&](auto done) {
    for (int i = 0; i < 500 && !done(); ++i) {
      clock.advance(std::chrono::seconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  };
  REQUIRE(sampled_until([&] { return !stage.stats().memory.unaccounted.empty(); }));
  const std::string why = stage.stats().memory.unaccounted;
  CHECK(why.find("RSS 60.0 MB of a 64.0 MB limit") != std::string::npos);
  CHECK(why.find("holds only 0.0 MB of records") != std::string::npos);
  // With nothing held, pausing could never bring RSS down (it hung `sluice run` with 1 MB
  // records on a 55 MB heap that did not shrink): intake goes on in steps of half the headroom
  // left under the limit, at least one record.
  CHECK(stage.room() > 0);
  CHECK(stage.intake_room().bytes == 2 * kMb);
  rss = 70 * kMb;  // over the limit: one record at a time
  CHECK(sampled_until([&] { return stage.intake_room().bytes == 1; }));

  rss = 10 * kMb;  // the plugin let go
  CHECK(sampled_until([&] { return stage.stats().memory.unaccounted.empty(); }));
  CHECK(stage.room() > 0);
  stage.stop();
}

TEST_CASE("the stage publishes each memory sample's pressure for the plugins to read") {
  core::ManualClock clock;
  std::atomic<uint64_t> rss{16 * kMb};
  AdaptiveStage stage(
      "p", "s", one_batch(64), clock, [](WorkBatch&) { return BatchOutcome{}; }, {}, {},
      [&] { return rss.load(); });
  auto memory = std::make_shared<core::HostMemory>(uint64_t{64} * kMb);
  stage.publish_memory(memory);
  stage.start();
  auto published = [&](double want) {
    for (int i = 0; i < 500 && memory->pressure.load() != want; ++i) {
      clock.advance(std::chrono::seconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return memory->pressure.load();
  };
  CHECK(published(0.25) == doctest::Approx(0.25));
  rss = 48 * kMb;
  CHECK(published(0.75) == doctest::Approx(0.75));
  stage.stop();
}
