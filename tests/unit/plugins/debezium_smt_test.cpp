// Unit tests of the debezium_smt module: its config checks and the legacy keys Debezium 3 no
// longer reads (the rest of its record behaviour is checked against Debezium itself by
// smt_differential_test).
#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

void check_rejected(const char* plugin, const std::string& config, const std::string& words) {
  check_refused("debezium_smt", plugin, config, words);
}

// A Debezium delete event of row {"id": 1} in the JsonConverter's {schema, payload} form.
TestRecord delete_event() {
  const std::string row =
      R"({"type":"struct","optional":true,"name":"db.t.Value","fields":[{"type":"int32","optional":false,"field":"id"}]})";
  const std::string field = row.substr(0, row.size() - 1);
  TestRecord r;
  r.topic = "db.t";
  r.value = R"({"schema":{"type":"struct","optional":false,"name":"db.t.Envelope","fields":[)" +
            field + R"(,"field":"before"},)" + field + R"(,"field":"after"},)" +
            R"({"type":"string","optional":false,"field":"op"}]},)" +
            R"("payload":{"before":{"id":1},"after":null,"op":"d"}})";
  return r;
}

TestRecord tombstone() {
  TestRecord r;
  r.topic = "db.t";
  r.key = R"({"schema":null,"payload":1})";
  return r;
}

// What `unwrap` with `config` makes of a delete event and of its tombstone (none rejected).
struct Unwrapped {
  std::vector<TestRecord> deleted;
  std::vector<TestRecord> tomb;
};

Unwrapped unwrap(const std::string& config) {
  Library lib(plugin_path("debezium_smt"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "unwrap"), host, config);
  FakeWriter deleted, tomb;
  REQUIRE(t.process({delete_event()}, deleted).ok());
  REQUIRE(t.process({tombstone()}, tomb).ok());
  CHECK(deleted.rejects.empty());
  CHECK(tomb.rejects.empty());
  return {deleted.records, tomb.records};
}

// An outbox row insert with `payload` (JSON text of a string) in its payload column, schema'd.
TestRecord outbox_insert(const std::string& payload) {
  const std::string row = R"({"type":"struct","optional":true,"name":"db.outbox.Value","fields":[)"
                          R"({"type":"string","optional":false,"field":"id"},)"
                          R"({"type":"string","optional":false,"field":"aggregatetype"},)"
                          R"({"type":"string","optional":false,"field":"aggregateid"},)"
                          R"({"type":"string","optional":false,"field":"type"},)"
                          R"({"type":"string","optional":true,"field":"payload"}])";
  TestRecord r;
  r.topic = "db.outbox";
  r.value =
      R"({"schema":{"type":"struct","optional":false,"name":"db.outbox.Envelope","fields":[)" +
      row + R"(,"field":"before"},)" + row + R"(,"field":"after"},)" +
      R"({"type":"string","optional":false,"field":"op"},)" +
      R"({"type":"int64","optional":true,"field":"ts_ms"}]},)" +
      R"("payload":{"before":null,"after":{"id":"e1","aggregatetype":"Order",)" +
      R"("aggregateid":"o1","type":"Created","payload":)" + payload + R"(},"op":"c","ts_ms":5}})";
  return r;
}

}  // namespace

TEST_CASE("debezium_smt refuses configs Debezium would refuse, naming the key") {
  check_rejected("unwrap", R"({"delete.tombstone.handling.mode":"keep"})",
                 "delete.tombstone.handling.mode");
  check_rejected("unwrap", R"({"delete.handling.mode":"keep"})", "delete.handling.mode");
  check_rejected("unwrap", R"({"add.fields":"a:b:c"})", "Unexpected field name");
  check_rejected("table_router", R"({"topic.replacement":"x"})", "topic.regex");
  check_rejected("table_router", R"({"topic.regex":"(","topic.replacement":"x"})",
                 "not a valid regex");
  check_rejected("table_router",
                 R"({"topic.regex":"a","topic.replacement":"b","key.field.regex":"a"})",
                 "key.field.replacement must be non-empty");
  check_rejected("outbox", R"({"table.fields.additional.placement":"type:body"})",
                 "header|envelope|partition");
  check_rejected("outbox", R"({"route.topic.regex":"(?<x>"})", "route.topic.regex");
}

TEST_CASE("unwrap honours Debezium 2's delete.handling.mode and drop.tombstones") {
  SUBCASE("rewrite keeping tombstones: the old row marked deleted, and the tombstone") {
    auto [deleted, tomb] = unwrap(R"({"schemas.enable":true,"delete.handling.mode":"rewrite",
                                      "drop.tombstones":"false"})");
    REQUIRE(deleted.size() == 1);
    CHECK(deleted[0].value->find(R"("payload":{"id":1,"__deleted":"true"})") != std::string::npos);
    REQUIRE(tomb.size() == 1);
    CHECK_FALSE(tomb[0].value.has_value());
  }
  SUBCASE("the defaults: a null value for the delete, the tombstone dropped") {
    auto [deleted, tomb] = unwrap(R"({"schemas.enable":true,"drop.tombstones":true})");
    REQUIRE(deleted.size() == 1);
    CHECK(deleted[0].value->find(R"("payload":null)") != std::string::npos);
    CHECK(tomb.empty());
  }
  SUBCASE("drop drops the delete") {
    auto [deleted, tomb] = unwrap(R"({"schemas.enable":true,"delete.handling.mode":"drop"})");
    CHECK(deleted.empty());
  }
  SUBCASE("delete.tombstone.handling.mode wins over the legacy keys") {
    auto [deleted, tomb] = unwrap(R"({"schemas.enable":true,"delete.handling.mode":"rewrite",
                                      "delete.tombstone.handling.mode":"drop"})");
    CHECK(deleted.empty());
  }
}

TEST_CASE("outbox keeps a payload nested past the JSON depth limit as a string, without a crash") {
  Library lib(plugin_path("debezium_smt"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "outbox"), host,
             R"({"schemas.enable":true,"table.expand.json.payload":"true"})");
  FakeWriter out;
  // Far past what a thread's stack holds when parsed recursively (it crashed the process).
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  REQUIRE(t.process({outbox_insert(R"("{\"a\":1}")"), outbox_insert('"' + deep + '"')}, out).ok());
  CHECK(out.rejects.empty());
  REQUIRE(out.records.size() == 2);
  CHECK(out.records[0].value->find(R"("payload":{"a":1})") != std::string::npos);
  CHECK(out.records[1].value->find(R"("payload":")" + deep + '"') != std::string::npos);
}
