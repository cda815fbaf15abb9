// The differential test of sluice's Kafka Connect and Debezium transforms: every case of a corpus
// (tests/reference/kafka-smt/corpus.jsonl, debezium_corpus.jsonl) goes through the real
// connect-transforms or Debezium classes (one JVM run of the reference harness) and through the
// kafka_smt or debezium_smt plugin; the outputs must agree
// record by record (topic, JSON-normalized key and value, headers, timestamp; an exception in
// Kafka must be a rejection in sluice). docs/transforms.md names the deliberate departures.
// Every case runs again as a step of kafka_smt's `chain` transform, against the same reference;
// and pairs of cases run as a two-step chain must give byte for byte what the two stages give.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

std::string to_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return sb.GetString();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<rapidjson::Document> json_lines(const std::string& text) {
  std::vector<rapidjson::Document> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    out.emplace_back().Parse(line.c_str());
    REQUIRE_MESSAGE(!out.back().HasParseError(), "bad JSON line: " << line);
  }
  return out;
}

// The reference outputs: the harness run once over the whole corpus.
std::string run_reference(const std::string& corpus) {
  const std::string cmd =
      env_or_fail("SLUICE_SOURCE_DIR") + "/tests/reference/kafka-smt/harness < '" + corpus + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  REQUIRE_MESSAGE(::pclose(p) == 0, "the reference harness failed");
  return out;
}

// Debezium's class -> sluice's plugin name.
const std::map<std::string, std::string> kDebeziumPlugins = {
    {"io.debezium.transforms.ExtractNewRecordState", "unwrap"},
    {"io.debezium.transforms.outbox.EventRouter", "outbox"},
    {"io.debezium.transforms.ByLogicalTableRouter", "table_router"}};

