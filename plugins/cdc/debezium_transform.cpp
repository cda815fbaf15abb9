// The `debezium` transform: Debezium change events in, normalized change events out.
#include <deque>
#include <sluice/sdk.hpp>
#include <string>

#include "debezium_decoder.hpp"

namespace {

using sluice_cdc::Decoded;
using sluice_cdc::EventKind;

enum class Routing { skip, forward, reject };

Routing parse_routing(const sluice::Config& c, const char* name) {
  const std::string v = c.get_string(name, "skip");
  if (v == "skip") return Routing::skip;
  if (v == "forward") return Routing::forward;
  if (v == "reject") return Routing::reject;
  throw sluice::ConfigError(name, std::string(name) + " must be skip, forward or reject");
}

std::map<std::string, std::string> parse_route_keys(const sluice::Config& c) {
  std::map<std::string, std::string> out;
  const auto* v = c.find("route_keys");
  if (!v) return out;
  if (!v->IsObject()) throw sluice::ConfigError("route_keys", "route_keys must be a mapping");
  for (const auto& m : v->GetObject()) {
    if (!m.value.IsString())
      throw sluice::ConfigError("route_keys", "route_keys maps a table to one field name");
    out[m.name.GetString()] = m.value.GetString();
  }
  return out;
}

class DebeziumTransform final : public sluice::Transform {
 public:
  static std::string description() {
    return "Decodes Debezium JSON change events (with or without schema/payload; ops c, u, d, r, "
           "t; tombstones; key changes) into normalized change events for the projection stage.";
  }

  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("input_format")
        .default_value("record")
        .one_of({"record", "envelope"})
        .doc(
            "record: key and value are the record's; envelope: the value is a JSON line "
            "{key, value, topic, partition, offset, headers} (the file sink's envelope format).");
    s.object("key_columns")
        .doc("table -> primary-key column(s), used when the record key is null.");
    s.object("route_keys")
        .doc(
            "table -> field of the row whose value becomes the output record key (e.g. the "
            "aggregate's group field); default the primary key.");
    s.string("tombstones")
        .default_value("skip")
        .one_of({"skip", "forward"})
        .doc("Null values after a delete: skip (filtered) or forward as {kind: tombstone}.");
    for (const char* name : {"heartbeats", "schema_changes", "transactions", "messages"})
      s.string(name)
          .default_value("skip")
          .one_of({"skip", "forward", "reject"})
          .doc(
              "Non-change events of this kind: skip (filtered), forward ({kind, event}) or "
              "reject.");
    s.string("heartbeat_topic_prefix")
        .default_value("__debezium-heartbeat")
        .doc("Records on topics starting with this are heartbeats.");
    s.string("topic").default_value("").doc("Topic of the output records; default the input's.");
    return s;
  }

  DebeziumTransform(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        envelope_(c.get_string("input_format", "record") == "envelope"),
        forward_tombstones_(c.get_string("tombstones", "skip") == "forward"),
        heartbeats_(parse_routing(c, "heartbeats")),
        schema_changes_(parse_routing(c, "schema_changes")),
        transactions_(parse_routing(c, "transactions")),
        messages_(parse_routing(c, "messages")),
        topic_(c.get_string("topic")),
        decoder_(sluice_cdc::decoder_options(c), parse_route_keys(c)) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    double changes = 0, passed_over = 0, rejected = 0;
    std::deque<std::string> storage;
    sluice_cdc::DecodeScratch scratch;  // per batch: process() may run on several lanes at once
    for (size_t i = 0; i < in.size(); ++i) {
      const sluice::RecordView r = in[i];
      if (auto flagged = r.header("sluice.error")) {
        out.reject(i, "the source flagged this record: " + std::string(*flagged));
        ++rejected;
        continue;
      }
      sluice_cdc::RawEvent raw;
      raw.topic = r.topic();
      raw.partition = r.partition();
      raw.offset = r.offset();
      if (envelope_) {
        if (!r.has_value()) {
          out.reject(i, "envelope input: the record has no value");
          ++rejected;
          continue;
        }
        std::string err = sluice_cdc::split_envelope_line(r.value(), raw, storage);
        if (!err.empty()) {
          out.reject(i, err);
          ++rejected;
          continue;
        }
      } else {
        if (r.has_key()) raw.key = r.key();
        if (r.has_value()) raw.value = r.value();
        raw.old_key_header = r.header("__debezium.oldkey");
        raw.new_key_header = r.header("__debezium.newkey");
      }
      scratch.reset();
      Decoded d = decoder_.decode_in(raw, scratch, true);
      if (!d.error.empty()) {
        out.reject(i, "debezium: " + d.error);
        ++rejected;
        continue;
      }
      Routing routing = Routing::forward;
      switch (d.kind) {
        case EventKind::change:
          break;
        case EventKind::tombstone:
          routing = forward_tombstones_ ? Routing::forward : Routing::skip;
          break;
        case EventKind::heartbeat:
          routing = heartbeats_;
          break;
        case EventKind::schema_change:
          routing = schema_changes_;
          break;
        case EventKind::transaction:
          routing = transactions_;
          break;
        case EventKind::message:
          routing = messages_;
          break;
      }
      if (routing == Routing::skip) {
        ++passed_over;
        continue;
      }
      if (routing == Routing::reject) {
        out.reject(i, std::string("debezium: ") + sluice_cdc::kind_name(d.kind) +
                          " events are configured to be rejected");
        ++rejected;
        continue;
      }
      if (d.kind == EventKind::tombstone)
        d.json = R"({"kind":"tombstone","key":)" + (d.key.empty() ? "null" : d.key) + "}";
      sluice::OutRecord o = sluice::OutRecord::from(r);
      const std::string& key = d.route_value ? *d.route_value : d.key;
      o.key = key.empty() ? std::optional<std::string_view>(d.table)
                          : std::optional<std::string_view>(key);
      o.value = d.json;
      if (!topic_.empty()) o.topic = topic_;
      const char op_text[2] = {d.op ? d.op : '-', 0};
      o.headers.clear();
      o.headers.emplace_back("sluice.cdc.kind", sluice_cdc::kind_name(d.kind));
      if (d.kind == EventKind::change) {
        o.headers.emplace_back("sluice.cdc.table", d.table);
        o.headers.emplace_back("sluice.cdc.op", std::string_view(op_text, 1));
        ++changes;
      } else {
        ++passed_over;
      }
      out.emit(i, o);
    }
    if (changes) host_.counter_add("changes", changes);
    if (passed_over) host_.counter_add("passed_over", passed_over);
    if (rejected) host_.counter_add("rejected", rejected);
  }

 private:
  sluice::Host& host_;
  bool envelope_;
  bool forward_tombstones_;
  Routing heartbeats_, schema_changes_, transactions_, messages_;
  std::string topic_;
  sluice_cdc::DebeziumDecoder decoder_;
};

}  // namespace

SLUICE_MODULE("cdc", "0.1.0", SLUICE_TRANSFORM(DebeziumTransform, "debezium"))
