// A plugin's config schema checked on its own: each kind of defect named with its field.
#include "plugin/schema_check.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using sluice::plugin::schema_problems;

namespace {
// The one problem of a schema with one field `f` declared as `attributes`.
std::vector<std::string> problems_of_field(const std::string& attributes) {
  return schema_problems(R"({"fields":[{"name":"f",)" + attributes + "}]}");
}
}  // namespace

TEST_CASE("a sound schema has no problems") {
  CHECK(schema_problems(R"({"fields":[]})").empty());
  CHECK(problems_of_field(R"("type":"int","default":5,"min":1,"max":10,"doc":"n")").empty());
  CHECK(problems_of_field(R"("type":"string","enum":["a","b"],"default":"b")").empty());
  CHECK(problems_of_field(R"("type":"string","path":true,"path_kind":"input")").empty());
  CHECK(problems_of_field(R"("type":"double","default":1,"min":0.5)").empty());
}

TEST_CASE("each defect is named with its field") {
  struct Case {
    std::string attributes, problem;
  };
  const std::vector<Case> cases = {
      {R"("type":"int","default":"high")", R"(field 'f': default "high" is not a int)"},
      {R"("type":"int","default":1.5)", "field 'f': default 1.5 is not a int"},
      {R"("type":"bool","default":1)", "field 'f': default 1 is not a bool"},
      {R"("type":"int","min":10,"max":1)", "field 'f': min 10 is above max 1"},
      {R"("type":"int","default":0,"min":1)", "field 'f': default 0 is outside min..max (1..)"},
      {R"("type":"string","enum":["a","b"],"default":"c")",
       R"(field 'f': default "c" is not one of the enum ["a","b"])"},
      {R"("type":"string","enum":"a")", "field 'f': enum must be a list of strings"},
      {R"("type":"integer")",
       R"(field 'f': type "integer" is not one of string, int, double, bool, list, object)"},
      {R"("type":"string","path":true,"path_kind":"in")",
       "field 'f': path_kind 'in' is not input, output or any"},
      {R"("type":"string","required":"yes")",
       R"(field 'f': required must be true or false, not "yes")"},
      {R"("type":"int","min":"1")", R"(field 'f': min "1" is not a number)"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.attributes);
    const auto problems = problems_of_field(c.attributes);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0] == c.problem);
  }
}

TEST_CASE("a malformed schema says so") {
  const auto problems = schema_problems(R"({"fields":[{"name":"f",}]})");
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].starts_with("the schema is not valid JSON: "));
  CHECK(schema_problems(R"({"field":[]})") ==
        std::vector<std::string>{R"(the schema is not an object with a "fields" list)"});
  CHECK(schema_problems(R"({"fields":[{"type":"int"}]})") ==
        std::vector<std::string>{R"(field #1: not an object with a string "name")"});
  CHECK(schema_problems(R"({"fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]})") ==
        std::vector<std::string>{"field 'a': declared twice"});
}

// A plugin that lies may hand over a schema nested 200,000 deep (in a default, say): RapidJSON's
// recursive parse would run the host out of stack. A problem, not a crash.
TEST_CASE("a schema nested past the depth limit is a problem, not a crash") {
  const std::string abyss = std::string(200000, '[') + std::string(200000, ']');
  const auto problems =
      schema_problems(R"({"fields":[{"name":"f","type":"list","default":)" + abyss + "}]}");
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "the schema is nested deeper than 64 levels");
}
