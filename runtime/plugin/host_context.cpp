// The host API callbacks: each forwards to the HostContext behind host_ctx.
#include "plugin/host_context.hpp"

namespace sluice::plugin {

HostContext::HostContext(std::string instance_name, std::shared_ptr<const core::HostMemory> memory)
    : name_(std::move(instance_name)), memory_(std::move(memory)) {
  api_.struct_size = sizeof(api_);
  api_.abi_major = SLUICE_ABI_MAJOR;
  api_.abi_minor = SLUICE_ABI_MINOR;
  api_.host_ctx = this;
  api_.sluice_host_log = &HostContext::log;
  api_.sluice_host_counter_add = &HostContext::counter_add;
  api_.sluice_host_gauge_set = &HostContext::gauge_set;
  api_.sluice_host_memory_pressure = &HostContext::memory_pressure;
  api_.sluice_host_instance_name = &HostContext::instance_name;
  api_.sluice_host_drain = &HostContext::drain;
  api_.sluice_host_memory_limit = &HostContext::memory_limit;
}

std::map<std::string, double> HostContext::metrics() const {
  std::lock_guard lock(metrics_mu_);
  std::map<std::string, double> out;
  for (const auto& [name, m] : metrics_) out.emplace(name, m.value);
  return out;
}

double HostContext::metric(const std::string& name) const {
  std::lock_guard lock(metrics_mu_);
  auto it = metrics_.find(name);
  return it == metrics_.end() ? 0.0 : it->second.value;
}

std::set<std::string> HostContext::counter_names() const {
  std::lock_guard lock(metrics_mu_);
  std::set<std::string> out;
  for (const auto& [name, m] : metrics_)
    if (m.counter) out.insert(name);
  return out;
}

void HostContext::carry_counters_from(const HostContext& old) {
  if (&old == this) return;
  std::scoped_lock lock(metrics_mu_, old.metrics_mu_);
  for (const auto& [name, m] : old.metrics_) {
    if (!m.counter) continue;
    Metric& mine = metrics_[name];
    mine.value += m.value;
    mine.counter = true;
  }
}

void HostContext::log(void* ctx, int32_t level, const char* message, size_t len) {
  auto* self = static_cast<HostContext*>(ctx);
  auto lvl = level <= SLUICE_LOG_TRACE   ? spdlog::level::trace
             : level == SLUICE_LOG_DEBUG ? spdlog::level::debug
             : level == SLUICE_LOG_INFO  ? spdlog::level::info
             : level == SLUICE_LOG_WARN  ? spdlog::level::warn
                                         : spdlog::level::err;
  spdlog::log(lvl, "[{}] {}", self->name_,
              std::string_view(message ? message : "", message ? len : 0));
}

void HostContext::counter_add(void* ctx, const char* name, double delta) {
  auto* self = static_cast<HostContext*>(ctx);
  if (!name) return;
  std::lock_guard lock(self->metrics_mu_);
  auto it = self->metrics_.find(std::string_view(name));
  if (it == self->metrics_.end()) it = self->metrics_.emplace(name, Metric{}).first;
  it->second.value += delta;
  it->second.counter = true;
}

void HostContext::gauge_set(void* ctx, const char* name, double value) {
  auto* self = static_cast<HostContext*>(ctx);
  if (!name) return;
  std::lock_guard lock(self->metrics_mu_);
  self->metrics_[name] = Metric{value, false};
}

double HostContext::memory_pressure(void* ctx) {
  const auto& memory = static_cast<HostContext*>(ctx)->memory_;
  return memory ? memory->pressure.load(std::memory_order_relaxed) : 0.0;
}

uint64_t HostContext::memory_limit(void* ctx) {
  const auto& memory = static_cast<HostContext*>(ctx)->memory_;
  return memory ? memory->limit_bytes : 0;
}

const char* HostContext::instance_name(void* ctx) {
  return static_cast<HostContext*>(ctx)->name_.c_str();
}

sluice_status HostContext::drain(void* ctx, const sluice_position* partitions, size_t count,
                                 uint32_t timeout_ms) {
  auto* self = static_cast<HostContext*>(ctx);
  if (!self->drain_) return SLUICE_ERROR;
  return self->drain_(std::span<const sluice_position>(partitions, count), timeout_ms);
}

}  // namespace sluice::plugin
