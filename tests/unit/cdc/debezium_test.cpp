// Unit tests of the debezium transform: every envelope form and op, positions, keys, routing of
// non-change events, and malformed inputs rejected with their reasons.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

std::string source_pg(const std::string& table, int64_t lsn) {
  return R"({"connector":"postgresql","db":"bankdb","schema":"bank","table":")" + table +
         R"(","lsn":)" + std::to_string(lsn) + R"(,"ts_ms":1})";
}

std::string event(const std::string& op, const std::string& before, const std::string& after,
                  const std::string& source) {
  return R"({"op":")" + op + R"(","before":)" + before + R"(,"after":)" + after + R"(,"source":)" +
         source + R"(,"ts_ms":7,"transaction":{"id":"9:1","total_order":1}})";
}

std::string wrapped(const std::string& payload) {
  return R"({"schema":{"type":"struct","fields":[]},"payload":)" + payload + "}";
}

TestRecord rec(std::optional<std::string> key, std::optional<std::string> value,
               std::string topic = "bank.bank.customers", int64_t offset = 0) {
  TestRecord r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.topic = std::move(topic);
  r.offset = offset;
  return r;
}

struct Run {
  std::vector<TestRecord> out;
  std::vector<Rejection> rejects;
};

Run decode(const std::vector<TestRecord>& in, const std::string& config = "{}") {
  Library lib(plugin_path("cdc"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "debezium"), host, config);
  FakeWriter w;
  REQUIRE(t.process(in, w).ok());
  return {w.records, w.rejects};
}

rapidjson::Document json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string text(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return sb.GetString();
}

}  // namespace

TEST_CASE("debezium decodes c, u, d and r with and without the schema/payload wrapper") {
  const std::string after = R"({"id":1,"name":"Ada"})";
  const std::string after2 = R"({"id":1,"name":"Ada B."})";
  for (bool wrap : {false, true}) {
    CAPTURE(wrap);
    auto w = [&](const std::string& s) { return wrap ? wrapped(s) : s; };
    auto run = decode({
        rec(w(R"({"id":1})"), w(event("r", "null", after, source_pg("customers", 10)))),
        rec(w(R"({"id":1})"), w(event("c", "null", after, source_pg("customers", 20)))),
        rec(w(R"({"id":1})"), w(event("u", after, after2, source_pg("customers", 30)))),
        rec(w(R"({"id":1})"), w(event("d", after2, "null", source_pg("customers", 40)))),
    });
    REQUIRE(run.rejects.empty());
    REQUIRE(run.out.size() == 4);
    const char* ops[] = {"r", "c", "u", "d"};
    for (size_t i = 0; i < 4; ++i) {
      auto d = json(*run.out[i].value);
      CHECK(std::string(d["kind"].GetString()) == "change");
      CHECK(std::string(d["op"].GetString()) == ops[i]);
      CHECK(std::string(d["table"].GetString()) == "bank.customers");
      CHECK(text(d["key"]) == R"({"id":1})");
      CHECK(d["ts_ms"].GetInt64() == 7);
      CHECK(d["transaction"].IsObject());
      CHECK(std::string(d["source"]["connector"].GetString()) == "postgresql");
      CHECK(run.out[i].input_index == i);
      CHECK(run.out[i].key == R"({"id":1})");
      CHECK(run.out[i].header("sluice.cdc.op") == ops[i]);
    }
    CHECK(text(json(*run.out[2].value)["before"]) == after);
    CHECK(text(json(*run.out[2].value)["after"]) == after2);
    CHECK(json(*run.out[3].value)["after"].IsNull());
    // Positions follow the log: string order is lsn order.
    CHECK(std::string(json(*run.out[0].value)["position"].GetString()) <
          json(*run.out[1].value)["position"].GetString());
  }
}

TEST_CASE("debezium writes an lsn position as L and the lsn zero-padded to 20 digits") {
  const std::pair<int64_t, const char*> cases[] = {
      {0, "L00000000000000000000"},
      {24001000, "L00000000000024001000"},
      {INT64_MAX, "L09223372036854775807"},
      {-5, "L-0000000000000000005"},  // printf's %020lld, as before
  };
  for (const auto& [lsn, position] : cases) {
    CAPTURE(lsn);
    auto run = decode(
        {rec(R"({"id":1})", event("c", "null", R"({"id":1})", source_pg("customers", lsn)))});
    REQUIRE(run.out.size() == 1);
    CHECK(std::string(json(*run.out[0].value)["position"].GetString()) == position);
  }
}

