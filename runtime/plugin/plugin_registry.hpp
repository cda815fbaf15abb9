// Finds plugin libraries along the search path and indexes their plugins by kind and name.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "plugin/plugin_library.hpp"

namespace sluice::plugin {

// --plugin-path folders, then SLUICE_PLUGIN_PATH (colon-separated), then the build's plugin
// folder and the installed one (next to the executable: ../lib/sluice/plugins).
std::vector<std::filesystem::path> plugin_search_path(const std::vector<std::string>& cli_paths);

class PluginRegistry {
 public:
  explicit PluginRegistry(LoadOptions options = {}) : options_(options) {}

  // Loads every sluice plugin library (*.so) of each folder. A name found in an earlier folder
  // shadows the same name in a later one; two in one folder are an error.
  void load_search_path(const std::vector<std::filesystem::path>& dirs);
  void load_directory(const std::filesystem::path& dir);
  void load_file(const std::filesystem::path& file);

  // Loads `file` again (a fresh sealed copy) and points its plugins' entries at the new
  // library; the old one unloads once no instance uses it. Throws PluginLoadError, leaving the
  // registry as it was.
  std::shared_ptr<PluginLibrary> reload_file(const std::filesystem::path& file);

  const PluginInfo* find(sluice_kind kind, std::string_view name) const;
  std::vector<std::string> names(sluice_kind kind) const;
  std::vector<const PluginInfo*> all() const;

 private:
  void add(const std::shared_ptr<PluginLibrary>& lib, int dir_rank);

  LoadOptions options_;
  int rank_ = 0;
  struct Entry {
    PluginInfo info;
    int dir_rank;
  };
  std::map<std::pair<sluice_kind, std::string>, Entry, std::less<>> plugins_;
};

}  // namespace sluice::plugin
