// Unit tests of the projection transform on a real SQLite file: mirror and aggregate folding,
// idempotent replays, truncates, derived events, rejects, warm-up and memory pressure.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

// A normalized change event, as the debezium transform writes it.
TestRecord change(const std::string& table, char op, const std::string& key, int64_t lsn,
                  const std::string& after = "null", const std::string& before = "null") {
  char pos[32];
  std::snprintf(pos, sizeof pos, "L%020lld", static_cast<long long>(lsn));
  TestRecord r;
  r.key = key;
  r.value = R"({"kind":"change","op":")" + std::string(1, op) + R"(","table":")" + table +
            R"(","key":)" + (key.empty() ? "null" : key) + R"(,"position":")" + pos +
            R"(","ts_ms":5,"before":)" + before + R"(,"after":)" + after + "}";
  r.offset = lsn;
  return r;
}

TestRecord tx(char op, int id, int account, double amount, int64_t lsn) {
  const std::string key = R"({"id":)" + std::to_string(id) + "}";
  const std::string row = R"({"id":)" + std::to_string(id) + R"(,"account_id":)" +
                          std::to_string(account) + R"(,"amount":)" + std::to_string(amount) + "}";
  return change("bank.transactions", op, key, lsn, op == 'd' ? "null" : row,
                op == 'd' ? row : "null");
}

std::string config(const std::string& db, const std::string& extra = "") {
  return R"({"store":"sqlite","path":")" + db + R"(",)" + extra +
         R"("projections":[{"name":"customers","kind":"mirror","table":"bank.customers"},)"
         R"({"name":"balances","kind":"aggregate","table":"bank.transactions",)"
         R"("group_by":"account_id","fields":{"balance":{"sum":"amount"},)"
         R"("tx_count":{"count":true},"last_tx":{"last":"id"}}}]})";
}

// Every row of a query, as text joined by '|'.
std::vector<std::string> rows(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  std::vector<std::string> out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    std::string line;
    for (int c = 0; c < sqlite3_column_count(s); ++c) {
      if (c) line += '|';
      const unsigned char* t = sqlite3_column_text(s, c);
      line += t ? reinterpret_cast<const char*>(t) : "NULL";
    }
    out.push_back(line);
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

struct Output {
  std::vector<TestRecord> records;
  std::vector<Rejection> rejects;
};

struct Projection {
  explicit Projection(const std::string& cfg, uint64_t memory_limit = 0)
      : lib(plugin_path("projection")),
        host(memory_limit),
        instance(lib.plugin(SLUICE_KIND_TRANSFORM, "projection"), host, cfg) {}
  Output run(const std::vector<TestRecord>& in) {
    FakeWriter w;
    auto r = instance.process(in, w);
    REQUIRE_MESSAGE(r.ok(), r.message);
    return {w.records, w.rejects};
  }
  Library lib;
  FakeHost host;
  Instance instance;
};

// The values of derived events, in order.
std::vector<std::string> values(const Output& out) {
  std::vector<std::string> v;
  for (const auto& r : out.records) v.push_back(r.value.value_or("<null>"));
  return v;
}

std::string field(const TestRecord& r, const char* name) {
  rapidjson::Document d;
  d.Parse(r.value->c_str());
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  d[name].Accept(w);
  return sb.GetString();
}

}  // namespace

TEST_CASE("SQLite's page cache is an eighth of the pipeline's memory limit, 2 to 64 MB") {
  TempDir dir;
  const std::string cfg = config(dir.file("p.db"));
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  for (const auto& [limit, cache] : std::vector<std::pair<uint64_t, uint64_t>>{
           {64 * kMiB, 8 * kMiB}, {4 * kMiB, 2 * kMiB}, {8192 * kMiB, 64 * kMiB}, {0, 64 * kMiB}}) {
    CAPTURE(limit);
    Projection p(cfg, limit);
    CHECK(p.host.gauge_values("sqlite_page_cache_bytes") ==
          std::vector<double>{static_cast<double>(cache)});
  }
}

TEST_CASE("mirror upserts on c, u and r, deletes on d, and emits one derived event per change") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  auto out = p.run({
      change("bank.customers", 'r', R"({"id":1})", 10, R"({"id":1,"n":"a"})"),
      change("bank.customers", 'c', R"({"id":2})", 20, R"({"id":2,"n":"b"})"),
      change("bank.customers", 'u', R"({"id":1})", 30, R"({"id":1,"n":"a2"})"),
      change("bank.customers", 'u', R"({"id":1})", 31, R"({"id":1,"n":"a2"})"),  // no-op
      change("bank.customers", 'd', R"({"id":2})", 40, "null", R"({"id":2,"n":"b"})"),
      change("bank.other", 'c', R"({"id":9})", 41, R"({"id":9})"),  // no projection
  });
  CHECK(rows(db, "select key, data from customers order by key") ==
        std::vector<std::string>{R"({"id":1}|{"id":1,"n":"a2"})"});
  REQUIRE(out.records.size() == 4);
  CHECK(field(out.records[0], "op") == R"("insert")");
  CHECK(field(out.records[2], "op") == R"("update")");
  CHECK(field(out.records[2], "old") == R"({"id":1,"n":"a"})");
  CHECK(field(out.records[2], "new") == R"({"id":1,"n":"a2"})");
  CHECK(field(out.records[3], "op") == R"("delete")");
  CHECK(field(out.records[3], "new") == "null");
  CHECK(out.records[3].input_index == 4);
  CHECK(out.records[3].header("sluice.projection") == "customers");
  CHECK(out.records[3].topic == "projections");
  CHECK(p.host.counter("no_op") == 1);
}

