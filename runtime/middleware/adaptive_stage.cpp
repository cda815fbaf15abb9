// The adaptive stage's threads: one dispatcher forms batches from lanes, workers process them.
#include "middleware/adaptive_stage.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <string_view>

#include "middleware/field_key.hpp"

namespace sluice::middleware {

namespace {
constexpr size_t kUnboundedRoom = 1 << 16;  // per poll when backpressure is off
constexpr auto kMemorySampleEvery = std::chrono::milliseconds(50);
// The stage's queues may hold at most this share of the memory limit: the rest is the process's
// own baseline, batches' copies in transforms and sinks, and the allocator's slack.
constexpr uint64_t kQueueShareDenominator = 4;  // a quarter
constexpr size_t kResumeGapDivisor = 4;         // a paused source resumes a quarter below
// Records go to the keyed lanes once batches keep more than half a lane busy on average (as TCP
// counts a window used if half of it was, RFC 7661), and back to the whole lane below a quarter;
// the gap keeps a load near one mark from switching at every sample.
constexpr double kSplitAboveLoad = 0.5;
constexpr double kJoinBelowLoad = 0.25;

uint64_t byte_bound_of(const core::PerformanceSettings& settings, const MemoryMonitor& memory) {
  return std::max<uint64_t>(
      1, std::min(settings.max_queue_bytes, memory.limit_bytes() / kQueueShareDenominator));
}

Controllers with_limiter(Controllers controllers, std::unique_ptr<ConcurrencyLimiter> limiter) {
  if (limiter) controllers.concurrency = std::move(limiter);
  return controllers;
}

double mb(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

std::string_view view(sluice_bytes b) {
  return b.ptr ? std::string_view(reinterpret_cast<const char*>(b.ptr), b.len) : std::string_view();
}
}  // namespace

void WorkBatch::append(std::span<const sluice_record> more) {
  if (records.empty() && gathered.empty()) {
    records = more;  // a view: the chunk it is in lives as long as the batch
    return;
  }
  gather(more);
}

void WorkBatch::gather(std::span<const sluice_record> more) {
  if (gathered.empty()) gathered.assign(records.begin(), records.end());
  gathered.insert(gathered.end(), more.begin(), more.end());
  records = gathered;
}

void WorkBatch::hold(const core::Ticket& run, uint32_t count) {
  if (!tickets.empty() && tickets.back().ticket == run)
    tickets.back().count += count;
  else
    tickets.push_back({run, count});
}

AdaptiveStage::AdaptiveStage(std::string pipeline, std::string stage,
                             const core::PerformanceSettings& settings, const core::Clock& clock,
                             Process process, Done done, OnPressure on_pressure,
                             MemoryMonitor::RssReader rss_reader,
                             std::unique_ptr<ConcurrencyLimiter> limiter)
    : pipeline_(std::move(pipeline)),
      stage_(std::move(stage)),
      settings_(settings),
      clock_(clock),
      process_(std::move(process)),
      done_(std::move(done)),
      on_pressure_(std::move(on_pressure)),
      controllers_(with_limiter(make_controllers(settings, clock), std::move(limiter))),
      batch_size_(*controllers_.batch),
      concurrency_(*controllers_.concurrency),
      memory_(settings, clock, std::move(rss_reader), MemoryMonitor::kCgroupMemoryMax),
      profiler_(settings, clock),
      byte_bound_(byte_bound_of(settings, memory_)),
      batch_byte_bound_(std::max<uint64_t>(1, byte_bound_ / 2)) {
  // Ordering `none` needs no keyed lanes: the whole lane, shared and never held. So does a limit
  // that can never pass 1.
  const uint32_t keyed_lanes = std::max(settings_.max_concurrency, settings_.concurrency);
  lanes_.resize(settings_.ordering == core::Ordering::none || keyed_lanes <= 1 ? 1
                                                                               : 1 + keyed_lanes);
  limit_ = concurrency_.limit();
  // "a.b|c" -> {{"a","b"},{"c"}}
  std::string_view spec = settings_.ordering_field;
  while (!spec.empty()) {
    auto bar = spec.find('|');
    std::string_view one = spec.substr(0, bar);
    std::vector<std::string> parts;
    while (!one.empty()) {
      auto dot = one.find('.');
      parts.emplace_back(one.substr(0, dot));
      one = dot == std::string_view::npos ? std::string_view() : one.substr(dot + 1);
    }
    if (!parts.empty()) field_paths_.push_back(std::move(parts));
    spec = bar == std::string_view::npos ? std::string_view() : spec.substr(bar + 1);
  }
}

AdaptiveStage::~AdaptiveStage() { stop(); }

void AdaptiveStage::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  last_sample_ = clock_.now();
  uint32_t workers = std::max<uint32_t>(
      1, settings_.adaptive_concurrency ? std::max(settings_.max_concurrency, settings_.concurrency)
                                        : settings_.concurrency);
  for (uint32_t i = 0; i < workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  dispatcher_ = std::thread([this] { dispatcher_loop(); });
}

IntakeRoom AdaptiveStage::intake_room() const {
  if (!settings_.backpressure) return {kUnboundedRoom, UINT64_MAX};
  std::lock_guard lock(mu_);
  const uint64_t held = held_bytes();
  if (stopping_ || failed_ || !has_room(held) || (paused_ && !past_resume_mark())) return {};
  IntakeRoom room{settings_.backpressure_threshold - queued_records_, byte_bound_ - held};
  if (settings_.memory_control && memory_.over_threshold()) {
    // Nothing held (has_room): admit half the headroom left under the limit, at least one
    // record (a source may go over max_bytes by one), so RSS creeps up in small steps.
    const uint64_t rss = memory_.rss_bytes(), limit = memory_.limit_bytes();
    room.bytes = std::min(room.bytes, std::max<uint64_t>(rss < limit ? (limit - rss) / 2 : 0, 1));
  }
  return room;
}

// Under mu_. Records and bytes are both under their bounds and memory pressure allows intake.
// Over the pressure threshold intake waits for what the stage holds to drain; with nothing held,
// waiting cannot bring RSS down (a heap that does not shrink, a plugin's own memory), so intake
// goes on in small steps (intake_room) instead of pausing for ever.
bool AdaptiveStage::has_room(uint64_t held) const {
  if (queued_records_ >= settings_.backpressure_threshold || held >= byte_bound_) return false;
  if (settings_.memory_control && memory_.over_threshold()) return held == 0;
  return true;
}

// Under mu_. A paused source goes on only once a quarter of the threshold is free again: resumed
// at the first free record, it would poll a few records per wake-up (one chunk, one ticket and
// one context switch each), and batches would span chunks and have to gather copies.
bool AdaptiveStage::past_resume_mark() const {
  const size_t gap = std::max<size_t>(1, settings_.backpressure_threshold / kResumeGapDivisor);
  return queued_records_ + gap <= settings_.backpressure_threshold;
}

bool AdaptiveStage::backpressure_active() const {
  std::lock_guard lock(mu_);
  return paused_;
}

bool AdaptiveStage::wait_for_room(core::Duration timeout) {
  auto may_go_on = [this] {
    if (!settings_.backpressure) return true;
    if (stopping_ || failed_) return true;  // let the caller see the stop
    return has_room(held_bytes()) && (!paused_ || past_resume_mark());
  };
  std::unique_lock lock(mu_);
  bool ok = may_go_on();
  if (!ok) {
    if (!paused_) {
      paused_ = true;
      pause_started_ = clock_.now();
    }
    ok = idle_cv_.wait_for(lock, timeout, may_go_on);
  }
  if (ok && paused_) {
    paused_ = false;
    paused_ms_total_ += core::to_ms(clock_.now() - pause_started_);
  }
  return ok;
}

void AdaptiveStage::push(std::shared_ptr<SourceChunk> chunk) {
  if (chunk->records.empty()) return;
  const size_t records = chunk->records.size();
  const uint64_t bytes = chunk->records.bytes();
  std::shared_ptr<const SourceChunk> held = hold(std::move(chunk));
  bool idle_worker = true;
  bool handed = false;
  {
    std::lock_guard lock(mu_);
    queued_records_ += records;
    queued_bytes_ += bytes;
    records_in_ += records;
    if (route_whole()) {
      // Queuing a chunk in the whole lane is a few pieces, cheap enough under the lock, and it
      // lets a worker that finishes a batch take the next one itself (finish). A batch ready now
      // goes straight to an idle worker: one wake-up, not the dispatcher's and then a worker's.
      distribute_whole(held);
      WorkBatch batch;
      if (work_.empty() && take_next(clock_.now(), batch, true)) {
        work_.push_back(std::move(batch));
        handed = true;
      }
      idle_worker = in_flight_ < limit_;
      wake_ = wake_ || idle_worker;
    } else {
      keyed_pending_ += records;
      intake_.push_back(std::move(held));
    }
  }
  if (handed) worker_cv_.notify_one();
  // With every worker busy, the first to finish takes this chunk's records: no wake-up needed.
  if (idle_worker) dispatcher_cv_.notify_one();
}

// A chunk's memory lives until the last batch that views it is done, which may be long after
// most of its records were: it counts in full until then. The returned pointer shares the
// chunk; when its last copy goes, the chunk is freed and its bytes are given back. That may
// happen under mu_ (stop), so the release touches atomics only.
std::shared_ptr<const SourceChunk> AdaptiveStage::hold(std::shared_ptr<SourceChunk> chunk) {
  const uint64_t bytes = chunk->records.bytes();
  held_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  memory_.add_inflight(static_cast<int64_t>(bytes));
  const SourceChunk* raw = chunk.get();
  return {raw, [this, owner = std::move(chunk), bytes](const SourceChunk*) mutable {
            owner.reset();
            held_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
            memory_.add_inflight(-static_cast<int64_t>(bytes));
          }};
}

// The lane key of ordering `field`: the first of the paths present and non-null in the value.
std::optional<std::string> AdaptiveStage::field_key(const sluice_record& r) const {
  if (r.value.ptr == nullptr) return std::nullopt;
  return json_field_key(view(r.value), field_paths_);
}

// The keyed lane of a record. Records without a key (ordering key, or field with no field) share
// the first keyed lane: no hash needed.
uint32_t AdaptiveStage::lane_of(const sluice_record& r) const {
  constexpr uint32_t kFirstKeyed = kWholeLane + 1;
  size_t h;
  if (settings_.ordering == core::Ordering::field) {
    auto key = field_key(r);
    if (!key && r.key.ptr == nullptr) return kFirstKeyed;
    h = key ? std::hash<std::string_view>{}(*key) : std::hash<std::string_view>{}(view(r.key));
  } else if (settings_.ordering == core::Ordering::partition) {
    h = std::hash<std::string_view>{}(view(r.topic)) * 31 + static_cast<size_t>(r.partition);
  } else {
    if (r.key.ptr == nullptr) return kFirstKeyed;
    h = std::hash<std::string_view>{}(view(r.key));
  }
  return kFirstKeyed + static_cast<uint32_t>(h % (lanes_.size() - 1));
}

// Under mu_. Whether a chunk pushed now goes to the whole lane; switches routing when the limit
// says so and the lanes it switches to are clear (the barrier of lanes_).
bool AdaptiveStage::route_whole() {
  if (lanes_.size() == 1) return true;
  const bool split = want_split();
  if (split != split_ && (split ? keyed_clear() : whole_clear())) {
    split_ = split;
    ++route_switches_;
  }
  return !split_;
}

// Under mu_. Whether records should go to the keyed lanes: the limit lets batches run side by
// side and the last sample's batches kept a lane busy enough that one at a time may not keep up.
bool AdaptiveStage::want_split() const {
  if (limit_ <= 1) return false;
  return in_flight_load_ >= (split_ ? kJoinBelowLoad : kSplitAboveLoad);
}

// Under mu_. Adds the time since the last change of in_flight_ to the tally of the load.
void AdaptiveStage::count_in_flight(core::TimePoint now) {
  if (in_flight_since_ != core::TimePoint{})
    in_flight_time_ += (now - in_flight_since_) * in_flight_;
  in_flight_since_ = now;
}

// Under mu_. Nothing of the whole lane is queued or in flight.
bool AdaptiveStage::whole_clear() const {
  const Lane& whole = lanes_[kWholeLane];
  return whole.queued == 0 && !whole.busy;
}

// Under mu_ (push): the chunk's runs are queued as they are; its records stay where they are.
void AdaptiveStage::distribute_whole(const std::shared_ptr<const SourceChunk>& chunk) {
  Lane& lane = lanes_[kWholeLane];
  for (const core::Run& run : chunk->runs) {
    lane.pieces.push_back({chunk, run.ticket, run.first, run.count});
    lane.queued += run.count;
  }
}

// Each record is routed by its lane key and copied into its lane. This runs on the dispatcher
// thread only, outside the lock: keyed lanes' pieces and records belong to it.
void AdaptiveStage::distribute_keyed(const std::shared_ptr<const SourceChunk>& chunk) {
  const auto records = chunk->records.records();
  for (const core::Run& run : chunk->runs) {
    for (uint32_t i = run.first; i < run.first + run.count; ++i) {
      Lane& lane = lanes_[lane_of(records[i])];
      lane.records.push_back(records[i]);
      ++lane.queued;
      if (!lane.pieces.empty() && lane.pieces.back().ticket == run.ticket)
        ++lane.pieces.back().count;
      else
        lane.pieces.push_back({chunk, run.ticket, i, 1});
    }
  }
}

// The records of the next `count` of a piece: viewed in their chunk (the whole lane), or copied
// out of a keyed lane's vector, which changes under later routing.
void AdaptiveStage::take_records(Lane& lane, const Piece& piece, uint32_t count, WorkBatch& out) {
  if (&lane == &lanes_[kWholeLane]) {
    const auto records = piece.chunk->records.records().subspan(piece.first, count);
    for (const auto& r : records) out.bytes += core::record_bytes(r);
    out.append(records);
    return;
  }
  const auto records = std::span<const sluice_record>(lane.records).subspan(lane.head, count);
  for (const auto& r : records) out.bytes += core::record_bytes(r);
  out.gather(records);
  lane.head += count;
}

// Under mu_. How many of the next `count` records of `lane` fit in `bytes`; at least one if
// `at_least_one` (a record over the batch byte bound is a batch of its own).
size_t AdaptiveStage::fitting(const Lane& lane, size_t count, uint64_t bytes,
                              bool at_least_one) const {
  size_t n = 0;
  uint64_t sum = 0;
  const auto fits = [&](const sluice_record& r) {
    sum += core::record_bytes(r);
    return sum <= bytes || (at_least_one && n == 0);
  };
  if (&lane == &lanes_[kWholeLane]) {
    for (const Piece& piece : lane.pieces)
      for (const auto& r : piece.chunk->records.records().subspan(piece.first, piece.count)) {
        if (n == count || !fits(r)) return n;
        ++n;
      }
    return n;
  }
  for (size_t j = lane.head; j < lane.records.size() && n < count && fits(lane.records[j]); ++j)
    ++n;
  return n;
}

void AdaptiveStage::take_from(Lane& lane, size_t count, WorkBatch& out) {
  for (size_t left = count; left > 0;) {
    Piece& piece = lane.pieces.front();
    const auto take = static_cast<uint32_t>(std::min<size_t>(left, piece.count));
    take_records(lane, piece, take, out);
    out.hold(piece.ticket, take);
    if (out.chunks.empty() || out.chunks.back() != piece.chunk) out.chunks.push_back(piece.chunk);
    if (out.oldest == core::TimePoint{} || piece.chunk->intake_time < out.oldest)
      out.oldest = piece.chunk->intake_time;
    piece.first += take;
    piece.count -= take;
    left -= take;
    if (piece.count == 0) lane.pieces.pop_front();
  }
  lane.queued -= count;
  if (lane.head == lane.records.size()) {
    lane.records.clear();
    lane.head = 0;
  } else if (lane.head > 4096 && lane.head * 2 > lane.records.size()) {
    lane.records.erase(lane.records.begin(), lane.records.begin() + lane.head);
    lane.head = 0;
  }
}

// Under mu_. Whether a lane's records may go into a batch now: it has some, it is not held, and
// it is not behind the barrier (the lanes routing switched to wait until the others are clear).
bool AdaptiveStage::ready(uint32_t i) const {
  const Lane& lane = lanes_[i];
  const bool shared_lane = settings_.ordering == core::Ordering::none;
  if (lane.size() == 0 || (lane.busy && !shared_lane)) return false;
  if (lanes_.size() == 1) return true;
  const bool keyed_lane = i != kWholeLane;
  if (keyed_lane != split_) return true;  // routed before the last switch: first in line
  return keyed_lane ? whole_clear() : keyed_clear();
}

// Under mu_. The lanes ready now, oldest first. With nothing pending for keyed lanes only the
// whole lane can be ready: the keyed ones are not looked at.
std::vector<uint32_t> AdaptiveStage::ready_lanes(bool whole_only) const {
  std::vector<uint32_t> order;
  if (whole_only || keyed_clear()) {
    if (ready(kWholeLane)) order.push_back(kWholeLane);
    return order;
  }
  for (uint32_t i = 0; i < lanes_.size(); ++i)
    if (ready(i)) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return lanes_[a].oldest() < lanes_[b].oldest(); });
  return order;
}

