// One created plugin instance: its host context, its handle, and error-buffer plumbing for calls.
#pragma once

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/cut_mark.hpp"
#include "plugin/host_context.hpp"
#include "plugin/plugin_library.hpp"

namespace sluice::plugin {

// The host-side buffers a call's sluice_error points into.
struct CallError {
  char message[2048] = {};
  char field[256] = {};
  sluice_error error{sizeof(sluice_error), message, sizeof message, field, sizeof field};
  sluice_error* get() {
    message[0] = field[0] = '\0';
    return &error;
  }
  // The message; one that filled the buffer was cut, and ends with core::kCutMark so that
  // redact() can mask the start of a secret the cut left ("...hunt" of "hunter2").
  std::string text() const {
    const size_t n = ::strnlen(message, sizeof message);
    std::string out(message, n);
    if (n >= sizeof message - 1) out += core::kCutMark;
    return out;
  }
};

// create() failed; field() names the config field the plugin blamed, if any.
class PluginCreateError : public std::runtime_error {
 public:
  PluginCreateError(std::string field, const std::string& message)
      : std::runtime_error(message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// Whether `table` carries hook `member`: inside its struct_size (as SLUICE_HAS_FIELD checks)
// and set. For callers that name the hook as a member pointer.
template <typename Field>
bool has_hook(const sluice_plugin* table, Field sluice_plugin::*member) {
  static const sluice_plugin probe{};
  const auto offset = static_cast<size_t>(reinterpret_cast<const char*>(&(probe.*member)) -
                                          reinterpret_cast<const char*>(&probe));
  return table->struct_size >= offset + sizeof(Field) && table->*member != nullptr;
}

class PluginInstance {
 public:
  // Runs the plugin's create with its checked JSON config; throws PluginCreateError. `memory`:
  // the pipeline's limit and pressure, for the host API.
  PluginInstance(const PluginInfo& info, std::string instance_name, const std::string& config_json,
                 std::shared_ptr<const core::HostMemory> memory = nullptr);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  const PluginInfo& info() const { return info_; }
  const sluice_plugin& table() const { return *info_.table; }
  void* handle() const { return handle_; }
  HostContext& host() { return *host_; }
  const HostContext& host() const { return *host_; }
  const std::string& name() const { return host_->name(); }

  // Whether the plugin's table carries optional hook `member` (inside struct_size and set).
  template <typename Field>
  bool has(Field sluice_plugin::*member) const {
    return has_hook(info_.table, member);
  }

 private:
  PluginInfo info_;
  std::unique_ptr<HostContext> host_;
  void* handle_ = nullptr;
};

// Runs the plugin's validate hook, if any; throws PluginCreateError on failure.
void validate_config(const PluginInfo& info, const std::string& config_json);

}  // namespace sluice::plugin
