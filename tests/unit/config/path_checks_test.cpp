// check_stage_paths: `sluice validate`'s checks of path fields, by the schema's path_kind.
#include "config/path_checks.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config_test_support.hpp"
#include "sluice/sdk.hpp"

using namespace sluice::config;
using namespace sluice::config::testing;
namespace fs = std::filesystem;

namespace {

std::string schema() {
  using Kind = sluice::ConfigSchema::PathKind;
  sluice::ConfigSchema s;
  s.string("in").default_value("").path(Kind::input);
  s.string("out").default_value("").path(Kind::output);
  s.string("log").default_value("").path();
  s.string("label").default_value("");  // not a path: never looked at
  return s.to_json();
}

// A scratch folder with a readable file `in.txt`.
fs::path scratch() {
  const fs::path dir =
      fs::temp_directory_path() / ("sluice-path-checks-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "in.txt") << "x\n";
  return dir;
}

// The error of checking a sink whose mapping has `fields` (one "key: value" per line).
std::string check_error(const fs::path& dir, const std::string& fields) {
  const auto file = parse_pipelines("name: p\nsource: {type: g}\nsink:\n  type: s\n" + fields,
                                    (dir / "p.yaml").string());
  return error_of([&] { check_stage_paths(file.pipelines.at(0).sink, schema()); });
}

void check_ok(const fs::path& dir, const std::string& fields) {
  const auto file = parse_pipelines("name: p\nsource: {type: g}\nsink:\n  type: s\n" + fields,
                                    (dir / "p.yaml").string());
  CHECK_NOTHROW(check_stage_paths(file.pipelines.at(0).sink, schema()));
}

}  // namespace

TEST_CASE("path fields are checked by kind, relative to the YAML file's folder") {
  const fs::path dir = scratch();
  const std::string at = (dir / "p.yaml").string();
  check_ok(dir, "  in: in.txt\n  out: new.txt\n  log: new.log\n  label: nowhere/x\n");
  check_ok(dir, "  in: ''\n");  // empty: the plugin's own default applies
  CHECK_CONFIG_ERROR(
      check_error(dir, "  in: missing.txt\n"), at + ":5:7: ",
      "sink 's': field 'in': '" + (dir / "missing.txt").string() + "': no such file");
  CHECK_CONFIG_ERROR(check_error(dir, "  out: nowhere/x\n"), at + ":5:8: ",
                     "the folder '" + (dir / "nowhere").string() + "' does not exist");
  CHECK_CONFIG_ERROR(check_error(dir, "  out: .\n"), at + ":5:8: ", "a folder, not a file");
  // A path of no declared kind needs its folder, nothing more.
  CHECK_CONFIG_ERROR(check_error(dir, "  log: nowhere/x.log\n"), at + ":5:8: ",
                     "the folder '" + (dir / "nowhere").string() + "' does not exist");
  fs::remove_all(dir);
}

TEST_CASE("an output folder or file that cannot be written is refused") {
  if (geteuid() == 0) return;  // root writes anywhere: nothing to refuse
  const fs::path dir = scratch();
  fs::create_directories(dir / "locked");
  fs::permissions(dir / "locked", fs::perms::owner_read | fs::perms::owner_exec);
  CHECK_CONFIG_ERROR(check_error(dir, "  out: locked/x\n"),
                     (dir / "p.yaml").string() + ":5:8: ", "is not writable");
  fs::permissions(dir / "in.txt", fs::perms::none);
  CHECK_CONFIG_ERROR(check_error(dir, "  in: in.txt\n"),
                     (dir / "p.yaml").string() + ":5:7: ", "not readable");
  fs::permissions(dir / "locked", fs::perms::owner_all);
  fs::remove_all(dir);
}