// Under mu_. Takes records of ready lanes, oldest first, up to the batch size; false if nothing
// is ready (not enough records and the oldest has not waited its linger time).
bool AdaptiveStage::form_batch(core::TimePoint now, WorkBatch& out, bool whole_only) {
  const bool shared_lane = settings_.ordering == core::Ordering::none;
  const size_t target = std::max<uint32_t>(1, batch_size_.current());
  const std::vector<uint32_t> order = ready_lanes(whole_only);
  if (order.empty()) return false;
  size_t available = 0;
  for (uint32_t i : order) available += lanes_[i].size();
  bool lingered =
      now - lanes_[order.front()].oldest() >= std::chrono::milliseconds(settings_.linger_ms);
  // Records past the batch byte bound wait for the next batch: a batch of fewer records than
  // the target is full when its bytes are.
  if (available < target && !lingered && !flush_all_ && queued_bytes_ < batch_byte_bound_)
    return false;

  if (order.front() != kWholeLane) out.gathered.reserve(std::min(target, available));
  for (uint32_t i : order) {
    const size_t want = target - out.records.size();
    if (want == 0 || out.bytes >= batch_byte_bound_) break;
    Lane& lane = lanes_[i];
    // queued_bytes_ counts every record not yet in a batch, those taken into this one included:
    // when what is left of it fits the room, so do the lane's next records, without a walk.
    const uint64_t room = batch_byte_bound_ - out.bytes;
    const size_t count =
        queued_bytes_ - std::min<uint64_t>(queued_bytes_, out.bytes) <= room
            ? std::min(want, lane.size())
            : fitting(lane, std::min(want, lane.size()), room, out.records.empty());
    if (count == 0) break;
    take_from(lane, count, out);
    if (!shared_lane) {
      lane.busy = true;
      out.lanes.push_back(i);
    }
  }
  return true;
}

