// One loaded plugin library: the Boost.DLL handle, the handshake, and copies of its metadata.
#pragma once

#include <boost/dll/shared_library.hpp>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "plugin/sealed_copy.hpp"
#include "sluice/abi.h"

namespace sluice::plugin {

// A library that cannot be used; what() is one line: "FILE: reason".
class PluginLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string_view kind_name(sluice_kind kind);

class PluginLibrary;

// What the host knows of one plugin, copied out of the library right after loading.
struct PluginInfo {
  sluice_kind kind = 0;
  std::string name;
  std::string version;
  std::string description;
  std::string schema_json;
  std::filesystem::path file;
  std::string module_name;
  std::string module_version;
  const sluice_plugin* table = nullptr;    // valid while `library` lives
  std::shared_ptr<PluginLibrary> library;  // keeps the code mapped
};

struct LoadOptions {
  // Accept files, symlink targets or folders that others could write (see file_trust.hpp).
  bool allow_insecure = false;
  // The stage the library is loaded for, named with the file if its loading crashes the process
  // (empty: loaded for every stage, from a plugin folder).
  std::string stage;
};

class PluginLibrary : public std::enable_shared_from_this<PluginLibrary> {
 public:
  // Loads, hands-shakes and inits the module; throws PluginLoadError naming the file.
  static std::shared_ptr<PluginLibrary> load(const std::filesystem::path& file,
                                             const LoadOptions& options = {});
  ~PluginLibrary();
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  // The file as found on the search path. Errors name it, never the copy.
  const std::filesystem::path& file() const { return file_; }
  // The sealed in-memory copy that is actually mapped, as /proc/self/maps names it (unique per
  // load: a reloaded library is a new copy beside the old one).
  const std::filesystem::path& loaded_from() const { return copy_->mapped_name(); }
  // The copy's memfd, open as long as the library is loaded.
  int copy_fd() const { return copy_->fd(); }
  const std::string& module_name() const { return module_name_; }
  const std::string& module_version() const { return module_version_; }
  const std::vector<PluginInfo>& plugins() const { return plugins_; }

 private:
  PluginLibrary() = default;
  static const sluice_module* handshake(sluice_module_get_fn get, const std::string& name);
  void read_tables();
  void init();

  std::filesystem::path file_;
  std::unique_ptr<SealedCopy> copy_;  // declared before library_: closed after the unload
  boost::dll::shared_library library_;
  const sluice_module* module_ = nullptr;
  bool initialized_ = false;
  std::string module_name_;
  std::string module_version_;
  std::vector<PluginInfo> plugins_;  // PluginInfo::library left empty here (no cycle)
};

// Whether a file is mapped into this process (/proc/self/maps): an unloaded library is not.
bool is_mapped(const std::filesystem::path& file);

}  // namespace sluice::plugin
