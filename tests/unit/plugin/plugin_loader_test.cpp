// The ABI handshake and the loader's one-line errors, against tiny plugins built for the tests.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "loader_test_support.hpp"
#include "plugin/plugin_instance.hpp"
#include "plugin/plugin_registry.hpp"

namespace fs = std::filesystem;
using namespace sluice::plugin;
using namespace sluice::plugin::testing;

namespace {
std::string registry_error(const fs::path& dir) {
  try {
    PluginRegistry reg;
    reg.load_directory(dir);
  } catch (const PluginLoadError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("a missing file is named with its reason") {
  auto f = test_plugins() / "nowhere" / "sluice-nothing.so";
  CHECK(load_error(f) == f.string() + ": file missing");
}

TEST_CASE("a file that is not a shared object is refused before dlopen") {
  auto f = test_plugins() / "notso" / "sluice-notso.so";
  CHECK(load_error(f) == f.string() + ": not a shared object");
}

TEST_CASE("dlopen's own reason is given, naming the plugin's file and not its in-memory copy") {
  const auto dir =
      fs::temp_directory_path() / ("sluice-truncated-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  const auto f = dir / "sluice-truncated.so";
  fs::copy_file(built_plugins() / "sluice-transforms.so", f);
  fs::resize_file(f, 100);  // still starts with the ELF magic, but cut short
  const std::string e = load_error(f);
  fs::remove_all(dir);
  INFO(e);
  CHECK(e.starts_with(f.string() + ": not a loadable shared object: " + f.string() + ": "));
  CHECK(e.find("/proc/self/fd") == std::string::npos);
}

TEST_CASE("a shared object without the entry symbol is refused") {
  auto f = test_plugins() / "no_entry" / "sluice-no_entry.so";
  CHECK(load_error(f) ==
        f.string() + ": entry symbol sluice_module_get missing (not a sluice plugin)");
}

TEST_CASE("an ABI major mismatch is refused") {
  auto f = test_plugins() / "bad_major" / "sluice-bad_major.so";
  CHECK(load_error(f) == f.string() + fmt::format(": ABI major mismatch: plugin {}.{}, host {}.{}",
                                                  SLUICE_ABI_MAJOR + 1, SLUICE_ABI_MINOR,
                                                  SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR));
}

TEST_CASE("a plugin needing a newer minor than the host is refused") {
  auto f = test_plugins() / "bad_minor" / "sluice-bad_minor.so";
  CHECK(load_error(f) == newer_minor_error(f));
}

TEST_CASE("a failing init is reported with the plugin's reason") {
  auto f = test_plugins() / "init_fails" / "sluice-init_fails.so";
  CHECK(load_error(f) == f.string() + ": plugin init failed: init refused");
}

TEST_CASE("two plugins with the same name in one folder are refused") {
  std::string e = registry_error(test_plugins() / "dup");
  CHECK(e.find("two transform plugins named 'dup'") != std::string::npos);
  CHECK(e.find("sluice-dup_a.so") != std::string::npos);
  CHECK(e.find("sluice-dup_b.so") != std::string::npos);
}

TEST_CASE("a plugin file writable by others is refused unless allowed") {
  auto dir = fs::temp_directory_path() / ("sluice-insecure-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  auto f = dir / "sluice-transforms.so";
  fs::copy_file(built_plugins() / "sluice-transforms.so", f);
  ::chmod(f.c_str(), 0666);
  CHECK(load_error(f).find("refused: the file is writable by group or others") !=
        std::string::npos);
  CHECK(load_error(f, LoadOptions{true}).empty());
  ::chmod(f.c_str(), 0644);
  ::chmod(dir.c_str(), 0777);
  CHECK(load_error(f).find("its folder") != std::string::npos);
  ::chmod(dir.c_str(), 0755);
  CHECK(load_error(f).empty());
  fs::remove_all(dir);
}

TEST_CASE("a plugin whose create throws reports the exception text, and nothing leaks") {
  auto lib = PluginLibrary::load(test_plugins() / "throws_create" / "sluice-throws_create.so");
  REQUIRE(lib->plugins().size() == 1);
  PluginInfo info = lib->plugins()[0];
  info.library = lib;
  try {
    PluginInstance inst(info, "p.t", "{}");
    FAIL("create should have thrown");
  } catch (const PluginCreateError& e) {
    CHECK(std::string(e.what()) == "boom in create");
  }
}

TEST_CASE("metadata is copied out: names, versions and schemas of the first-party plugins") {
  PluginRegistry reg;
  reg.load_directory(built_plugins());
  const PluginInfo* gen = reg.find(SLUICE_KIND_SOURCE, "generator");
  REQUIRE(gen != nullptr);
  CHECK(gen->schema_json.find("\"count\"") != std::string::npos);
  CHECK(reg.find(SLUICE_KIND_SINK, "file") != nullptr);
  CHECK(reg.find(SLUICE_KIND_SOURCE, "file") != nullptr);
  CHECK(reg.find(SLUICE_KIND_TRANSFORM, "generator") == nullptr);
  auto names = reg.names(SLUICE_KIND_TRANSFORM);
  CHECK(std::find(names.begin(), names.end(), "fields") != names.end());
}

TEST_CASE("an earlier folder on the search path shadows a later one") {
  PluginRegistry reg;
  reg.load_search_path({test_plugins() / "stamp_v1", built_plugins()});
  const PluginInfo* stamp = reg.find(SLUICE_KIND_TRANSFORM, "stamp");
  REQUIRE(stamp != nullptr);
  CHECK(stamp->file.parent_path().filename() == "stamp_v1");
}
