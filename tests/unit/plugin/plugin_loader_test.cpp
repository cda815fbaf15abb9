// The ABI handshake and the loader's one-line errors, against tiny plugins built for the tests.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

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

TEST_CASE("two files of one folder providing one name: a warning, neither used, both named") {
  PluginRegistry reg;
  reg.load_directory(test_plugins() / "dup");  // no throw: the folder still loads
  CHECK(reg.find(SLUICE_KIND_TRANSFORM, "dup") == nullptr);
  REQUIRE(reg.skipped().size() == 1);
  CHECK(reg.skipped()[0].file.filename() == "sluice-dup_b.so");
  const auto why = reg.unusable(SLUICE_KIND_TRANSFORM, "dup");
  REQUIRE(why);
  CHECK(why->find("transform plugin 'dup' is provided by 2 files") != std::string::npos);
  CHECK(why->find("sluice-dup_a.so") != std::string::npos);
  CHECK(why->find("sluice-dup_b.so") != std::string::npos);
  CHECK_FALSE(reg.unusable(SLUICE_KIND_SINK, "dup"));
}

namespace {
// A private folder (0755) holding a copy of each file.
fs::path folder_with(const std::string& name, const std::vector<fs::path>& files) {
  const auto dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  for (const auto& f : files) {
    fs::copy_file(f, dir / f.filename());
    ::chmod((dir / f.filename()).c_str(), 0644);
  }
  return dir;
}
}  // namespace

TEST_CASE("files of a folder that are not plugins are skipped with their reasons; the rest load") {
  const auto dir =
      folder_with("sluice-forgiving-test", {test_plugins() / "notso" / "sluice-notso.so",
                                            test_plugins() / "no_entry" / "sluice-no_entry.so",
                                            test_plugins() / "bad_major" / "sluice-bad_major.so",
                                            test_plugins() / "init_fails" / "sluice-init_fails.so",
                                            test_plugins() / "stamp_v1" / "sluice-stamp.so"});
  PluginRegistry reg;
  reg.load_directory(dir);
  CHECK(reg.find(SLUICE_KIND_TRANSFORM, "stamp") != nullptr);
  std::vector<std::string> reasons;
  for (const auto& s : reg.skipped()) reasons.push_back(s.reason);
  REQUIRE(reasons.size() == 4);  // in file-name order
  CHECK(reasons[0].starts_with((dir / "sluice-bad_major.so").string() + ": ABI major mismatch"));
  CHECK(reasons[1] ==
        (dir / "sluice-init_fails.so").string() + ": plugin init failed: init refused");
  CHECK(reasons[2].starts_with((dir / "sluice-no_entry.so").string() + ": entry symbol"));
  CHECK(reasons[3] == (dir / "sluice-notso.so").string() + ": not a shared object");
  // A plugin named after a skipped file is unusable for that file's reason.
  const auto why = reg.unusable(SLUICE_KIND_TRANSFORM, "bad_major");
  REQUIRE(why);
  CHECK(why->find(reasons[0]) != std::string::npos);
  CHECK_FALSE(reg.unusable(SLUICE_KIND_TRANSFORM, "stamp"));
  // Any other unknown name gets the skipped files as a note.
  const std::string note = reg.skipped_note();
  for (const auto& r : reasons) CHECK(note.find(r) != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("a --plugin-path that is not there, or not a folder or file, is an error naming it") {
  const auto missing = test_plugins() / "no-such-folder";
  try {
    check_plugin_path_option(missing);
    FAIL("no error");
  } catch (const PluginLoadError& e) {
    CHECK(std::string(e.what()) ==
          "--plugin-path " + missing.string() + ": no such folder or file");
  }
  CHECK_THROWS_AS(check_plugin_path_option("/dev/null"), PluginLoadError);
  CHECK_NOTHROW(check_plugin_path_option(test_plugins() / "dup"));
  CHECK_NOTHROW(check_plugin_path_option(test_plugins() / "dup" / "sluice-dup_a.so"));
}

TEST_CASE("counters carry from an old host context to the new one; gauges do not") {
  HostContext old_host("t"), new_host("t");
  const sluice_host_api* o = old_host.api();
  o->sluice_host_counter_add(o->host_ctx, "records", 40);
  o->sluice_host_counter_add(o->host_ctx, "records", 2);
  o->sluice_host_gauge_set(o->host_ctx, "queue", 7);
  const sluice_host_api* n = new_host.api();
  n->sluice_host_counter_add(n->host_ctx, "records", 1);  // counted by the new one already
  new_host.carry_counters_from(old_host);
  CHECK(new_host.metric("records") == 43);
  CHECK(new_host.metric("queue") == 0);
  CHECK(new_host.counter_names() == std::set<std::string>{"records"});
  CHECK(old_host.counter_names() == std::set<std::string>{"records"});
}

TEST_CASE("the host API gives the pipeline's memory limit and the pressure last published") {
  auto memory = std::make_shared<sluice::core::HostMemory>(uint64_t{64} << 20);
  HostContext host("t", memory);
  const sluice_host_api* api = host.api();
  REQUIRE(SLUICE_HAS_FIELD(api, sluice_host_api, sluice_host_memory_limit));
  CHECK(api->sluice_host_memory_limit(api->host_ctx) == uint64_t{64} << 20);
  CHECK(api->sluice_host_memory_pressure(api->host_ctx) == 0.0);
  memory->pressure.store(0.75);
  CHECK(api->sluice_host_memory_pressure(api->host_ctx) == 0.75);
  // A host context outside a pipeline (a trial load, `sluice test`) knows neither: 0.
  HostContext alone("t");
  CHECK(alone.api()->sluice_host_memory_limit(alone.api()->host_ctx) == 0);
  CHECK(alone.api()->sluice_host_memory_pressure(alone.api()->host_ctx) == 0.0);
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
  CHECK(load_error(f, LoadOptions{true, {}}).empty());
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
