// Parsing of pipeline files: layout, stages and the performance/errors/admin sections.
#include "config/pipeline_spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "config/did_you_mean.hpp"
#include "config/substitution.hpp"
#include "config/yaml_reader.hpp"

namespace sluice::config {
namespace {

constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

const std::vector<std::string> kPipelineKeys = {
    "name",        "source", "transforms", "sink", "dead_letter",
    "performance", "errors", "delivery",   "tests"};  // `tests:` is for `sluice test`
                                                      // (runtime/cli/pipeline_tests.hpp)
// The key `delivery: exactly_once` hands to the kafka source and sink (plugins/kafka).
constexpr const char* kExactlyOnceKey = "exactly_once_pipeline";
// The key it hands a kafka dead-letter sink of such a pipeline, which joins the transaction.
constexpr const char* kExactlyOnceDeadLetterKey = "exactly_once_dead_letter";
// The key an at-least-once pipeline hands its in-process kafka source and kafka sinks, so a
// kafka sink may acknowledge before delivery while the source holds back the offsets.
constexpr const char* kDeliveryGateKey = "delivery_gate_pipeline";

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// The handlers of one section: key -> what to do with its entry. The key order is the order
// did-you-mean prefers on ties.
using FieldHandlers = std::vector<std::pair<std::string, std::function<void(const Entry&)>>>;

// Names used so far in one load (one file, or every file of a directory).
struct SeenNames {
  std::unordered_map<std::string, Location> pipelines;
  std::unordered_map<std::string, Location> instances;
  std::optional<Location> admin;
};

// Each pipeline runs its own threads (see kMaxPipelines): past the limit the process would
// fail to start threads halfway, so the file is refused before anything runs.
ConfigError too_many_pipelines(const Location& where, size_t count) {
  return ConfigError(where,
                     fmt::format("{} pipelines, more than the limit of {} per process "
                                 "(each runs 2 threads plus up to max_concurrency workers); split "
                                 "them over several sluice processes",
                                 count, kMaxPipelines));
}

class FileParser {
 public:
  // Whether a null node was written as the word null (not left empty), from its source text.
  bool written_as_null(const YAML::Node& node) const {
    const YAML::Mark mark = node.Mark();
    if (mark.pos < 0 || static_cast<size_t>(mark.pos) >= text_.size()) return false;
    const std::string_view rest = text_.substr(static_cast<size_t>(mark.pos));
    for (std::string_view word : {"null", "Null", "NULL"})
      if (rest.substr(0, word.size()) == word) return true;
    return false;
  }

  FileParser(const std::string& file, SeenNames& seen, PipelineFile& out)
      : reader_(file), seen_(seen), out_(out) {}

  void parse(std::string_view text) {
    text_ = text;
    const YAML::Node root = parse_document(text, reader_.file());
    if (root.IsNull())
      throw ConfigError({reader_.file(), 1, 1},
                        "the file is empty; expected a pipeline (a mapping with 'name:') or a "
                        "'pipelines:' list");
    if (!root.IsMap())
      throw ConfigError(reader_.at(root),
                        fmt::format("expected a mapping at the top level (a pipeline with 'name:' "
                                    "or a 'pipelines:' list), got {}",
                                    kind_name(root)));
    if (auto pipelines = find_entry(root, "pipelines")) {
      reader_.check_keys(root, {"pipelines", "admin"}, "the file");
      if (!pipelines->value.IsSequence())
        throw ConfigError(reader_.at(*pipelines),
                          fmt::format("pipelines: expected a list of pipelines, got {}",
                                      kind_name(pipelines->value)));
      if (pipelines->value.size() == 0)
        throw ConfigError(reader_.at(*pipelines), "pipelines: the list is empty");
      if (pipelines->value.size() > kMaxPipelines)
        throw too_many_pipelines(reader_.at(*pipelines), pipelines->value.size());
      for (const auto& pipeline : pipelines->value) parse_pipeline(pipeline, false);
    } else if (find_entry(root, "name")) {
      parse_pipeline(root, true);
    } else {
      for (const auto& kv : root) {
        const std::string suggestion = did_you_mean(kv.first.Scalar(), {"pipelines", "name"});
        if (!suggestion.empty())
          throw ConfigError(reader_.at(kv.first), fmt::format("unknown key '{}' at the top "
                                                              "level{}",
                                                              kv.first.Scalar(), suggestion));
      }
      throw ConfigError(reader_.at(root),
                        "expected 'name:' (one pipeline) or 'pipelines:' (a list of pipelines) "
                        "at the top level");
    }
    if (auto admin = find_entry(root, "admin")) parse_admin(*admin);
  }

