// Finds plugin libraries along the search path and indexes their plugins by kind and name.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "plugin/plugin_library.hpp"

namespace sluice::plugin {

// --plugin-path folders, then SLUICE_PLUGIN_PATH (colon-separated), then the build's plugin
// folder and the installed one (next to the executable: ../lib/sluice/plugins).
std::vector<std::filesystem::path> plugin_search_path(const std::vector<std::string>& cli_paths);

// A --plugin-path the user gave must be there: a folder that can be read, or a plugin file.
// Throws PluginLoadError naming it otherwise (a misspelled path is not silently ignored).
void check_plugin_path_option(const std::filesystem::path& path);

// A file of a plugin folder that is not used: not a plugin, a plugin that failed to load, or a
// second file providing a name already provided. A warning at load; an error only when a
// pipeline asks for a plugin it may hold.
struct SkippedFile {
  std::filesystem::path file;
  std::string reason;  // one line: "FILE: why"
};

class PluginRegistry {
 public:
  explicit PluginRegistry(LoadOptions options = {}) : options_(options) {}

  // Loads every sluice plugin library (*.so) of each folder. A name found in an earlier folder
  // shadows the same name in a later one. A file that cannot be used, and a name two files of
  // one folder provide, are skipped with a warning (see skipped() and unusable()).
  void load_search_path(const std::vector<std::filesystem::path>& dirs);
  void load_directory(const std::filesystem::path& dir);
  // A file named on its own: one that cannot be loaded throws PluginLoadError.
  void load_file(const std::filesystem::path& file);

  // Loads `file` again (a fresh sealed copy) and points its plugins' entries at the new
  // library; the old one unloads once no instance uses it. Throws PluginLoadError, leaving the
  // registry as it was.
  std::shared_ptr<PluginLibrary> reload_file(const std::filesystem::path& file);

  const PluginInfo* find(sluice_kind kind, std::string_view name) const;
  std::vector<std::string> names(sluice_kind kind) const;
  std::vector<const PluginInfo*> all() const;

  // Files skipped while loading, each with its reason, in the order met.
  const std::vector<SkippedFile>& skipped() const { return skipped_; }
  // Why the plugin cannot be used although the plugin path seems to hold it: two files of one
  // folder provide it (naming both), or a skipped file named after it (its reason).
  std::optional<std::string> unusable(sluice_kind kind, std::string_view name) const;
  // For an unknown plugin's error: "; not loaded from the plugin path: FILE: why; ...", or "".
  std::string skipped_note() const;

 private:
  void add(const std::shared_ptr<PluginLibrary>& lib, int dir_rank);
  void skip(const std::filesystem::path& file, std::string reason);

  using Key = std::pair<sluice_kind, std::string>;
  LoadOptions options_;
  int rank_ = 0;
  struct Entry {
    PluginInfo info;
    int dir_rank;
  };
  std::map<Key, Entry, std::less<>> plugins_;
  // Names that two or more files of one folder provide: none of them is used.
  struct Clash {
    std::vector<std::filesystem::path> files;
    int dir_rank;
  };
  std::map<Key, Clash, std::less<>> clashes_;
  std::vector<SkippedFile> skipped_;
};

}  // namespace sluice::plugin
