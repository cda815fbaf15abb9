// The schema cache of the Kafka and Debezium transforms (smt/kafka_smt.hpp) against the whole
// parse it replaces: every record goes through the same steps twice, once with a scratch whose
// SchemaCache lives from record to record (the envelope split, cached schemas, schemas made once
// per transform) and once with no scratch (each record parsed and written whole, as before the
// cache). Outputs and rejections must agree byte for byte, whatever the records before left in
// the cache: records that the split must refuse (other members, duplicates, escapes, trailing
// text, a bad payload, deep nesting), tombstones, nulls, deletes, truncates, other tables'
// schemas, and steps that change a schema in place (which must never reach the cached one).
#include <doctest/doctest.h>

#include <random>

#include "../../../plugins/transforms/debezium/plugins.hpp"
#include "../../../plugins/transforms/smt/plugins.hpp"

using namespace sluice;
using namespace sluice::smt;

namespace {

std::vector<StepType> all_types() {
  std::vector<StepType> all;
  for (auto list : {field_steps(), record_steps(), cast_steps()})
    all.insert(all.end(), list.begin(), list.end());
  all.push_back(dbz::unwrap_step());
  all.push_back(dbz::table_router_step());
  return all;
}

// Steps from (type, config JSON) pairs.
using StepList = std::vector<std::unique_ptr<Step>>;
StepList make_steps(const std::vector<std::pair<std::string, std::string>>& specs) {
  static const std::vector<StepType> types = all_types();
  StepList out;
  for (const auto& [name, config] : specs)
    for (const auto& t : types)
      if (name == t.name) out.push_back(t.make(Config(config.data(), config.size())));
  REQUIRE(out.size() == specs.size());
  return out;
}

struct Input {
  std::optional<std::string> key, value;
  std::string topic = "dbserver1.inv.customers";
};

// What the steps make of one record: its topic, key, value and headers as written, "dropped" or
// the rejection.
std::string run(StepList& steps, const Input& in, Scratch* scratch) {
  if (scratch) scratch->next();
  Record rec{Data(in.key, true, scratch),
             Data(in.value, true, scratch),
             in.topic,
             3,
             42,
             1700000000000,
             {}};
  try {
    const RecordSubject subject(rec);
    for (auto& s : steps)
      if (s->applies(subject) && !s->apply(rec)) return "dropped";
    const auto key = rec.key.bytes();
    const auto value = rec.value.bytes();
    std::string text = rec.topic + " | " + std::string(key.value_or("<null>")) + " | " +
                       std::string(value.value_or("<null>"));
    for (const auto& [k, v] : rec.headers) text += " | " + k + "=" + v.value_or("<null>");
    return text;
  } catch (const DataError& e) {
    return std::string("rejected: ") + e.what();
  }
}

// ---- Records ----

std::string prim(const char* type, const char* field, bool optional = false) {
  return std::string(R"({"type":")") + type + R"(","optional":)" + (optional ? "true" : "false") +
         R"(,"field":")" + field + "\"}";
}

// A row schema; `extra` is one more field schema (a nested struct, say) or "".
std::string row_schema(const std::string& table, const std::string& extra) {
  return R"({"type":"struct","optional":true,"name":"dbserver1.inv.)" + table +
         R"(.Value","fields":[)" + prim("int32", "id") + "," + prim("string", "first_name") + "," +
         prim("string", "email", true) + "," + prim("string", "ssn", true) +
         (extra.empty() ? "" : "," + extra) + "]";
}

std::string with_field(const std::string& schema, const char* field) {
  return schema + R"(,"field":")" + field + "\"}";
}

std::string envelope_schema(const std::string& table, const std::string& extra = "") {
  const std::string row = row_schema(table, extra);
  return R"({"type":"struct","optional":false,"name":"dbserver1.inv.)" + table +
         R"(.Envelope","version":2,"fields":[)" + with_field(row, "before") + "," +
         with_field(row, "after") +
         R"(,{"type":"struct","optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source","fields":[)" +
         prim("string", "db") + "," + prim("string", "table") + "," + prim("int64", "ts_ms") +
         "]}," + prim("string", "op") + "," + prim("int64", "ts_ms", true) + "]}";
}

std::string row(int id, const std::string& name, const std::string& more = "") {
  return R"({"id":)" + std::to_string(id) + R"(,"first_name":")" + name + R"(","email":"u)" +
         std::to_string(id) + R"(@example.com","ssn":"123-45-)" + std::to_string(1000 + id) + "\"" +
         more + "}";
}

std::string payload(const std::string& op, const std::string& before, const std::string& after,
                    const std::string& table = "customers") {
  return R"({"before":)" + before + R"(,"after":)" + after + R"(,"source":{"db":"inv","table":")" +
         table + R"(","ts_ms":1700000000000},"op":")" + op + R"(","ts_ms":1700000000100})";
}

std::string envelope(const std::string& schema, const std::string& payload_text) {
  return R"({"schema":)" + schema + R"(,"payload":)" + payload_text + "}";
}