 private:
  void parse_pipeline(const YAML::Node& node, bool top_level) {
    if (!node.IsMap())
      throw ConfigError(reader_.at(node), fmt::format("a pipeline must be a mapping with 'name:', "
                                                      "got {}",
                                                      kind_name(node)));
    if (out_.pipelines.size() >= kMaxPipelines)
      throw too_many_pipelines(reader_.at(node), out_.pipelines.size() + 1);
    std::vector<std::string> keys = kPipelineKeys;
    if (top_level) keys.push_back("admin");
    reader_.check_keys(node, keys, "pipeline");

    PipelineSpec spec;
    spec.location = reader_.at(node);
    const auto name = find_entry(node, "name");
    if (!name) throw ConfigError(spec.location, "pipeline has no 'name'");
    spec.name = reader_.text(*name, "name");
    spec.name_location = reader_.at(*name);
    if (!valid_name(spec.name))
      throw ConfigError(spec.name_location,
                        fmt::format("'{}' is not a valid pipeline name (use letters, digits, '_', "
                                    "'.' and '-')",
                                    spec.name));
    if (auto [it, inserted] = seen_.pipelines.emplace(spec.name, spec.name_location); !inserted)
      throw ConfigError(spec.name_location, fmt::format("duplicate pipeline name '{}' (first "
                                                        "defined at {})",
                                                        spec.name, it->second.str()));

    const auto source = find_entry(node, "source");
    if (!source)
      throw ConfigError(spec.location, fmt::format("pipeline '{}' has no 'source'", spec.name));
    spec.source = parse_stage(*source, "source", spec.name + ".source", "source");

    if (auto transforms = find_entry(node, "transforms");
        transforms && !transforms->value.IsNull()) {
      if (!transforms->value.IsSequence())
        throw ConfigError(reader_.at(*transforms),
                          fmt::format("transforms: expected a list of stages, got {}",
                                      kind_name(transforms->value)));
      for (size_t i = 0; i < transforms->value.size(); ++i) {
        const Entry item{transforms->key, transforms->value[i]};
        spec.transforms.push_back(parse_stage(item, "transform",
                                              fmt::format("{}.transform{}", spec.name, i),
                                              fmt::format("transforms[{}]", i)));
      }
    }

    const auto sink = find_entry(node, "sink");
    if (!sink)
      throw ConfigError(spec.location, fmt::format("pipeline '{}' has no 'sink'", spec.name));
    spec.sink = parse_stage(*sink, "sink", spec.name + ".sink", "sink");

    if (auto dead_letter = find_entry(node, "dead_letter");
        dead_letter && !dead_letter->value.IsNull())
      spec.dead_letter =
          parse_stage(*dead_letter, "dead_letter", spec.name + ".dead_letter", "dead_letter");
    std::set<std::string> performance_given;
    if (auto performance = find_entry(node, "performance"))
      spec.performance = parse_performance(*performance, spec.transforms, performance_given);
    else
      follow_aggregate_groups(spec.performance, spec.transforms, performance_given);
    if (auto errors = find_entry(node, "errors")) spec.errors = parse_errors(*errors, spec);
    check_exactly_once_key_unset(spec);
    if (auto delivery = find_entry(node, "delivery"))
      spec.exactly_once =
          reader_.choice(*delivery, "delivery", {"at_least_once", "exactly_once"}) == 1;
    if (spec.exactly_once)
      set_up_exactly_once(spec);
    else
      set_up_delivery_gate(spec);
    out_.pipelines.push_back(std::move(spec));
  }

  // The host's key may not be written by hand: `delivery:` is what sets it.
  void check_exactly_once_key_unset(const PipelineSpec& spec) {
    const auto check = [&](const StageSpec& stage) {
      for (const char* host_key : {kExactlyOnceKey, kExactlyOnceDeadLetterKey, kDeliveryGateKey})
        if (auto key = find_entry(stage.node, host_key))
          throw ConfigError(reader_.at(key->key),
                            fmt::format("{}: '{}' is set by sluice; write `delivery: "
                                        "exactly_once` on the pipeline instead",
                                        stage.instance_name, host_key));
    };
    check(spec.source);
    check(spec.sink);
    if (spec.dead_letter) check(*spec.dead_letter);
  }

