// Running `sluice test`: a test's records through a range of the chain, compared to what it
// expects; a diff when they differ.
#include "cli/pipeline_tests.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <memory>
#include <ostream>

#include "config/pipeline_spec.hpp"
#include "config/stage_config.hpp"
#include "pipeline/plugin_calls.hpp"
#include "pipeline/writers.hpp"
#include "plugin/plugin_instance.hpp"

namespace sluice::cli {

namespace {

sluice_bytes view(const std::optional<std::string>& s) {
  if (!s) return {nullptr, 0};
  return {reinterpret_cast<const uint8_t*>(s->data()), s->size()};
}

std::optional<std::string> text(sluice_bytes b) {
  if (b.ptr == nullptr) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(b.ptr), b.len);
}

TestRecord from_record(const sluice_record& r) {
  TestRecord out;
  out.key = text(r.key);
  out.value = text(r.value);
  out.topic = text(r.topic).value_or("");
  for (size_t i = 0; i < r.header_count; ++i)
    out.headers.emplace_back(text(r.headers[i].key).value_or(""), text(r.headers[i].value));
  out.partition = r.partition;
  out.offset = r.offset;
  out.timestamp_ms = r.timestamp_ms;
  return out;
}

// The records of a test as the ABI's views; `input` must outlive them.
class InputBatch {
 public:
  explicit InputBatch(const std::vector<TestRecord>& input) {
    headers_.reserve(input.size());
    for (const auto& t : input) {
      auto& hs = headers_.emplace_back();
      for (const auto& [k, v] : t.headers)
        hs.push_back({{reinterpret_cast<const uint8_t*>(k.data()), k.size()}, view(v)});
      records_.push_back({sizeof(sluice_record),
                          view(t.key),
                          view(t.value),
                          {reinterpret_cast<const uint8_t*>(t.topic.data()), t.topic.size()},
                          hs.data(),
                          hs.size(),
                          t.partition,
                          t.offset,
                          t.timestamp_ms});
    }
  }
  std::span<const sluice_record> records() const { return records_; }

 private:
  std::vector<std::vector<sluice_header>> headers_;
  std::vector<sluice_record> records_;
};

struct Outcome {
  std::vector<TestRecord> records;
  std::vector<std::string> rejects;  // "stage: message"
  std::optional<std::string> error;  // a whole call failed
};

// The instances of one range of a pipeline's transforms, created as `sluice run` creates them.
class Chain {
 public:
  Chain(const config::PipelineSpec& spec, const PipelineTest& test,
        const plugin::PluginRegistry& reg) {
    const auto [from, to] = range(spec, test);
    for (size_t i = from; i <= to && i < spec.transforms.size(); ++i) add(spec, i, reg);
  }

  Outcome run(const std::vector<TestRecord>& input) const {
    Outcome out;
    InputBatch batch(input);
    std::span<const sluice_record> in = batch.records();
    std::unique_ptr<pipeline::CollectingWriter> previous;
    for (const auto& call : calls_) {
      auto writer = std::make_unique<pipeline::CollectingWriter>(in.size());
      if (auto failed = call.process(in, *writer)) {
        out.error = fmt::format("{} ({}): {}", call.name(), call.plugin(), failed->message);
        return out;
      }
      for (const auto& r : writer->rejects())
        out.rejects.push_back(fmt::format("{} ({}): {}", call.name(), call.plugin(), r.message));
      previous = std::move(writer);
      in = previous->records().records();
    }
    for (const auto& r : in) out.records.push_back(from_record(r));
    return out;
  }

 private:
  // The indexes of the first and last transform of the test's range: each end names a stage by
  // its `name:` or its type (the first such stage).
  static std::pair<size_t, size_t> range(const config::PipelineSpec& spec,
                                         const PipelineTest& test) {
    if (test.first.empty()) return {0, spec.transforms.size() - (spec.transforms.empty() ? 0 : 1)};
    const auto find = [&](const std::string& name) {
      for (size_t i = 0; i < spec.transforms.size(); ++i) {
        const auto& t = spec.transforms[i];
        if (t.type == name || t.instance_name == name || t.instance_name == spec.name + "." + name)
          return i;
      }
      throw config::ConfigError(
          test.where, fmt::format("test '{}': pipeline '{}' has no transform '{}'", test.name,
                                  spec.name, name));
    };
    const size_t first = find(test.first), last = find(test.last);
    if (last < first)
      throw config::ConfigError(test.where, fmt::format("test '{}': transforms '{}..{}' runs "
                                                        "backwards",
                                                        test.name, test.first, test.last));
    return {first, last};
  }

