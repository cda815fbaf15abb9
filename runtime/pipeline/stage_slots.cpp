// The stage slots: copies under one lock, and retiring a swapped-out instance on this thread.
#include "pipeline/stage_slots.hpp"

#include <chrono>
#include <thread>
#include <utility>

namespace sluice::pipeline {

void StageSlots::add(Role role, std::string label, std::shared_ptr<plugin::PluginInstance> instance,
                     CallPolicy policy) {
  auto counters = std::make_shared<CallCounters>(role != Role::source);
  counters->policy = std::move(policy);
  std::lock_guard lock(mu_);
  slots_.push_back({role, std::move(label), std::move(counters), std::move(instance)});
}

StageSet StageSlots::snapshot() const {
  StageSet set;
  std::lock_guard lock(mu_);
  for (const auto& s : slots_) {
    switch (s.role) {
      case Role::source:
        set.source = call_of<SourceCall>(s);
        break;
      case Role::transform:
        set.transforms.push_back(call_of<TransformCall>(s));
        break;
      case Role::sink:
        set.sink = call_of<SinkCall>(s);
        break;
      case Role::dead_letter:
        set.dead_letter = call_of<SinkCall>(s);
        break;
    }
  }
  return set;
}

SourceCall StageSlots::source() const {
  std::lock_guard lock(mu_);
  for (const auto& s : slots_)
    if (s.role == Role::source) return call_of<SourceCall>(s);
  return {};
}

SinkCall StageSlots::sink() const {
  std::lock_guard lock(mu_);
  for (const auto& s : slots_)
    if (s.role == Role::sink) return call_of<SinkCall>(s);
  return {};
}

std::optional<StageSlots::Found> StageSlots::find(const std::string& instance_name) const {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].instance && slots_[i].instance->name() == instance_name)
      return Found{i, slots_[i].role};
  return std::nullopt;
}

StageCall StageSlots::call(size_t slot) const {
  std::lock_guard lock(mu_);
  return call_of<StageCall>(slots_.at(slot));
}

StageCall StageSlots::candidate(size_t slot, std::shared_ptr<plugin::PluginInstance> next) const {
  std::lock_guard lock(mu_);
  const Slot& s = slots_.at(slot);
  return StageCall(std::move(next), s.counters, s.label);
}

std::shared_ptr<plugin::PluginInstance> StageSlots::exchange(
    size_t slot, std::shared_ptr<plugin::PluginInstance> next) {
  std::lock_guard lock(mu_);
  // The position's plugin counters go on from the leaving instance's totals (quiesced by now).
  if (const auto& leaving = slots_.at(slot).instance; leaving && next)
    next->host().carry_counters_from(leaving->host());
  return std::exchange(slots_.at(slot).instance, std::move(next));
}

void StageSlots::clear() {
  std::vector<Slot> slots;
  {
    std::lock_guard lock(mu_);
    slots.swap(slots_);
  }
  while (!slots.empty()) {
    retire(std::move(slots.back().instance));
    slots.pop_back();
  }
}

std::vector<StageSlots::Reading> StageSlots::counters() const {
  std::vector<Reading> out;
  std::lock_guard lock(mu_);
  for (const auto& s : slots_) {
    out.push_back({s.counters->read(), s.label, s.role, s.instance ? s.instance->info().name : ""});
  }
  return out;
}

void retire(std::shared_ptr<plugin::PluginInstance> instance) {
  if (!instance) return;
  // Readers copy under the slots' lock and drop their copy after one call or batch; the slot
  // no longer holds this one, so the count only falls.
  while (instance.use_count() > 1) std::this_thread::sleep_for(std::chrono::microseconds(200));
  instance.reset();
}

}  // namespace sluice::pipeline
