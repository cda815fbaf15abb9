// Shared helpers of the plugin loader tests: where the test plugins are, and load errors.
#pragma once

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "plugin/plugin_library.hpp"

namespace sluice::plugin::testing {

inline std::filesystem::path test_plugins() {
  return std::filesystem::path(std::getenv("SLUICE_BINARY_DIR")) / "test-plugins";
}
inline std::filesystem::path built_plugins() {
  return std::filesystem::path(std::getenv("SLUICE_BUILD_PLUGIN_DIR"));
}

// The loader's one-line error for `file`, or "" when it loads.
inline std::string load_error(const std::filesystem::path& file, LoadOptions options = {}) {
  try {
    PluginLibrary::load(file, options);
  } catch (const PluginLoadError& e) {
    return e.what();
  }
  return "";
}

// The loader's refusal of `file`, a module that claims the minor after the host's.
inline std::string newer_minor_error(const std::filesystem::path& file) {
  return file.string() + fmt::format(
                             ": plugin needs ABI {0}.{1}, newer than the host's {0}.{2}; "
                             "upgrade sluice",
                             SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR + 1, SLUICE_ABI_MINOR);
}

}  // namespace sluice::plugin::testing
