// The adaptive stage: bounded intake, lanes by ordering key, batches of adaptive size run under an
// adaptive concurrency limit. It wraps any processing that takes a batch of records.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "core/host_memory.hpp"
#include "core/offset_watermark.hpp"
#include "core/record_buffer.hpp"
#include "core/settings.hpp"
#include "middleware/batch_size_controller.hpp"
#include "middleware/concurrency_controller.hpp"
#include "middleware/controller.hpp"
#include "middleware/memory_monitor.hpp"
#include "middleware/profiler.hpp"
#include "middleware/stats.hpp"

namespace sluice::middleware {

// Records of one source poll, immutable once queued; batches keep it alive while they view it.
struct SourceChunk {
  core::RecordBuffer records;
  std::vector<core::Run> runs;  // the poll's runs of one stream each, in order (OffsetWatermark)
  core::TimePoint intake_time;
};

// One batch handed to the processing function. Its records view a chunk in place when they are
// one stretch of it (the whole lane: ordering none, or a concurrency limit of 1), else `gathered`
// holds copies of them; moving a batch keeps the view valid (a vector's storage moves with it).
struct WorkBatch {
  WorkBatch() = default;
  WorkBatch(WorkBatch&&) noexcept = default;
  WorkBatch& operator=(WorkBatch&&) noexcept = default;
  WorkBatch(const WorkBatch&) = delete;  // a copy's view would point into the original
  WorkBatch& operator=(const WorkBatch&) = delete;

  std::span<const sluice_record> records;
  std::vector<sluice_record> gathered;
  std::vector<core::RunShare> tickets;  // what the batch holds of each run, to ack when done
  std::vector<std::shared_ptr<const SourceChunk>> chunks;
  size_t bytes = 0;
  std::vector<uint32_t> lanes;  // the lanes this batch holds (freed when it is done)
  core::TimePoint oldest{};     // earliest intake time of its records

  // Adds records at the end: the first stretch is viewed, later ones make the batch gather.
  void append(std::span<const sluice_record> more);
  // Adds copies of records at the end.
  void gather(std::span<const sluice_record> more);
  // Adds `count` records of `run` to what the batch acks.
  void hold(const core::Ticket& run, uint32_t count);
};

// What processing a batch came to, for the profiler and the controllers.
struct BatchOutcome {
  uint32_t records_out = 0;  // delivered by the sink
  uint32_t errors = 0;       // rejected (dead-lettered or tolerated)
  uint32_t filtered = 0;     // dropped by transforms
  bool failed = false;       // the stage must stop (fatal, or tolerance none)
  bool stopped = false;      // not acked, because the pipeline stopped while it retried: read
                             // again by the next run, and no failure
};

// How much the source may take now: records and bytes (record_bytes), both 0 or both not.
struct IntakeRoom {
  size_t records = 0;
  uint64_t bytes = 0;
};

class AdaptiveStage {
 public:
  // Runs transforms and sink over a batch; returns once every record is done one way or another.
  using Process = std::function<BatchOutcome(WorkBatch&)>;
  // Called after Process, on the same worker thread (acks, offsets).
  using Done = std::function<void(const WorkBatch&, const BatchOutcome&)>;
  // Called when memory pressure passes gc_trigger_threshold (rate-limited): plugins shrink.
  using OnPressure = std::function<void(double level)>;

  // `rss_reader`: for tests, a fake RSS reading (see MemoryMonitor); empty reads /proc.
  // `limiter`: for tests, the concurrency limiter to steer by instead of performance.controller's.
  AdaptiveStage(std::string pipeline, std::string stage, const core::PerformanceSettings& settings,
                const core::Clock& clock, Process process, Done done, OnPressure on_pressure = {},
                MemoryMonitor::RssReader rss_reader = {},
                std::unique_ptr<ConcurrencyLimiter> limiter = nullptr);
  ~AdaptiveStage();
  AdaptiveStage(const AdaptiveStage&) = delete;
  AdaptiveStage& operator=(const AdaptiveStage&) = delete;

  // Before start(): each memory sample's pressure is stored in `to` too (what the plugins read
  // through sluice_host_memory_pressure).
  void publish_memory(std::shared_ptr<core::HostMemory> to) { published_memory_ = std::move(to); }
  void start();