  // Exactly once needs a Kafka transaction around the output and the consumed offsets: a kafka
  // source and sink, in the host's process (they meet inside the kafka module). A dead-letter
  // sink joins that transaction only if it is kafka on the sink's cluster: any other sink's
  // writes could not be undone with an aborted transaction, so a crash after a dead-letter
  // write and before the commit would write that dead letter again.
  void set_up_exactly_once(PipelineSpec& spec) {
    for (const StageSpec* stage : {&spec.source, &spec.sink}) {
      if (stage->type != "kafka")
        refuse_exactly_once(stage->type_location,
                            fmt::format("needs a kafka {} (a Kafka transaction covers the output "
                                        "and the consumed offsets), not '{}'",
                                        stage->role, stage->type));
      refuse_isolated(*stage);
    }
    if (spec.dead_letter) join_dead_letter(*spec.dead_letter, spec);
    spec.source.node[kExactlyOnceKey] = spec.name;
    spec.sink.node[kExactlyOnceKey] = spec.name;
  }

  // At least once with a kafka source in the host's process: its kafka sinks (also in-process)
  // and it meet in the kafka module, where the source commits offsets only once the sinks'
  // delivery reports confirmed the records (plugins/kafka/delivery_gate.hpp).
  static void set_up_delivery_gate(PipelineSpec& spec) {
    const auto in_process_kafka = [](const StageSpec& stage) {
      return stage.type == "kafka" && !stage.isolation.process;
    };
    if (!in_process_kafka(spec.source)) return;
    spec.source.node[kDeliveryGateKey] = spec.name;
    if (in_process_kafka(spec.sink)) spec.sink.node[kDeliveryGateKey] = spec.name;
    if (spec.dead_letter && in_process_kafka(*spec.dead_letter))
      spec.dead_letter->node[kDeliveryGateKey] = spec.name;
  }

  [[noreturn]] static void refuse_exactly_once(const Location& where, const std::string& why) {
    throw ConfigError(where, fmt::format("delivery: exactly_once: {}", why));
  }

  static void refuse_isolated(const StageSpec& stage) {
    if (stage.isolation.process)
      refuse_exactly_once(stage.location, fmt::format("the kafka {} must run in the host's process "
                                                      "(isolation: none)",
                                                      stage.role));
  }

  void join_dead_letter(StageSpec& dead_letter, const PipelineSpec& spec) {
    if (dead_letter.type != "kafka")
      refuse_exactly_once(
          dead_letter.type_location,
          fmt::format("the dead-letter sink must be kafka, not '{}': only records produced to "
                      "Kafka can join the transaction; another sink's writes would be repeated "
                      "after a crash (remove it, and rejected records follow errors.tolerance)",
                      dead_letter.type));
    refuse_isolated(dead_letter);
    const auto bootstrap = [](const StageSpec& stage) {
      const YAML::Node node = stage.node["bootstrap_servers"];
      return node && node.IsScalar() ? node.Scalar() : std::string();
    };
    if (bootstrap(dead_letter) != bootstrap(spec.sink))
      refuse_exactly_once(dead_letter.location,
                          "the kafka dead-letter sink must use the sink's bootstrap_servers (a "
                          "transaction spans one cluster)");
    dead_letter.node[kExactlyOnceDeadLetterKey] = spec.name;
  }

  StageSpec parse_stage(const Entry& entry, std::string role, const std::string& default_name,
                        const std::string& what) {
    if (!entry.value.IsMap()) {
      const std::string hint =
          entry.value.IsScalar()
              ? fmt::format(" (write '{{type: {}}}' for a plugin without settings)",
                            entry.value.Scalar())
              : std::string();
      throw ConfigError(reader_.at(entry),
                        fmt::format("{}: expected a mapping with 'type:', got {}{}", what,
                                    kind_name(entry.value), hint));
    }
    StageSpec stage;
    stage.role = std::move(role);
    stage.node = entry.value;
    stage.location = reader_.at(entry.value);
    const auto type = find_entry(entry.value, "type");
    if (!type)
      throw ConfigError(stage.location,
                        fmt::format("{}: missing 'type' (the plugin's name)", what));
    // YAML reads a bare `null` as a null node, but `type: null` means the null sink.
    stage.type = type->value.IsNull() && written_as_null(type->value)
                     ? std::string("null")
                     : reader_.text(*type, what + ".type");
    stage.type_location = reader_.at(*type);
    if (!valid_name(stage.type))
      throw ConfigError(stage.type_location,
                        fmt::format("{}.type: '{}' is not a valid plugin name", what, stage.type));
    stage.instance_name = default_name;
    Location name_location = stage.type_location;
    if (auto name = find_entry(entry.value, "name")) {
      stage.instance_name = reader_.text(*name, what + ".name");
      name_location = reader_.at(*name);
      if (!valid_name(stage.instance_name))
        throw ConfigError(name_location,
                          fmt::format("{}.name: '{}' is not a valid stage name (use letters, "
                                      "digits, '_', '.' and '-')",
                                      what, stage.instance_name));
    }
    if (auto [it, inserted] = seen_.instances.emplace(stage.instance_name, name_location);
        !inserted)
      throw ConfigError(name_location, fmt::format("duplicate stage name '{}' (first used at {})",
                                                   stage.instance_name, it->second.str()));
    if (auto timeout = find_entry(entry.value, "call_timeout_ms"))
      stage.call_timeout_ms = static_cast<uint32_t>(
          reader_.unsigned_int(*timeout, what + ".call_timeout_ms", 0, kMaxU32));
    stage.isolation = parse_isolation(entry.value, what);
    return stage;
  }

