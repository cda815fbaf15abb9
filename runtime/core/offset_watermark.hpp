// Per-partition ack tracking: commits only the contiguous prefix of records that are done.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::core {

// Identifies one run inside the tracker: its stream (topic+partition) and the order in which it
// was taken. A run is records of one stream next to each other in one poll; the tracker counts
// runs, not records, so its cost per poll is the number of streams in it, not of records.
// Offsets need not be contiguous (compacted topics, byte offsets).
struct Ticket {
  uint32_t stream = 0;
  uint64_t seq = 0;
  friend bool operator==(const Ticket&, const Ticket&) = default;
};

// One run of a poll: its ticket and where its records are in the poll, [first, first + count).
struct Run {
  Ticket ticket;
  uint32_t first = 0;
  uint32_t count = 0;
};

// The part of a run one batch holds: `count` of its records. A run split over several batches
// is done when the last of its records is.
struct RunShare {
  Ticket ticket;
  uint32_t count = 0;
};

struct StreamPosition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;  // highest offset with it and all before it done
};

// Thread-safe: take() from the source thread, done() from workers, ready() from the source.
class OffsetWatermark {
 public:
  // One record taken alone: a run of one.
  Ticket take(const std::string& topic, int32_t partition, int64_t offset) {
    std::lock_guard lock(mu_);
    return open_run(stream_id(topic, partition), offset, 1);
  }

  // Takes every record of a poll, one run per stretch of records of one stream; the runs are
  // appended to `out` in the poll's order. Records are read, never kept.
  template <typename Records>
  void take_all(const Records& records, std::vector<Run>& out) {
    std::lock_guard lock(mu_);
    const size_t n = std::size(records);
    size_t first = 0;
    while (first < n) {
      const auto& head = records[first];
      size_t end = first + 1;
      while (end < n && same_stream(records[end], head)) ++end;
      const auto count = static_cast<uint32_t>(end - first);
      const uint32_t id = stream_id(std::string(view(head.topic)), head.partition);
      out.push_back(
          {open_run(id, records[end - 1].offset, count), static_cast<uint32_t>(first), count});
      first = end;
    }
  }

  // Marks `count` records of each share's run done.
  void done_all(std::span<const RunShare> shares) {
    std::lock_guard lock(mu_);
    for (const RunShare& s : shares) mark_done(s.ticket, s.count);
  }

  // Marks `count` records of a run done (a run of one: the record); when none of it is left,
  // advances its stream's watermark over the contiguous done prefix.
  void done(Ticket t, uint32_t count = 1) {
    std::lock_guard lock(mu_);
    mark_done(t, count);
  }

  // Positions that moved since the last call (each stream's watermark).
  std::vector<StreamPosition> take_ready() {
    std::lock_guard lock(mu_);
    std::vector<StreamPosition> out;
    for (auto& s : streams_) {
      if (!s.dirty) continue;
      s.dirty = false;
      out.push_back({s.topic, s.partition, *s.watermark});
    }
    return out;
  }

  // Records taken and not yet done, in total or for one stream.
  size_t outstanding() const {
    std::lock_guard lock(mu_);
    return outstanding_;
  }
  size_t outstanding(const std::string& topic, int32_t partition) const {
    std::lock_guard lock(mu_);
    auto it = ids_.find({topic, partition});
    return it == ids_.end() ? 0 : streams_[it->second].outstanding;
  }

  // Forgets a stream (a revoked partition) once it is drained.
  void forget(const std::string& topic, int32_t partition) {
    std::lock_guard lock(mu_);
    auto it = ids_.find({topic, partition});
    if (it == ids_.end()) return;
    Stream& s = streams_[it->second];
    outstanding_ -= s.outstanding;
    s.outstanding = 0;
    s.base_seq += s.pending.size();
    s.pending.clear();
    s.watermark.reset();
    s.dirty = false;
  }

  std::optional<int64_t> watermark(const std::string& topic, int32_t partition) const {
    std::lock_guard lock(mu_);
    auto it = ids_.find({topic, partition});
    return it == ids_.end() ? std::nullopt : streams_[it->second].watermark;
  }

 private:
  struct Pending {
    int64_t last_offset;  // of the run's last record
    uint32_t left;        // records of the run not yet done
  };
  struct Stream {
    std::string topic;
    int32_t partition = 0;
    uint64_t base_seq = 0;
    std::deque<Pending> pending;  // runs in intake order
    size_t outstanding = 0;       // records of `pending` not yet done
    std::optional<int64_t> watermark;
    bool dirty = false;
  };

  template <typename Bytes>
  static std::string_view view(const Bytes& b) {
    return b.ptr ? std::string_view(reinterpret_cast<const char*>(b.ptr), b.len)
                 : std::string_view();
  }

  // The topic bytes are compared only when the pointers differ (a source's records usually
  // share one topic text, and RecordBuffer keeps it shared).
  template <typename Record>
  static bool same_stream(const Record& a, const Record& b) {
    if (a.partition != b.partition || a.topic.len != b.topic.len) return false;
    return a.topic.ptr == b.topic.ptr || view(a.topic) == view(b.topic);
  }

  Ticket open_run(uint32_t id, int64_t last_offset, uint32_t count) {
    Stream& s = streams_[id];
    s.pending.push_back({last_offset, count});
    s.outstanding += count;
    outstanding_ += count;
    return {id, s.base_seq + s.pending.size() - 1};
  }

  void mark_done(Ticket t, uint32_t count) {
    Stream& s = streams_[t.stream];
    if (t.seq < s.base_seq || t.seq - s.base_seq >= s.pending.size()) return;  // forgotten stream
    Pending& run = s.pending[t.seq - s.base_seq];
    const uint32_t n = std::min(count, run.left);  // a run is never done twice
    run.left -= n;
    s.outstanding -= n;
    outstanding_ -= n;
    while (!s.pending.empty() && s.pending.front().left == 0) {
      s.watermark = s.pending.front().last_offset;
      s.pending.pop_front();
      ++s.base_seq;
      s.dirty = true;
    }
  }

  uint32_t stream_id(const std::string& topic, int32_t partition) {
    auto [it, inserted] =
        ids_.try_emplace({topic, partition}, static_cast<uint32_t>(streams_.size()));
    if (inserted) {
      streams_.push_back({});
      streams_.back().topic = topic;
      streams_.back().partition = partition;
    }
    return it->second;
  }

  mutable std::mutex mu_;
  std::map<std::pair<std::string, int32_t>, uint32_t> ids_;
  std::deque<Stream> streams_;  // deque: references stay valid as streams are added
  size_t outstanding_ = 0;
};

}  // namespace sluice::core