// Records the split takes and records it must refuse, around one table's schema `s`.
std::vector<Input> tricky_records() {
  const std::string s = envelope_schema("customers");
  const std::string other = envelope_schema("orders");
  const std::string nested =
      envelope_schema("people", R"({"type":"struct","optional":true,"field":"address","fields":[)" +
                                    prim("string", "city", true) + "]}");
  const std::string key = R"({"schema":{"type":"struct","optional":false,"fields":[)" +
                          prim("int32", "id") + R"(]},"payload":{"id":7}})";
  const std::string create = payload("c", "null", row(7, "Ann"));
  return {
      {key, envelope(s, create)},
      {key, envelope(s, payload("u", row(7, "Ann"), row(7, "Bob")))},
      {key, envelope(s, payload("d", row(7, "Bob"), "null"))},
      {key, std::nullopt},                                                   // tombstone
      {std::nullopt, envelope(s, payload("t", "null", "null"))},             // truncate
      {key, envelope(s, payload("c", "null", row(8, "\\u00e9\\\"q\\\\")))},  // escapes
      {key, envelope(s, payload("c", "null", row(9, "Zo\xc3\xab")))},        // UTF-8
      {key, envelope(other, payload("c", "null", row(1, "Ord"), "orders"))},
      {key, envelope(s, create)},             // back to the first schema
      {key, envelope(s, create), "special"},  // see chains(): its schema is changed in place
      {key, envelope(s, create)},
      {key, envelope(nested, payload("c", "null", row(2, "Nes", R"(,"address":{"city":"X"})")))},
      {key, envelope(nested, payload("c", "null", row(3, "Nul", R"(,"address":null)")))},
      // Forms the split refuses, or whose payload its parse refuses: the whole parse decides.
      {key, R"({"payload":)" + create + R"(,"schema":)" + s + "}"},
      {key, R"({ "schema" : )" + s + R"( , "payload" : )" + create + " }\n"},
      {key, envelope(s, create) + "  "},
      {key, R"({"schema":)" + s + R"(,"payload":)" + create + R"(,"payload":null})"},
      {key, R"({"schema":)" + s + R"(,"schema":)" + s + R"(,"payload":)" + create + "}"},
      {key, R"({"schema":)" + s + R"(,"payload":)" + create + R"(,"extra":1})"},
      {key, R"({"sch\u0065ma":)" + s + R"(,"payload":)" + create + "}"},
      {key, envelope(s, create) + "x"},
      {key, envelope(s, create.substr(0, create.size() - 1))},  // truncated payload
      {key, envelope(s, "null")},
      {key, envelope(s, "\"a string\"")},
      {key, envelope(s, "[1,2]")},
      {key, envelope("null", create)},
      {key, envelope(R"({"name":"x.Envelope"})", create)},  // no type: not a schema
      {key, envelope(s, std::string(300, '[') + std::string(300, ']'))},
      {key, envelope(s, payload("c", "null", std::string(300, '[') + std::string(300, ']')))},
      {key, envelope(s, payload("u", row(7, "Ann"), "null").replace(0, 1, "{\"x\":1,"))},
      {key, "not json"},
      {key,
       envelope(s,
                R"({"before":null,"source":{"db":"inv","table":"customers","ts_ms":1},"op":"c"})")},
      {key, envelope(s, create)},
  };
}

// Variations of one table's change events, in random order: the runs of one schema the cache
// is for, with creates, updates, deletes, tombstones and strings with escapes.
std::vector<Input> random_records(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  const std::string s = envelope_schema("customers");
  const std::string other = envelope_schema("orders");
  const char* names[] = {"Ann", "B\\u00f6b", "C\\\"d", "\\\\e", "\xe2\x82\xac", ""};
  std::vector<Input> out;
  for (size_t i = 0; i < n; ++i) {
    const int id = static_cast<int>(rng() % 1000);
    const std::string r = row(id, names[rng() % 6]);
    const std::string key =
        R"({"schema":{"type":"int32","optional":false},"payload":)" + std::to_string(id) + "}";
    switch (rng() % 8) {
      case 0:
        out.push_back({key, std::nullopt});
        break;
      case 4:
        out.push_back({key, envelope(s, payload("c", "null", r)), "special"});
        break;
      case 1:
        out.push_back({key, envelope(s, payload("d", r, "null"))});
        break;
      case 2:
        out.push_back({key, envelope(other, payload("c", "null", r, "orders"))});
        break;
      case 3:
        out.push_back({key, envelope(s, payload("u", r, r))});
        break;
      default:
        out.push_back({key, envelope(s, payload("c", "null", r))});
    }
  }
  return out;
}

// ---- Chains ----

using Spec = std::vector<std::pair<std::string, std::string>>;