  // The stage's `isolation`, `call_timeout_ms`, `memory_limit_mb` and `share_cpu`
  // (docs/isolation.md).
  core::IsolationSettings parse_isolation(const YAML::Node& stage, const std::string& what) {
    core::IsolationSettings s;
    if (auto mode = find_entry(stage, "isolation")) {
      s.process = reader_.choice(*mode, what + ".isolation", {"none", "process"}) == 1;
    }
    // In process 0 means no deadline; an isolated call always has one (its child is killed).
    if (auto timeout = find_entry(stage, "call_timeout_ms"); timeout && s.process)
      s.call_timeout_ms = static_cast<uint32_t>(
          reader_.unsigned_int(*timeout, what + ".call_timeout_ms", 1, kMaxU32));
    if (auto limit = find_entry(stage, "memory_limit_mb"))
      s.memory_limit_mb = reader_.unsigned_int(*limit, what + ".memory_limit_mb", 1, kMaxU64);
    if (auto share = find_entry(stage, "share_cpu"))
      s.share_cpu = reader_.boolean(*share, what + ".share_cpu");
    return s;
  }

  // Runs the handler of every key of a section; returns the entries for cross-field checks.
  std::map<std::string, Entry> apply(const Entry& section, std::string_view what,
                                     const FieldHandlers& handlers) {
    std::map<std::string, Entry> given;
    if (section.value.IsNull()) return given;
    reader_.expect_map(section, what);
    std::vector<std::string> names;
    for (const auto& handler : handlers) names.push_back(handler.first);
    reader_.check_keys(section.value, names, what);
    for (const auto& kv : section.value) {
      const Entry entry{kv.first, kv.second};
      for (const auto& [name, handle] : handlers)
        if (name == kv.first.Scalar()) handle(entry);
      given.emplace(kv.first.Scalar(), entry);
    }
    return given;
  }

  // For the (0, 1] fractions of the performance section.
  double fraction(const Entry& entry, const std::string& what) const {
    const double value = reader_.number(entry, what);
    if (!(value > 0.0 && value <= 1.0))
      throw ConfigError(reader_.at(entry),
                        fmt::format("{}: must be greater than 0 and at most 1, got {}", what,
                                    entry.value.Scalar()));
    return value;
  }

  // Aggregates fold the events of a group together, so unless the pipeline says how to order
  // its lanes, their lanes follow the groups: ordering `field` on the group_by fields of the
  // projection stages' aggregates (plugins/projection/README.md). An explicit ordering or
  // ordering_field wins.
  static void follow_aggregate_groups(core::PerformanceSettings& p,
                                      const std::vector<StageSpec>& transforms,
                                      const std::set<std::string>& given) {
    if (given.contains("ordering_field") ||
        (given.contains("ordering") && p.ordering != core::Ordering::field))
      return;
    const std::string field = aggregate_lane_field(transforms);
    if (field.empty()) return;
    p.ordering = core::Ordering::field;
    p.ordering_field = field;
  }