TEST_CASE("mirror keeps the stored value of a column Debezium sends as unavailable (TOAST)") {
  // Under the default REPLICA IDENTITY an update that leaves a TOASTed column alone carries
  // Debezium's placeholder instead of its value.
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  auto out = p.run({
      change("bank.customers", 'r', R"({"id":1})", 10, R"({"id":1,"n":"a","note":"long"})"),
      change("bank.customers", 'u', R"({"id":1})", 20,
             R"({"id":1,"n":"b","note":"__debezium_unavailable_value"})"),
      change("bank.customers", 'u', R"({"id":1})", 30,
             R"({"id":1,"n":"b","note":"__debezium_unavailable_value"})"),  // no-op
      change("bank.customers", 'c', R"({"id":2})", 40,
             R"({"id":2,"n":"c","note":"__debezium_unavailable_value"})"),  // nothing stored
  });
  CHECK(rows(db, "select key, data from customers order by key") ==
        std::vector<std::string>{
            R"({"id":1}|{"id":1,"n":"b","note":"long"})",
            R"({"id":2}|{"id":2,"n":"c","note":"__debezium_unavailable_value"})"});
  REQUIRE(out.records.size() == 3);
  CHECK(field(out.records[1], "new") == R"({"id":1,"n":"b","note":"long"})");
  CHECK(p.host.counter("no_op") == 1);

  TempDir off;
  Projection raw(config(off.file("p.db"), R"("unavailable_value":"",)"));
  raw.run({change("bank.customers", 'r', R"({"id":1})", 10, R"({"id":1,"note":"long"})"),
           change("bank.customers", 'u', R"({"id":1})", 20,
                  R"({"id":1,"note":"__debezium_unavailable_value"})")});
  CHECK(rows(off.file("p.db"), "select data from customers") ==
        std::vector<std::string>{R"({"id":1,"note":"__debezium_unavailable_value"})"});
}

TEST_CASE("aggregate folds sum, count and last through inserts, updates and deletes") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  p.run({tx('c', 1, 7, 100, 10), tx('c', 2, 7, 50, 20), tx('c', 3, 8, 5, 30)});
  CHECK(rows(db, "select group_key, balance, tx_count, last_tx from balances order by 1") ==
        std::vector<std::string>{"7|150.0|2|2", "8|5.0|1|3"});
  // An update takes the old amount out and puts the new one in; a move changes both groups.
  auto out = p.run({tx('u', 1, 7, 30, 40), tx('u', 3, 7, 5, 50), tx('d', 2, 7, 50, 60)});
  // A group whose rows are all gone stays with count 0 and its last value.
  CHECK(rows(db, "select group_key, balance, tx_count, last_tx from balances order by 1") ==
        std::vector<std::string>{"7|35.0|2|3", "8|0.0|0|3"});
  // Events: group 7 update; group 8 update + group 7 update (the move); group 7 update.
  REQUIRE(out.records.size() == 4);
  CHECK(field(out.records[1], "key") == R"("8")");
  CHECK(field(out.records[1], "new") == R"({"balance":0,"tx_count":0,"last_tx":3})");
  CHECK(field(out.records[2], "new") == R"({"balance":85,"tx_count":3,"last_tx":3})");
  CHECK(field(out.records[3], "new") == R"({"balance":35,"tx_count":2,"last_tx":3})");
  CHECK(field(out.records[3], "old") == R"({"balance":85,"tx_count":3,"last_tx":3})");
}

TEST_CASE("replaying any range leaves projections unchanged and emits its derived events again") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  std::vector<TestRecord> all{
      change("bank.customers", 'c', R"({"id":1})", 10, R"({"id":1,"n":"a"})"),
      tx('c', 1, 7, 100, 11),
      change("bank.customers", 'u', R"({"id":1})", 12, R"({"id":1,"n":"b"})"),
      tx('u', 1, 7, 60, 13),
      change("bank.customers", 'd', R"({"id":1})", 14, "null", R"({"id":1,"n":"b"})"),
      tx('c', 2, 7, 1, 15),
      tx('d', 1, 7, 60, 16),
  };
  const char* kDump =
      "select 'c', key, data, source_position from customers union all select 'b', group_key, "
      "balance || ',' || tx_count || ',' || last_tx, source_position from balances order by 1, 2";
  std::vector<std::string> final_rows, first, middle;
  {
    Projection p(config(db));
    const Output out = p.run(all);
    first = values(out);
    REQUIRE(first.size() >= 6);
    for (const auto& r : out.records)
      if (r.input_index >= 1 && r.input_index < 5) middle.push_back(*r.value);
    final_rows = rows(db, kDump);
    CHECK(final_rows == std::vector<std::string>{"b|7|1.0,1,2|L00000000000000000016"});
    // The same instance, then a fresh one (a restart): whole input and a middle range. The
    // rows do not change; the derived events come again, as first emitted (the outbox).
    CHECK(values(p.run(all)) == first);
    CHECK(p.host.counter("skipped_replayed") == static_cast<double>(all.size()));
    CHECK(p.host.counter("reemitted") == static_cast<double>(first.size()));
  }
  Projection again(config(db));
  CHECK(values(again.run(std::vector<TestRecord>(all.begin() + 1, all.begin() + 5))) == middle);
  CHECK(values(again.run(all)) == first);
  CHECK(rows(db, kDump) == final_rows);
  // The deleted customer stays deleted although its create is replayed.
  CHECK(rows(db, "select count(*) from customers") == std::vector<std::string>{"0"});
}

