// Creating and destroying plugin instances through the C table.
#include "plugin/plugin_instance.hpp"

#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sluice::plugin {

PluginInstance::PluginInstance(const PluginInfo& info, std::string instance_name,
                               const std::string& config_json,
                               std::shared_ptr<const core::HostMemory> memory)
    : info_(info),
      host_(std::make_unique<HostContext>(std::move(instance_name), std::move(memory))) {
  CallError err;
  sluice_status st = info_.table->create(host_->api(), config_json.data(), config_json.size(),
                                         &handle_, err.get());
  if (st != SLUICE_OK || handle_ == nullptr)
    throw PluginCreateError(err.field,
                            err.message[0] ? err.text() : "create failed with no reason given");
}

namespace {

// How long a plugin's destroy may take before the process gives up on it.
constexpr std::chrono::seconds kDestroyGrace{120};

// Watches one destroy call: if it has not returned within kDestroyGrace, says so and ends the
// process with status 71 (a stuck plugin call). A destroy comes after the stage's drain and last
// commit (or, in a hot reload, after its successor took over), so what was delivered is
// committed; without this a destroy that never returns kept sluice running for good, with
// SIGINT and SIGTERM no longer taken.
class DestroyWatch {
 public:
  DestroyWatch(const std::string& plugin, const std::string& instance)
      : thread_([this, plugin, instance] {
          std::unique_lock lock(mu_);
          if (cv_.wait_for(lock, kDestroyGrace, [this] { return returned_; })) return;
          // Through the log, so that with --log-format json this line is JSON too.
          spdlog::critical(
              "plugin '{}' ({}): destroy() has not returned after {} s; exiting with status 71 "
              "(what was delivered is committed)",
              plugin, instance, kDestroyGrace.count());
          spdlog::default_logger()->flush();
          ::syscall(SYS_exit_group, 71);
        }) {}
  ~DestroyWatch() {
    {
      std::lock_guard lock(mu_);
      returned_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  DestroyWatch(const DestroyWatch&) = delete;
  DestroyWatch& operator=(const DestroyWatch&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool returned_ = false;
  std::thread thread_;  // last: it starts once the rest is made
};

}  // namespace

PluginInstance::~PluginInstance() {
  if (!handle_) return;
  DestroyWatch watch(info_.name, host_->name());
  info_.table->destroy(handle_);
}

void validate_config(const PluginInfo& info, const std::string& config_json) {
  const sluice_plugin* t = info.table;
  if (!SLUICE_HAS_FIELD(t, sluice_plugin, validate) || !t->validate) return;
  CallError err;
  if (t->validate(config_json.data(), config_json.size(), err.get()) != SLUICE_OK)
    throw PluginCreateError(err.field, err.message[0] ? err.text() : "invalid config");
}

}  // namespace sluice::plugin
