// Unit tests of the projection store's key reads over several connections (ProjectionStore::
// load_all), against an in-memory table behind the narrow Database interface: which connection
// reads which keys, and that the rows read are the rows one connection reads.
#include "projection_store.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <map>
#include <memory>
#include <mutex>
#include <sluice/sdk.hpp>

using namespace sluice_projection;

namespace {

// The stored rows of every table (by table name, then key), shared by the connections.
struct Tables {
  std::map<std::string, std::map<std::string, SqlRow>> rows;
  std::mutex mu;
  // Each read: the connection, the table, the number of keys asked for.
  std::vector<std::tuple<int, std::string, size_t>> reads;
  int fail_on = -1;  // a connection whose reads fail (a lost connection)
};

// One connection: answers the store's key-list reads ("... FROM t WHERE key = ANY(json $1)")
// from `tables`; every other statement (the store's CREATE TABLEs) does nothing.
class FakeDatabase final : public Database {
 public:
  FakeDatabase(Tables& tables, int id) : tables_(tables), id_(id) {}
  void exec(const std::string&) override {}
  size_t prepare(const std::string& sql) override {
    sql_.push_back(sql);
    return sql_.size() - 1;
  }
  std::vector<SqlRow> run(size_t statement, const std::vector<SqlValue>& params) override {
    const std::string& sql = sql_.at(statement);
    const size_t from = sql.find(" FROM ");
    const size_t where = sql.find(" WHERE ");
    if (from == std::string::npos || where == std::string::npos || params.empty() || !params[0])
      return {};
    const std::string table = sql.substr(from + 6, where - from - 6);
    rapidjson::Document keys;
    keys.Parse(params[0]->c_str());
    REQUIRE(keys.IsArray());
    std::lock_guard lock(tables_.mu);
    tables_.reads.emplace_back(id_, table, keys.Size());
    if (id_ == tables_.fail_on) throw sluice::Retriable("postgres: connection lost");
    std::vector<SqlRow> out;
    for (const auto& k : keys.GetArray()) {
      auto t = tables_.rows.find(table);
      if (t == tables_.rows.end()) continue;
      auto row = t->second.find(k.GetString());
      if (row != t->second.end()) out.push_back(row->second);
    }
    return out;
  }
  void begin() override {}
  void commit() override {}
  void rollback() noexcept override {}

 private:
  Tables& tables_;
  int id_;
  std::vector<std::string> sql_;
};

std::unique_ptr<ProjectionStore> store(Tables& tables, size_t connections) {
  ProjectionSpec customers{
      .name = "customers", .kind = ProjectionKind::mirror, .table = "bank.customers"};
  ProjectionSpec balances{.name = "balances",
                          .kind = ProjectionKind::aggregate,
                          .table = "bank.transactions",
                          .group_by = "account_id",
                          .fields = {{"balance", Fold::sum, "amount"}}};
  std::vector<std::unique_ptr<Database>> writers;
  for (size_t w = 1; w < connections; ++w)
    writers.push_back(std::make_unique<FakeDatabase>(tables, static_cast<int>(w)));
  return std::make_unique<ProjectionStore>(std::make_unique<FakeDatabase>(tables, 0),
                                           std::vector{customers, balances}, std::move(writers));
}

// Customers 0..999 live, 1000..1099 deleted; groups g0..g99; source rows t0..t1999.
void fill(Tables& t) {
  for (int i = 0; i < 1000; ++i)
    t.rows["customers"][std::to_string(i)] = {
        std::to_string(i), "{\"id\":" + std::to_string(i) + "}", "L" + std::to_string(i)};
  for (int i = 1000; i < 1100; ++i)
    t.rows["customers__deleted"][std::to_string(i)] = {std::to_string(i), "L" + std::to_string(i)};
  for (int i = 0; i < 100; ++i)
    t.rows["balances"]["g" + std::to_string(i)] = {"g" + std::to_string(i), std::to_string(i), "3",
                                                   "L1", "L2"};
  for (int i = 0; i < 2000; ++i)
    t.rows["balances__sources"]["t" + std::to_string(i)] = {
        "t" + std::to_string(i), "g" + std::to_string(i % 100), R"({"s":[1],"l":[]})", "L3", "0"};
}

std::vector<ProjectionStore::KeyRead> batch_reads() {
  ProjectionStore::KeyRead mirror{0, RowFamily::mirror, {}, "m:"};
  for (int i = 0; i < 1200; ++i) mirror.keys.push_back(std::to_string(i));
  ProjectionStore::KeyRead sources{1, RowFamily::source, {}, "s:"};
  for (int i = 0; i < 2100; i += 3) sources.keys.push_back("t" + std::to_string(i));
  ProjectionStore::KeyRead groups{1, RowFamily::group, {"g1", "g7", "g200"}, "g:"};
  return {mirror, sources, groups};
}

std::string text(const RowState& r) {
  std::string out = std::string(r.present ? "P" : "-") + (r.tombstone ? "T" : "-") + r.position +
                    "|" + r.data + "|" + std::to_string(r.rows) + "|" + r.last_position;
  for (double s : r.sums) out += "|" + std::to_string(s);
  return out;
}

std::map<std::string, std::string> texts(const std::unordered_map<std::string, RowState>& rows) {
  std::map<std::string, std::string> out;
  for (const auto& [k, r] : rows) out[k] = text(r);
  return out;
}

}  // namespace

