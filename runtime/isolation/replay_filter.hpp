// An isolated source's records after its child was restarted: the new child resumes from the
// last committed position (or from the start, for a source that keeps none), so it polls again
// records the dead child had already handed over. Those are dropped, so a restart delivers
// nothing twice, and the records after them go on, so it loses nothing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "sluice/abi.h"

namespace sluice::isolation {

class ReplayFilter {
 public:
  // A record handed to the host: the highest offset of its stream (topic, partition) so far.
  void delivered(const sluice_record& r);
  // The child was restarted: records up to each stream's highest delivered offset are replays.
  void child_restarted();
  // True for a record the host already has (drop it). A stream leaves the filter at its first
  // record past the mark, so offsets that later go back (a seek) are not filtered.
  bool is_replay(const sluice_record& r);
  bool replaying() const { return !marks_.empty(); }

 private:
  using Stream = std::pair<std::string, int32_t>;
  struct High {
    int64_t offset = 0;
    bool ordered = true;  // offsets only ever grew: a replay can be told by its offset
  };
  static Stream stream_of(const sluice_record& r);

  std::map<Stream, High> highs_;
  std::map<Stream, int64_t> marks_;
  // The last stream looked up in delivered(): a poll's records are mostly of one stream.
  Stream last_;
  High* last_high_ = nullptr;
};

}  // namespace sluice::isolation
