// The delivery gate of an at-least-once kafka pipeline: see delivery_gate.hpp.
#include "delivery_gate.hpp"

#include "rdkafka_common.hpp"

namespace sluice::kafka {

std::shared_ptr<DeliveryGate> DeliveryGate::of(const std::string& pipeline) {
  return shared_per_pipeline<DeliveryGate>(pipeline);
}

void DeliveryGate::attach_source() {
  std::lock_guard lock(mutex_);
  ++sources_;
}

void DeliveryGate::detach_source() {
  std::lock_guard lock(mutex_);
  --sources_;
}

bool DeliveryGate::may_acknowledge_early() const {
  std::lock_guard lock(mutex_);
  return sources_ > 0 && !ever_failed_;
}

uint64_t DeliveryGate::begin() {
  std::lock_guard lock(mutex_);
  pending_.emplace(++issued_, Pending{});
  return issued_;
}

void DeliveryGate::expect(uint64_t batch) {
  std::lock_guard lock(mutex_);
  ++pending_[batch].outstanding;
}

void DeliveryGate::withdraw(uint64_t batch) {
  std::lock_guard lock(mutex_);
  --pending_[batch].outstanding;
  finish_locked(batch);
}

void DeliveryGate::delivered(uint64_t batch, const std::string& error) {
  std::lock_guard lock(mutex_);
  // Recorded before the batch can count as confirmed, under the same lock as standing().
  if (!error.empty()) {
    ever_failed_ = true;
    if (failure_.empty()) failure_ = error;
  }
  auto it = pending_.find(batch);
  if (it == pending_.end()) return;
  --it->second.outstanding;
  finish_locked(batch);
}

void DeliveryGate::seal(uint64_t batch) {
  std::lock_guard lock(mutex_);
  pending_[batch].sealed = true;
  finish_locked(batch);
}

void DeliveryGate::finish_locked(uint64_t batch) {
  auto it = pending_.find(batch);
  if (it == pending_.end() || !it->second.sealed || it->second.outstanding > 0) return;
  const bool oldest = it == pending_.begin();
  pending_.erase(it);
  if (oldest) finished_.notify_all();
}

DeliveryGate::Standing DeliveryGate::standing() const {
  std::lock_guard lock(mutex_);
  const uint64_t confirmed = pending_.empty() ? issued_ : pending_.begin()->first - 1;
  return {issued_, confirmed, failure_};
}

bool DeliveryGate::wait_confirmed(uint64_t batch, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return finished_.wait_for(lock, timeout,
                            [&] { return pending_.empty() || pending_.begin()->first > batch; });
}

void DeliveryGate::reset_failure() {
  std::lock_guard lock(mutex_);
  failure_.clear();
}

}  // namespace sluice::kafka