void AdaptiveStage::dispatcher_loop() {
  std::deque<std::shared_ptr<const SourceChunk>> incoming;
  core::TimePoint last_memory_sample{};
  for (;;) {
    {
      std::unique_lock lock(mu_);
      auto wait = std::chrono::milliseconds(std::max<uint32_t>(1, settings_.linger_ms));
      dispatcher_cv_.wait_for(lock, std::min<core::Duration>(wait, kMemorySampleEvery),
                              [&] { return stopping_ || !intake_.empty() || wake_; });
      wake_ = false;
      if (stopping_ && intake_.empty() && queued_records_ == 0) break;
      incoming.swap(intake_);
    }
    for (const auto& chunk : incoming) distribute_keyed(chunk);
    incoming.clear();

    const core::TimePoint now = clock_.now();
    size_t dispatched = 0;
    {
      std::lock_guard lock(mu_);
      for (WorkBatch batch; take_next(now, batch, false); batch = WorkBatch()) {
        work_.push_back(std::move(batch));
        ++dispatched;
      }
    }
    // One wake-up per batch: waking every idle worker for one batch costs more than the batch.
    for (size_t i = 0; i < dispatched; ++i) worker_cv_.notify_one();
    if (dispatched > 0) idle_cv_.notify_all();  // room for the source
    if (now - last_memory_sample >= kMemorySampleEvery) {
      last_memory_sample = now;
      sample_metrics(now);
    }
  }
}