  // Source side. How many records and bytes intake takes now: both 0 under backpressure. The
  // bytes are what is left under byte_bound() of everything the stage holds (intake, lanes and
  // batches in flight); a poll may go over it, and then room stays 0 until the stage is back
  // under the bound.
  IntakeRoom intake_room() const;
  size_t room() const { return intake_room().records; }
  // The most bytes of records the stage holds before the source is paused: max_queue_bytes, and
  // never more than a quarter of the memory limit.
  uint64_t byte_bound() const { return byte_bound_; }
  // The most record bytes one batch takes (but always one record): half the byte bound, so an
  // eighth of the memory limit at most. A transform's output budget for a call is its input
  // plus a quarter of the limit, so a batch of this size may come out three times as large: a
  // projection's derived event carries the row's old and new images, twice its input.
  uint64_t batch_byte_bound() const { return batch_byte_bound_; }
  // Bytes of records the stage holds: queued in intake and lanes, and in batches in flight,
  // counted per source chunk until the chunk's last batch is done (when its memory is freed).
  uint64_t held_bytes() const { return held_bytes_.load(std::memory_order_relaxed); }
  // Waits up to `timeout` for room; true if there is some.
  bool wait_for_room(core::Duration timeout);
  // Queues a chunk (the source asked room() first, so this never grows without bound).
  void push(std::shared_ptr<SourceChunk> chunk);

  // Dispatches everything queued regardless of linger and waits until all of it is done.
  void drain();
  // drain(), but it ends early, false, once `give_up` (asked under the stage's lock, at least
  // every 5 ms: it must not call into the stage) says so; what was dispatched runs on.
  bool drain(const std::function<bool()>& give_up);
  // Stops dispatching new batches and waits for those in flight (hot reload); resume() undoes it.
  void quiesce();
  void resume();
  // Drains, then stops the threads. Idempotent.
  void stop();

  bool failed() const;
  bool backpressure_active() const;
  StageStats stats() const;
  MemoryMonitor& memory() { return memory_; }
  uint32_t batch_size() const { return batch_size_.current(); }
  uint32_t concurrency_limit() const;
  // How often routing switched between the whole lane and the keyed lanes (see lanes_).
  uint64_t route_switches() const;

 private:
  // A stretch of one run routed to a lane, in intake order. In the whole lane it views its
  // chunk's records [first, first + count); in a keyed lane, its records are copied into the lane.
  struct Piece {
    std::shared_ptr<const SourceChunk> chunk;
    core::Ticket ticket;
    uint32_t first = 0;
    uint32_t count = 0;
  };
  // Records routed to one lane and not yet dispatched; a lane is in at most one batch at a time,
  // so records of one key never overtake each other.
  struct Lane {
    std::deque<Piece> pieces;
    std::vector<sluice_record> records;  // several lanes: the records of `pieces`, from head
    size_t head = 0;                     // records before head were taken
    size_t queued = 0;                   // records routed here and not yet taken
    bool busy = false;
    size_t size() const { return queued; }
    core::TimePoint oldest() const { return pieces.front().chunk->intake_time; }
  };

  void dispatcher_loop();
  void worker_loop();
  bool route_whole();                                                      // under mu_
  void distribute_whole(const std::shared_ptr<const SourceChunk>& chunk);  // under mu_
  void distribute_keyed(const std::shared_ptr<const SourceChunk>& chunk);
  uint32_t lane_of(const sluice_record& r) const;
  bool keyed_clear() const { return keyed_pending_ == 0 && keyed_in_flight_ == 0; }  // under mu_
  bool whole_clear() const;                                                          // under mu_
  bool ready(uint32_t lane) const;                                                   // under mu_
  std::vector<uint32_t> ready_lanes(bool whole_only) const;                          // under mu_
  static bool keyed(const WorkBatch& batch) {
    return !batch.lanes.empty() && batch.lanes.front() != kWholeLane;
  }
  std::optional<std::string> field_key(const sluice_record& r) const;
  // Under mu_. `whole_only`: from the whole lane only (a worker's thread: keyed lanes belong to
  // the dispatcher).
  bool form_batch(core::TimePoint now, WorkBatch& out, bool whole_only);
  bool take_next(core::TimePoint now, WorkBatch& out, bool whole_only);
  bool finish(WorkBatch& batch, const BatchOutcome& outcome);
  void take_from(Lane& lane, size_t count, WorkBatch& out);
  size_t fitting(const Lane& lane, size_t count, uint64_t bytes, bool at_least_one) const;
  void take_records(Lane& lane, const Piece& piece, uint32_t count, WorkBatch& out);
  void sample_metrics(core::TimePoint now);
  void count_in_flight(core::TimePoint now);  // under mu_, before in_flight_ changes
  bool want_split() const;                    // under mu_
  bool has_room(uint64_t held) const;         // under mu_
  bool past_resume_mark() const;              // under mu_
  std::shared_ptr<const SourceChunk> hold(std::shared_ptr<SourceChunk> chunk);

