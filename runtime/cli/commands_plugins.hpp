// `sluice plugins list` and `sluice plugins inspect`: what the plugin path holds, what it skipped
// and why, and every attribute of each plugin's config schema, checked.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "plugin/plugin_registry.hpp"

namespace sluice::cli {

using RegistryLoader = std::function<std::unique_ptr<plugin::PluginRegistry>()>;

// Every plugin of the registry, then the skipped files with their reasons. Exit 0, or 2 when a
// plugin's config schema is broken (each problem on stderr, naming the plugin and field).
int run_plugins_list(const plugin::PluginRegistry& registry);

// `target` is a plugin file (a path that exists, or one with a '/' or ending in .so), else a
// plugin name looked up on the plugin path (`load_registry`). Shows the module and, per plugin,
// every attribute of every config field. Throws plugin::PluginLoadError for a file that cannot
// be loaded or a name no usable file provides; exit 2 when a config schema is broken.
int run_plugins_inspect(const std::string& target, const plugin::LoadOptions& options,
                        const RegistryLoader& load_registry);

}  // namespace sluice::cli
