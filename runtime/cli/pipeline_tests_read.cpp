// Reading `sluice test` declarations: a pipeline's `tests:` and FILE.tests.yaml.
#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <filesystem>

#include "cli/pipeline_tests.hpp"
#include "config/did_you_mean.hpp"
#include "config/yaml_reader.hpp"

namespace sluice::cli {

namespace {

using config::ConfigError;
using config::location_of;

const std::vector<std::string> kTestKeys = {"name",   "pipeline",        "transforms", "input",
                                            "expect", "expect_rejected", "conditions"};
const std::vector<std::string> kRecordKeys = {"key",     "value",  "value_includes", "topic",
                                              "headers", "offset", "partition",      "timestamp"};

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// A YAML scalar as JSON, typed as YAML's core schema types it; a quoted scalar is a string.
void write_scalar(const YAML::Node& node, JsonWriter& w) {
  const std::string& text = node.Scalar();
  if (node.Tag() != "!") {  // not quoted: typed as YAML's core schema types it
    if (const auto b = config::parse_bool(text)) return static_cast<void>(w.Bool(*b));
    if (const auto i = config::parse_int(text)) return static_cast<void>(w.Int64(*i));
    if (const auto d = config::parse_double(text)) return static_cast<void>(w.Double(*d));
    if (text == "~" || text == "null" || text == "Null" || text == "NULL")
      return static_cast<void>(w.Null());
  }
  w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
}

void write_json(const YAML::Node& node, JsonWriter& w) {
  if (node.IsNull()) return static_cast<void>(w.Null());
  if (node.IsScalar()) return write_scalar(node, w);
  if (node.IsSequence()) {
    w.StartArray();
    for (const auto& item : node) write_json(item, w);
    w.EndArray();
    return;
  }
  w.StartObject();
  for (const auto& kv : node) {
    const std::string& k = kv.first.Scalar();
    w.Key(k.c_str(), static_cast<rapidjson::SizeType>(k.size()));
    write_json(kv.second, w);
  }
  w.EndObject();
}

// A key, value or header as bytes: a scalar as written, a mapping or list as its JSON text.
std::optional<std::string> bytes_of(const YAML::Node& node) {
  if (node.IsNull()) return std::nullopt;
  if (node.IsScalar()) return node.Scalar();
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  write_json(node, w);
  return std::string(sb.GetString(), sb.GetSize());
}

void check_keys(const YAML::Node& map, const std::vector<std::string>& keys,
                const std::string& file, const char* what) {
  if (!map.IsMap())
    throw ConfigError(location_of(map, file),
                      fmt::format("{} must be a mapping, got {}", what, config::kind_name(map)));
  for (const auto& kv : map)
    if (std::find(keys.begin(), keys.end(), kv.first.Scalar()) == keys.end())
      throw ConfigError(location_of(kv.first, file),
                        fmt::format("unknown key '{}' in a {}; known: {}", kv.first.Scalar(), what,
                                    config::join_names(keys)));
}

std::string text(const YAML::Node& node, const std::string& file, const char* what) {
  if (!node.IsScalar())
    throw ConfigError(location_of(node, file),
                      fmt::format("{} must be a string, got {}", what, config::kind_name(node)));
  return node.Scalar();
}

int64_t integer(const YAML::Node& node, const std::string& file, const char* what) {
  const auto v = node.IsScalar() ? config::parse_int(node.Scalar()) : std::nullopt;
  if (!v) throw ConfigError(location_of(node, file), fmt::format("{} must be an integer", what));
  return *v;
}

TestRecord read_record(const YAML::Node& node, const std::string& file) {
  check_keys(node, kRecordKeys, file, "test record");
  TestRecord r;
  r.where = location_of(node, file);
  if (const auto k = node["key"]; k) r.key = bytes_of(k), r.has_key = true;
  if (const auto v = node["value"]; v) r.value = bytes_of(v), r.has_value = true;
  if (const auto v = node["value_includes"]; v) r.value_includes = bytes_of(v);
  if (const auto t = node["topic"]; t) r.topic = text(t, file, "topic"), r.has_topic = true;
  if (const auto h = node["headers"]; h) {
    if (!h.IsMap())
      throw ConfigError(location_of(h, file), "headers must be a mapping of name: value");
    for (const auto& kv : h) r.headers.emplace_back(kv.first.Scalar(), bytes_of(kv.second));
    r.has_headers = true;
  }
  if (const auto p = node["partition"]; p)
    r.partition = static_cast<int32_t>(integer(p, file, "partition"));
  if (const auto o = node["offset"]; o) r.offset = integer(o, file, "offset");
  if (const auto t = node["timestamp"]; t) r.timestamp_ms = integer(t, file, "timestamp");
  return r;
}

std::vector<TestRecord> read_records(const YAML::Node& node, const std::string& file,
                                     const char* what) {
  if (!node.IsSequence())
    throw ConfigError(location_of(node, file), fmt::format("{} must be a list of records", what));
  std::vector<TestRecord> out;
  for (const auto& item : node) out.push_back(read_record(item, file));
  return out;
}

PipelineTest read_test(const YAML::Node& node, const std::string& file,
                       const std::string& pipeline) {
  check_keys(node, kTestKeys, file, "test");
  PipelineTest t;
  t.where = location_of(node, file);
  t.pipeline = node["pipeline"] ? text(node["pipeline"], file, "pipeline") : pipeline;
  if (!node["name"]) throw ConfigError(t.where, "a test needs a name");
  t.name = text(node["name"], file, "a test's name");
  if (const auto range = node["transforms"]; range) {
    const std::string range_text = text(range, file, "transforms");
    const auto dots = range_text.find("..");
    t.first = range_text.substr(0, dots);
    t.last = dots == std::string::npos ? t.first : range_text.substr(dots + 2);
  }
  if (!node["input"]) throw ConfigError(t.where, fmt::format("test '{}' has no input", t.name));
  t.input = read_records(node["input"], file, "input");
  if (node["expect"]) t.expect = read_records(node["expect"], file, "expect");
  if (node["expect_rejected"])
    t.expect_rejected =
        static_cast<size_t>(integer(node["expect_rejected"], file, "expect_rejected"));
  if (const auto conditions = node["conditions"]; conditions) {
    if (!conditions.IsSequence())
      throw ConfigError(location_of(conditions, file), "conditions must be a list of expressions");
    for (const auto& c : conditions)
      t.conditions.emplace_back(text(c, file, "a condition"), location_of(c, file));
  }
  if (!t.expect && !t.expect_rejected && t.conditions.empty())
    throw ConfigError(t.where, fmt::format("test '{}' expects nothing: give expect, "
                                           "expect_rejected or conditions",
                                           t.name));
  return t;
}

void read_test_list(const YAML::Node& list, const std::string& file, const std::string& pipeline,
                    std::vector<PipelineTest>& out) {
  if (!list.IsSequence()) throw ConfigError(location_of(list, file), "tests must be a list");
  for (const auto& item : list) out.push_back(read_test(item, file, pipeline));
}

// The `tests:` of the pipeline file's pipeline (or of each of its `pipelines:`).
void read_pipeline_file_tests(const std::string& file, std::vector<PipelineTest>& out) {
  const YAML::Node root = config::parse_document(config::read_text_file(file), file);
  if (!root.IsMap()) return;
  const auto of = [&](const YAML::Node& p) {
    if (p.IsMap() && p["tests"])
      read_test_list(p["tests"], file, p["name"] ? text(p["name"], file, "name") : "", out);
  };
  if (root["pipelines"] && root["pipelines"].IsSequence())
    for (const auto& p : root["pipelines"]) of(p);
  else
    of(root);
}

}  // namespace

TestFile read_tests(const std::string& file) {
  namespace fs = std::filesystem;
  TestFile out;
  std::string tests_file;
  if (file.ends_with(".tests.yaml")) {
    tests_file = file;
    out.pipeline_file = file.substr(0, file.size() - std::string(".tests.yaml").size()) + ".yaml";
  } else {
    out.pipeline_file = file;
    tests_file = (fs::path(file).parent_path() / fs::path(file).stem()).string() + ".tests.yaml";
  }
  read_pipeline_file_tests(out.pipeline_file, out.tests);
  if (fs::exists(tests_file)) {
    const YAML::Node root = config::parse_document(config::read_text_file(tests_file), tests_file);
    const YAML::Node list = root.IsMap() && root["tests"] ? root["tests"] : root;
    read_test_list(list, tests_file, "", out.tests);
  }
  return out;
}

}  // namespace sluice::cli