  void add(const config::PipelineSpec& spec, size_t i, const plugin::PluginRegistry& reg) {
    const config::StageSpec& stage = spec.transforms[i];
    const plugin::PluginInfo* info = reg.find(SLUICE_KIND_TRANSFORM, stage.type);
    if (!info) config::throw_unknown_plugin(stage, {});
    const std::string json = config::check_stage(stage, info->schema_json).json;
    std::shared_ptr<plugin::PluginInstance> instance;
    try {  // a plugin's complaint about its config points at the option in the YAML
      plugin::validate_config(*info, json);
      instance = std::make_shared<plugin::PluginInstance>(*info, stage.instance_name, json);
    } catch (const plugin::PluginCreateError& e) {
      throw config::ConfigError(config::field_location(stage, e.field()), e.what());
    }
    calls_.emplace_back(std::move(instance), std::make_shared<pipeline::CallCounters>(),
                        fmt::format("{}.transform[{}].{}", spec.name, i, stage.type));
  }

  std::vector<pipeline::TransformCall> calls_;
};

std::string shown(const std::optional<std::string>& s) { return s ? *s : "null"; }

// Values compare as JSON when both are JSON (so key order and spacing do not matter), else as
// bytes.
bool same_bytes(const std::optional<std::string>& a, const std::optional<std::string>& b) {
  if (!a || !b) return !a && !b;
  if (*a == *b) return true;
  rapidjson::Document x, y;
  x.Parse(a->c_str(), a->size());
  y.Parse(b->c_str(), b->size());
  return !x.HasParseError() && !y.HasParseError() && x == y;
}

// Whether `got` holds everything of `want`: an object's members recursively, anything else equal.
bool includes(const rapidjson::Value& want, const rapidjson::Value& got) {
  if (!want.IsObject() || !got.IsObject()) return want == got;
  for (const auto& m : want.GetObject()) {
    const auto it = got.FindMember(m.name);
    if (it == got.MemberEnd() || !includes(m.value, it->value)) return false;
  }
  return true;
}

bool value_includes(const std::string& want, const std::optional<std::string>& got) {
  if (!got) return false;
  rapidjson::Document x, y;
  x.Parse(want.c_str(), want.size());
  y.Parse(got->c_str(), got->size());
  return !x.HasParseError() && !y.HasParseError() && includes(x, y);
}

std::string headers_text(const TestRecord& r) {
  std::string out;
  for (const auto& [k, v] : r.headers)
    out += fmt::format("{}{}={}", out.empty() ? "" : ", ", k, shown(v));
  return "{" + out + "}";
}

std::string record_text(const TestRecord& r) {
  return fmt::format("topic={} key={} value={} headers={}", r.topic, shown(r.key), shown(r.value),
                     headers_text(r));
}

// What differs between an expected record and the output one, as `-`/`+` lines.
void diff_record(size_t i, const TestRecord& want, const TestRecord& got,
                 std::vector<std::string>& diffs) {
  const auto differ = [&](const char* field, const std::string& w, const std::string& g) {
    diffs.push_back(fmt::format("record {} {}:\n    - {}\n    + {}", i, field, w, g));
  };
  if (want.has_topic && want.topic != got.topic) differ("topic", want.topic, got.topic);
  if (want.has_key && !same_bytes(want.key, got.key))
    differ("key", shown(want.key), shown(got.key));
  if (want.has_value && !same_bytes(want.value, got.value))
    differ("value", shown(want.value), shown(got.value));
  if (want.value_includes && !value_includes(*want.value_includes, got.value))
    differ("value (includes)", *want.value_includes, shown(got.value));
  if (want.has_headers) {
    bool same = want.headers.size() == got.headers.size();
    for (size_t h = 0; same && h < want.headers.size(); ++h)
      same = want.headers[h].first == got.headers[h].first &&
             same_bytes(want.headers[h].second, got.headers[h].second);
    if (!same) differ("headers", headers_text(want), headers_text(got));
  }
}

std::string condition_json(const std::string& condition) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("condition");
  w.String(condition.c_str(), static_cast<rapidjson::SizeType>(condition.size()));
  w.Key("null.handling.mode");
  w.String("evaluate");
  w.EndObject();
  return sb.GetString();
}