  // The group_by fields in a Debezium record (plain or schema/payload) and in an envelope line
  // {key, value}, then the key; "" without aggregates.
  static std::string aggregate_lane_field(const std::vector<StageSpec>& transforms) {
    std::vector<std::string> groups;
    for (const auto& stage : transforms) {
      const YAML::Node node = stage.node;  // const: reading must not add members
      if (stage.type != "projection" || !node.IsMap()) continue;
      // A key the map lacks gives an invalid node, whose type asked throws (yaml-cpp): the
      // plugin's own check names the missing field.
      const YAML::Node projections = node["projections"];
      if (!projections || !projections.IsSequence()) continue;
      for (const auto& projection : projections) {
        if (!projection.IsMap()) continue;
        const YAML::Node kind = projection["kind"], group = projection["group_by"];
        if (kind && kind.IsScalar() && kind.Scalar() == "aggregate" && group && group.IsScalar() &&
            !group.Scalar().empty() &&
            std::find(groups.begin(), groups.end(), group.Scalar()) == groups.end())
          groups.push_back(group.Scalar());
      }
    }
    if (groups.empty()) return {};
    std::string out;
    for (const char* image : {"payload.after.", "payload.before.", "after.", "before."})
      for (const char* line : {"", "value."})
        for (const auto& g : groups) out += fmt::format("{}{}{}|", line, image, g);
    return out + "key";
  }

  core::PerformanceSettings parse_performance(const Entry& section,
                                              const std::vector<StageSpec>& transforms,
                                              std::set<std::string>& given_keys) {
    core::PerformanceSettings p;
    const auto flag = [&](const char* key, bool& field) {
      return std::pair{std::string(key),
                       std::function<void(const Entry&)>([&, key](const Entry& e) {
                         field = reader_.boolean(e, fmt::format("performance.{}", key));
                       })};
    };
    const auto u32 = [&](const char* key, uint32_t& field, uint64_t min) {
      return std::pair{
          std::string(key), std::function<void(const Entry&)>([&, key, min](const Entry& e) {
            field = static_cast<uint32_t>(
                reader_.unsigned_int(e, fmt::format("performance.{}", key), min, kMaxU32));
          })};
    };
    const auto u64 = [&](const char* key, uint64_t& field, uint64_t min) {
      return std::pair{
          std::string(key), std::function<void(const Entry&)>([&, key, min](const Entry& e) {
            field = reader_.unsigned_int(e, fmt::format("performance.{}", key), min, kMaxU64);
          })};
    };
    const auto share = [&](const char* key, double& field) {
      return std::pair{std::string(key),
                       std::function<void(const Entry&)>([&, key](const Entry& e) {
                         field = fraction(e, fmt::format("performance.{}", key));
                       })};
    };
    const FieldHandlers handlers = {
        flag("adaptive_batching", p.adaptive_batching),
        u32("min_batch_size", p.min_batch_size, 1),
        u32("max_batch_size", p.max_batch_size, 1),
        u32("batch_size", p.batch_size, 1),
        u32("target_batch_time_ms", p.target_batch_time_ms, 1),
        share("load_adjustment_factor", p.load_adjustment_factor),
        u32("linger_ms", p.linger_ms, 0),
        flag("adaptive_concurrency", p.adaptive_concurrency),
        u32("min_concurrency", p.min_concurrency, 1),
        u32("max_concurrency", p.max_concurrency, 1),
        u32("concurrency", p.concurrency, 1),
        share("cpu_utilization_threshold", p.cpu_utilization_threshold),
        {"controller",
         [&](const Entry& e) {
           p.controller = static_cast<core::ControllerKind>(
               reader_.choice(e, "performance.controller",
                              {"sluice", "vector_arc", "gradient2", "vegas", "seed"}));
         }},
        {"ordering",
         [&](const Entry& e) {
           p.ordering = static_cast<core::Ordering>(
               reader_.choice(e, "performance.ordering", {"key", "partition", "none", "field"}));
         }},
        {"ordering_field",
         [&](const Entry& e) { p.ordering_field = reader_.text(e, "performance.ordering_field"); }},
        flag("backpressure", p.backpressure),
        flag("fuse_transforms", p.fuse_transforms),
        u32("backpressure_threshold", p.backpressure_threshold, 1),
        u64("max_queue_bytes", p.max_queue_bytes, 1),
        flag("memory_control", p.memory_control),
        u64("memory_limit_mb", p.memory_limit_mb, 0),
        share("memory_pressure_threshold", p.memory_pressure_threshold),
        share("gc_trigger_threshold", p.gc_trigger_threshold),
        u32("gc_interval_ms", p.gc_interval_ms, 0),
        flag("enable_performance_profiling", p.enable_performance_profiling),
        u32("metrics_collection_interval_ms", p.metrics_collection_interval_ms, 1),
        flag("enable_predictive_caching", p.enable_predictive_caching),
        u32("cache_warmup_size", p.cache_warmup_size, 0),
        {"cache_eviction_policy",
         [&](const Entry& e) {
           p.cache_eviction_policy = static_cast<core::CacheEvictionPolicy>(reader_.choice(
               e, "performance.cache_eviction_policy", {"lru", "lfu", "ttl", "adaptive"}));
         }},
    };
    const auto given = apply(section, "performance", handlers);
    const auto where = [&](const char* preferred, const char* other) {
      auto it = given.find(preferred);
      if (it == given.end()) it = given.find(other);
      return reader_.at(it->second);
    };
    if (p.min_batch_size > p.max_batch_size)
      throw ConfigError(where("max_batch_size", "min_batch_size"),
                        fmt::format("performance: min_batch_size ({}) is greater than "
                                    "max_batch_size ({})",
                                    p.min_batch_size, p.max_batch_size));
    if (p.min_concurrency > p.max_concurrency)
      throw ConfigError(where("max_concurrency", "min_concurrency"),
                        fmt::format("performance: min_concurrency ({}) is greater than "
                                    "max_concurrency ({})",
                                    p.min_concurrency, p.max_concurrency));
    // A start value the user wrote must lie in the range; the default just moves into it.
    if (given.contains("batch_size") &&
        (p.batch_size < p.min_batch_size || p.batch_size > p.max_batch_size))
      throw ConfigError(reader_.at(given.at("batch_size")),
                        fmt::format("performance.batch_size: {} is outside [min_batch_size, "
                                    "max_batch_size] = [{}, {}]",
                                    p.batch_size, p.min_batch_size, p.max_batch_size));
    p.batch_size = std::clamp(p.batch_size, p.min_batch_size, p.max_batch_size);
    if (given.contains("concurrency") &&
        (p.concurrency < p.min_concurrency || p.concurrency > p.max_concurrency))
      throw ConfigError(reader_.at(given.at("concurrency")),
                        fmt::format("performance.concurrency: {} is outside [min_concurrency, "
                                    "max_concurrency] = [{}, {}]",
                                    p.concurrency, p.min_concurrency, p.max_concurrency));
    p.concurrency = std::clamp(p.concurrency, p.min_concurrency, p.max_concurrency);
    for (const auto& [key, entry] : given) given_keys.insert(key);
    follow_aggregate_groups(p, transforms, given_keys);
    if (p.ordering == core::Ordering::field && p.ordering_field.empty())
      throw ConfigError(reader_.at(given.at("ordering")),
                        "performance.ordering: 'field' needs performance.ordering_field (dotted "
                        "JSON paths of the value, '|'-separated, e.g. after.id|before.id)");
    return p;
  }