void AdaptiveStage::sample_metrics(core::TimePoint now) {
  memory_.sample();
  if (published_memory_)
    published_memory_->pressure.store(memory_.pressure(), std::memory_order_relaxed);
  if (settings_.memory_control && on_pressure_) memory_.maybe_cleanup(on_pressure_);
  size_t queued;
  {
    std::lock_guard lock(mu_);
    count_in_flight(now);
    if (load_since_ != core::TimePoint{} && now > load_since_)
      in_flight_load_ = std::chrono::duration<double>(in_flight_time_) / (now - load_since_);
    in_flight_time_ = {};
    load_since_ = now;
    queued = queued_records_;
    limit_ = concurrency_.update({queued, in_flight_, memory_.control_pressure()});
  }
  if (now - last_sample_ >= std::chrono::milliseconds(settings_.metrics_collection_interval_ms)) {
    last_sample_ = now;
    profiler_.sample(memory_.rss_bytes(), queued);
  }
  idle_cv_.notify_all();  // pressure may have dropped: the source may go on
}

// Under mu_. Forms the next batch and counts it in flight, if a permit is free and one is ready.
bool AdaptiveStage::take_next(core::TimePoint now, WorkBatch& out, bool whole_only) {
  if (quiesced_ || failed_ || in_flight_ >= limit_ || !form_batch(now, out, whole_only))
    return false;
  queued_records_ -= out.records.size();
  queued_bytes_ -= std::min(queued_bytes_, out.bytes);
  count_in_flight(now);
  ++in_flight_;
  if (keyed(out)) {
    keyed_pending_ -= out.records.size();
    ++keyed_in_flight_;
  }
  return true;
}