// The indexes of the `records` for which `condition` is false. The expression_filter plugin
// evaluates it, so the language has one implementation, loaded like any plugin.
std::vector<size_t> failing(const std::string& condition, const config::Location& where,
                            const std::vector<TestRecord>& records,
                            const plugin::PluginRegistry& reg) {
  const plugin::PluginInfo* info = reg.find(SLUICE_KIND_TRANSFORM, "expression_filter");
  if (!info)
    throw config::ConfigError(where,
                              "conditions need the expression_filter plugin (module "
                              "`expression`) on the plugin path");
  std::shared_ptr<plugin::PluginInstance> instance;
  try {
    instance = std::make_shared<plugin::PluginInstance>(*info, "test.condition",
                                                        condition_json(condition));
  } catch (const plugin::PluginCreateError& e) {
    throw config::ConfigError(where, e.what());
  }
  const pipeline::TransformCall call(instance, std::make_shared<pipeline::CallCounters>(),
                                     "test.condition");
  InputBatch batch(records);
  pipeline::CollectingWriter kept(records.size());
  if (auto failed = call.process(batch.records(), kept))
    throw std::runtime_error("condition '" + condition + "' failed: " + failed->message);
  std::vector<bool> holds(records.size(), false);
  for (size_t origin : kept.origins()) holds[origin] = true;
  std::vector<size_t> out;
  for (size_t i = 0; i < holds.size(); ++i)
    if (!holds[i]) out.push_back(i);
  return out;
}

std::vector<std::string> compare(const PipelineTest& test, const Outcome& got,
                                 const plugin::PluginRegistry& reg) {
  std::vector<std::string> diffs;
  if (got.error) return {"the chain failed: " + *got.error};
  for (const auto& [condition, where] : test.conditions)
    for (size_t i : failing(condition, where, got.records, reg))
      diffs.push_back(fmt::format("record {}: condition is false: {}", i, condition));
  if (test.expect_rejected && *test.expect_rejected != got.rejects.size())
    diffs.push_back(fmt::format("expected {} rejected records, got {}", *test.expect_rejected,
                                got.rejects.size()));
  if (test.expect) {
    const auto& want = *test.expect;
    if (want.size() != got.records.size())
      diffs.push_back(fmt::format("expected {} records, got {}", want.size(), got.records.size()));
    for (size_t i = 0; i < std::min(want.size(), got.records.size()); ++i)
      diff_record(i, want[i], got.records[i], diffs);
  }
  if (diffs.empty()) return diffs;
  std::string output = "output:";
  for (size_t i = 0; i < got.records.size(); ++i)
    output += fmt::format("\n    {}: {}", i, record_text(got.records[i]));
  for (const auto& r : got.rejects) output += "\n    rejected by " + r;
  diffs.push_back(output);
  return diffs;
}

const config::PipelineSpec& pipeline_of(const config::PipelineFile& file, const PipelineTest& t) {
  for (const auto& p : file.pipelines)
    if (t.pipeline.empty() || p.name == t.pipeline) return p;
  throw config::ConfigError(
      t.where, fmt::format("test '{}': no pipeline '{}' in the file", t.name, t.pipeline));
}

}  // namespace

int run_pipeline_tests(const std::vector<std::string>& files, const plugin::PluginRegistry& reg,
                       std::ostream& out) {
  size_t passed = 0, failed = 0;
  for (const auto& file : files) {
    const TestFile tests = read_tests(file);
    if (tests.tests.empty()) {
      out << "FAIL " << file << ": no tests (a tests: section, or " << file
          << " beside a FILE.tests.yaml)\n";
      ++failed;
      continue;
    }
    const config::PipelineFile pipelines = config::load_pipelines(tests.pipeline_file);
    for (const auto& test : tests.tests) {
      const auto diffs =
          compare(test, Chain(pipeline_of(pipelines, test), test, reg).run(test.input), reg);
      out << (diffs.empty() ? "ok   " : "FAIL ") << test.where.str() << " " << test.name << "\n";
      for (const auto& d : diffs) out << "  " << d << "\n";
      ++(diffs.empty() ? passed : failed);
    }
  }
  out << fmt::format("{} passed, {} failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace sluice::cli
