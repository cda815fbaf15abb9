// The SDK's fake host (sluice/testing.hpp) driving the SDK's own examples: the C++ template
// linked into this test, and the C examples loaded from their built libraries.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sluice/testing.hpp>
#include <sstream>
#include <string>

namespace fs = std::filesystem;
using sluice::testing::Instance;
using sluice::testing::Module;
using sluice::testing::Record;

namespace {

// uppercase, whatever its language: a JSON record upper-cased, a non-JSON one rejected, a
// tombstone forwarded; each output names its input.
void check_uppercase(const Module& module) {
  const sluice_plugin& plugin = module.plugin("uppercase");
  REQUIRE(plugin.config_schema_json != nullptr);  // built by the module's init at the latest
  CHECK(std::string(plugin.config_schema_json).find("\"field\"") != std::string::npos);
  CHECK_THROWS_WITH(Instance(plugin, R"({"field":""})"),
                    doctest::Contains("field must not be empty"));

  Instance upper(plugin, R"({"field":"name"})");
  Record tombstone;
  tombstone.key = "k";
  auto out = upper.process(
      {Record::value_of(R"({"name":"ada","n":1})"), Record::value_of("not json"), tombstone});
  CHECK(out.result.ok());
  REQUIRE(out.records.size() == 2);
  CHECK(out.records[0].value == R"({"name":"ADA","n":1})");
  CHECK(out.records[0].input_index == 0);
  CHECK_FALSE(out.records[1].value.has_value());
  CHECK(out.records[1].key == "k");
  CHECK(out.records[1].input_index == 2);
  REQUIRE(out.rejects.size() == 1);
  CHECK(out.rejects[0].index == 1);
  CHECK(out.rejects[0].status == SLUICE_ERROR);
}

fs::path c_example(const char* name) {
  return fs::path(std::getenv("SLUICE_BINARY_DIR")) / "sdk" / "examples" / "c" / "plugins" /
         (std::string("sluice-") + name + ".so");
}

}  // namespace

// The template is compiled into this test: its entry point is this binary's.
extern "C" const sluice_module* sluice_module_get(uint32_t, uint32_t);

TEST_CASE("the C++ template, linked in, through the fake host") {
  Module module(&sluice_module_get);
  CHECK(std::string(module.raw().name) == "my_plugin");
  check_uppercase(module);
}

TEST_CASE("the C example transform, loaded from its library, through the fake host") {
  check_uppercase(Module::open(c_example("c_uppercase").string()));
}

TEST_CASE("the C example sink: put, rejects, counters, flush and its config errors") {
  Module module = Module::open(c_example("c_lines").string());
  const sluice_plugin& lines = module.plugin("lines");
  CHECK(sluice::testing::validate(lines, "{}").status == SLUICE_ERROR);
  CHECK(sluice::testing::validate(lines, "{}").field == "path");

  const fs::path file = fs::temp_directory_path() / "sluice-testing-lines.txt";
  fs::remove(file);
  {
    Instance sink(lines, R"({"path":")" + file.string() + R"("})");
    auto out = sink.put({Record::value_of("one"), Record::value_of("two")});
    CHECK(out.result.ok());
    CHECK(out.rejects.empty());
    CHECK(sink.flush().ok());
    CHECK(sink.host().counter("records_written") == 2);
    std::string state;
    CHECK(sink.snapshot(state).ok());  // no snapshot hook: nothing to hand on
    CHECK(state.empty());
  }
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str() == "one\ntwo\n");
  fs::remove(file);
}
