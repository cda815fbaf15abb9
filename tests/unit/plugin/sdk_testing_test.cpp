// The SDK's fake host (sluice/testing.hpp) driving the SDK's own examples: the C++ template
// linked into this test, and the C examples loaded from their built libraries.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sluice/sdk.hpp>
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

  // A value nested 100,000 deep is rejected with its reason, not a crash; the next record runs.
  Instance upper(module.plugin("uppercase"), R"({"field":"name"})");
  const std::string deep =
      R"({"name":"ada","d":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto out = upper.process({Record::value_of(deep), Record::value_of(R"({"name":"bo"})")});
  REQUIRE(out.rejects.size() == 1);
  CHECK(out.rejects[0].index == 0);
  CHECK(out.rejects[0].message.find("nested deeper than 256 levels") != std::string::npos);
  REQUIRE(out.records.size() == 1);
  CHECK(out.records[0].value == R"({"name":"BO"})");
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

// parse_json_within: one pass that builds the document and refuses a text nested past the limit,
// as json_nesting_depth before Parse did; brackets inside strings are not nesting.
TEST_CASE("parse_json_within parses as Document::Parse does and stops past the depth limit") {
  const auto nested = [](size_t depth) {
    return std::string(depth, '[') + "1" + std::string(depth, ']');
  };
  for (size_t depth : {sluice::kMaxJsonDepth - 1, sluice::kMaxJsonDepth}) {
    rapidjson::Document doc;
    const sluice::JsonParse parsed = sluice::parse_json_within(doc, nested(depth));
    CHECK(parsed.ok());
    CHECK(sluice::json_nesting_depth(nested(depth)) == depth);
    const rapidjson::Value* v = &doc;
    for (size_t i = 0; i < depth; ++i) {
      REQUIRE(v->IsArray());
      v = &(*v)[0];
    }
    CHECK(v->GetInt() == 1);
  }

  // One level past the limit, and a hundred thousand: refused, not a crash, and the document
  // is left null rather than holding an earlier parse.
  rapidjson::Document doc;
  REQUIRE(sluice::parse_json_within(doc, R"({"a":[1,2]})").ok());
  for (size_t depth : {sluice::kMaxJsonDepth + 1, size_t{100000}}) {
    const sluice::JsonParse parsed = sluice::parse_json_within(doc, nested(depth));
    CHECK(parsed.too_deep);
    CHECK_FALSE(parsed.error.IsError());
    CHECK(doc.IsNull());
  }
  CHECK(sluice::parse_json_within(doc, nested(3), 2).too_deep);

  // Brackets in strings, escaped quotes included, do not count.
  const std::string text = R"({"s":"[[[[\"[[[","n":-1.5e3,"t":true,"z":null,"u":"\u00e9"})";
  REQUIRE(sluice::parse_json_within(doc, text, 1).ok());
  CHECK(std::string(doc["s"].GetString()) == "[[[[\"[[[");
  CHECK(doc["n"].GetDouble() == -1500.0);
  CHECK(doc["u"].GetStringLength() == 2);

  // Invalid JSON: the reader's code and offset, as Parse would give them.
  const sluice::JsonParse bad = sluice::parse_json_within(doc, R"({"a":1,})");
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(bad.too_deep);
  rapidjson::Document reference;
  reference.Parse(R"({"a":1,})");
  CHECK(bad.error.Code() == reference.GetParseError());
  CHECK(bad.error.Offset() == reference.GetErrorOffset());
  CHECK(doc.IsNull());

  // In place: the strings point into the buffer.
  std::string buffer = R"({"k":"value","d":[[{}]]})";
  rapidjson::Document insitu;
  REQUIRE(sluice::parse_json_within_insitu(insitu, buffer.data(), 4).ok());
  CHECK(insitu["k"].GetString() >= buffer.data());
  CHECK(insitu["k"].GetString() < buffer.data() + buffer.size());
  std::string deeper = R"({"d":[[{}]]})";
  CHECK(sluice::parse_json_within_insitu(insitu, deeper.data(), 3).too_deep);
}