TEST_CASE("debezium decodes a truncate without a key and takes the table from the source") {
  auto run = decode({rec(std::nullopt, event("t", "null", "null", source_pg("transactions", 99)),
                         "bank.bank.transactions")});
  REQUIRE(run.rejects.empty());
  REQUIRE(run.out.size() == 1);
  auto d = json(*run.out[0].value);
  CHECK(std::string(d["op"].GetString()) == "t");
  CHECK(d["key"].IsNull());
  CHECK(std::string(d["table"].GetString()) == "bank.transactions");
}

TEST_CASE("debezium skips tombstones by default and forwards them when configured") {
  std::vector<TestRecord> in{
      rec(R"({"id":4})", std::nullopt),
      rec(R"({"schema":{},"payload":{"id":4}})", "{\"schema\":{},\"payload\":null}")};
  CHECK(decode(in).out.empty());
  CHECK(decode(in).rejects.empty());
  auto run = decode(in, R"({"tombstones":"forward"})");
  REQUIRE(run.out.size() == 2);
  CHECK(*run.out[0].value == R"({"kind":"tombstone","key":{"id":4}})");
  CHECK(*run.out[1].value == R"({"kind":"tombstone","key":{"id":4}})");
}

TEST_CASE("debezium canonicalizes composite primary keys from the record key") {
  auto run = decode({
      rec(R"({"seq":2,"account_id":7})",
          event("c", "null", R"({"account_id":7,"seq":2})", source_pg("holders", 5))),
      rec(wrapped(R"({"account_id":7,"seq":2})"),
          event("u", "null", R"({"account_id":7,"seq":2,"x":1})", source_pg("holders", 6))),
  });
  REQUIRE(run.out.size() == 2);
  CHECK(text(json(*run.out[0].value)["key"]) == R"({"account_id":7,"seq":2})");
  CHECK(run.out[0].key == run.out[1].key);
}

TEST_CASE("debezium keeps the link of a primary-key change from its headers") {
  TestRecord del = rec(R"({"id":1})", event("d", R"({"id":1})", "null", source_pg("customers", 5)));
  del.headers.emplace_back("__debezium.newkey", R"({"id":50})");
  TestRecord cre =
      rec(R"({"id":50})", event("c", "null", R"({"id":50})", source_pg("customers", 6)));
  cre.headers.emplace_back("__debezium.oldkey", R"({"id":1})");
  auto run = decode({del, cre});
  REQUIRE(run.out.size() == 2);
  CHECK(text(json(*run.out[0].value)["key_change"]) == R"({"new_key":{"id":50}})");
  CHECK(text(json(*run.out[1].value)["key_change"]) == R"({"old_key":{"id":1}})");
}

TEST_CASE(
    "debezium passes over heartbeats, schema changes, boundaries and messages as configured") {
  std::vector<TestRecord> in{
      rec(R"({"serverName":"bank"})", R"({"ts_ms":1})", "__debezium-heartbeat.bank"),
      rec(R"({"databaseName":"bankdb"})", R"({"ddl":"ALTER TABLE t ADD c int","tableChanges":[]})",
          "bank"),
      rec(R"({"id":"1:2"})", R"({"status":"BEGIN","id":"1:2","event_count":null})",
          "bank.transaction"),
      rec(std::nullopt, R"({"op":"m","ts_ms":1,"message":{"prefix":"p","content":"eA=="}})",
          "bank.message"),
  };
  auto skipped = decode(in);
  CHECK(skipped.out.empty());
  CHECK(skipped.rejects.empty());

  auto forwarded = decode(in, R"({"heartbeats":"forward","schema_changes":"forward",)"
                              R"("transactions":"forward","messages":"forward"})");
  REQUIRE(forwarded.out.size() == 4);
  const char* kinds[] = {"heartbeat", "schema_change", "transaction", "message"};
  for (size_t i = 0; i < 4; ++i) {
    CHECK(std::string(json(*forwarded.out[i].value)["kind"].GetString()) == kinds[i]);
    CHECK(forwarded.out[i].header("sluice.cdc.kind") == kinds[i]);
  }

  auto rejected = decode(in, R"({"schema_changes":"reject"})");
  REQUIRE(rejected.rejects.size() == 1);
  CHECK(rejected.rejects[0].index == 1);
  CHECK(rejected.rejects[0].message.find("schema_change") != std::string::npos);
}