TEST_CASE("truncate clears older rows, skips older events, and keeps rows of later events") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  p.run({tx('c', 1, 7, 10, 10), tx('c', 2, 8, 20, 20),
         change("bank.customers", 'c', R"({"id":1})", 21, R"({"id":1})")});
  // A later insert overtook the truncate (another lane): the truncate must not remove it.
  p.run({tx('c', 3, 7, 5, 40)});
  auto out = p.run({change("bank.transactions", 't', "", 30), tx('c', 4, 8, 1, 25)});
  CHECK(rows(db, "select group_key, balance, tx_count from balances order by 1") ==
        std::vector<std::string>{"7|5.0|1"});
  REQUIRE(out.records.size() == 1);
  CHECK(field(out.records[0], "op") == R"("clear")");
  CHECK(rows(db, "select count(*) from customers") == std::vector<std::string>{"1"});
  CHECK(rows(db, "select truncated_at from sluice_projection_meta") ==
        std::vector<std::string>{"L00000000000000000030"});
  // Replaying the truncate changes nothing, and emits its derived event again.
  auto replayed = p.run({change("bank.transactions", 't', "", 30)});
  CHECK(values(replayed) == values(out));
  CHECK(rows(db, "select group_key, balance, tx_count from balances order by 1") ==
        std::vector<std::string>{"7|5.0|1"});
}

TEST_CASE("without an outbox a replay emits nothing; pruned derived events are an error") {
  TempDir dir;
  const std::vector<TestRecord> all{tx('c', 1, 7, 100, 11), tx('u', 1, 7, 60, 13)};
  {
    const std::string db = dir.file("off.db");
    Projection p(config(db, R"("outbox_retention_ms":0,)"));
    CHECK(p.run(all).records.size() == 2);
    CHECK(p.run(all).records.empty());
    CHECK(rows(db, "select count(*) from sluice_projection_outbox") ==
          std::vector<std::string>{"0"});
  }
  const std::string db = dir.file("pruned.db");
  {
    Projection p(config(db, R"("outbox_retention_ms":1,)"));
    CHECK(p.run(all).records.size() == 2);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // A restart prunes on its first batch: rows older than 1 ms before the newest go, and the
  // highest position they had is remembered.
  Projection p(config(db, R"("outbox_retention_ms":1,)"));
  CHECK(p.run({tx('c', 2, 8, 5, 20)}).records.size() == 1);
  CHECK(rows(db,
             "select truncated_at from sluice_projection_meta where projection = "
             "'sluice.outbox'") == std::vector<std::string>{"L00000000000000000013"});
  CHECK(rows(db, "select count(*) from sluice_projection_outbox") == std::vector<std::string>{"1"});
  CHECK(p.run(all).records.empty());
  bool logged = false;
  for (const auto& m : p.host.logs())
    logged =
        logged || (m.find("L00000000000000000011 .. L00000000000000000013") != std::string::npos &&
                   m.find("pruned") != std::string::npos);
  CHECK(logged);
  // The event after the pruned range still comes again.
  CHECK(p.run({tx('c', 2, 8, 5, 20)}).records.size() == 1);
}

// Runs `sql` on the database file (a test's own write, beside the projection's).
static void exec(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
          SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  const std::string message = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(h);
  REQUIRE_MESSAGE(rc == SQLITE_OK, message);
}

// One outbox entry as the store packs it: six "<length>:<bytes>" fields.
static std::string packed(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out += std::to_string(f.size()) + ":" + f;
  return out;
}

TEST_CASE(
    "the outbox keeps one row per batch; a replay across rows emits each derived event once") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  const std::vector<TestRecord> a{tx('c', 1, 7, 10, 11), tx('c', 2, 8, 20, 12)};
  const std::vector<TestRecord> b{
      tx('u', 1, 7, 15, 13),
      change("bank.customers", 'c', R"({"id":1})", 14, R"({"id":1,"name":"Bo"})")};
  std::vector<std::string> first;
  {
    Projection p(config(db));
    first = values(p.run(a));
    const auto more = values(p.run(b));
    first.insert(first.end(), more.begin(), more.end());
  }
  REQUIRE(first.size() == 4);
  CHECK(rows(db, "select count(*), min(low), max(high) from sluice_projection_outbox") ==
        std::vector<std::string>{"2|L00000000000000000011|L00000000000000000014"});
  // A later row keeping the same (position, event, seq) again: the first copy is the one
  // emitted, once.
  exec(db,
       "insert into sluice_projection_outbox (low, high, created_ms, entries) values "
       "('L00000000000000000012', 'L00000000000000000012', 1, '" +
           packed({"L00000000000000000012", R"(bank.transactions|{"id":2})", "0", "balances", "8",
                   "forged"}) +
           "')");
  Projection again(config(db));
  // Events of both batches in one replay, in their order, after a restart.
  std::vector<TestRecord> all = a;
  all.insert(all.end(), b.begin(), b.end());
  CHECK(values(again.run(all)) == first);
  CHECK(values(again.run({a[1], b[0]})) == std::vector<std::string>{first[1], first[2]});
  CHECK(again.host.counter("reemitted") == 6);
}

