// Creating and destroying plugin instances through the C table.
#include "plugin/plugin_instance.hpp"

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

PluginInstance::~PluginInstance() {
  if (handle_) info_.table->destroy(handle_);
}

void validate_config(const PluginInfo& info, const std::string& config_json) {
  const sluice_plugin* t = info.table;
  if (!SLUICE_HAS_FIELD(t, sluice_plugin, validate) || !t->validate) return;
  CallError err;
  if (t->validate(config_json.data(), config_json.size(), err.get()) != SLUICE_OK)
    throw PluginCreateError(err.field, err.message[0] ? err.text() : "invalid config");
}

}  // namespace sluice::plugin