// Kafka's or Debezium's class -> sluice's plugin name and target.
std::pair<std::string, std::string> plugin_of(std::string cls) {
  if (auto it = kDebeziumPlugins.find(cls); it != kDebeziumPlugins.end()) return {it->second, ""};
  cls = cls.substr(cls.rfind('.') + 1);
  std::string target;
  if (auto d = cls.find('$'); d != std::string::npos) {
    target = cls.substr(d + 1) == "Key" ? "key" : "value";
    cls = cls.substr(0, d);
  }
  std::string name;  // CamelCase -> snake_case
  for (char ch : cls) {
    if (std::isupper(static_cast<unsigned char>(ch)) && !name.empty()) name += '_';
    name += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return {name, target};
}

// The sluice config of a case: Kafka's keys as they are, plus target, schemas and predicate.
std::string sluice_config(const rapidjson::Value& c, const std::string& target) {
  rapidjson::Document cfg(rapidjson::kObjectType);
  auto& a = cfg.GetAllocator();
  if (c.HasMember("config")) cfg.CopyFrom(c["config"], a);
  if (!target.empty()) cfg.AddMember("target", rapidjson::Value(target.c_str(), a), a);
  cfg.AddMember("schemas.enable", c.HasMember("schemas") && c["schemas"].GetBool(), a);
  if (c.HasMember("predicate")) {
    rapidjson::Value p(rapidjson::kObjectType);
    if (c["predicate"].HasMember("config")) p.CopyFrom(c["predicate"]["config"], a);
    const std::string type = plugin_of(c["predicate"]["class"].GetString()).first;
    p.AddMember("type", rapidjson::Value(type.c_str(), a), a);
    cfg.AddMember("predicate", p, a);
    cfg.AddMember("negate", c.HasMember("negate") && c["negate"].GetBool(), a);
  }
  return to_text(cfg);
}

std::optional<std::string> json_or_null(const rapidjson::Value& r, const char* name) {
  if (!r.HasMember(name) || r[name].IsNull()) return std::nullopt;
  return to_text(r[name]);
}

TestRecord input_record(const rapidjson::Value& r) {
  TestRecord t;
  t.topic = r.HasMember("topic") ? r["topic"].GetString() : "t";
  t.partition = r.HasMember("partition") ? r["partition"].GetInt() : 0;
  t.timestamp_ms =
      r.HasMember("timestamp") && !r["timestamp"].IsNull() ? r["timestamp"].GetInt64() : 0;
  t.key = json_or_null(r, "key");
  t.value = json_or_null(r, "value");
  if (r.HasMember("headers"))
    for (const auto& h : r["headers"].GetArray())
      t.headers.emplace_back(h[0].GetString(), h[1].GetString());
  return t;
}

// JSON-normalized: objects compare by members whatever their order, numbers by value.
bool same_json(const std::optional<std::string>& got, const rapidjson::Value& want) {
  if (!got) return want.IsNull();
  rapidjson::Document d;
  d.Parse(got->c_str());
  return !d.HasParseError() && d == want;
}

// What differs between sluice's output for one record and Kafka's, or "".
std::string difference(const FakeWriter& out, const rapidjson::Value& want) {
  if (want.IsObject() && want.HasMember("error"))
    return out.rejects.size() == 1 ? "" : "Kafka threw " + std::string(want["error"].GetString());
  if (!out.rejects.empty()) return "sluice rejected: " + out.rejects[0].message;
  if (want.IsNull()) return out.records.empty() ? "" : "Kafka dropped the record";
  if (out.records.size() != 1) return "sluice dropped the record";
  const TestRecord& got = out.records[0];
  if (got.topic != want["topic"].GetString()) return "topic " + got.topic;
  if (!same_json(got.key, want["key"])) return "key " + got.key.value_or("null");
  if (!same_json(got.value, want["value"])) return "value " + got.value.value_or("null");
  if (!want["timestamp"].IsNull() && got.timestamp_ms != want["timestamp"].GetInt64())
    return "timestamp " + std::to_string(got.timestamp_ms);
  const auto& hs = want["headers"].GetArray();
  bool same_headers = hs.Size() == got.headers.size();
  for (size_t i = 0; same_headers && i < hs.Size(); ++i)
    same_headers = got.headers[i].first == hs[i][0].GetString() &&
                   (hs[i][1].IsNull() || got.headers[i].second == hs[i][1].GetString());
  return same_headers ? "" : "headers differ";
}

// The config of a `chain` of the cases' SMTs (all with the same schemas.enable). `as_fused`: each
// step keeps its schemas.enable, as in the chain `sluice run` folds adjacent stages into.
std::string chain_config(const std::vector<const rapidjson::Value*>& cases, bool as_fused) {
  rapidjson::Document cfg(rapidjson::kObjectType);
  auto& a = cfg.GetAllocator();
  rapidjson::Value steps(rapidjson::kArrayType);
  bool schemas = false;
  for (const rapidjson::Value* c : cases) {
    auto [plugin, target] = plugin_of((*c)["smt"].GetString());
    rapidjson::Document step;
    step.Parse(sluice_config(*c, target).c_str());
    schemas = step["schemas.enable"].GetBool();
    if (!as_fused) step.RemoveMember("schemas.enable");
    step.AddMember("type", rapidjson::Value(plugin.c_str(), step.GetAllocator()),
                   step.GetAllocator());
    steps.PushBack(rapidjson::Value(step, a), a);
  }
  cfg.AddMember("schemas.enable", schemas, a);
  cfg.AddMember("steps", steps, a);
  return to_text(cfg);
}

bool reads_schemas(const rapidjson::Value& c) {
  return c.HasMember("schemas") && c["schemas"].GetBool();
}

// The plugin of a case as a stage of its own, from the module `lib`.
std::unique_ptr<Instance> stage(Library& lib, FakeHost& host, const rapidjson::Value& c) {
  auto [plugin, target] = plugin_of(c["smt"].GetString());
  return std::make_unique<Instance>(lib.plugin(SLUICE_KIND_TRANSFORM, plugin), host,
                                    sluice_config(c, target));
}

std::unique_ptr<Instance> chain(Library& kafka_smt, FakeHost& host,
                                const std::vector<const rapidjson::Value*>& cases,
                                bool as_fused = false) {
  return std::make_unique<Instance>(kafka_smt.plugin(SLUICE_KIND_TRANSFORM, "chain"), host,
                                    chain_config(cases, as_fused));
}

// Runs every case of tests/reference/kafka-smt/CORPUS through the reference and through the
// plugins of `module` (or kafka_smt's chain), checking each record.
void compare_corpus(const std::string& corpus_name, const std::string& module, bool as_chain) {
  const std::string corpus =
      env_or_fail("SLUICE_SOURCE_DIR") + "/tests/reference/kafka-smt/" + corpus_name;
  const auto cases = json_lines(read_file(corpus));
  const auto reference = json_lines(run_reference(corpus));
  REQUIRE(reference.size() == cases.size());
  Library lib(plugin_path(as_chain ? "kafka_smt" : module));
  FakeHost host;
  size_t records = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string name = c["name"].GetString();
    CAPTURE(name);
    const auto t = as_chain ? chain(lib, host, {&c}) : stage(lib, host, c);
    const auto& outputs = reference[i]["outputs"].GetArray();
    const auto& inputs = c["records"].GetArray();
    REQUIRE(outputs.Size() == inputs.Size());
    for (size_t j = 0; j < inputs.Size(); ++j, ++records) {
      CAPTURE(j);
      FakeWriter out;
      REQUIRE(t->process({input_record(inputs[j])}, out).ok());
      CHECK_MESSAGE(difference(out, outputs[j]) == "", "reference: " << to_text(outputs[j]));
    }
  }
  MESSAGE(cases.size() << " cases, " << records << " records compared");
}