TEST_CASE("SQLite tables keep rows in their key's b-tree; tables an older sluice made still fold") {
  const std::vector<TestRecord> events{
      change("bank.customers", 'c', R"({"id":1})", 10, R"({"id":1,"n":"a"})"),
      change("bank.customers", 'c', R"({"id":2})", 11, R"({"id":2,"n":"b"})"),
      change("bank.customers", 'd', R"({"id":2})", 12, "null", R"({"id":2,"n":"b"})"),
      tx('c', 1, 7, 10, 13),
      tx('c', 2, 7, 5, 14),
      tx('u', 1, 8, 10, 15),
      tx('d', 2, 7, 5, 16)};
  const char* const kTables[] = {"customers", "customers__deleted", "balances",
                                 "balances__sources"};
  auto state = [&](const std::string& db) {
    std::vector<std::string> all;
    for (const char* t : kTables) {
      const auto r = rows(db, std::string("select * from ") + t + " order by 1");
      all.push_back(t);
      for (const auto& line : r) all.push_back(line.substr(0, line.rfind('|')));  // no updated_ms
    }
    return all;
  };
  TempDir dir;
  const std::string fresh = dir.file("fresh.db"), old = dir.file("old.db");
  std::vector<std::string> fresh_out;
  {
    Projection p(config(fresh));
    fresh_out = values(p.run(events));
  }
  for (const char* t : kTables) {
    CAPTURE(t);
    const auto sql =
        rows(fresh, std::string("select sql from sqlite_master where name = '") + t + "'");
    REQUIRE(sql.size() == 1);
    CHECK(sql[0].find("WITHOUT ROWID") != std::string::npos);
  }
  // The layout of sluice before WITHOUT ROWID: rowid tables with an index on the key.
  exec(old,
       "create table customers (key text primary key, data text not null, source_position text "
       "not null, updated_ms bigint not null);"
       "create table customers__deleted (key text primary key, source_position text not null, "
       "updated_ms bigint not null);"
       "create table balances (group_key text primary key, balance double precision, tx_count "
       "bigint, last_tx text, row_count bigint not null, last_position text, source_position text "
       "not null, updated_ms bigint not null);"
       "create table balances__sources (key text primary key, group_key text, contribution text, "
       "source_position text not null, deleted integer not null, updated_ms bigint not null)");
  std::vector<std::string> old_out;
  {
    Projection p(config(old));
    old_out = values(p.run(events));
  }
  CHECK(rows(old, "select count(*) from sqlite_master where sql like '%WITHOUT ROWID%'") ==
        std::vector<std::string>{"0"});
  CHECK(old_out == fresh_out);
  CHECK(state(old) == state(fresh));
  CHECK(rows(fresh, "select group_key, balance, tx_count, row_count from balances order by 1") ==
        std::vector<std::string>{"7|0.0|0|0", "8|10.0|1|1"});
}

TEST_CASE("an outbox table of the older layout (a row per derived event) is refused at start") {
  TempDir dir;
  const std::string db = dir.file("old.db");
  exec(db,
       "create table sluice_projection_outbox (position text not null, event text not null, seq "
       "bigint not null, projection text not null, key text not null, payload text not null, "
       "created_ms bigint not null, primary key (position, event, seq))");
  Library lib(plugin_path("projection"));
  FakeHost host;
  void* inst = nullptr;
  auto r = Instance::try_create(lib.plugin(SLUICE_KIND_TRANSFORM, "projection"), host, config(db),
                                &inst);
  CHECK_FALSE(r.ok());
  CHECK(r.message.find("older sluice") != std::string::npos);
}

TEST_CASE("projection rejects events it cannot fold, with reasons, and applies the rest") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  TestRecord not_normalized;
  not_normalized.value = R"({"op":"c"})";
  auto out = p.run({
      change("bank.transactions", 'c', R"({"id":1})", 10, R"({"id":1,"amount":5})"),
      change("bank.transactions", 'c', R"({"id":2})", 11,
             R"({"id":2,"account_id":1,"amount":"abc"})"),
      change("bank.transactions", 'c', R"({"id":3})", 12,
             R"({"id":3,"account_id":1,"amount":{"x":1}})"),
      not_normalized,
      tx('c', 4, 1, 2, 13),
      change("bank.transactions", 'c', R"({"id":5})", 14,
             R"({"id":5,"account_id":1,"amount":"2.5"})"),
  });
  REQUIRE(out.rejects.size() == 4);
  CHECK(out.rejects[0].message.find("group_by field 'account_id' is missing") != std::string::npos);
  CHECK(out.rejects[1].message.find("'amount' is not a number") != std::string::npos);
  CHECK(out.rejects[2].message.find("'amount' is not a number") != std::string::npos);
  CHECK(out.rejects[3].message.find("not a normalized change event") != std::string::npos);
  CHECK(rows(db, "select balance, tx_count from balances") == std::vector<std::string>{"4.5|2"});
}

