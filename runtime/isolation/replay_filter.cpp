// Dropping the records a restarted source child polls again (replay_filter.hpp).
#include "isolation/replay_filter.hpp"

namespace sluice::isolation {

ReplayFilter::Stream ReplayFilter::stream_of(const sluice_record& r) {
  const auto* topic = reinterpret_cast<const char*>(r.topic.ptr);
  return {topic ? std::string(topic, r.topic.len) : std::string(), r.partition};
}

void ReplayFilter::delivered(const sluice_record& r) {
  const std::string_view topic(reinterpret_cast<const char*>(r.topic.ptr),
                               r.topic.ptr ? r.topic.len : 0);
  if (last_high_ == nullptr || last_.second != r.partition || last_.first != topic) {
    last_ = stream_of(r);
    auto [it, fresh] = highs_.try_emplace(last_, High{r.offset, true});
    last_high_ = &it->second;
    if (fresh) return;
  }
  High& h = *last_high_;
  if (r.offset <= h.offset) h.ordered = false;  // not a position we can tell replays by
  h.offset = std::max(h.offset, r.offset);
}

void ReplayFilter::child_restarted() {
  marks_.clear();
  for (const auto& [stream, high] : highs_)
    if (high.ordered) marks_[stream] = high.offset;
}

bool ReplayFilter::is_replay(const sluice_record& r) {
  if (marks_.empty()) return false;
  auto it = marks_.find(stream_of(r));
  if (it == marks_.end()) return false;
  if (r.offset <= it->second) return true;
  marks_.erase(it);
  return false;
}

}  // namespace sluice::isolation
