// The in-memory, sealed copy of a plugin file that the loader maps instead of the file itself.
#pragma once

#include <filesystem>
#include <string>

namespace sluice::plugin {

// The bytes of one plugin file, read once: the hash, the ELF check and the copy all use these,
// so what is checked is exactly what gets mapped.
std::string read_plugin_bytes(const std::filesystem::path& file);

bool is_elf(const std::string& bytes);

// An anonymous memory file (memfd) holding a plugin's bytes, sealed against any change in size
// or content. Nobody can plant or swap it: it has no name in any folder. dlopen maps it through
// path(), /proc/self/fd/N; the fd stays open as long as the copy lives.
class SealedCopy {
 public:
  // Throws PluginLoadError naming `file` when the memory file cannot be made or sealed.
  SealedCopy(const std::filesystem::path& file, const std::string& bytes);
  ~SealedCopy();
  SealedCopy(const SealedCopy&) = delete;
  SealedCopy& operator=(const SealedCopy&) = delete;

  int fd() const { return fd_; }
  // What dlopen opens.
  std::filesystem::path path() const;
  // How /proc/self/maps shows the mapped copy ("/memfd:NAME (deleted)"): unique per copy, so a
  // reloaded library is told apart from the one it replaces.
  const std::filesystem::path& mapped_name() const { return mapped_name_; }
  // Leaves the fd open past this object's life (see ~PluginLibrary).
  void keep_open() { fd_ = -1; }

 private:
  int fd_ = -1;
  std::filesystem::path mapped_name_;
};

}  // namespace sluice::plugin