void AdaptiveStage::worker_loop() {
  WorkBatch batch;
  BatchOutcome outcome;
  for (bool have = false;; have = finish(batch, outcome)) {
    if (!have) {
      std::unique_lock lock(mu_);
      worker_cv_.wait(lock, [&] { return !work_.empty() || (stopping_ && in_flight_ == 0); });
      if (work_.empty()) return;
      batch = std::move(work_.front());
      work_.pop_front();
    }
    const auto started = clock_.now();
    outcome = process_(batch);
    const auto elapsed = clock_.now() - started;
    const auto records = static_cast<uint32_t>(batch.records.size());
    if (done_) done_(batch, outcome);
    profiler_.record_batch(elapsed, records, outcome.errors);
    batch_size_.observe(records, elapsed);
    concurrency_.on_batch_done(elapsed, records);
    // Outside the lock (a chunk's release may free much), and before the batch counts as done,
    // so a drain that returns finds the memory given back.
    batch.chunks.clear();
  }
}

// Counts a processed batch as done and frees its lanes. With nothing queued for the workers,
// takes the next batch of the whole lane into `batch` itself (true): the dispatcher's wake-up and
// this worker's sleep cost more than forming the batch here.
bool AdaptiveStage::finish(WorkBatch& batch, const BatchOutcome& outcome) {
  bool took = false;
  bool permits_left = false;
  {
    std::lock_guard lock(mu_);
    const core::TimePoint now = clock_.now();
    count_in_flight(now);
    --in_flight_;
    for (uint32_t l : batch.lanes) lanes_[l].busy = false;
    if (keyed(batch)) --keyed_in_flight_;
    records_out_ += outcome.records_out;
    records_rejected_ += outcome.errors;
    records_filtered_ += outcome.filtered;
    if (outcome.failed) failed_ = true;
    // In flight counting this batch: it was one of them when it finished.
    limit_ = concurrency_.update({queued_records_, in_flight_ + 1, memory_.control_pressure()});
    batch = WorkBatch();
    took = work_.empty() && take_next(now, batch, true);
    permits_left = in_flight_ < limit_;
    wake_ = wake_ || !took || permits_left;
  }
  if (!took || permits_left) dispatcher_cv_.notify_one();
  idle_cv_.notify_all();
  return took;
}

