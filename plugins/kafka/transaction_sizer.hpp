// How many records an exactly-once transaction holds, steered toward a target commit interval.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace sluice::kafka {

// Each committed transaction costs a drain of the pipeline and a commit round trip, whatever its
// size; a transaction that stays open long delays when its output becomes visible. The sizer
// keeps transactions near a target interval (first record taken to commit done) the way the
// batch-size controller keeps batches near a target time: after each commit it scales the size
// by target / measured interval, at most halving or doubling in one step, so one slow commit
// (a rebalance, a coordinator move) cannot swing it far. The first transaction ends on the
// clock and sets the first size from its rate. Sizing by records instead of ending
// on a clock makes each transaction's drain cover a known amount of work, and lets the size
// follow the throughput: a faster pipeline gets larger transactions at the same interval.
class TransactionSizer {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMinRecords = 100;
  static constexpr size_t kMaxRecords = 2'000'000;
  // A transaction ends at this many targets even short of its size (a trickle of input still
  // commits).
  static constexpr int kLongestInTargets = 2;

  explicit TransactionSizer(std::chrono::milliseconds target) : target_(target) {}

  std::chrono::milliseconds target() const { return target_; }
  // Records per transaction; 0 until the first commit (that transaction ends on the clock, at
  // the target, and its rate sets the first size: no ramp from a guess).
  size_t size() const { return size_; }
  // The size of the last transaction that ended because it was full: where the sizer settled
  // while input kept up (the size itself shrinks when input runs dry).
  size_t settled() const { return settled_; }

  // Whether a transaction with `records` records, open for `age`, should end now.
  bool due(size_t records, Clock::duration age) const {
    if (size_ == 0) return age >= target_;
    return records >= size_ || age >= target_ * kLongestInTargets;
  }

  // A transaction of `records` records committed `interval` after its first record was taken.
  void committed(size_t records, Clock::duration interval) {
    if (records == 0 || interval <= Clock::duration::zero()) return;
    if (size_ > 0 && records >= size_) settled_ = size_;
    // A transaction cut short by the time limit says nothing about a larger size except that the
    // input is slow: size it to what actually came in.
    const double ratio = std::chrono::duration<double>(target_) / interval;
    const double next =
        size_ == 0 ? static_cast<double>(records) * ratio
                   : static_cast<double>(std::min(records, size_)) * std::clamp(ratio, 0.5, 2.0);
    size_ = std::clamp(static_cast<size_t>(next), kMinRecords, kMaxRecords);
  }

 private:
  std::chrono::milliseconds target_;
  size_t size_ = 0;
  size_t settled_ = 0;
};

}  // namespace sluice::kafka
