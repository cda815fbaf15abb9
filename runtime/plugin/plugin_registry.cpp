// The plugin registry: search path, directory scan, shadowing, and the files it skips.
#include "plugin/plugin_registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
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

void check_plugin_path_option(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    throw PluginLoadError(fmt::format("--plugin-path {}: no such folder or file", path.string()));
  if (std::filesystem::is_regular_file(status)) return;  // loaded as a plugin file, or refused
  if (!std::filesystem::is_directory(status))
    throw PluginLoadError(
        fmt::format("--plugin-path {}: neither a folder nor a plugin file", path.string()));
  std::filesystem::directory_iterator it(path, ec);
  if (ec)
    throw PluginLoadError(
        fmt::format("--plugin-path {}: cannot read the folder: {}", path.string(), ec.message()));
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
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".so") files.push_back(it->path());
  if (ec)
    throw PluginLoadError(
        fmt::format("{}: cannot read the plugin folder: {}", dir.string(), ec.message()));
  std::sort(files.begin(), files.end());
  int rank = rank_++;
  for (const auto& f : files) {
    try {
      add(PluginLibrary::load(f, options_), rank);
    } catch (const PluginLoadError& e) {
      skip(f, e.what());
    }
  }
}

void PluginRegistry::load_file(const std::filesystem::path& file) {
  add(PluginLibrary::load(file, options_), rank_++);
}

void PluginRegistry::skip(const std::filesystem::path& file, std::string reason) {
  spdlog::warn("plugin file skipped: {} (an error only if a pipeline uses a plugin it holds)",
               reason);
  skipped_.push_back({file, std::move(reason)});
}

// A name two files of one folder provide is used from neither: which one a pipeline would get
// must not depend on the order of a folder listing.
void PluginRegistry::add(const std::shared_ptr<PluginLibrary>& lib, int dir_rank) {
  for (PluginInfo info : lib->plugins()) {
    info.library = lib;
    Key key(info.kind, info.name);
    const std::string what = fmt::format("{} plugin '{}'", kind_name(info.kind), info.name);
    if (auto clash = clashes_.find(key); clash != clashes_.end()) {
      if (clash->second.dir_rank == dir_rank) {
        skip(info.file, fmt::format("{}: {} is also provided by {}", info.file.string(), what,
                                    clash->second.files.front().string()));
        clash->second.files.push_back(info.file);
      }
      continue;  // else shadowed by the earlier folder's clash
    }
    auto it = plugins_.find(key);
    if (it == plugins_.end()) {
      plugins_.emplace(std::move(key), Entry{std::move(info), dir_rank});
      continue;
    }
    const std::filesystem::path& first = it->second.info.file;
    if (it->second.dir_rank != dir_rank) {
      spdlog::debug("{} of {} shadowed by {}", what, info.file.string(), first.string());
      continue;
    }
    skip(info.file,
         fmt::format("{}: {} is also provided by {}", info.file.string(), what, first.string()));
    clashes_.emplace(key, Clash{{first, info.file}, dir_rank});
    plugins_.erase(it);
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

namespace {
// Whether a file's name says it holds `name`: NAME.so, libNAME.so or sluice-NAME.so.
bool named_after(const std::filesystem::path& file, std::string_view name) {
  std::string_view stem_view;
  const std::string stem = file.stem().string();
  stem_view = stem;
  for (std::string_view prefix : {"sluice-", "lib"})
    if (stem_view.starts_with(prefix)) stem_view.remove_prefix(prefix.size());
  return stem_view == name;
}
}  // namespace

std::optional<std::string> PluginRegistry::unusable(sluice_kind kind, std::string_view name) const {
  if (auto clash = clashes_.find(Key(kind, std::string(name))); clash != clashes_.end()) {
    std::vector<std::string> files;
    for (const auto& f : clash->second.files) files.push_back(f.string());
    return fmt::format(
        "{} plugin '{}' is provided by {} files of one folder, so neither is "
        "used: {}; remove or move all but one",
        kind_name(kind), name, files.size(), fmt::join(files, " and "));
  }
  for (const auto& s : skipped_)
    if (named_after(s.file, name))
      return fmt::format("{} plugin '{}': its file could not be loaded: {}", kind_name(kind), name,
                         s.reason);
  return std::nullopt;
}

std::string PluginRegistry::skipped_note() const {
  std::string note;
  for (const auto& s : skipped_)
    note += (note.empty() ? "; not loaded from the plugin path: " : "; ") + s.reason;
  return note;
}

std::vector<const PluginInfo*> PluginRegistry::all() const {
  std::vector<const PluginInfo*> out;
  for (const auto& [key, e] : plugins_) out.push_back(&e.info);
  return out;
}

}  // namespace sluice::plugin