void AdaptiveStage::drain() {
  drain([] { return false; });
}

bool AdaptiveStage::drain(const std::function<bool()>& give_up) {
  std::unique_lock lock(mu_);
  if (!started_) return true;
  flush_all_ = true;
  wake_ = true;
  dispatcher_cv_.notify_one();
  const auto idle = [&] {
    return in_flight_ == 0 && work_.empty() &&
           (failed_ || (intake_.empty() && queued_records_ == 0));
  };
  bool drained = true;
  while (!idle()) {
    if (give_up()) {
      drained = false;
      break;
    }
    idle_cv_.wait_for(lock, std::chrono::milliseconds(5));
  }
  flush_all_ = false;
  return drained;
}

void AdaptiveStage::quiesce() {
  std::unique_lock lock(mu_);
  quiesced_ = true;
  idle_cv_.wait(lock, [&] { return in_flight_ == 0 && work_.empty(); });
}

void AdaptiveStage::resume() {
  {
    std::lock_guard lock(mu_);
    quiesced_ = false;
    wake_ = true;
  }
  dispatcher_cv_.notify_one();
}

void AdaptiveStage::stop() {
  if (!started_) return;
  drain();
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // A failed stage leaves records queued; they are not acked, so the source re-reads them.
    queued_records_ = 0;
    queued_bytes_ = 0;
    keyed_pending_ = 0;
    intake_.clear();
  }
  dispatcher_cv_.notify_all();
  worker_cv_.notify_all();
  if (dispatcher_.joinable()) dispatcher_.join();
  for (auto& w : workers_)
    if (w.joinable()) w.join();
}