// One record, or a rejection, or nothing: what a stage or a chain made of one input record.
std::string outcome(const FakeWriter& out) {
  if (!out.rejects.empty()) return "rejected: " + out.rejects[0].message;
  if (out.records.empty()) return "dropped";
  const TestRecord& r = out.records[0];
  std::string text = r.topic + " | " + r.key.value_or("<null>") + " | " +
                     r.value.value_or("<null>") + " | " + std::to_string(r.timestamp_ms);
  for (const auto& [k, v] : r.headers) text += " | " + k + "=" + v;
  return text;
}

// What two stages make of one record: the second gets the first's output.
std::string through_stages(Instance& first, Instance& second, const TestRecord& in) {
  FakeWriter a;
  REQUIRE(first.process({in}, a).ok());
  if (!a.rejects.empty() || a.records.empty()) return outcome(a);
  FakeWriter b;
  REQUIRE(second.process({a.records[0]}, b).ok());
  return outcome(b);
}

// Each case's SMT followed by the next case's (where both read schemas alike), over the first
// case's records: as two stages of `module` (each parsing and writing) and as one chain (parsing
// once and writing once). The chain must give byte for byte what the stages give.
void compare_pairs(const std::string& corpus_name, const std::string& module) {
  const auto cases = json_lines(
      read_file(env_or_fail("SLUICE_SOURCE_DIR") + "/tests/reference/kafka-smt/" + corpus_name));
  Library stages(plugin_path(module)), kafka_smt(plugin_path("kafka_smt"));
  FakeHost host;
  size_t records = 0;
  for (size_t i = 0; i + 1 < cases.size(); ++i) {
    const auto &c1 = cases[i], &c2 = cases[i + 1];
    if (reads_schemas(c1) != reads_schemas(c2)) continue;
    CAPTURE(c1["name"].GetString());
    CAPTURE(c2["name"].GetString());
    const auto first = stage(stages, host, c1), second = stage(stages, host, c2);
    const auto both = chain(kafka_smt, host, {&c1, &c2}, /*as_fused=*/true);
    for (const auto& r : c1["records"].GetArray()) {
      const TestRecord in = input_record(r);
      FakeWriter out;
      REQUIRE(both->process({in}, out).ok());
      CHECK(outcome(out) == through_stages(*first, *second, in));
      ++records;
    }
  }
  MESSAGE(records << " records compared");
}

}  // namespace

TEST_CASE("sluice's Kafka transforms do what Kafka Connect's do on the whole corpus") {
  compare_corpus("corpus.jsonl", "kafka_smt", false);
}

TEST_CASE("every Kafka transform does the same as a step of a chain") {
  compare_corpus("corpus.jsonl", "kafka_smt", true);
}

TEST_CASE("a fused chain of two Kafka transforms does what the two stages do, byte for byte") {
  compare_pairs("corpus.jsonl", "kafka_smt");
}

TEST_CASE("sluice's Debezium transforms do what Debezium's do on the whole corpus") {
  compare_corpus("debezium_corpus.jsonl", "debezium_smt", false);
}

TEST_CASE("every Debezium transform does the same as a step of a chain") {
  compare_corpus("debezium_corpus.jsonl", "debezium_smt", true);
}

TEST_CASE("a fused chain of two Debezium transforms does what the two stages do, byte for byte") {
  compare_pairs("debezium_corpus.jsonl", "debezium_smt");
}
