// The plugin registry: search path, directory scan, shadowing and duplicate detection.
#include "plugin/plugin_registry.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace sluice::plugin {

namespace {
std::filesystem::path executable_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : p.parent_path();
}
}  // namespace

std::vector<std::filesystem::path> plugin_search_path(const std::vector<std::string>& cli_paths) {
  std::vector<std::filesystem::path> dirs;
  for (const auto& p : cli_paths) dirs.emplace_back(p);
  if (const char* env = std::getenv("SLUICE_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string part;
    while (std::getline(ss, part, ':'))
      if (!part.empty()) dirs.emplace_back(part);
  }
#ifdef SLUICE_BUILD_PLUGIN_DIR
  dirs.emplace_back(SLUICE_BUILD_PLUGIN_DIR);
#endif
  auto exe = executable_dir();
  if (!exe.empty()) dirs.push_back(exe.parent_path() / "lib" / "sluice" / "plugins");
  return dirs;
}

void PluginRegistry::load_search_path(const std::vector<std::filesystem::path>& dirs) {
  for (const auto& d : dirs) {
    std::error_code ec;
    if (std::filesystem::is_directory(d, ec))
      load_directory(d);
    else if (std::filesystem::is_regular_file(d, ec))
      load_file(d);
    else
      spdlog::debug("plugin path {} does not exist; skipped", d.string());
  }
}

void PluginRegistry::load_directory(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".so") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  int rank = rank_++;
  for (const auto& f : files) add(PluginLibrary::load(f, options_), rank);
}

void PluginRegistry::load_file(const std::filesystem::path& file) {
  add(PluginLibrary::load(file, options_), rank_++);
}

void PluginRegistry::add(const std::shared_ptr<PluginLibrary>& lib, int dir_rank) {
  for (PluginInfo info : lib->plugins()) {
    info.library = lib;
    auto key = std::make_pair(info.kind, info.name);
    auto it = plugins_.find(key);
    if (it != plugins_.end()) {
      if (it->second.dir_rank == dir_rank)
        throw PluginLoadError(fmt::format("{}: two {} plugins named '{}': also in {}",
                                          info.file.string(), kind_name(info.kind), info.name,
                                          it->second.info.file.string()));
      spdlog::debug("{} plugin '{}' of {} shadowed by {}", kind_name(info.kind), info.name,
                    info.file.string(), it->second.info.file.string());
      continue;
    }
    plugins_.emplace(std::move(key), Entry{std::move(info), dir_rank});
  }
}

std::shared_ptr<PluginLibrary> PluginRegistry::reload_file(const std::filesystem::path& file) {
  auto lib = PluginLibrary::load(file, options_);
  for (PluginInfo info : lib->plugins()) {
    auto it = plugins_.find(std::make_pair(info.kind, info.name));
    if (it == plugins_.end() || it->second.info.file != file) continue;
    info.library = lib;
    it->second.info = std::move(info);
  }
  return lib;
}

const PluginInfo* PluginRegistry::find(sluice_kind kind, std::string_view name) const {
  auto it = plugins_.find(std::make_pair(kind, std::string(name)));
  return it == plugins_.end() ? nullptr : &it->second.info;
}

std::vector<std::string> PluginRegistry::names(sluice_kind kind) const {
  std::vector<std::string> out;
  for (const auto& [key, e] : plugins_)
    if (key.first == kind) out.push_back(key.second);
  return out;
}

std::vector<const PluginInfo*> PluginRegistry::all() const {
  std::vector<const PluginInfo*> out;
  for (const auto& [key, e] : plugins_) out.push_back(&e.info);
  return out;
}

}  // namespace sluice::plugin