TEST_CASE("projection rejects a value nested deeper than the JSON depth limit, without a crash") {
  TempDir dir;
  Projection p(config(dir.file("p.db")));
  // Far past what a thread's stack holds when parsed recursively (it crashed the process).
  TestRecord deep;
  deep.value = std::string(200000, '[') + std::string(200000, ']');
  auto out = p.run({deep, tx('c', 1, 1, 2.5, 10)});
  REQUIRE(out.rejects.size() == 1);
  CHECK(out.rejects[0].index == 0);
  CHECK(out.rejects[0].message.find("nested deeper than") != std::string::npos);
  CHECK(rows(dir.file("p.db"), "select balance, tx_count from balances") ==
        std::vector<std::string>{"2.5|1"});
}

TEST_CASE("projection warms its cache with recent rows and reports hits, misses, evictions") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  {
    Projection p(config(db, R"("cache":{"capacity":4,"policy":"lru"},)"));
    std::vector<TestRecord> in;
    for (int i = 1; i <= 10; ++i) in.push_back(tx('c', i, i % 3, 1, 10 + i));
    p.run(in);
    CHECK(p.host.counter("cache_misses") > 0);
    CHECK(p.host.counter("cache_evictions") > 0);
  }
  Projection warm(config(db, R"("cache":{"capacity":100,"policy":"adaptive","warmup":50},)"));
  CHECK(warm.host.gauge_values("cache_size").back() > 0);
  warm.run({tx('u', 10, 1, 2, 100)});  // source row 10 and group 1 were warmed up
  CHECK(warm.host.counter("cache_hits") >= 2);
  CHECK(warm.host.counter("cache_misses") == 0);
  CHECK(rows(db, "select balance from balances where group_key = '1'") ==
        std::vector<std::string>{"5.0"});
}

TEST_CASE("memory pressure shrinks the projection cache") {
  TempDir dir;
  Library lib(plugin_path("projection"));
  FakeHost host;
  const sluice_plugin& plugin = lib.plugin(SLUICE_KIND_TRANSFORM, "projection");
  void* inst = nullptr;
  REQUIRE(Instance::try_create(plugin, host,
                               config(dir.file("p.db"), R"("cache":{"capacity":1000},)"), &inst)
              .ok());
  plugin.on_memory_pressure(inst, 0.95);
  CHECK(host.gauge_values("cache_capacity").back() == 500);
  plugin.on_memory_pressure(inst, 1.2);
  CHECK(host.gauge_values("cache_capacity").back() == 100);
  plugin.destroy(inst);
}

TEST_CASE("projection config errors name the field") {
  Library lib(plugin_path("projection"));
  const sluice_plugin& plugin = lib.plugin(SLUICE_KIND_TRANSFORM, "projection");
  FakeHost host;
  void* inst = nullptr;
  auto r = Instance::try_create(
      plugin, host,
      R"({"store":"sqlite","path":":memory:","projections":[{"name":"x-y","table":"t"}]})", &inst);
  CHECK_FALSE(r.ok());
  CHECK(r.field == "projections");
  CHECK(r.message.find("not a plain SQL identifier") != std::string::npos);
  r = Instance::try_create(plugin, host,
                           R"({"store":"sqlite","path":":memory:","cache":{"policy":"fifo"},)"
                           R"("projections":[{"name":"x","table":"t"}]})",
                           &inst);
  CHECK_FALSE(r.ok());
  CHECK(r.field == "cache");
  // Several writers are a PostgreSQL feature: SQLite writes one transaction at a time.
  r = Instance::try_create(plugin, host,
                           R"({"store":"sqlite","path":":memory:","writers":2,)"
                           R"("projections":[{"name":"x","table":"t"}]})",
                           &inst);
  CHECK_FALSE(r.ok());
  CHECK(r.field == "writers");
  CHECK(r.message.find("needs store postgres") != std::string::npos);
  // `writers` is auto or a count (YAML hands a count over as text); auto on SQLite is one.
  r = Instance::try_create(plugin, host,
                           R"({"store":"sqlite","path":":memory:","writers":"many",)"
                           R"("projections":[{"name":"x","table":"t"}]})",
                           &inst);
  CHECK_FALSE(r.ok());
  CHECK(r.field == "writers");
  CHECK(r.message.find("auto or a count from 1 to 64, got 'many'") != std::string::npos);
  for (const char* ok : {R"("auto")", R"("1")", "1"}) {
    void* made = nullptr;
    r = Instance::try_create(plugin, host,
                             std::string(R"({"store":"sqlite","path":":memory:","writers":)") + ok +
                                 R"(,"projections":[{"name":"x","table":"t"}]})",
                             &made);
    CHECK_MESSAGE(r.ok(), ok);
    if (made) plugin.destroy(made);
  }
}