TEST_CASE("debezium orders MySQL binlog positions and falls back to Kafka offsets") {
  auto mysql = [](const std::string& file, int64_t pos, int64_t row) {
    return R"({"connector":"mysql","db":"bank","table":"t","file":")" + file + R"(","pos":)" +
           std::to_string(pos) + R"(,"row":)" + std::to_string(row) + "}";
  };
  auto run = decode({
      rec(R"({"id":1})", event("c", "null", R"({"id":1})", mysql("bin.000002", 900, 0))),
      rec(R"({"id":1})", event("u", "null", R"({"id":1})", mysql("bin.000002", 900, 1))),
      rec(R"({"id":1})", event("u", "null", R"({"id":1})", mysql("bin.000003", 4, 0))),
      rec(R"({"id":1})", event("u", "null", R"({"id":1})", "null"), "srv.bank.t", 41),
      rec(R"({"id":1})", event("u", "null", R"({"id":1})", "null"), "srv.bank.t", 300),
  });
  REQUIRE(run.out.size() == 5);
  std::vector<std::string> pos;
  for (const auto& r : run.out) pos.push_back(json(*r.value)["position"].GetString());
  CHECK(pos[0] < pos[1]);
  CHECK(pos[1] < pos[2]);
  CHECK(pos[3] < pos[4]);  // 41 < 300 numerically, and so as text
  CHECK(std::string(json(*run.out[0].value)["table"].GetString()) == "bank.t");
  // Without a source block the table comes from the topic <prefix>.<schema>.<table>.
  CHECK(std::string(json(*run.out[3].value)["table"].GetString()) == "bank.t");
}

TEST_CASE("debezium takes the key from key_columns when the record key is null") {
  auto run = decode(
      {rec(std::nullopt, event("c", "null", R"({"a":1,"b":"x","c":3})", source_pg("pairs", 5)))},
      R"({"key_columns":{"bank.pairs":["b","a"]}})");
  REQUIRE(run.out.size() == 1);
  CHECK(text(json(*run.out[0].value)["key"]) == R"({"a":1,"b":"x"})");
}

TEST_CASE("debezium reads envelope lines and sets the output key from route_keys") {
  const std::string line =
      R"({"key":{"id":9},"value":)" +
      event("c", "null", R"({"id":9,"account_id":4,"amount":5})", source_pg("transactions", 8)) +
      R"(,"topic":"bank.bank.transactions","partition":0,"offset":3,"headers":{}})";
  const std::string tombstone = R"({"key":"{\"id\":9}","value":null,"topic":"x","headers":{}})";
  auto run =
      decode({rec(std::nullopt, line, "file"), rec(std::nullopt, tombstone, "file")},
             R"({"input_format":"envelope","route_keys":{"bank.transactions":"account_id"}})");
  REQUIRE(run.rejects.empty());
  REQUIRE(run.out.size() == 1);
  CHECK(run.out[0].key == "4");
  CHECK(text(json(*run.out[0].value)["key"]) == R"({"id":9})");
}

