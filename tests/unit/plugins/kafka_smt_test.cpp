// Unit tests of the kafka_smt module's config checks (its record behaviour is checked against
// Kafka itself by smt_differential_test).
#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

CallResult create(const char* plugin, const std::string& config) {
  return create_transform("kafka_smt", plugin, config);
}

void check_rejected(const char* plugin, const std::string& config, const std::string& words) {
  check_refused("kafka_smt", plugin, config, words);
}

}  // namespace

TEST_CASE("kafka_smt refuses configs Kafka would refuse, naming the key") {
  check_rejected("cast", R"({"spec":"a:int128"})", "unsupported type 'int128'");
  check_rejected("cast", R"({"spec":"int32,a:string"})", "cannot be mixed");
  check_rejected("regex_router", R"({"regex":"(","replacement":"x"})", "invalid regex");
  check_rejected("replace_field", R"({"renames":"a"})", "old:new");
  check_rejected("header_from", R"({"fields":"a,b","headers":"h","operation":"copy"})",
                 "same number");
  check_rejected("header_from", R"({"fields":"a","headers":"h","operation":"swap"})",
                 "move or copy");
  check_rejected("timestamp_converter", R"({"field":"t","target.type":"string"})",
                 "requires format");
  check_rejected("timestamp_router", R"({"timestamp.format":"yyyy-ww"})", "'w' is not supported");
  check_rejected("mask_field", R"({"fields":""})", "fields");
  check_rejected("insert_field", R"({"target":"header"})", "key or value");
  check_rejected("filter", R"({"predicate":{"type":"is_odd"}})", "predicate type");
  check_rejected("filter", R"({"predicate":{"type":"has_header_key"}})", "needs a name");
  check_rejected("extract_field", R"({"field":"a","field.syntax.version":"V3"})", "V1 or V2");
}

TEST_CASE("kafka_smt takes Kafka's list and boolean syntax from YAML lists and scalars alike") {
  CHECK(create("replace_field", R"({"exclude":["a"," b "],"renames":"x:y, z:w"})").ok());
  CHECK(create("filter", R"({"predicate":{"type":"record_is_tombstone"},"negate":"true"})").ok());
  check_rejected("filter", R"({"predicate":{"type":"record_is_tombstone"},"negate":"maybe"})",
                 "true or false");
}

TEST_CASE("a chain step may repeat the chain's schemas.enable, and its errors name the step") {
  // What `sluice run` makes of adjacent stages: each step keeps its stage's schemas.enable.
  CHECK(create("chain",
               R"({"schemas.enable":true,"steps":[{"type":"unwrap","schemas.enable":true},)"
               R"({"type":"mask_field","fields":"ssn","schemas.enable":true}]})")
            .ok());
  const CallResult differs =
      create("chain", R"({"schemas.enable":true,"steps":[{"type":"unwrap"},)"
                      R"({"type":"mask_field","fields":"ssn","schemas.enable":false}]})");
  CHECK_FALSE(differs.ok());
  CHECK(differs.field == "steps.1.schemas.enable");
  CHECK_MESSAGE(differs.message.find("set schemas.enable on the chain") != std::string::npos,
                differs.message);
  // The field names the step and its key, so that the host can point at the line written.
  const CallResult bad = create(
      "chain",
      R"({"steps":[{"type":"unwrap"},{"type":"regex_router","regex":"(","replacement":"x"}]})");
  CHECK_FALSE(bad.ok());
  CHECK(bad.field == "steps.1.regex");
  const CallResult unknown = create("chain", R"({"steps":[{"type":"unwrap","colour":1}]})");
  CHECK(unknown.field == "steps.0.colour");
  CHECK_MESSAGE(unknown.message.find("steps[0] (unwrap): unknown option 'colour' (options: ") !=
                    std::string::npos,
                unknown.message);
  CHECK(create("chain", R"({"steps":[{"type":"chain"}]})").field == "steps.0.type");
}

TEST_CASE("kafka_smt rejects JSON nested past the SDK's depth limit, and only that") {
  constexpr size_t kMaxDepth = 256;  // sluice::kMaxJsonDepth (sdk.hpp)
  Library lib(plugin_path("kafka_smt"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "insert_field"), host,
             R"({"static.field":"s","static.value":"v"})");
  const auto nested = [](size_t depth, const std::string& inner) {
    return std::string(depth, '[') + inner + std::string(depth, ']');
  };
  // Brackets inside strings, escaped quotes and backslashes do not count as nesting.
  const std::string tricky = R"("[[[\"[[[\\" , "\\\\[[[")";
  TestRecord deep, shallow;
  deep.value = R"({"a":)" + nested(kMaxDepth, "1") + "}";
  shallow.value = R"({"a":)" + nested(kMaxDepth - 1, tricky + ",1") + "}";
  FakeWriter out;
  REQUIRE(t.process({deep, shallow}, out).ok());
  REQUIRE(out.rejects.size() == 1);
  CHECK(out.rejects[0].message.find("nested too deep") != std::string::npos);
  REQUIRE(out.records.size() == 1);
  CHECK(out.records[0].value->find(R"("s":"v")") != std::string::npos);
}