  core::ErrorSettings parse_errors(const Entry& section, PipelineSpec& spec) {
    core::ErrorSettings e;
    auto& retry = e.retry;
    auto& breaker = e.circuit_breaker;
    std::map<std::string, Entry> retry_given;
    const FieldHandlers handlers = {
        {"tolerance",
         [&](const Entry& v) {
           e.tolerance =
               static_cast<core::Tolerance>(reader_.choice(v, "errors.tolerance", {"none", "all"}));
         }},
        {"max_record_bytes",
         [&](const Entry& v) {
           e.max_record_bytes = reader_.unsigned_int(v, "errors.max_record_bytes", 0, kMaxU64);
         }},
        {"retry",
         [&](const Entry& v) {
           const FieldHandlers retry_handlers = {
               {"initial_backoff_ms",
                [&](const Entry& x) {
                  retry.initial_backoff_ms = static_cast<uint32_t>(
                      reader_.unsigned_int(x, "errors.retry.initial_backoff_ms", 0, kMaxU32));
                }},
               {"max_backoff_ms",
                [&](const Entry& x) {
                  retry.max_backoff_ms = static_cast<uint32_t>(
                      reader_.unsigned_int(x, "errors.retry.max_backoff_ms", 0, kMaxU32));
                }},
               {"multiplier",
                [&](const Entry& x) {
                  retry.multiplier = reader_.number(x, "errors.retry.multiplier");
                  if (retry.multiplier < 1.0)
                    throw ConfigError(reader_.at(x),
                                      fmt::format("errors.retry.multiplier: must be at least 1, "
                                                  "got {}",
                                                  x.value.Scalar()));
                }},
               {"max_attempts",
                [&](const Entry& x) {
                  retry.max_attempts = static_cast<uint32_t>(
                      reader_.unsigned_int(x, "errors.retry.max_attempts", 0, kMaxU32));
                }},
               {"max_elapsed_ms",
                [&](const Entry& x) {
                  retry.max_elapsed_ms =
                      reader_.unsigned_int(x, "errors.retry.max_elapsed_ms", 0, kMaxU64);
                }},
           };
           retry_given = apply(v, "errors.retry", retry_handlers);
         }},
        {"circuit_breaker",
         [&](const Entry& v) {
           const FieldHandlers breaker_handlers = {
               {"enabled",
                [&](const Entry& x) {
                  breaker.enabled = reader_.boolean(x, "errors.circuit_breaker.enabled");
                }},
               {"failure_threshold",
                [&](const Entry& x) {
                  breaker.failure_threshold = static_cast<uint32_t>(reader_.unsigned_int(
                      x, "errors.circuit_breaker.failure_threshold", 1, kMaxU32));
                }},
               {"cooldown_ms",
                [&](const Entry& x) {
                  breaker.cooldown_ms = static_cast<uint32_t>(
                      reader_.unsigned_int(x, "errors.circuit_breaker.cooldown_ms", 0, kMaxU32));
                }},
           };
           apply(v, "errors.circuit_breaker", breaker_handlers);
         }},
        {"log_errors",
         [&](const Entry& v) { e.log_errors = reader_.boolean(v, "errors.log_errors"); }},
        {"dead_letter",
         [&](const Entry& v) {
           if (v.value.IsNull()) return;
           if (spec.dead_letter)
             throw ConfigError(reader_.at(v.key),
                               fmt::format("errors.dead_letter: pipeline '{}' already has a "
                                           "dead_letter sink at {}",
                                           spec.name, spec.dead_letter->location.str()));
           spec.dead_letter =
               parse_stage(v, "dead_letter", spec.name + ".dead_letter", "errors.dead_letter");
         }},
    };
    apply(section, "errors", handlers);
    if (retry.initial_backoff_ms > retry.max_backoff_ms) {
      auto it = retry_given.find("max_backoff_ms");
      if (it == retry_given.end()) it = retry_given.find("initial_backoff_ms");
      throw ConfigError(reader_.at(it->second),
                        fmt::format("errors.retry: initial_backoff_ms ({}) is greater than "
                                    "max_backoff_ms ({})",
                                    retry.initial_backoff_ms, retry.max_backoff_ms));
    }
    return e;
  }