TEST_CASE("debezium rejects every malformed input with its reason and goes on with the batch") {
  struct Case {
    TestRecord record;
    std::string reason;
  };
  TestRecord flagged = rec(R"({"id":1})", "{oops");
  flagged.headers.emplace_back("sluice.error", "invalid JSON at byte 1");
  TestRecord bad_newkey = rec(R"({"id":1})", event("d", R"({"id":1})", "null", source_pg("c", 1)));
  bad_newkey.headers.emplace_back("__debezium.newkey", "{id:");
  std::vector<Case> cases{
      {rec(R"({"id":1})", "{not json"), "value is not valid JSON"},
      {rec(R"({"id":1})", "[1,2]"), "value is not a JSON object"},
      {rec(R"({"id":1})", R"({"schema":{},"payload":[1]})"), "payload is not a JSON object"},
      {rec(R"({"id":1})", R"({"op":"x","after":{}})"), "unknown op 'x'"},
      {rec(R"({"id":1})", R"({"op":7})"), "op must be one of"},
      {rec(R"({"id":1})", R"({"before":null,"after":{"id":1}})"), "not a Debezium event"},
      {rec(R"({"id":1})", event("c", "null", "null", source_pg("c", 1))), "op c without an after"},
      {rec(R"({"id":1})", event("u", "null", "null", source_pg("c", 1))), "op u without an after"},
      {rec(std::nullopt, event("d", "null", "null", source_pg("c", 1))), "op d without a before"},
      {rec(R"({"id":1})", event("c", "null", "[3]", source_pg("c", 1))),
       "after is not a JSON object"},
      {rec(R"({"id":1})", event("c", "null", R"({"id":1})", "5")), "source is not a JSON object"},
      {rec(R"({"id":1})", event("c", "null", R"({"id":1})", "null"), "notopic"), "no table"},
      {rec("{bad key", event("c", "null", R"({"id":1})", source_pg("c", 1))),
       "key is not valid JSON"},
      {rec("[1]", event("c", "null", R"({"id":1})", source_pg("c", 1))), "key is a JSON array"},
      {rec(std::nullopt, event("c", "null", R"({"id":1})", source_pg("c", 1))), "no primary key"},
      {bad_newkey, "__debezium.newkey header is not valid JSON"},
      {flagged, "the source flagged this record: invalid JSON at byte 1"},
  };
  std::vector<TestRecord> in;
  const std::string good = event("c", "null", R"({"id":1})", source_pg("customers", 1));
  for (const auto& c : cases) {
    in.push_back(c.record);
    in.push_back(rec(R"({"id":1})", good));
  }
  Library lib(plugin_path("cdc"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "debezium"), host, "{}");
  FakeWriter w;
  REQUIRE(t.process(in, w).ok());
  REQUIRE(w.rejects.size() == cases.size());
  CHECK(w.records.size() == cases.size());  // every good record between them went through
  for (size_t i = 0; i < cases.size(); ++i) {
    CAPTURE(cases[i].reason);
    CHECK(w.rejects[i].index == 2 * i);
    CHECK(w.rejects[i].status == SLUICE_ERROR);
    CHECK(w.rejects[i].message.find(cases[i].reason) != std::string::npos);
  }
  CHECK(host.counter("rejected") == static_cast<double>(cases.size()));
  CHECK(host.counter("changes") == static_cast<double>(cases.size()));

  FakeWriter env;
  Instance e(lib.plugin(SLUICE_KIND_TRANSFORM, "debezium"), host, R"({"input_format":"envelope"})");
  REQUIRE(e.process({rec(std::nullopt, R"({"key":1})"), rec(std::nullopt, "nope")}, env).ok());
  REQUIRE(env.rejects.size() == 2);
  CHECK(env.rejects[0].message.find("with a value member") != std::string::npos);
  CHECK(env.rejects[1].message.find("envelope line is not valid JSON") != std::string::npos);
}

TEST_CASE("debezium turns Connect decimals of a schema-enabled event into exact decimal text") {
  // As Debezium's PostgreSQL connector writes them with the default decimal.handling.mode=precise:
  // base64 of the big-endian two's-complement unscaled value, the scale in the schema.
  const std::string decimal =
      R"({"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal",)"
      R"("version":1,"parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"amount"})";
  const std::string variable =
      R"({"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal",)"
      R"("fields":[{"type":"int32","field":"scale"},{"type":"bytes","field":"value"}],"field":"qty"})";
  const std::string row = R"({"type":"struct","fields":[{"type":"int64","field":"id"},)" + decimal +
                          "," + variable + R"(],"optional":true,"field":")";
  const std::string schema = R"({"type":"struct","fields":[)" + row + R"(before"},)" + row +
                             R"(after"},{"type":"string","field":"op"}]})";
  auto value = [&](const std::string& before, const std::string& after) {
    return R"({"schema":)" + schema + R"(,"payload":)" +
           event("u", before, after, source_pg("transactions", 40)) + "}";
  };
  const std::string key_schema =
      R"({"type":"struct","fields":[{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal",)"
      R"("parameters":{"scale":"1"},"field":"id"}]})";
  auto key = [&](const std::string& id) {
    return R"({"schema":)" + key_schema + R"(,"payload":{"id":")" + id + R"("}})";
  };
  auto run = decode({
      rec(key("BNI="), value(R"({"id":1,"amount":"AA==","qty":null})",
                             R"({"id":1,"amount":"BNI=","qty":{"scale":4,"value":"AQ=="}})")),
      rec(key("/gw="),
          value("null", R"({"id":2,"amount":"/gw=","qty":{"scale":0,"value":"/w=="}})")),
      rec(key("AQ=="), value("null", R"({"id":3,"amount":"!!","qty":null})")),
  });
  REQUIRE(run.out.size() == 2);
  auto first = json(*run.out[0].value);
  CHECK(text(first["key"]) == R"({"id":"123.4"})");
  CHECK(text(first["before"]) == R"({"id":1,"amount":"0.00","qty":null})");
  CHECK(text(first["after"]) == R"({"id":1,"amount":"12.34","qty":"0.0001"})");
  auto second = json(*run.out[1].value);
  CHECK(text(second["key"]) == R"({"id":"-50.0"})");
  CHECK(text(second["after"]) == R"({"id":2,"amount":"-5.00","qty":"-1"})");
  REQUIRE(run.rejects.size() == 1);
  CHECK(run.rejects[0].message.find("after: field 'amount' is not a valid") != std::string::npos);
}

