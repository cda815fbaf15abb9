// The host API table handed to one plugin instance (or module): logging, metrics, drain.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>

#include "core/host_memory.hpp"
#include "sluice/abi.h"

namespace sluice::plugin {

class HostContext {
 public:
  using DrainFn = std::function<sluice_status(std::span<const sluice_position>, uint32_t)>;

  // `memory`: the pipeline's limit and pressure, shown to the plugin (none: 0 for both).
  explicit HostContext(std::string instance_name,
                       std::shared_ptr<const core::HostMemory> memory = nullptr);
  HostContext(const HostContext&) = delete;
  HostContext& operator=(const HostContext&) = delete;

  const sluice_host_api* api() const { return &api_; }
  const std::string& name() const { return name_; }
  void set_drain(DrainFn fn) { drain_ = std::move(fn); }

  // Plugin-reported counters and gauges, by name.
  std::map<std::string, double> metrics() const;
  double metric(const std::string& name) const;
  // The names among metrics() that are counters (sluice_host_counter_add); the rest are gauges.
  std::set<std::string> counter_names() const;
  // On a hot reload, the new instance's counters continue from the old one's totals: adds each
  // of `old`'s counters to this one's (gauges are the new instance's own to set).
  void carry_counters_from(const HostContext& old);

 private:
  static void log(void* ctx, int32_t level, const char* message, size_t len);
  static void counter_add(void* ctx, const char* name, double delta);
  static void gauge_set(void* ctx, const char* name, double value);
  static double memory_pressure(void* ctx);
  static uint64_t memory_limit(void* ctx);
  static const char* instance_name(void* ctx);
  static sluice_status drain(void* ctx, const sluice_position* partitions, size_t count,
                             uint32_t timeout_ms);

  std::string name_;
  std::shared_ptr<const core::HostMemory> memory_;
  sluice_host_api api_{};
  DrainFn drain_;
  mutable std::mutex metrics_mu_;
  struct Metric {
    double value = 0;
    bool counter = false;
  };
  std::map<std::string, Metric, std::less<>> metrics_;
};

}  // namespace sluice::plugin