  void parse_admin(const Entry& section) {
    if (seen_.admin)
      throw ConfigError(reader_.at(section.key),
                        fmt::format("admin: already configured at {} (only one file may have an "
                                    "'admin:' section)",
                                    seen_.admin->str()));
    seen_.admin = reader_.at(section.key);
    core::AdminSettings& a = out_.admin;
    const FieldHandlers handlers = {
        {"enabled", [&](const Entry& v) { a.enabled = reader_.boolean(v, "admin.enabled"); }},
        {"host",
         [&](const Entry& v) {
           a.host = reader_.text(v, "admin.host");
           if (a.host.empty()) throw ConfigError(reader_.at(v), "admin.host: must not be empty");
         }},
        {"port",
         [&](const Entry& v) {
           a.port = static_cast<uint16_t>(reader_.unsigned_int(v, "admin.port", 0, 65535));
         }},
        {"token", [&](const Entry& v) { a.token = reader_.text(v, "admin.token", true); }},
    };
    apply(section, "admin", handlers);
    out_.admin_location = reader_.at(section.value.IsMap() ? section.value : section.key);
  }

  YamlReader reader_;
  SeenNames& seen_;
  std::string_view text_;
  PipelineFile& out_;
};

}  // namespace

PipelineFile parse_pipelines(std::string_view yaml_text, const std::string& file_name) {
  PipelineFile out;
  SeenNames seen;
  FileParser(file_name, seen, out).parse(yaml_text);
  return out;
}

PipelineFile load_pipelines(const std::filesystem::path& file_or_dir) {
  PipelineFile out;
  SeenNames seen;
  std::error_code ec;
  if (!std::filesystem::is_directory(file_or_dir, ec)) {
    const std::string text = read_text_file(file_or_dir);
    FileParser(file_or_dir.string(), seen, out).parse(text);
    return out;
  }
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(file_or_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const auto& path = it->path();
    const auto extension = path.extension();
    std::error_code file_ec;
    if ((extension == ".yaml" || extension == ".yml") && it->is_regular_file(file_ec))
      files.push_back(path);
  }
  if (ec)
    throw ConfigError({file_or_dir.string(), 0, 0}, fmt::format("cannot read: {}", ec.message()));
  if (files.empty())
    throw ConfigError({file_or_dir.string(), 0, 0}, "no *.yaml or *.yml files in the directory");
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const std::string text = read_text_file(file);
    FileParser(file.string(), seen, out).parse(text);
  }
  return out;
}