// 100,000 levels would run RapidJSON's recursive parser out of stack: every text that reaches a
// parse is refused at the limit, the envelope line and the key headers included.
TEST_CASE(
    "debezium rejects an envelope line or a key header nested 100,000 deep, without a crash") {
  const std::string abyss = std::string(100000, '[') + std::string(100000, ']');
  const std::string good = event("c", "null", R"({"id":1})", source_pg("customers", 1));
  auto run = decode({rec(std::nullopt, R"({"key":{"id":1},"value":)" + abyss + "}", "file"),
                     rec(std::nullopt, R"({"key":{"id":1},"value":)" + good + "}", "file")},
                    R"({"input_format":"envelope"})");
  REQUIRE(run.rejects.size() == 1);
  CHECK(run.rejects[0].index == 0);
  CHECK(run.rejects[0].message.find("nested deeper than 256 levels") != std::string::npos);
  CHECK(run.out.size() == 1);

  TestRecord del = rec(R"({"id":1})", event("d", R"({"id":1})", "null", source_pg("c", 1)));
  del.headers.emplace_back("__debezium.newkey", abyss);
  TestRecord cre = rec(R"({"id":2})", event("c", "null", R"({"id":2})", source_pg("c", 2)));
  cre.headers.emplace_back("__debezium.oldkey", abyss);
  run =
      decode({del, cre, rec(R"({"id":3})", event("c", "null", R"({"id":3})", source_pg("c", 3)))});
  REQUIRE(run.rejects.size() == 2);
  CHECK(run.rejects[0].message.find("__debezium.newkey header") != std::string::npos);
  CHECK(run.rejects[0].message.find("nested deeper than 256 levels") != std::string::npos);
  CHECK(run.rejects[1].message.find("__debezium.oldkey header") != std::string::npos);
  CHECK(run.out.size() == 1);
}

TEST_CASE("debezium refuses JSON nested past the limit and counts no bracket inside a string") {
  // 300 levels of arrays in a column: deeper than sluice::kMaxJsonDepth (256).
  const std::string deep = std::string(300, '[') + std::string(300, ']');
  // 300 brackets in a string, behind escaped quotes and backslashes: only text.
  const std::string text_only =
      "\"\\\"\\\\\\\"" + std::string(300, '[') + "\\\\\"";  // JSON: "\"\\\"[[[...\\"
  const auto row = [](const std::string& notes) { return R"({"id":1,"notes":)" + notes + "}"; };
  const auto value = [&](const std::string& notes) {
    return event("c", "null", row(notes), source_pg("customers", 1));
  };
  auto run = decode({rec(R"({"id":1})", value(deep)), rec(R"({"id":1})", value(text_only))});
  REQUIRE(run.rejects.size() == 1);
  CHECK(run.rejects[0].index == 0);
  CHECK(run.rejects[0].message.find("nested deeper than 256 levels") != std::string::npos);
  REQUIRE(run.out.size() == 1);
  CHECK(std::string(json(*run.out[0].value)["after"]["notes"].GetString()) ==
        "\"\\\"" + std::string(300, '[') + "\\");

  const auto line = [&](const std::string& notes) {
    return R"({"key":{"id":1},"value":)" + value(notes) +
           R"(,"topic":"bank.bank.customers","partition":0,"offset":3,"headers":{}})";
  };
  run = decode({rec(std::nullopt, line(deep), "file"), rec(std::nullopt, line(text_only), "file")},
               R"({"input_format":"envelope"})");
  REQUIRE(run.rejects.size() == 1);
  CHECK(run.rejects[0].message.find("nested deeper than 256 levels") != std::string::npos);
  CHECK(run.out.size() == 1);
}