bool AdaptiveStage::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

uint32_t AdaptiveStage::concurrency_limit() const {
  std::lock_guard lock(mu_);
  return limit_;
}

uint64_t AdaptiveStage::route_switches() const {
  std::lock_guard lock(mu_);
  return route_switches_;
}

StageStats AdaptiveStage::stats() const {
  StageStats s;
  s.pipeline = pipeline_;
  s.stage = stage_;
  s.batch_size.current = batch_size_.current();
  s.batch_size.min = settings_.min_batch_size;
  s.batch_size.max = settings_.max_batch_size;
  s.batch_size.target_time_ms = settings_.target_batch_time_ms;
  s.concurrency.min = settings_.min_concurrency;
  s.concurrency.max = settings_.max_concurrency;
  s.concurrency.phase = std::string(concurrency_.phase());
  s.controller.name = controllers_.name;
  s.controller.limit_changes = concurrency_.trace().total();
  s.controller.decisions = concurrency_.trace().snapshot();
  s.memory.current_mb = mb(memory_.rss_bytes());
  s.memory.peak_mb = mb(memory_.peak_bytes());
  s.memory.pressure = memory_.pressure();
  s.memory.threshold = settings_.memory_pressure_threshold;
  s.memory.inflight_bytes = memory_.inflight_bytes();
  s.memory.limit_mb = mb(memory_.limit_bytes());
  s.memory.cleanups = memory_.cleanups();
  s.memory.queue_bound_bytes = byte_bound_;
  if (const auto u = memory_.unaccounted())
    s.memory.unaccounted = fmt::format(
        "RSS {:.1f} MB of a {:.1f} MB limit, but the runtime holds only {:.1f} MB of records "
        "(a plugin or the allocator keeps the rest), so intake waits on memory it cannot free",
        mb(u->rss), mb(u->limit), mb(u->accounted));
  s.performance.avg_batch_time_ms = profiler_.avg_batch_time_ms();
  s.performance.p50_batch_time_ms = profiler_.p50_batch_time_ms();
  s.performance.p99_batch_time_ms = profiler_.p99_batch_time_ms();
  s.performance.avg_throughput_per_sec = profiler_.avg_throughput();
  s.performance.avg_error_rate_percent = profiler_.avg_error_rate_percent();
  s.performance.memory_trend = std::string(profiler_.memory_trend());
  s.backpressure.threshold = settings_.backpressure_threshold;
  std::lock_guard lock(mu_);
  s.concurrency.current = limit_;
  s.concurrency.in_flight = in_flight_;
  s.performance.records_in = records_in_;
  s.performance.records_out = records_out_;
  s.performance.records_rejected = records_rejected_;
  s.performance.records_filtered = records_filtered_;
  s.performance.batches = profiler_.total_batches();
  s.backpressure.active = paused_;
  s.backpressure.queue_depth = queued_records_;
  s.backpressure.queue_bytes = queued_bytes_;
  s.memory.held_bytes = held_bytes();
  s.backpressure.paused_ms_total = paused_ms_total_;
  return s;
}

}  // namespace sluice::middleware