TEST_CASE("the row cache is off unless configured, and a cache mapping alone turns it on") {
  TempDir dir;
  const std::vector<TestRecord> in{tx('c', 1, 7, 1, 11), tx('u', 1, 7, 2, 12)};
  Projection plain(config(dir.file("a.db")));
  plain.run(in);
  plain.run({tx('u', 1, 7, 3, 13)});
  CHECK(plain.host.gauge_values("cache_capacity").back() == 0);
  CHECK(plain.host.gauge_values("cache_size").back() == 0);
  CHECK(plain.host.counter("cache_hits") == 0);
  Projection cached(config(dir.file("b.db"), R"("cache":{"policy":"lru"},)"));
  cached.run(in);
  cached.run({tx('u', 1, 7, 3, 13)});  // its source row and group come from the cache
  CHECK(cached.host.gauge_values("cache_capacity").back() == 10000);
  CHECK(cached.host.counter("cache_hits") >= 2);
  CHECK(rows(dir.file("a.db"), "select balance, tx_count from balances") ==
        rows(dir.file("b.db"), "select balance, tx_count from balances"));
}

TEST_CASE("projection never shows its conninfo's password in an error") {
  Library lib(plugin_path("projection"));
  const sluice_plugin& plugin = lib.plugin(SLUICE_KIND_TRANSFORM, "projection");
  FakeHost host;
  // libpq quotes a malformed URI whole in its error; the second cannot connect (port 1).
  for (const std::string conninfo :
       {"postgresql://app:hunter2-pw@[db/o",
        "host=127.0.0.1 port=1 user=app password=hunter2-pw connect_timeout=2"}) {
    void* inst = nullptr;
    const auto r = Instance::try_create(plugin, host,
                                        R"({"store":"postgres","conninfo":")" + conninfo +
                                            R"(","projections":[{"name":"x","table":"t"}]})",
                                        &inst);
    CHECK_FALSE(r.ok());
    CHECK(r.message.find("postgres") != std::string::npos);
    CHECK_MESSAGE(r.message.find("hunter2-pw") == std::string::npos, r.message);
  }
}

namespace {

// Debezium records (as a connector writes them) touching both projections of config(): every
// op, a row moving between groups, a schema/payload wrapper, a tombstone, a heartbeat and one
// record that is not JSON.
std::vector<TestRecord> debezium_records() {
  auto src = [](const char* table, int64_t lsn) {
    return R"({"connector":"postgresql","schema":"bank","table":")" + std::string(table) +
           R"(","lsn":)" + std::to_string(lsn) + "}";
  };
  auto ev = [&](const char* op, const std::string& before, const std::string& after,
                const char* table, int64_t lsn) {
    return R"({"op":")" + std::string(op) + R"(","before":)" + before + R"(,"after":)" + after +
           R"(,"source":)" + src(table, lsn) + R"(,"ts_ms":)" + std::to_string(lsn) + "}";
  };
  auto rec = [](std::optional<std::string> key, std::optional<std::string> value, const char* topic,
                int64_t offset) {
    TestRecord r;
    r.key = std::move(key);
    r.value = std::move(value);
    r.topic = topic;
    r.offset = offset;
    return r;
  };
  const char* c = "db.bank.customers";
  const char* t = "db.bank.transactions";
  const std::string tx1 = R"({"id":1,"account_id":7,"amount":10.5})";
  const std::string tx1b = R"({"id":1,"account_id":8,"amount":10.5})";
  const std::string tx2 = R"({"id":2,"account_id":7,"amount":"2.25"})";
  return {
      rec(R"({"id":1})", ev("r", "null", R"({"id":1,"n":"a"})", "customers", 10), c, 0),
      rec(R"({"schema":{},"payload":{"id":2}})",
          R"({"schema":{},"payload":)" + ev("c", "null", R"({"id":2,"n":"ü"})", "customers", 20) +
              "}",
          c, 1),
      rec(R"({"id":1})", ev("u", "null", R"({"id":1,"n":"a2"})", "customers", 30), c, 2),
      rec(R"({"id":2})", ev("d", R"({"id":2,"n":"ü"})", "null", "customers", 40), c, 3),
      rec(R"({"id":2})", std::nullopt, c, 4),
      rec(R"({"id":1})", ev("c", "null", tx1, "transactions", 50), t, 5),
      rec(R"({"id":2})", ev("c", "null", tx2, "transactions", 60), t, 6),
      rec(R"({"id":1})", ev("u", tx1, tx1b, "transactions", 70), t, 7),
      rec(R"({"id":2})", ev("d", tx2, "null", "transactions", 80), t, 8),
      rec(R"({"serverName":"db"})", R"({"ts_ms":1})", "__debezium-heartbeat.db", 9),
      rec(R"({"id":3})", "not json", c, 10),
  };
}

// The envelope line the file sink writes for `r` (key as text, value embedded); with
// `embed_key`, the key embedded as JSON too (as Kafka Connect's JSON envelopes have it).
TestRecord envelope_line(const TestRecord& r, bool embed_key = false) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("key");
  if (embed_key)
    w.RawValue(r.key->c_str(), r.key->size(), rapidjson::kObjectType);
  else
    w.String(r.key->c_str());
  w.Key("value");
  if (!r.value) {
    w.Null();
  } else {
    rapidjson::Document v;
    v.Parse(r.value->c_str());
    if (v.HasParseError())
      w.String(r.value->c_str());
    else
      v.Accept(w);
  }
  w.Key("topic");
  w.String(r.topic.c_str());
  w.Key("partition");
  w.Int(0);
  w.Key("offset");
  w.Int64(r.offset);
  w.EndObject();
  TestRecord line;
  line.value = sb.GetString();
  return line;
}

