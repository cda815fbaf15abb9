// fuse_transforms: which adjacent transform stages `sluice run` folds into one `chain` stage.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/pipeline_spec.hpp"
#include "config/yaml_reader.hpp"
#include "config_test_support.hpp"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

PipelineSpec fused(const std::string& transforms, const std::string& performance = "") {
  PipelineFile file =
      parse_pipelines(with_pipeline("transforms:\n" + transforms + performance), "p.yaml");
  REQUIRE(file.pipelines.size() == 1);
  fuse_transforms(file.pipelines[0]);
  return file.pipelines[0];
}

std::vector<std::string> shown_types(const PipelineSpec& p) {
  std::vector<std::string> out;
  for (const auto& t : p.transforms) out.push_back(shown_type(t));
  return out;
}

const std::string kFiveSmts =
    "  - {type: unwrap, schemas.enable: true, add.fields: 'op,table'}\n"
    "  - {type: replace_field, schemas.enable: true, exclude: email}\n"
    "  - {type: insert_field, schemas.enable: true, static.field: p, static.value: bench}\n"
    "  - {type: mask_field, schemas.enable: true, fields: ssn}\n"
    "  - type: regex_router\n"
    "    schemas.enable: true\n"
    "    regex: 'a\\.(.*)'\n"
    "    replacement: 'b.$1'\n";

}  // namespace

TEST_CASE("adjacent SMT stages with the same schemas.enable run as one chain") {
  const PipelineSpec p = fused(kFiveSmts);
  REQUIRE(p.transforms.size() == 1);
  const StageSpec& chain = p.transforms[0];
  CHECK(chain.type == "chain");
  CHECK(chain.role == "transform");
  CHECK(shown_type(chain) == "chain(unwrap,replace_field,insert_field,mask_field,regex_router)");
  CHECK(chain.instance_name == "orders.transform0");
  CHECK(chain.location.str() == "p.yaml:5:5");
  CHECK(chain.node["type"].as<std::string>() == "chain");
  CHECK(chain.node["schemas.enable"].as<std::string>() == "true");
  // Each step is the stage's mapping as written: the chain's errors point at its lines.
  const YAML::Node steps = chain.node["steps"];
  REQUIRE(steps.size() == 5);
  CHECK(steps[0]["type"].as<std::string>() == "unwrap");
  CHECK(steps[4]["replacement"].as<std::string>() == "b.$1");
  const YamlReader reader("p.yaml");
  CHECK(reader.at(steps[4]["regex"]).str() == "p.yaml:11:12");
}

TEST_CASE("what does not fold: other plugins, host keys, another schemas.enable, lone SMTs") {
  const PipelineSpec p = fused(
      "  - {type: unwrap}\n"
      "  - {type: mask_field, fields: ssn}\n"
      "  - {type: fields, add: {env: prod}}\n"          // not an SMT: ends the run
      "  - {type: cast, spec: 'a:int32'}\n"             // alone between two other stages
      "  - {type: mask_field, fields: ssn, name: m}\n"  // a name the chain would lose
      "  - {type: flatten, isolation: process}\n"       // per-stage isolation
      "  - {type: flatten, schemas.enable: true}\n"
      "  - {type: hoist_field, field: v}\n"  // schemas.enable false: not the previous one's
      "  - {type: drop_headers, headers: h, schemas.enable: false}\n"
      "  - {type: chain, steps: [{type: flatten}]}\n"  // a chain is not a step
      "  - {type: flatten}\n");
  CHECK(shown_types(p) == std::vector<std::string>{
                              "chain(unwrap,mask_field)", "fields", "cast", "mask_field", "flatten",
                              "flatten", "chain(hoist_field,drop_headers)", "chain", "flatten"});
  CHECK(p.transforms[0].node["schemas.enable"].as<std::string>() == "false");
  CHECK(p.transforms[3].instance_name == "m");
  CHECK(p.transforms[6].instance_name == "orders.transform7");
  CHECK(p.transforms[8].instance_name == "orders.transform10");
}

TEST_CASE("a value a chain step would read differently keeps its stage apart") {
  // As its own stage, a string field keeps `007` and `True` as written; as a step's value they
  // would read as the number 7 and the boolean true. A quoted boolean and a null likewise.
  for (const std::string odd :
       {"static.value: 007", "static.value: True", "static.value: 1.50",
        "static.value: ${env:HOME}", "static.value:", "replace.null.with.default: 'true'"}) {
    CAPTURE(odd);
    const PipelineSpec p = fused(
        "  - {type: unwrap}\n"
        "  - type: insert_field\n"
        "    static.field: s\n"
        "    " +
        odd + "\n" + "  - {type: mask_field, fields: ssn}\n");
    CHECK(shown_types(p) == std::vector<std::string>{"unwrap", "insert_field", "mask_field"});
  }
  const PipelineSpec plain = fused(
      "  - {type: unwrap}\n"
      "  - {type: insert_field, static.field: s, static.value: 42, replace.null.with.default: "
      "true}\n");
  CHECK(shown_types(plain) == std::vector<std::string>{"chain(unwrap,insert_field)"});
}

TEST_CASE("performance.fuse_transforms: false keeps every stage as written") {
  const PipelineSpec p = fused(kFiveSmts, "performance: {fuse_transforms: false}\n");
  CHECK_FALSE(p.performance.fuse_transforms);
  CHECK(shown_types(p) == std::vector<std::string>{"unwrap", "replace_field", "insert_field",
                                                   "mask_field", "regex_router"});
  CHECK(fused(kFiveSmts).performance.fuse_transforms);
}

TEST_CASE("folding leaves the stages' own mappings as they were") {
  PipelineFile file = parse_pipelines(with_pipeline("transforms:\n" + kFiveSmts), "p.yaml");
  const std::vector<StageSpec> written = file.pipelines[0].transforms;
  file = fuse_transforms(std::move(file));
  REQUIRE(file.pipelines[0].transforms.size() == 1);
  CHECK(written[0].node["type"].as<std::string>() == "unwrap");
  CHECK_FALSE(written[0].node["steps"]);
  CHECK(written[0].type == "unwrap");
}
