// Per-partition ack tracking: commits only the contiguous prefix of records that are done.
#pragma once

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

// Identifies one source record inside the tracker: its stream (topic+partition) and the order
// in which it was taken. Offsets need not be contiguous (compacted topics, byte offsets).
struct Ticket {
  uint32_t stream = 0;
  uint64_t seq = 0;
};

struct StreamPosition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;  // highest offset with it and all before it done
};

// Thread-safe: take() from the source thread, done() from workers, ready() from the source.
class OffsetWatermark {
 public:
  Ticket take(const std::string& topic, int32_t partition, int64_t offset) {
    std::lock_guard lock(mu_);
    uint32_t id = stream_id(topic, partition);
    Stream& s = streams_[id];
    s.pending.push_back({offset, false});
    ++outstanding_;
    return {id, s.base_seq + s.pending.size() - 1};
  }

  // take() for every record of a poll, under one lock; tickets are appended to `out`.
  template <typename Records>
  void take_all(const Records& records, std::vector<Ticket>& out) {
    std::lock_guard lock(mu_);
    std::string_view last_topic;
    int32_t last_partition = -1;
    uint32_t id = 0;
    bool have = false;
    for (const auto& r : records) {
      std::string_view topic(reinterpret_cast<const char*>(r.topic.ptr), r.topic.len);
      if (!have || topic != last_topic || r.partition != last_partition) {
        id = stream_id(std::string(topic), r.partition);
        last_topic = topic;
        last_partition = r.partition;
        have = true;
      }
      Stream& s = streams_[id];
      s.pending.push_back({r.offset, false});
      out.push_back({id, s.base_seq + s.pending.size() - 1});
    }
    outstanding_ += records.size();
  }

  void done_all(std::span<const Ticket> tickets) {
    std::lock_guard lock(mu_);
    for (const Ticket& t : tickets) mark_done(t);
  }

  // Marks a record done; advances its stream's watermark over the contiguous done prefix.
  void done(Ticket t) {
    std::lock_guard lock(mu_);
    mark_done(t);
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
    return it == ids_.end() ? 0 : streams_[it->second].pending.size();
  }

  // Forgets a stream (a revoked partition) once it is drained.
  void forget(const std::string& topic, int32_t partition) {
    std::lock_guard lock(mu_);
    auto it = ids_.find({topic, partition});
    if (it == ids_.end()) return;
    Stream& s = streams_[it->second];
    for (const auto& p : s.pending)
      if (!p.second) --outstanding_;
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
  void mark_done(Ticket t) {
    Stream& s = streams_[t.stream];
    if (t.seq < s.base_seq || t.seq - s.base_seq >= s.pending.size()) return;  // forgotten stream
    auto& slot = s.pending[t.seq - s.base_seq];
    if (slot.second) return;
    slot.second = true;
    --outstanding_;
    while (!s.pending.empty() && s.pending.front().second) {
      s.watermark = s.pending.front().first;
      s.pending.pop_front();
      ++s.base_seq;
      s.dirty = true;
    }
  }

  struct Stream {
    std::string topic;
    int32_t partition = 0;
    uint64_t base_seq = 0;
    std::deque<std::pair<int64_t, bool>> pending;  // (offset, done) in intake order
    std::optional<int64_t> watermark;
    bool dirty = false;
  };

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
