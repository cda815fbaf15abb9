// Kafka Connect connector config -> pipeline YAML (see import_kafka_connect.hpp).
#include "cli/import_kafka_connect.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <map>
#include <set>
#include <sluice/safe_files.hpp>

#include "config/stage_config.hpp"
#include "config/substitution.hpp"

namespace sluice::cli {

namespace {

// The bootstrap servers are a Connect worker setting, not the connector's.
constexpr const char* kBootstrap = "${env:KAFKA_BOOTSTRAP:-127.0.0.1:9092}";

// Kafka's and Debezium's transform classes (less the $Key/$Value suffix) and sluice's names.
const std::map<std::string, std::string>& transform_names() {
  static const std::map<std::string, std::string> names = {
      {"org.apache.kafka.connect.transforms.Cast", "cast"},
      {"org.apache.kafka.connect.transforms.DropHeaders", "drop_headers"},
      {"org.apache.kafka.connect.transforms.ExtractField", "extract_field"},
      {"org.apache.kafka.connect.transforms.Filter", "filter"},
      {"org.apache.kafka.connect.transforms.Flatten", "flatten"},
      {"org.apache.kafka.connect.transforms.HeaderFrom", "header_from"},
      {"org.apache.kafka.connect.transforms.HoistField", "hoist_field"},
      {"org.apache.kafka.connect.transforms.InsertField", "insert_field"},
      {"org.apache.kafka.connect.transforms.InsertHeader", "insert_header"},
      {"org.apache.kafka.connect.transforms.MaskField", "mask_field"},
      {"org.apache.kafka.connect.transforms.RegexRouter", "regex_router"},
      {"org.apache.kafka.connect.transforms.ReplaceField", "replace_field"},
      {"org.apache.kafka.connect.transforms.SetSchemaMetadata", "set_schema_metadata"},
      {"org.apache.kafka.connect.transforms.TimestampConverter", "timestamp_converter"},
      {"org.apache.kafka.connect.transforms.TimestampRouter", "timestamp_router"},
      {"org.apache.kafka.connect.transforms.ValueToKey", "value_to_key"},
      {"io.debezium.transforms.ExtractNewRecordState", "unwrap"},
      {"io.debezium.transforms.outbox.EventRouter", "outbox"},
      {"io.debezium.transforms.ByLogicalTableRouter", "table_router"},
  };
  return names;
}

const std::map<std::string, std::string>& predicate_names() {
  static const std::map<std::string, std::string> names = {
      {"org.apache.kafka.connect.transforms.predicates.HasHeaderKey", "has_header_key"},
      {"org.apache.kafka.connect.transforms.predicates.RecordIsTombstone", "record_is_tombstone"},
      {"org.apache.kafka.connect.transforms.predicates.TopicNameMatches", "topic_name_matches"},
  };
  return names;
}

// Transforms that never look at the key or value, so a converter's schemas.enable means nothing.
bool reads_payload(const std::string& type) {
  static const std::set<std::string> blind = {"regex_router", "timestamp_router", "insert_header",
                                              "drop_headers", "filter"};
  return !blind.contains(type);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(start, comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

// A YAML double-quoted scalar. A Connect config-provider reference (`${file:...}`) would be
// read as sluice's own substitution, so `${` is kept literal there (`$${`).
std::string yaml_quoted(const std::string& text) {
  std::string s = text;
  if (config::has_substitution(s))
    for (size_t at = s.find("${"); at != std::string::npos; at = s.find("${", at + 3))
      s.insert(at, "$");
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out + "\"";
}

// A value plain when YAML reads it back as the same text (the config check takes a scalar's
// text whatever YAML's tag), quoted otherwise.
std::string scalar(const std::string& text) {
  const bool plain = !text.empty() && text != "null" && text != "Null" && text != "NULL" &&
                     text.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,/+-") ==
                         std::string::npos &&
                     text.front() != '-' && text.front() != ',';
  return plain ? text : yaml_quoted(text);
}

std::string key_text(const std::string& key) {
  const bool plain = !key.empty() && key.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789._-") == std::string::npos;
  return plain ? key : yaml_quoted(key);
}

// One stage's options as the plugin declares them: name -> schema type ("string", "list", ...).
using Declared = std::optional<std::map<std::string, std::string>>;

Declared declared_fields(const SchemaLookup& schema_of, sluice_kind kind, const std::string& type) {
  const auto json = schema_of(kind, type);
  if (!json) return std::nullopt;
  rapidjson::Document doc;
  doc.Parse(json->c_str(), json->size());
  std::map<std::string, std::string> fields;
  if (doc.IsObject() && doc.HasMember("fields") && doc["fields"].IsArray())
    for (const auto& f : doc["fields"].GetArray())
      if (f.IsObject() && f.HasMember("name") && f["name"].IsString())
        fields[f["name"].GetString()] =
            f.HasMember("type") && f["type"].IsString() ? f["type"].GetString() : "string";
  return fields;
}

using Options = std::vector<std::pair<std::string, std::string>>;

// Builds the YAML text and the list of TODOs.
class Writer {
 public:
  explicit Writer(const SchemaLookup& schema_of) : schema_of_(schema_of) {}

  void line(int indent, const std::string& text) {
    out_.append(static_cast<size_t>(indent), ' ');
    out_ += text;
    out_ += '\n';
  }
  void todo(int indent, const std::string& what) {
    line(indent, "# TODO: " + what);
    todos_.push_back(what);
  }

  // `key: value` with the value written as the schema types the field.
  void option(int indent, const std::string& key, const std::string& value,
              const std::string& type) {
    if (type != "list") return line(indent, key_text(key) + ": " + scalar(value));
    std::string items;
    for (const auto& item : split_list(value)) items += (items.empty() ? "" : ", ") + scalar(item);
    line(indent, key_text(key) + ": [" + items + "]");
  }

  // A stage mapping's body: the options the plugin declares; the others as TODOs. A `first`
  // line such as "- type: x" starts the stage.
  void stage(int indent, sluice_kind kind, const std::string& type, const Options& options) {
    const Declared declared = declared_fields(schema_of_, kind, type);
    if (!declared) todo(indent, fmt::format("no plugin '{}' on the plugin path", type));
    for (const auto& [key, value] : options) {
      if (!declared) {
        option(indent, key, value, "string");
        continue;
      }
      const auto it = declared->find(key);
      if (it != declared->end())
        option(indent, key, value, it->second);
      else
        todo(indent, fmt::format("{}={} has no counterpart in sluice's {}", key, value, type));
    }
  }

  ImportResult finish() { return {std::move(out_), std::move(todos_)}; }

 private:
  const SchemaLookup& schema_of_;
  std::string out_;
  std::vector<std::string> todos_;
};

// The connector's keys, with which of them the import has used.
class Keys {
 public:
  explicit Keys(const ConnectorConfig& c) : c_(c) {}
  const std::string* take(const std::string& key) {
    const std::string* v = c_.find(key);
    if (v) used_.insert(key);
    return v;
  }
  std::string take_or(const std::string& key, const std::string& fallback) {
    const std::string* v = take(key);
    return v ? *v : fallback;
  }
  // Every key starting with `prefix`, the prefix cut off; all marked used.
  Options take_prefixed(const std::string& prefix) {
    Options out;
    for (const auto& [k, v] : c_.entries)
      if (k.starts_with(prefix)) {
        used_.insert(k);
        out.emplace_back(k.substr(prefix.size()), v);
      }
    return out;
  }
  Options unused() const {
    Options out;
    for (const auto& kv : c_.entries)
      if (!used_.contains(kv.first)) out.push_back(kv);
    return out;
  }

 private:
  const ConnectorConfig& c_;
  std::set<std::string> used_;
};

// Why a transform class has no counterpart, and for scripts what to write instead.
std::string missing_transform(const std::string& cls) {
  if (cls == "io.debezium.transforms.Filter")
    return fmt::format(
        "{} runs a script; rewrite its condition for `expression_filter` "
        "(docs/transforms.md)",
        cls);
  if (cls == "io.debezium.transforms.ContentBasedRouter")
    return fmt::format(
        "{} runs a script; rewrite it as `expression_router` routes "
        "(docs/transforms.md)",
        cls);
  return fmt::format("no sluice transform for {}", cls);
}

std::string pipeline_name(const std::string& name) {
  std::string out;
  for (char c : name)
    out +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ? c : '-';
  return out.empty() ? "imported-connector" : out;
}

std::string short_class(const std::string& cls) {
  const auto dot = cls.rfind('.');
  return dot == std::string::npos ? cls : cls.substr(dot + 1);
}

}  // namespace

namespace {

// A value that may be a secret is never copied into a comment: one whose key says so, and in
// any other value the password of a URL or of a `password=...` (a JDBC URL's query, a conninfo),
// as sluice masks them in every message (config::redact).
std::string shown_value(const std::string& key, const std::string& value) {
  std::string lower = key;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* word : {"password", "secret", "token", "credential", "jaas", "apikey", "api.key",
                           "api_key", "private.key"})
    if (lower.find(word) != std::string::npos) return "****";
  return config::redact(value, {});
}

// Walks the connector config section by section and writes the pipeline.
class Importer {
 public:
  Importer(const ConnectorConfig& c, const SchemaLookup& schema_of)
      : c_(c), keys_(c), w_(schema_of), name_(pipeline_name(c.name)) {}

  ImportResult run(const std::string& origin) {
    w_.line(0, fmt::format("# Imported by `sluice import kafka-connect` from {} (connector '{}').",
                           origin, c_.name));
    w_.line(0, "name: " + name_);
    keys_.take("name");
    const std::string cls = keys_.take_or("connector.class", "");
    const bool sink_connector = short_class(cls).find("Sink") != std::string::npos ||
                                c_.find("topics") || c_.find("topics.regex");
    if (sink_connector) {
      kafka_source();
      transforms();
      sink_for(cls);
    } else {
      source_for(cls);
      transforms();
      kafka_sink("sink");
    }
    errors();
    performance();
    leftovers();
    return w_.finish();
  }

 private:
  void kafka_common(int indent) {
    w_.line(indent, "type: kafka");
    w_.line(indent, fmt::format("bootstrap_servers: {}  # a Connect worker setting", kBootstrap));
  }

  // librdkafka properties from Connect's consumer.override.* / producer.override.*; the Java
  // client's names are mostly librdkafka's too, and the ones that are not are refused at start.
  void properties(const Options& overrides) {
    if (overrides.empty()) return;
    w_.line(2, "properties:  # Connect's client overrides; check that librdkafka knows each one");
    for (const auto& [k, v] : overrides) w_.option(4, k, v, "string");
  }

  // A sink connector reads its topics with the consumer group connect-<name>, as Connect does.
  void kafka_source() {
    w_.line(0, "source:");
    kafka_common(2);
    Options overrides = keys_.take_prefixed("consumer.override.");
    std::string group = "connect-" + name_;
    std::erase_if(overrides, [&](const auto& kv) {
      if (kv.first == "group.id") group = kv.second;
      return kv.first == "group.id" || kv.first == "auto.offset.reset";
    });
    w_.option(2, "group_id", group, "string");
    if (const auto* topics = keys_.take("topics")) w_.option(2, "topics", *topics, "list");
    if (const auto* regex = keys_.take("topics.regex"))
      w_.option(2, "topic_regex", *regex, "string");
    w_.line(2, "auto_offset_reset: earliest  # Connect's default for a new sink connector group");
    properties(overrides);
  }

  void kafka_sink(const char* section) {
    w_.line(0, std::string(section) + ":");
    kafka_common(2);
    properties(keys_.take_prefixed("producer.override."));
  }

  void source_for(const std::string& cls) {
    const std::string simple = short_class(cls);
    if (simple == "FileStreamSourceConnector" || simple == "FileStreamSource") {
      if (const auto* file = keys_.take("file")) {
        w_.line(0, "source:");
        w_.line(2, "type: file");
        w_.line(2, "# Connect reads each line as a string: lines are not checked as JSON");
        w_.stage(
            2, SLUICE_KIND_SOURCE, "file",
            {{"path", *file}, {"topic", keys_.take_or("topic", "")}, {"validate_json", "false"}});
        keys_.take("batch.size");  // how many lines one poll reads: sluice's own batching
        return;
      }
      return placeholder_source(
          "FileStreamSource without `file` reads standard input, which "
          "sluice's file source does not");
    }
    if (cls.starts_with("io.debezium.connector."))
      return placeholder_source(fmt::format(
          "sluice does not capture changes itself: keep {} running in Kafka Connect and read its "
          "topics with the kafka source (topic_regex: \"^{}\\\\..*\"), then decode them with the "
          "`debezium` transform and keep tables with `projection` (see pipelines/cdc-kafka.yaml)",
          simple, keys_.take_or("topic.prefix", c_.get("database.server.name", "PREFIX"))));
    placeholder_source(
        fmt::format("no sluice source for {}", cls.empty() ? "(no connector.class)" : cls));
  }

  // A source that reads nothing, so the pipeline validates and the TODO says what is missing.
  void placeholder_source(const std::string& why) {
    w_.line(0, "source:");
    w_.todo(2, why + "; this placeholder reads nothing");
    w_.line(2, "type: file");
    w_.line(2, "path: /dev/null");
    w_.line(2, fmt::format("offset_file: {}.offset", name_));
  }

  void sink_for(const std::string& cls) {
    const std::string simple = short_class(cls);
    w_.line(0, "sink:");
    if ((simple == "FileStreamSinkConnector" || simple == "FileStreamSink") && c_.find("file")) {
      w_.line(2, "type: file");
      w_.line(2, "# one line per record, its value, as Connect's FileStreamSink writes it");
      w_.stage(2, SLUICE_KIND_SINK, "file", {{"path", *keys_.take("file")}, {"format", "value"}});
      return;
    }
    std::string why =
        fmt::format("no sluice sink for {}", cls.empty() ? "(no connector.class)" : cls);
    if (simple.find("Jdbc") != std::string::npos)
      why +=
          "; for Debezium change events into PostgreSQL, the `debezium` transform and "
          "`projection` (kind: mirror) keep the tables (see pipelines/cdc-kafka.yaml)";
    w_.todo(2, why + "; this placeholder drops every record");
    w_.line(2, "type: \"null\"");
  }

  // The converter's schemas.enable for the key or the value, when the connector sets a
  // JsonConverter; other converters are said once as a TODO.
  std::optional<std::string> schemas_enable(const std::string& which) {
    const std::string* conv = keys_.take(which + ".converter");
    const std::string setting = keys_.take_or(which + ".converter.schemas.enable", "true");
    if (!conv || conv->ends_with("JsonConverter")) {
      if (conv) return setting;
      return std::nullopt;
    }
    if (!conv->ends_with("StringConverter") && !conv->ends_with("ByteArrayConverter") &&
        noted_.insert(*conv).second)
      w_.todo(2, fmt::format("{}.converter={}: sluice's transforms read JSON keys and values",
                             which, *conv));
    return std::nullopt;
  }

  void transforms() {
    const auto aliases = split_list(keys_.take_or("transforms", ""));
    const auto predicates = split_list(keys_.take_or("predicates", ""));
    (void)predicates;
    if (aliases.empty()) return;
    w_.line(0, "transforms:");
    if (!c_.find("value.converter") && !c_.find("key.converter"))
      w_.line(2,
              "# the converters are worker settings here: with JsonConverter's "
              "schemas.enable=true, add `schemas.enable: true` to the transforms");
    key_schemas_ = schemas_enable("key");
    value_schemas_ = schemas_enable("value");
    size_t written = 0;
    for (const auto& alias : aliases) written += transform(alias) ? 1 : 0;
    if (written == 0) w_.line(2, "[]");
  }

  // One transforms.<alias>.* entry; false when it could only be kept as a TODO.
  bool transform(const std::string& alias) {
    const Options all = keys_.take_prefixed("transforms." + alias + ".");
    std::string cls, predicate, negate;
    Options rest;
    for (const auto& [k, v] : all) {
      if (k == "type")
        cls = v;
      else if (k == "predicate")
        predicate = v;
      else if (k == "negate")
        negate = v;
      else
        rest.emplace_back(k, v);
    }
    std::string target = "value", base = cls;
    if (cls.ends_with("$Key")) target = "key";
    if (cls.ends_with("$Key") || cls.ends_with("$Value")) base = cls.substr(0, cls.rfind('$'));
    const auto it = transform_names().find(base);
    if (it == transform_names().end())
      return commented("transforms." + alias, all, missing_transform(cls));
    std::optional<std::string> predicate_yaml;
    if (!predicate.empty() && !(predicate_yaml = predicate_flow(predicate)))
      return commented("transforms." + alias, all,
                       fmt::format("predicate '{}' has no sluice counterpart", predicate));
    const std::string& type = it->second;
    w_.line(2, fmt::format("- type: {}  # transforms.{}: {}", type, alias, cls));
    if (target == "key") w_.line(4, "target: key");
    const auto& schemas = target == "key" ? key_schemas_ : value_schemas_;
    if (schemas && reads_payload(type)) w_.option(4, "schemas.enable", *schemas, "bool");
    if (predicate_yaml) w_.line(4, "predicate: " + *predicate_yaml);
    if (!negate.empty()) w_.option(4, "negate", negate, "bool");
    w_.stage(4, SLUICE_KIND_TRANSFORM, type, rest);
    return true;
  }

  // predicates.<name>.* as the flow mapping a transform's `predicate` takes.
  std::optional<std::string> predicate_flow(const std::string& name) {
    const Options all = keys_.take_prefixed("predicates." + name + ".");
    std::string flow;
    for (const auto& [k, v] : all) {
      std::string value = v;
      if (k == "type") {
        const auto it = predicate_names().find(v);
        if (it == predicate_names().end()) return std::nullopt;
        value = it->second;
      }
      flow += (flow.empty() ? "" : ", ") + key_text(k) + ": " + scalar(value);
    }
    return "{" + flow + "}";
  }

  bool commented(const std::string& what, const Options& options, const std::string& why) {
    w_.todo(2, fmt::format("{}: {}; kept out of the chain:", what, why));
    for (const auto& [k, v] : options)
      w_.line(2, fmt::format("#   {}.{}={}", what, k, shown_value(k, v)));
    return false;
  }

  void errors() {
    const std::string* tolerance = keys_.take("errors.tolerance");
    const std::string* log = keys_.take("errors.log.enable");
    const std::string* timeout = keys_.take("errors.retry.timeout");
    const std::string* delay = keys_.take("errors.retry.delay.max.ms");
    const bool retry = (timeout && *timeout != "0") || delay;
    if (tolerance || log || retry) w_.line(0, "errors:");
    if (tolerance) w_.option(2, "tolerance", *tolerance, "string");
    if (log) w_.option(2, "log_errors", *log, "bool");
    if (timeout && *timeout == "0")
      w_.line(2, "# errors.retry.timeout=0: Connect does not retry; sluice's retry defaults apply");
    if (retry) {
      w_.line(2, "retry:");
      if (timeout && *timeout != "0") {
        w_.option(4, "max_elapsed_ms", *timeout == "-1" ? "0" : *timeout, "int");
        w_.line(4, "max_attempts: 0  # Connect bounds retries by time only");
      }
      if (delay) {
        w_.option(4, "max_backoff_ms", *delay, "int");
        if (std::stoull(*delay) < 100) w_.option(4, "initial_backoff_ms", *delay, "int");
      }
    }
    dead_letter();
  }

  void dead_letter() {
    const std::string topic = keys_.take_or("errors.deadletterqueue.topic.name", "");
    const std::string* headers = keys_.take("errors.deadletterqueue.context.headers.enable");
    if (topic.empty()) return;
    kafka_sink("dead_letter");
    w_.option(2, "topic", topic, "string");
    if (headers)
      w_.line(2,
              "# sluice's dead letters always carry sluice.error.* headers (Connect's "
              "__connect.errors.* come with context.headers.enable=true)");
  }

  // tasks.max is Connect's parallelism; sluice's adaptive middleware stays at or below this.
  void performance() {
    const std::string* tasks = keys_.take("tasks.max");
    if (!tasks) return;
    w_.line(0, "performance:");
    w_.option(2, "max_concurrency", *tasks, "int");
  }

  void leftovers() {
    const Options unused = keys_.unused();
    if (unused.empty()) return;
    w_.line(0, "# Connector settings sluice has no place for:");
    for (const auto& [k, v] : unused) w_.todo(0, fmt::format("{}={}", k, shown_value(k, v)));
  }

  const ConnectorConfig& c_;
  Keys keys_;
  Writer w_;
  std::string name_;
  std::optional<std::string> key_schemas_, value_schemas_;
  std::set<std::string> noted_;
};

}  // namespace

ImportResult import_kafka_connect(const ConnectorConfig& connector, const std::string& origin,
                                  const SchemaLookup& schema_of) {
  return Importer(connector, schema_of).run(origin);
}

int run_import_kafka_connect(const std::string& file, const std::string& output,
                             const SchemaLookup& schema_of) {
  const ImportResult result = import_kafka_connect(read_connector_config(file), file, schema_of);
  if (output.empty()) {
    std::cout << result.yaml;
  } else {
    // Never written through a link another user planted; readable by its owner only, since
    // client properties (sasl.jaas.config, ...) are copied with the credentials they hold.
    std::string error;
    if (!files::replace_file(output, result.yaml, 0600, /*sync=*/false, error))
      throw std::runtime_error(error);
  }
  for (const auto& todo : result.todos) std::cerr << "TODO: " << todo << "\n";
  return 0;
}

}  // namespace sluice::cli
