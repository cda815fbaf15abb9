// Bad pipeline files through `sluice run` and `sluice validate`: empty, binary, deeply nested,
// huge. Each is exit 2 with FILE:LINE:COL (or FILE) and a message, never a crash or a hang.
#include <doctest/doctest.h>

#include "fault_run.hpp"

namespace {

using namespace sluice::faults;

struct BadFile {
  std::string name;
  std::string text;
  std::string expected;  // part of the message on stderr
};

std::vector<BadFile> bad_files() {
  const std::string valid_head = "name: p\nsource: {type: generator, count: 10}\n";
  return {
      {"empty", "", "empty"},
      {"only-comments", "# nothing here\n\n", "empty"},
      {"binary",
       std::string("\x7f"
                   "ELF\x02\x01\x01\x00\x00\x00\xff\xfe",
                   13),
       "binary"},
      {"latin1", "name: caf\xe9\nsource: {type: generator}\nsink: {type: null}\n", "UTF-8"},
      {"deep-flow", "name: p\nsource: " + std::string(100000, '[') + "\n", "nesting"},
      {"deep-block",
       [] {
         std::string s = "name: p\nsource:\n";
         for (int d = 1; d <= 200; ++d)
           s += std::string(2 * d, ' ') + "k" + std::to_string(d) + ":\n";
         return s;
       }(),
       "nesting"},
      {"huge-value", valid_head + "sink: {type: null, x: " + std::string(2 << 20, 'v') + "}\n",
       "limit of 1 MiB"},
      {"huge-file", std::string(17 << 20, '#'), "16 MiB"},
      {"alias-bomb",
       "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, "
       "*c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, "
       "*e, *e, *e]\n",
       "nodes"},
      {"not-a-mapping", "- just\n- a list\n", ""},
  };
}

}  // namespace

TEST_CASE("bad pipeline files exit 2 with a located, clear message and no crash") {
  auto dir = scratch("bad-yaml");
  for (const auto& f : bad_files()) {
    CAPTURE(f.name);
    const fs::path file = dir / (f.name + ".yaml");
    sluice::test::write_file(file.string(), f.text);
    for (const char* command : {"validate", "run"}) {
      CAPTURE(command);
      auto r = sluice::test::run_process(
          {sluice_bin(), command, file.string(), "--plugin-path", plugin_dir().string()});
      INFO("stderr: " << r.err.substr(0, 2000));
      CHECK(r.exit_code == 2);
      // The message starts with the file's name (FILE:LINE:COL: or FILE: for the whole file).
      CHECK(r.err.find(file.string()) != std::string::npos);
      if (!f.expected.empty()) CHECK(r.err.find(f.expected) != std::string::npos);
      // A clear message, not a wall of input echoed back.
      CHECK(r.err.size() < 4096);
      CHECK(r.out.find("records in") == std::string::npos);
    }
  }
}

TEST_CASE("a pipeline file that is a directory entry of no YAML files exits 2") {
  auto dir = scratch("no-yaml-dir");
  auto r = sluice::test::run_process(
      {sluice_bin(), "validate", dir.string(), "--plugin-path", plugin_dir().string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find(dir.string()) != std::string::npos);
}