TEST_CASE("a batch's key reads spread over the writers' connections and read the same rows") {
  Tables tables;
  fill(tables);
  auto one = store(tables, 1);
  std::unordered_map<std::string, RowState> alone;
  one->load_all(batch_reads(), alone);
  for (const auto& [conn, table, keys] : tables.reads) CHECK(conn == 0);
  REQUIRE(alone.size() == 1200 + 700 + 3);
  CHECK(text(alone.at("m:5")) == "P-L5|{\"id\":5}|0|");
  CHECK(text(alone.at("m:1050")) == "-TL1050||0|");  // a tombstone
  CHECK(text(alone.at("m:1150")) == "--||0|");       // never seen
  CHECK(text(alone.at("s:t3")) == "P-L3|g3|0||1.000000");
  CHECK(text(alone.at("g:g7")) == "P-L2||3|L1|7.000000");
  CHECK(text(alone.at("g:g200")) == "--||0|");

  tables.reads.clear();
  auto three = store(tables, 3);
  three->use_writers(3);
  std::unordered_map<std::string, RowState> spread;
  three->load_all(batch_reads(), spread);
  CHECK(texts(spread) == texts(alone));
  // The long key lists went in parts to every connection; no key was read twice.
  std::map<int, size_t> keys_by_connection;
  std::map<std::string, size_t> keys_by_table;
  for (const auto& [conn, table, keys] : tables.reads) {
    keys_by_connection[conn] += keys;
    keys_by_table[table] += keys;
  }
  CHECK(keys_by_connection.size() == 3);
  CHECK(keys_by_table["customers"] == 1200);
  CHECK(keys_by_table["customers__deleted"] == 200);  // the keys without a live row
  CHECK(keys_by_table["balances__sources"] == 700);
  CHECK(keys_by_table["balances"] == 3);
  for (const auto& [conn, keys] : keys_by_connection) CHECK(keys < 1200);

  SUBCASE("writers in use bound the connections that read") {
    tables.reads.clear();
    three->use_writers(2);
    std::unordered_map<std::string, RowState> two;
    three->load_all(batch_reads(), two);
    CHECK(texts(two) == texts(alone));
    for (const auto& [conn, table, keys] : tables.reads) CHECK(conn < 2);
  }
  SUBCASE("a batch that reads its own writes (a truncate) reads through the first connection") {
    tables.reads.clear();
    three->spread_writes(false);
    std::unordered_map<std::string, RowState> first;
    three->load_all(batch_reads(), first);
    CHECK(texts(first) == texts(alone));
    for (const auto& [conn, table, keys] : tables.reads) CHECK(conn == 0);
  }
  SUBCASE("a read that fails on any connection fails the whole read, after the others ended") {
    tables.fail_on = 2;
    std::unordered_map<std::string, RowState> failed;
    CHECK_THROWS_AS(three->load_all(batch_reads(), failed), sluice::Retriable);
  }
}
