// The `chain` transform: a list of SMTs applied in one stage, to one parsed record. As separate
// stages, every SMT parses the JSON its predecessor just wrote and writes it again; in a chain the
// record is parsed once (by the first step that reads it) and written once, after the last step.
// Each step keeps its own semantics: it sees the record exactly as the steps before left it,
// which is what it would have parsed from their output as a stage of its own.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <chrono>
#include <set>

#include "../debezium/plugins.hpp"
#include "plugins.hpp"

namespace sluice::smt {

namespace {

std::vector<StepType> step_types() {
  std::vector<StepType> all;
  for (auto list : {field_steps(), record_steps(), cast_steps()})
    all.insert(all.end(), list.begin(), list.end());
  for (auto type : {dbz::unwrap_step(), dbz::outbox_step(), dbz::table_router_step()})
    all.push_back(type);
  return all;
}

// Where a step's error points: field "steps.<i>" or "steps.<i>.<key>", which the host turns into
// the line of that step (or, for a fused chain, of the stage the user wrote).
std::string step_field(size_t index, const std::string& key = {}) {
  return "steps." + std::to_string(index) + (key.empty() ? "" : "." + key);
}

const StepType& find_type(const std::string& name, size_t index) {
  static const std::vector<StepType> types = step_types();
  for (const auto& t : types)
    if (name == t.name) return t;
  throw ConfigError(step_field(index, "type"),
                    "steps[" + std::to_string(index) + "]: unknown type '" + name +
                        "' (a kafka_smt or debezium_smt transform, other than chain)");
}

// The names a step may use: those its SMT declares, and `type`. `schemas.enable` belongs to the
// chain: the steps share one parsed record, so they must read it alike; a step may repeat the
// chain's value (as the stages folded into a chain do), never differ from it.
void check_keys(const rapidjson::Value& step, const ConfigSchema& schema, size_t index,
                const std::string& where, bool schemas) {
  rapidjson::Document declared;
  declared.Parse(schema.to_json().c_str());
  std::set<std::string> names;
  for (const auto& f : declared["fields"].GetArray()) names.insert(f["name"].GetString());
  for (const auto& m : step.GetObject()) {
    const std::string key = m.name.GetString();
    if (key == "schemas.enable" && !(m.value.IsBool() && m.value.GetBool() == schemas))
      throw ConfigError(step_field(index, key),
                        where + ": set schemas.enable on the chain, not on a step");
    if (key == "type" || names.count(key)) continue;
    std::string known;
    for (const auto& name : names) known += (known.empty() ? "" : ", ") + name;
    throw ConfigError(step_field(index, key),
                      where + ": unknown option '" + key + "' (options: " + known + ")");
  }
}

// A step's own config, checked as its SMT checks it as a stage of its own. Its errors name the
// step and its type: "steps[3] (mask_field): ...".
Config step_config(const rapidjson::Value& step, const StepType& type, size_t index, bool schemas) {
  const std::string where = "steps[" + std::to_string(index) + "] (" + type.name + ")";
  check_keys(step, type.schema(), index, where, schemas);
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  step.Accept(w);
  Config c(sb.GetString(), sb.GetSize());
  try {
    type.schema().validate(c);
  } catch (const ConfigError& e) {
    throw ConfigError(step_field(index, e.field()), where + ": " + e.what());
  }
  return c;
}

struct ChainStep {
  std::string name;     // its type, for rejections
  std::string counter;  // its time counter: steps.<index>.<type>.us
  std::unique_ptr<Step> step;
};

std::vector<ChainStep> make_steps(const Config& c) {
  const rapidjson::Value* list = c.find("steps");
  if (!list || !list->IsArray() || list->Empty())
    throw ConfigError("steps", "steps must list at least one transform");
  const bool schemas = bool_option(c, "schemas.enable", false);
  std::vector<ChainStep> out;
  for (const auto& step : list->GetArray()) {
    const size_t index = out.size();
    const std::string where = "steps[" + std::to_string(index) + "]";
    if (!step.IsObject() || !step.HasMember("type") || !step["type"].IsString())
      throw ConfigError(step_field(index), where + " must be a mapping with a type");
    const StepType& type = find_type(step["type"].GetString(), index);
    const Config config = step_config(step, type, index, schemas);
    out.push_back(
        {type.name, "steps." + std::to_string(index) + "." + type.name + ".us", type.make(config)});
  }
  return out;
}

using Clock = std::chrono::steady_clock;

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

class Chain final : public sluice::Transform {
 public:
  static ConfigSchema schema() {
    ConfigSchema s;
    s.list("steps").required().doc(
        "The transforms to apply in order, each a mapping with its `type` and its options "
        "(as for a stage of its own, without schemas.enable).");
    s.boolean("schemas.enable")
        .doc("Keys and values are JsonConverter {schema, payload} envelopes (for every step).")
        .default_value(false);
    s.validator([](const Config& c) { make_steps(c); });
    return s;
  }
  static std::string description() {
    return "Applies a list of Kafka and Debezium SMTs in one stage, parsing and writing each "
           "record once.";
  }

  Chain(const Config& c, Host& host)
      : steps_(make_steps(c)), schemas_(bool_option(c, "schemas.enable", false)), host_(host) {}

  void process(const Batch& in, Output& out) override {
    // Time per step (steady clock; a step's time includes parsing the side it reads first) and of
    // writing: the per-stage profile of separate stages, kept as counters of this one.
    std::vector<Clock::duration> spent(steps_.size() + 1, Clock::duration::zero());
    ScratchPool::Lease lease = scratches_.take();
    Scratch& scratch = *lease;
    for (size_t i = 0; i < in.size(); ++i) {
      scratch.next();
      Record rec = load_record(in[i], schemas_, scratch);
      Clock::time_point mark;
      try {
        if (!run(rec, spent, mark)) continue;
      } catch (const DataError& e) {
        out.reject(i, e.what());
        continue;
      }
      emit_record(out, i, rec);
      spent.back() += Clock::now() - mark;
    }
    for (size_t k = 0; k < steps_.size(); ++k)
      host_.counter_add(steps_[k].counter.c_str(), micros(spent[k]));
    host_.counter_add("steps.write.us", micros(spent.back()));
  }

 private:
  // Applies the steps whose predicates select the record; false when one drops it. A step's
  // DataError is rethrown with its name, as its own stage would reject the record. `mark` ends
  // as the end of the last step: one clock read a step (each step's end is the next's start).
  bool run(Record& rec, std::vector<Clock::duration>& spent, Clock::time_point& mark) {
    const RecordSubject subject(rec);
    mark = Clock::now();
    for (size_t k = 0; k < steps_.size(); ++k) {
      ChainStep& s = steps_[k];
      try {
        const bool kept = !s.step->applies(subject) || s.step->apply(rec);
        const auto now = Clock::now();
        spent[k] += now - mark;
        mark = now;
        if (!kept) return false;
      } catch (const DataError& e) {
        throw DataError(s.name + ": " + e.what());
      }
    }
    return true;
  }

  std::vector<ChainStep> steps_;
  bool schemas_;
  ScratchPool scratches_;
  Host host_;  // a copy: one pointer to the host's api, valid until destroy
};

}  // namespace

detail::PluginEntry chain() {
  return detail::Adapter<Chain, SLUICE_KIND_TRANSFORM>::entry("chain", kModuleVersion);
}

}  // namespace sluice::smt