namespace {

// The transforms the `chain` transform runs as steps (plugins/transforms/smt/chain.cpp).
bool chainable(const std::string& type) {
  static const std::set<std::string, std::less<>> types = {"cast",
                                                           "drop_headers",
                                                           "extract_field",
                                                           "filter",
                                                           "flatten",
                                                           "header_from",
                                                           "hoist_field",
                                                           "insert_field",
                                                           "insert_header",
                                                           "mask_field",
                                                           "regex_router",
                                                           "replace_field",
                                                           "set_schema_metadata",
                                                           "timestamp_converter",
                                                           "timestamp_router",
                                                           "value_to_key",
                                                           "unwrap",
                                                           "outbox",
                                                           "table_router"};
  return types.count(type) != 0;
}

// A stage's own config types each value by its field (a string field keeps `007` as written),
// a chain step's values are typed by how they read (`007` would be 7): only values that both
// read alike may join a chain. Null values (`key:`, "not given") stay on their own too.
bool reads_alike(const YAML::Node& node) {
  if (node.IsSequence() || node.IsMap()) {
    for (const auto& child : node)
      if (!reads_alike(node.IsMap() ? child.second : child)) return false;
    return true;
  }
  if (!node.IsScalar()) return false;
  const std::string& text = node.Scalar();
  if (has_substitution(text)) return false;
  if (node.Tag() != "?") return !parse_bool(text);  // a quoted "true" given to a boolean field
  if (parse_bool(text)) return text == "true" || text == "false";
  if (const auto i = parse_int(text)) return std::to_string(*i) == text;
  return !parse_double(text);
}

// The stage's `schemas.enable` as written ("false" when absent): stages join one chain only
// when theirs match. Nullopt when the stage stays a stage of its own: a type the chain does not
// run, or a host key (name, isolation, call_timeout_ms, memory_limit_mb, ...) the chain cannot
// keep.
std::optional<std::string> chain_group(const StageSpec& stage) {
  if (!chainable(stage.type) || !stage.node.IsMap()) return std::nullopt;
  std::string schemas = "false";
  for (const auto& kv : stage.node) {
    const std::string& key = kv.first.Scalar();
    if (key == "type") continue;
    const auto& host = host_stage_keys();
    if (std::find(host.begin(), host.end(), key) != host.end()) return std::nullopt;
    if (!reads_alike(kv.second)) return std::nullopt;
    if (key == "schemas.enable") schemas = kv.second.Scalar();
  }
  return schemas;
}

// One `chain` stage for stages [first, last): each stage's own mapping is a step, so an error
// the chain reports in a step (field "steps.<i>.<key>") points at the line the user wrote.
StageSpec chain_of(std::vector<StageSpec>::const_iterator first,
                   std::vector<StageSpec>::const_iterator last, const std::string& schemas) {
  StageSpec chain = *first;  // its role, instance name and location
  chain.type = "chain";
  YAML::Node steps(YAML::NodeType::Sequence);
  for (auto it = first; it != last; ++it) {
    steps.push_back(it->node);
    chain.folded.push_back(it->type);
  }
  YAML::Node node(YAML::NodeType::Map);
  node["type"] = "chain";
  node["schemas.enable"] = schemas;
  node["steps"] = steps;
  chain.node.reset(node);  // not `=`: that would overwrite the first stage's mapping
  return chain;
}

}  // namespace

void fuse_transforms(PipelineSpec& spec) {
  if (!spec.performance.fuse_transforms) return;
  std::vector<StageSpec> out;
  const auto& in = spec.transforms;
  for (auto first = in.begin(); first != in.end();) {
    const std::optional<std::string> group = chain_group(*first);
    auto last = std::next(first);
    while (group && last != in.end() && chain_group(*last) == group) ++last;
    if (last - first >= 2)
      out.push_back(chain_of(first, last, *group));
    else
      out.push_back(*first);
    first = last;
  }
  spec.transforms = std::move(out);
}

PipelineFile fuse_transforms(PipelineFile file) {
  for (auto& spec : file.pipelines) fuse_transforms(spec);
  return file;
}

}  // namespace sluice::config
