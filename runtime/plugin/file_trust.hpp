// Whether a plugin file may be loaded: who could have written it, following symlinks.
#pragma once

#include <filesystem>

namespace sluice::plugin {

struct LoadOptions;

// Refuses (PluginLoadError, "FILE: refused: REASON (use --allow-insecure-plugins ...)") a plugin
// that someone other than root or the process's user could have changed: the file, the link
// target of every symlink on the way to it, and the folder holding each of them must not be
// writable by group or others (a sticky bit does not help: the file itself could be replaced
// by its owner) nor owned by another user than root or the one running sluice.
void check_file_permissions(const std::filesystem::path& file, const LoadOptions& options);

}  // namespace sluice::plugin
