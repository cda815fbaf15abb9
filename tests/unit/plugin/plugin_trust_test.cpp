// The loader's defences against another local user: no plantable copy, sealed copies, and
// plugins (or their symlink targets) that others could write or own are refused.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "loader_test_support.hpp"
#include "plugin/plugin_library.hpp"

namespace fs = std::filesystem;
using namespace sluice::plugin;
using namespace sluice::plugin::testing;

namespace {
constexpr uid_t kNobody = 65534;
constexpr const char* kInsecureHint = " (use --allow-insecure-plugins to load it anyway)";

fs::path stamp_plugin() { return test_plugins() / "stamp_v1" / "sluice-stamp.so"; }

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_all(const fs::path& file, const std::string& bytes, fs::perms mode) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  fs::permissions(file, mode);
}

// A fresh folder, owned by root and closed to others, removed at the end of the test.
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& name) : dir(fs::temp_directory_path() / name) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms(0755));
  }
  ~Scratch() { fs::remove_all(dir); }
};

// The name the loader used to give its copy of `bytes` in $TMPDIR (FNV-1a of the content).
std::string old_copy_name(const std::string& stem, const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h ^ bytes.size()));
  return stem + "-" + hex + ".so";
}
}  // namespace

TEST_CASE("a library planted where copies used to go is never loaded") {
  Scratch s("sluice-planted-test");
  const fs::path tmp = s.dir / "tmp", marker = s.dir / "marker";
  fs::create_directories(tmp / ("sluice-plugins-" + std::to_string(::getuid())));
  // The real plugin and the planted one, padded to one size (trailing bytes do not matter to
  // the dynamic loader): the old loader reused a copy whose size matched.
  std::string real = read_all(stamp_plugin());
  std::string planted = read_all(test_plugins() / "planted" / "sluice-planted.so");
  const size_t size = std::max(real.size(), planted.size()) + 4096;
  real.resize(size, '\0');
  planted.resize(size, '\0');
  const fs::path plugin = s.dir / "sluice-stamp.so";
  write_all(plugin, real, fs::perms(0644));
  write_all(
      tmp / ("sluice-plugins-" + std::to_string(::getuid())) / old_copy_name("sluice-stamp", real),
      planted, fs::perms(0755));

  const std::string old_tmpdir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "";
  ::setenv("TMPDIR", tmp.c_str(), 1);
  ::setenv("SLUICE_TEST_MARKER", marker.c_str(), 1);
  std::string error = load_error(plugin);
  old_tmpdir.empty() ? ::unsetenv("TMPDIR") : ::setenv("TMPDIR", old_tmpdir.c_str(), 1);
  ::unsetenv("SLUICE_TEST_MARKER");

  CHECK_MESSAGE(!fs::exists(marker), "the planted library's code ran");
  CHECK(error == "");
  // Nothing new in $TMPDIR: only the planted folder with its one file.
  size_t entries = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp)) entries += e.is_regular_file();
  CHECK(entries == 1);
}

TEST_CASE("the mapped copy is a sealed memory file that nobody can change") {
  auto lib = PluginLibrary::load(stamp_plugin());
  CHECK(lib->file() == stamp_plugin());
  CHECK(lib->loaded_from().string().rfind("/memfd:sluice:sluice-stamp-", 0) == 0);
  CHECK(is_mapped(lib->loaded_from()));
  const int fd = lib->copy_fd();
  REQUIRE(fd >= 0);
  const int seals = ::fcntl(fd, F_GET_SEALS);
  CHECK((seals & F_SEAL_WRITE) != 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_GROW) != 0);
  CHECK((seals & F_SEAL_SEAL) != 0);
  CHECK(::pwrite(fd, "x", 1, 0) == -1);
  CHECK(::ftruncate(fd, 0) == -1);
  CHECK(::fcntl(fd, F_ADD_SEALS, 0) == -1);  // the seals themselves cannot be changed
  CHECK(static_cast<uintmax_t>(::lseek(fd, 0, SEEK_END)) == fs::file_size(stamp_plugin()));
}

TEST_CASE("two loads of one file are two libraries, each unmapped when released") {
  auto first = PluginLibrary::load(stamp_plugin());
  auto second = PluginLibrary::load(stamp_plugin());
  const fs::path first_copy = first->loaded_from(), second_copy = second->loaded_from();
  CHECK(first_copy != second_copy);
  CHECK(first->plugins()[0].table != second->plugins()[0].table);
  first.reset();
  CHECK_FALSE(is_mapped(first_copy));
  CHECK(is_mapped(second_copy));
}

TEST_CASE("a symlink into a folder others can write is refused") {
  Scratch s("sluice-symlink-test");
  fs::create_directories(s.dir / "plugins");
  fs::create_directories(s.dir / "shared");
  fs::copy_file(stamp_plugin(), s.dir / "shared" / "sluice-stamp.so");
  fs::create_symlink(s.dir / "shared" / "sluice-stamp.so", s.dir / "plugins" / "sluice-stamp.so");
  const fs::path link = s.dir / "plugins" / "sluice-stamp.so";
  CHECK(load_error(link) == "");
  for (auto mode : {fs::perms(0777), fs::perms(01777)}) {  // the sticky bit does not help
    fs::permissions(s.dir / "shared", mode);
    CHECK(load_error(link) == link.string() + ": refused: the folder of its link target " +
                                  (s.dir / "shared").string() + " is writable by group or others" +
                                  kInsecureHint);
    CHECK(load_error(link, LoadOptions{true, {}}) == "");
  }
}

TEST_CASE("a plugin file or folder owned by another user is refused") {
  REQUIRE_MESSAGE(::geteuid() == 0, "the test chowns files: it runs as root");
  Scratch s("sluice-owner-test");
  fs::create_directories(s.dir / "plugins");
  const fs::path file = s.dir / "plugins" / "sluice-stamp.so";
  fs::copy_file(stamp_plugin(), file);
  REQUIRE(::chown(file.c_str(), kNobody, kNobody) == 0);
  CHECK(load_error(file).find(file.string() + ": refused: the file is owned by ") == 0);
  CHECK(load_error(file).find("(uid 65534), not by root" + std::string(kInsecureHint)) !=
        std::string::npos);
  CHECK(load_error(file, LoadOptions{true, {}}) == "");

  SUBCASE("through a symlink") {
    const fs::path link = s.dir / "sluice-link.so";
    fs::create_symlink(file, link);
    CHECK(load_error(link).find(link.string() + ": refused: its link target " + file.string() +
                                " is owned by ") == 0);
  }
  SUBCASE("the folder") {
    REQUIRE(::chown(file.c_str(), 0, 0) == 0);
    CHECK(load_error(file) == "");
    REQUIRE(::chown((s.dir / "plugins").c_str(), kNobody, kNobody) == 0);
    CHECK(load_error(file).find(file.string() + ": refused: its folder " +
                                (s.dir / "plugins").string() + " is owned by ") == 0);
  }
}