// What the fold decided: every projection table without its write times.
std::vector<std::string> fold_state(const std::string& db) {
  std::vector<std::string> out;
  for (const char* q :
       {"select key, data, source_position from customers order by key",
        "select key, source_position from customers__deleted order by key",
        "select group_key, balance, tx_count, last_tx, row_count, last_position, source_position "
        "from balances order by group_key",
        "select key, group_key, contribution, source_position, deleted from balances__sources "
        "order by key"})
    for (auto& row : rows(db, q)) out.push_back(std::move(row));
  return out;
}

}  // namespace

TEST_CASE("projection decodes Debezium records itself and folds them as debezium -> projection") {
  TempDir dir;
  const auto in = debezium_records();
  Library cdc(plugin_path("cdc"));
  FakeHost cdc_host;
  Instance debezium(cdc.plugin(SLUICE_KIND_TRANSFORM, "debezium"), cdc_host, "{}");
  FakeWriter normalized;
  REQUIRE(debezium.process(in, normalized).ok());
  Projection two_stage(config(dir.file("two.db")));
  const Output expected = two_stage.run(normalized.records);

  Projection fused(config(dir.file("fused.db"), R"("input_format":"debezium",)"));
  const Output got = fused.run(in);
  CHECK(fold_state(dir.file("fused.db")) == fold_state(dir.file("two.db")));
  CHECK(fold_state(dir.file("fused.db")).size() == 6);  // 1 + 1 deleted, 2 groups, 2 sources
  CHECK(values(got) == values(expected));
  REQUIRE(got.rejects.size() == 1);
  CHECK(got.rejects[0].index == 10);
  CHECK(got.rejects[0].message.find("projection: debezium: value is not valid JSON") == 0);
  CHECK(fused.host.counter("passed_over") == 2);  // the tombstone and the heartbeat

  std::vector<TestRecord> lines;
  for (const auto& r : in) lines.push_back(envelope_line(r));
  Projection enveloped(config(dir.file("envelope.db"), R"("input_format":"debezium_envelope",)"));
  const Output from_lines = enveloped.run(lines);
  CHECK(fold_state(dir.file("envelope.db")) == fold_state(dir.file("two.db")));
  CHECK(values(from_lines) == values(expected));

  // Keys embedded as JSON objects are handed to the decoder parsed: the same fold.
  lines.clear();
  for (const auto& r : in) lines.push_back(envelope_line(r, /*embed_key=*/true));
  Projection embedded(config(dir.file("embedded.db"), R"("input_format":"debezium_envelope",)"));
  const Output from_embedded = embedded.run(lines);
  CHECK(fold_state(dir.file("embedded.db")) == fold_state(dir.file("two.db")));
  CHECK(values(from_embedded) == values(expected));
}

namespace {

// A customer change: `n` is the name in its image.
TestRecord customer(char op, int id, int64_t lsn, const std::string& n = "x") {
  const std::string key = R"({"id":)" + std::to_string(id) + "}";
  const std::string row = R"({"id":)" + std::to_string(id) + R"(,"n":")" + n + R"("})";
  return change("bank.customers", op, key, lsn, op == 'd' ? "null" : row, op == 'd' ? row : "null");
}

// Rows already stored (live, deleted, in groups), then one batch that touches many of them
// several times: repeated keys, deletes then inserts of one key, rows moving between groups,
// and more distinct keys than one batched read takes.
std::pair<std::vector<TestRecord>, std::vector<TestRecord>> busy_batches() {
  std::vector<TestRecord> first, second;
  int64_t lsn = 100;
  for (int id = 1; id <= 5; ++id) first.push_back(customer('c', id, ++lsn, "a"));
  first.push_back(customer('d', 2, ++lsn));
  for (int id = 1; id <= 6; ++id) first.push_back(tx('c', id, id % 3, id * 10, ++lsn));
  first.push_back(tx('d', 6, 0, 60, ++lsn));
  for (const char* n : {"b", "c", "c"}) second.push_back(customer('u', 1, ++lsn, n));
  second.push_back(customer('c', 2, ++lsn, "back"));  // deleted before this batch
  second.push_back(customer('d', 2, ++lsn));
  second.push_back(customer('c', 2, ++lsn, "again"));
  second.push_back(customer('d', 3, ++lsn));  // live before this batch
  second.push_back(customer('c', 3, ++lsn, "new"));
  second.push_back(customer('d', 4, ++lsn));
  second.push_back(tx('u', 1, 2, 11, ++lsn));  // moves from group 1 to 2, then to 0
  second.push_back(tx('u', 1, 0, 12, ++lsn));
  second.push_back(tx('d', 2, 2, 20, ++lsn));  // deleted, then inserted into another group
  second.push_back(tx('c', 2, 1, 21, ++lsn));
  second.push_back(tx('c', 6, 0, 61, ++lsn));  // deleted before this batch
  for (int id = 100; id < 400; ++id) {
    second.push_back(customer('c', id, ++lsn, "bulk"));
    second.push_back(tx('c', id, id % 40, id, ++lsn));
  }
  second.push_back(tx('d', 150, 150 % 40, 150, ++lsn));
  second.push_back(customer('u', 150, ++lsn, "late"));
  return {first, second};
}

}  // namespace

