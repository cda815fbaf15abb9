// The quarantine decision over the crash journal's entries.
#include "pipeline/quarantine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

namespace sluice::pipeline {

namespace {

bool contains(const StreamRange& r, const sluice_record& rec) {
  if (r.partition != rec.partition || rec.offset < r.first || rec.offset > r.last) return false;
  const std::string_view topic(reinterpret_cast<const char*>(rec.topic.ptr),
                               rec.topic.ptr ? rec.topic.len : 0);
  return topic == r.topic;
}

}  // namespace

Quarantine::Quarantine(std::vector<JournalEntry> entries) : entries_(std::move(entries)) {}

Quarantine::Decision Quarantine::decide(const sluice_record& record) const {
  Decision d;
  for (const auto& e : entries_) {
    const bool in = std::any_of(e.ranges.begin(), e.ranges.end(),
                                [&](const StreamRange& r) { return contains(r, record); });
    if (!in) continue;
    if (e.records == 1) return {Verdict::dead_letter, &e};
    d = {Verdict::alone, &e};
  }
  return d;
}

std::string Quarantine::reason(const JournalEntry& e) {
  if (e.cause.find("exit") != std::string::npos || e.cause.find("Exit") != std::string::npos)
    return fmt::format("plugin '{}' called {} inside {}() on this record in an earlier run",
                       e.plugin, e.cause, e.call);
  return fmt::format("plugin '{}' crashed ({}) on this record in an earlier run", e.plugin,
                     e.cause);
}

void Quarantine::committed(const std::string& topic, int32_t partition, int64_t offset) {
  std::lock_guard lock(mu_);
  for (auto& c : committed_)
    if (c.partition == partition && c.topic == topic) {
      c.offset = std::max(c.offset, offset);
      return;
    }
  committed_.push_back({topic, partition, offset});
}

bool Quarantine::passed(const StreamRange& r) const {
  return std::any_of(committed_.begin(), committed_.end(), [&](const Committed& c) {
    return c.partition == r.partition && c.topic == r.topic && c.offset >= r.last;
  });
}

std::vector<JournalEntry> Quarantine::unresolved() const {
  std::lock_guard lock(mu_);
  std::vector<JournalEntry> keep;
  for (const auto& e : entries_)
    if (!std::all_of(e.ranges.begin(), e.ranges.end(),
                     [&](const StreamRange& r) { return passed(r); }))
      keep.push_back(e);
  return keep;
}

}  // namespace sluice::pipeline
