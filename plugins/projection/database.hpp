// The narrow SQL interface the projection store needs, with a SQLite and a PostgreSQL backend.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice_projection {

using SqlValue = std::optional<std::string>;  // text form; nullopt is SQL NULL
using SqlRow = std::vector<SqlValue>;
using Log = std::function<void(const std::string&)>;

// One connection. Statements use $1..$n placeholders, each once and in order, so that the same
// text works on both backends. Errors throw: sluice::Retriable when a retry may succeed (lost
// connection, busy database), std::runtime_error otherwise.
class Database {
 public:
  virtual ~Database() = default;
  virtual void exec(const std::string& sql) = 0;
  // Returns a handle for run(); statements are prepared once and reused.
  virtual size_t prepare(const std::string& sql) = 0;
  // The same, for a read of rows by a key list (in_json_param()), which must be answered from
  // the key's index whatever the planner thinks of the table's size.
  virtual size_t prepare_keyed(const std::string& sql) { return prepare(sql); }
  virtual std::vector<SqlRow> run(size_t statement, const std::vector<SqlValue>& params) = 0;
  // A statement whose result is not needed: a backend may send it later with others in one
  // round trip, but before the next run() or commit(), in order; its error throws there.
  virtual void write(size_t statement, const std::vector<SqlValue>& params) {
    run(statement, params);
  }
  // Sends the writes write() holds back and waits for their results; the first error throws.
  virtual void flush() {}
  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  // Column type for source positions: they must compare bytewise (PostgreSQL: COLLATE "C").
  virtual const char* position_type() const { return "TEXT"; }
  // Column type for row keys (only ever compared for equality): PostgreSQL's "C" collation
  // compares bytes instead of calling strcoll in every index comparison.
  virtual const char* key_type() const { return "TEXT"; }
  // Appended to the definition of a table keyed by its primary key (every projection table but
  // the outbox): SQLite's " WITHOUT ROWID" keeps each row in its key's b-tree, so that reading or
  // upserting a row by key walks one tree instead of the key's index and then the table.
  virtual const char* keyed_table_options() const { return ""; }
  // Column definition of a key the database numbers in insertion order.
  virtual const char* serial_key() const { return "INTEGER PRIMARY KEY"; }
  // A condition on a key column, appended to it: the column is one of the strings of the JSON
  // array in parameter $1 (a key list in one parameter, so a batch reads its rows in one
  // statement). Prepared with prepare_keyed().
  virtual const char* in_json_param() const { return " IN (SELECT value FROM json_each($1))"; }
  // The most rows one upsert statement may write (the backend's round trips against its cost
  // per statement).
  virtual size_t upsert_rows() const { return 64; }
  // Run once after the outbox table is created: e.g. a cheaper compression of its entries.
  virtual void tune_outbox(const std::string& table, const std::string& column) {}
};

// `path`: a file (created if missing; WAL mode) or ":memory:". `synchronous`: NORMAL or FULL.
// `memory_limit`: the pipeline's (sluice_host_memory_limit; 0 unknown), which sizes SQLite's page
// cache: sqlite_page_cache_bytes.
uint64_t sqlite_page_cache_bytes(uint64_t memory_limit);
std::unique_ptr<Database> open_sqlite(const std::string& path, const std::string& synchronous,
                                      uint64_t memory_limit);
// `conninfo`: a libpq connection string. A connection lost inside begin()..commit() fails every
// statement up to rollback() (sluice::Retriable); the next begin() connects again and says so
// through `warn`.
std::unique_ptr<Database> open_postgres(const std::string& conninfo, Log warn = {});

}  // namespace sluice_projection