TEST_CASE("a batch folds to the same rows and derived events as its events one at a time") {
  TempDir dir;
  const auto [first, second] = busy_batches();
  const std::string batched_db = dir.file("batched.db"), single_db = dir.file("single.db");
  Output batched;
  Projection(config(batched_db)).run(first);
  {
    // A fresh instance: nothing cached, every row of the batch comes from the store.
    Projection p(config(batched_db));
    batched = p.run(second);
  }
  Output single;
  {
    Projection p(config(single_db, R"("cache":{"capacity":0},)"));
    for (const auto& r : first) p.run({r});
    for (const auto& r : second) {
      auto out = p.run({r});
      single.records.insert(single.records.end(), out.records.begin(), out.records.end());
    }
  }
  CHECK(fold_state(batched_db).size() > 600);  // more keys than one batched read takes
  CHECK(fold_state(batched_db) == fold_state(single_db));
  CHECK(values(batched) == values(single));
  CHECK(rows(batched_db, "select data from customers where key = '{\"id\":2}'") ==
        std::vector<std::string>{R"({"id":2,"n":"again"})"});
}

TEST_CASE("a batch whose write fails leaves nothing behind, in the store or in the next batch") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Projection p(config(db));
  p.run({customer('c', 1, 10, "a")});
  {
    // Another connection adds a trigger that refuses one key: the batch's upsert fails.
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h,
                         "CREATE TRIGGER refuse BEFORE INSERT ON customers WHEN NEW.key = "
                         "'{\"id\":666}' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
  }
  const std::vector<TestRecord> failing{customer('u', 1, 20, "lost"), customer('c', 2, 21, "b"),
                                        customer('c', 666, 22, "x")};
  FakeWriter w;
  CHECK_FALSE(p.instance.process(failing, w).ok());
  // The next batch writes only its own rows, and the failed batch's retry applies in full.
  p.run({customer('c', 3, 30, "c")});
  CHECK(rows(db, "select key, data from customers order by key") ==
        std::vector<std::string>{R"({"id":1}|{"id":1,"n":"a"})", R"({"id":3}|{"id":3,"n":"c"})"});
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, "DROP TRIGGER refuse", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
  }
  CHECK(p.run(failing).records.size() == 3);
  CHECK(rows(db, "select count(*) from customers") == std::vector<std::string>{"4"});
}

TEST_CASE(
    "a database file deleted or replaced under the running projection stops it, uncommitted") {
  TempDir dir;
  const std::string db = dir.file("p.db");
  for (const bool replace : {false, true}) {
    CAPTURE(replace);
    std::remove(db.c_str());
    Projection p(config(db));
    p.run({customer('c', 1, 10, "a")});
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((db + suffix).c_str());
    if (replace) {
      sqlite3* h = nullptr;  // a fresh, empty database at the same path
      REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
      REQUIRE(sqlite3_exec(h, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(h);
    }
    // Without the check the batch "succeeds" into the deleted file and its rows are lost.
    FakeWriter w;
    const auto r = p.instance.process({customer('c', 2, 20, "b")}, w);
    CHECK(r.status == SLUICE_FATAL);
    CHECK(r.message.find("sqlite database " + db + " was deleted or replaced") !=
          std::string::npos);
    CHECK(w.records.empty());
  }
}

TEST_CASE("a file another user plants at the -wal after the start's check is not used") {
  // The start checks the database's names, then SQLite creates its -wal and -shm when it first
  // writes: another user can plant a file there in between, to read the rows or feed in frames
  // of their own (SQLite itself refuses links there, not files). Every open SQLite makes in
  // this process goes through the projection's checked open while one is loaded, so the planted
  // file is refused and stays as it was. (It is owned by uid 65534, which needs root.)
  if (::geteuid() != 0) {
    MESSAGE("skipped: planting another user's file needs root");
    return;
  }
  TempDir dir;
  Projection p(config(dir.file("own.db")));
  p.run({customer('c', 1, 10, "a")});

  const std::string shared = dir.file("shared");
  REQUIRE(::mkdir(shared.c_str(), 01777) == 0);
  REQUIRE(::chmod(shared.c_str(), 01777) == 0);
  const std::string db = shared + "/p.db";
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_exec(h, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr) == SQLITE_OK);
  // The window: the -wal is not there yet; the file appears before SQLite's first write.
  const std::string wal = db + "-wal";
  if (::access(wal.c_str(), F_OK) == 0) {
    sqlite3_close(h);
    h = nullptr;
    ::unlink(wal.c_str());
    REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  }
  std::FILE* f = std::fopen(wal.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs("planted", f);
  std::fclose(f);
  REQUIRE(::chown(wal.c_str(), 65534, 65534) == 0);
  CHECK(sqlite3_exec(h, "CREATE TABLE t (x); INSERT INTO t VALUES (1)", nullptr, nullptr,
                     nullptr) != SQLITE_OK);
  sqlite3_close(h);
  f = std::fopen(wal.c_str(), "r");
  REQUIRE(f != nullptr);
  char text[32] = {};
  CHECK(std::fread(text, 1, sizeof text - 1, f) == 7);
  std::fclose(f);
  CHECK(std::string(text) == "planted");
  // The projection's own database, outside the shared folder, is still read and written.
  p.run({customer('c', 2, 11, "b")});
  CHECK(rows(dir.file("own.db"), "select count(*) from customers") ==
        std::vector<std::string>{"2"});
}
