// The plugin trust check: mode and owner of the file, its symlink targets and their folders.
#include "plugin/file_trust.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "plugin/plugin_library.hpp"

namespace sluice::plugin {

namespace {

constexpr int kMaxLinkHops = 40;  // as the kernel's own limit (ELOOP)

std::string user_name(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  char buffer[1024];
  if (::getpwuid_r(uid, &entry, buffer, sizeof buffer, &found) != 0 || found == nullptr)
    return fmt::format("uid {}", uid);
  return fmt::format("{} (uid {})", found->pw_name, uid);
}

// Why `st`, described as `what`, cannot be trusted; nothing when it can.
std::optional<std::string> distrust(const struct stat& st, const std::string& what) {
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return what + " is writable by group or others";
  const uid_t self = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != self)
    return self == 0 ? fmt::format("{} is owned by {}, not by root", what, user_name(st.st_uid))
                     : fmt::format("{} is owned by {}, neither root nor {}", what,
                                   user_name(st.st_uid), user_name(self));
  return std::nullopt;
}

[[noreturn]] void refuse(const std::filesystem::path& file, const std::string& reason) {
  throw PluginLoadError(fmt::format(
      "{}: refused: {} (use --allow-insecure-plugins to load it anyway)", file.string(), reason));
}

std::filesystem::path folder_of(const std::filesystem::path& p) {
  return p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
}

// The folder is followed through symlinks by stat(): its real folder is what is judged.
void check_folder(const std::filesystem::path& file, const std::filesystem::path& dir,
                  const std::string& what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return;  // a missing file is reported by the loader
  if (auto why = distrust(st, what + " " + dir.string())) refuse(file, *why);
}

}  // namespace

void check_file_permissions(const std::filesystem::path& file, const LoadOptions& options) {
  if (options.allow_insecure) return;
  std::filesystem::path p = file;
  for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
    const std::filesystem::path dir = folder_of(p);
    check_folder(file, dir, hop == 0 ? "its folder" : "the folder of its link target");
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return;
    if (!S_ISLNK(st.st_mode)) {
      if (auto why = distrust(st, hop == 0 ? "the file" : "its link target " + p.string()))
        refuse(file, *why);
      return;
    }
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(p, ec);
    if (ec) return;
    p = target.is_absolute() ? target : dir / target;
  }
  refuse(file, "too many levels of symbolic links");
}

}  // namespace sluice::plugin