const std::vector<Spec>& chains() {
  static const std::vector<Spec> all = {
      // the benchmark's chain
      {{"unwrap", R"({"add.fields":"op,table","delete.tombstone.handling.mode":"rewrite"})"},
       {"replace_field", R"({"exclude":"email","renames":"first_name:name"})"},
       {"insert_field", R"({"static.field":"pipeline","static.value":"b","topic.field":"t"})"},
       {"mask_field", R"({"fields":"ssn"})"},
       {"regex_router", R"j({"regex":"dbserver1\\.inv\\.(.*)","replacement":"cdc.$1"})j"}},
      {{"unwrap", R"({"add.headers":"op,db,source.ts_ms"})"}},
      {{"unwrap", R"({"delete.tombstone.handling.mode":"drop","add.fields":"op:kind"})"}},
      {{"unwrap", R"({"delete.tombstone.handling.mode":"rewrite-with-tombstone"})"},
       {"insert_field", R"({"offset.field":"first_name"})"}},  // a duplicate field: rejected
      {{"unwrap", R"({"route.by.field":"first_name"})"}},
      {{"unwrap", R"({"add.fields":"op,ts_ms"})"},
       {"insert_field", R"({"timestamp.field":"ts","partition.field":"p"})"},
       {"replace_field", R"({"include":"id,ts,p,__op,address","renames":"id:key"})"}},
      // Steps that change a schema in place: a later record must still see the cached one. Here
      // the envelope's name, on some records only: unwrap leaves a record whose schema is not
      // named *.Envelope as it is.
      {{"set_schema_metadata",
        R"({"schema.name":"renamed","predicate":{"type":"topic_name_matches","pattern":"special"}})"},
       {"unwrap", "{}"}},
      {{"set_schema_metadata", R"({"schema.name":"renamed","schema.version":"9"})"},
       {"mask_field", R"({"fields":"op"})"}},
      {{"unwrap", "{}"}, {"flatten", "{}"}, {"cast", R"({"spec":"id:string"})"}},
      {{"unwrap", "{}"}, {"hoist_field", R"({"field":"row"})"}},
      {{"extract_field", R"({"field":"after"})"}, {"mask_field", R"({"fields":"first_name"})"}},
      {{"mask_field", R"({"fields":"before,after"})"}},
      {{"replace_field", R"({"exclude":"source"})"},
       {"insert_field", R"({"static.field":"s","static.value":"v"})"},
       {"unwrap", "{}"}},
      {{"insert_field", R"({"target":"key","static.field":"s","static.value":"v"})"},
       {"replace_field", R"({"target":"key","renames":"id:kid"})"}},
  };
  return all;
}

// Runs `records` through each chain with one scratch for all of them (the cache warm) and with
// none, `rounds` times over, and checks that both agree on every record.
void compare(const std::vector<Input>& records, int rounds) {
  for (size_t c = 0; c < chains().size(); ++c) {
    CAPTURE(c);
    StepList cached = make_steps(chains()[c]), whole = make_steps(chains()[c]);
    Scratch scratch;
    for (int round = 0; round < rounds; ++round)
      for (size_t i = 0; i < records.size(); ++i) {
        CAPTURE(i);
        CAPTURE(records[i].value.value_or("<null>"));
        const std::string want = run(whole, records[i], nullptr);
        CHECK(run(cached, records[i], &scratch) == want);
      }
  }
}

}  // namespace

TEST_CASE("with the schema cache, every step gives what the whole parse gives") {
  compare(tricky_records(), 3);
}

TEST_CASE("with the schema cache, random runs of change events give what the whole parse gives") {
  compare(random_records(3000, 11), 1);
}

TEST_CASE("the schema cache stays bounded when every record has a schema of its own") {
  StepList cached = make_steps(chains()[0]), whole = make_steps(chains()[0]);
  Scratch scratch;
  for (int i = 0; i < 2000; ++i) {
    // A table per record: every schema is new.
    const std::string table = "t" + std::to_string(i);
    const Input in{std::nullopt,
                   envelope(envelope_schema(table), payload("c", "null", row(i, "A"), table))};
    CHECK(run(cached, in, &scratch) == run(whole, in, nullptr));
    CHECK(scratch.schemas().size() <= SchemaCache::kMaxSchemas);
    if (i % 100 == 99) scratch.schemas().trim();  // between batches, as ScratchPool::take does
  }
}

TEST_CASE("a scratch pool gives calls at once their own scratch, and keeps them for later calls") {
  ScratchPool pool;
  const Scratch* first = nullptr;
  const Scratch* second = nullptr;
  {
    ScratchPool::Lease a = pool.take();
    ScratchPool::Lease b = pool.take();  // a second call while the first runs
    first = &*a;
    second = &*b;
    CHECK(first != second);
  }
  ScratchPool::Lease again = pool.take();  // a later call reuses one, with its schema cache
  CHECK((&*again == first || &*again == second));
}

TEST_CASE("a kept scratch gives back the memory a large record took when its next batch begins") {
  ScratchPool pool;
  StepList steps = make_steps({{"insert_field", R"({"static.field":"s","static.value":"v"})"}});
  const std::string big =
      envelope(R"({"type":"struct","optional":false,"fields":[)" + prim("string", "text") + "]}",
               R"({"text":")" + std::string(4 << 20, 'x') + "\"}");
  {
    ScratchPool::Lease lease = pool.take();
    CHECK(run(steps, {std::nullopt, big}, &*lease).size() > big.size());
    CHECK((*lease).buffer_bytes() > big.size());
  }
  ScratchPool::Lease lease = pool.take();
  CHECK((*lease).buffer_bytes() <= (1 << 20));
}