  const std::string pipeline_;
  const std::string stage_;
  const core::PerformanceSettings settings_;
  const core::Clock& clock_;
  Process process_;
  Done done_;
  OnPressure on_pressure_;

  // Chosen by performance.controller; the references keep the call sites short.
  Controllers controllers_;
  BatchSizer& batch_size_;
  ConcurrencyLimiter& concurrency_;
  MemoryMonitor memory_;
  std::shared_ptr<core::HostMemory> published_memory_;
  Profiler profiler_;
  const uint64_t byte_bound_;
  const uint64_t batch_byte_bound_;

  std::atomic<uint64_t> held_bytes_{0};  // declared before every container that holds chunks

  mutable std::mutex mu_;
  std::condition_variable dispatcher_cv_;  // intake, lane freed, stop
  std::condition_variable worker_cv_;      // work queued, stop
  std::condition_variable idle_cv_;        // something finished (drain, quiesce, room)
  std::deque<std::shared_ptr<const SourceChunk>> intake_;
  std::deque<WorkBatch> work_;
  // Lane 0 is the whole lane: records stay in their chunks and batches view them in place; the
  // source thread queues chunks there itself (push) and a worker that finishes a batch forms
  // the next one (finish), so no thread hand-off and no copy. With ordering `none` it is the
  // only lane and is never held. Under key ordering it is held while one of its batches is in
  // flight, and lanes 1..max_concurrency are keyed: the dispatcher routes records there by key
  // (a hash, a copy), so batches of different keys run side by side.
  // New records go to the keyed lanes only while the concurrency limit is above 1 and batches
  // keep a lane busy (in_flight_load_); else to the whole lane: when one lane at a time keeps
  // up (a limit of 1, or a source that sets the pace), routing buys nothing. `split_` says
  // which. A switch is a barrier: it happens only when the lanes switched to are clear (nothing
  // queued or in flight), and records routed after it wait until the other lanes are clear too,
  // so no key's later records overtake its earlier ones.
  static constexpr uint32_t kWholeLane = 0;
  std::vector<Lane> lanes_;
  bool split_ = false;            // new records go to the keyed lanes
  size_t keyed_pending_ = 0;      // records for keyed lanes (in intake or lanes) not yet in a batch
  uint32_t keyed_in_flight_ = 0;  // batches of keyed lanes in flight
  uint64_t route_switches_ = 0;
  // Batches in flight on average over the last metrics sample (time-weighted), and its tally.
  double in_flight_load_ = 0;
  core::Duration in_flight_time_{};  // sum of in_flight_ x time since load_since_
  core::TimePoint in_flight_since_{}, load_since_{};
  std::vector<std::vector<std::string>> field_paths_;  // ordering `field`
  size_t queued_records_ = 0;                          // in intake and lanes' pending batches
  size_t queued_bytes_ = 0;
  uint32_t in_flight_ = 0;
  uint32_t limit_ = 1;
  bool wake_ = false;       // a lane or permit was freed, or a drain began: dispatch now
  bool flush_all_ = false;  // drain: dispatch partial batches now
  bool quiesced_ = false;
  bool stopping_ = false;
  bool failed_ = false;
  bool started_ = false;
  core::TimePoint last_sample_{};
  core::TimePoint pause_started_{};
  bool paused_ = false;
  double paused_ms_total_ = 0;
  uint64_t records_in_ = 0, records_out_ = 0, records_rejected_ = 0, records_filtered_ = 0;

  std::thread dispatcher_;
  std::vector<std::thread> workers_;
};

}  // namespace sluice::middleware
