// The PostgreSQL backend of the projection store: one libpq connection, prepared statements.
#include <libpq-fe.h>

#include <algorithm>
#include <sluice/sdk.hpp>
#include <string_view>
#include <vector>

#include "database.hpp"

namespace sluice_projection {

namespace {

struct ClearResult {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ClearResult>;

// What no message may show of a connection string: itself, its password as libpq reads it, and
// the text between "user:" and "@" of a URI (libpq cannot parse a malformed URI, and quotes it).
std::vector<std::string> secrets_of(const std::string& conninfo) {
  std::vector<std::string> out{conninfo};
  char* error = nullptr;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error)) {
    for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o)
      if (o->val != nullptr && *o->val != '\0' && std::string_view(o->keyword) == "password")
        out.emplace_back(o->val);
    PQconninfoFree(options);
  }
  if (error != nullptr) PQfreemem(error);
  if (const size_t scheme = conninfo.find("://"); scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t host_end = conninfo.find_first_of("/?#", start);
    const size_t at =
        conninfo.rfind('@', host_end == std::string::npos ? conninfo.size() : host_end);
    const size_t colon = conninfo.find(':', start);
    if (at != std::string::npos && at > start && colon < at)
      out.push_back(conninfo.substr(colon + 1, at - colon - 1));
  }
  std::erase(out, std::string());
  // Longest first, so a password inside the whole string is not masked before it.
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return out;
}

std::string masked(std::string message, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets)
    for (size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at + 3))
      message.replace(at, secret.size(), "***");
  return message;
}

class PostgresDatabase final : public Database {
 public:
  PostgresDatabase(const std::string& conninfo, Log warn)
      : secrets_(secrets_of(conninfo)),
        warn_(std::move(warn)),
        conn_(PQconnectdb(conninfo.c_str())) {
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)
      throw sluice::Retriable(masked(std::string("postgres: cannot connect: ") +
                                         (conn_ ? PQerrorMessage(conn_.get()) : "out of memory"),
                                     secrets_));
    exec("SET client_min_messages = warning");
  }

  void exec(const std::string& sql) override {
    sync();
    usable();
    Result r(PQexec(conn_.get(), sql.c_str()));
    check(r.get(), sql);
  }

  size_t prepare(const std::string& sql) override {
    sql_.push_back(sql);
    prepared_.push_back(false);
    keyed_.push_back(false);
    return sql_.size() - 1;
  }

  size_t prepare_keyed(const std::string& sql) override {
    const size_t statement = prepare(sql);
    keyed_[statement] = true;
    return statement;
  }

  std::vector<SqlRow> run(size_t statement, const std::vector<SqlValue>& params) override {
    sync();
    usable();
    plan_for(statement);
    const std::string name = prepared_name(statement);
    const auto values = param_values(params);
    Result r(PQexecPrepared(conn_.get(), name.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0));
    check(r.get(), sql_[statement]);
    std::vector<SqlRow> rows;
    const int n = PQntuples(r.get());
    const int cols = PQnfields(r.get());
    rows.reserve(n);
    for (int i = 0; i < n; ++i) {
      SqlRow row;
      row.reserve(cols);
      for (int c = 0; c < cols; ++c) {
        if (PQgetisnull(r.get(), i, c))
          row.emplace_back(std::nullopt);
        else
          row.emplace_back(std::string(PQgetvalue(r.get(), i, c), PQgetlength(r.get(), i, c)));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // Writes go out in libpq's pipeline mode: one round trip per kMaxPipelined statements
  // instead of one each (a bounded number, so the server's replies never fill the socket).
  void write(size_t statement, const std::vector<SqlValue>& params) override {
    if (pipelined_ == 0) {
      usable();
      prepared_name(statement);
    } else if (!prepared_.at(statement)) {
      sync();  // prepare outside the pipeline
      prepared_name(statement);
    }
    const std::string name = prepared_name(statement);
    if (pipelined_ == 0 && PQenterPipelineMode(conn_.get()) != 1)
      throw sluice::Retriable(std::string("postgres: ") + PQerrorMessage(conn_.get()));
    const auto values = param_values(params);
    if (PQsendQueryPrepared(conn_.get(), name.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0) != 1) {
      discard_pipeline();
      throw sluice::Retriable(std::string("postgres: ") + PQerrorMessage(conn_.get()));
    }
    pipeline_sql_.push_back(statement);
    if (++pipelined_ >= kMaxPipelined) sync();
  }

  const char* position_type() const override { return "TEXT COLLATE \"C\""; }
  const char* key_type() const override { return "TEXT COLLATE \"C\""; }
  const char* serial_key() const override { return "BIGSERIAL PRIMARY KEY"; }
  // Not "IN (SELECT json_array_elements_text(...))": its generic plan, made once while a table
  // is still small, is a hash semi join over a sequential scan of the whole table, kept as the
  // table grows (every batch then read every row). An array compared with = ANY is always an
  // index scan.
  const char* in_json_param() const override {
    return " = ANY (ARRAY(SELECT json_array_elements_text($1::json)))";
  }
  // lz4 instead of the default pglz for the packed derived events (a server without lz4 keeps
  // pglz): pglz took an eighth of the server's CPU in scripts/bench cdc_postgres.
  void tune_outbox(const std::string& table, const std::string& column) override {
    sync();
    usable();
    // Only when not set yet: ALTER TABLE locks the table against other instances' batches.
    Result set(
        PQexec(conn_.get(), ("SELECT 1 FROM pg_attribute WHERE attrelid = '" + table +
                             "'::regclass AND attname = '" + column + "' AND attcompression = 'l'")
                                .c_str()));
    if (PQresultStatus(set.get()) != PGRES_TUPLES_OK || PQntuples(set.get()) != 0) return;
    Result r(PQexec(
        conn_.get(),
        ("ALTER TABLE " + table + " ALTER COLUMN " + column + " SET COMPRESSION lz4").c_str()));
  }
  void flush() override { sync(); }

  // A batch's transaction lives and dies with its connection: a connection lost at any point of
  // it fails the batch (the server rolled the transaction back), and only the next begin()
  // connects again, so no statement of a batch ever runs outside its transaction.
  void begin() override {
    sync();
    if (broken_ || PQstatus(conn_.get()) != CONNECTION_OK) reconnect();
    Result r(PQexec(conn_.get(), "BEGIN"));
    check(r.get(), "BEGIN");
    in_transaction_ = true;
  }

  void commit() override {
    sync();
    usable();
    if (PQtransactionStatus(conn_.get()) != PQTRANS_INTRANS) lost("COMMIT");
    Result r(PQexec(conn_.get(), "COMMIT"));
    in_transaction_ = false;
    check(r.get(), "COMMIT");
    // COMMIT of a failed transaction succeeds as ROLLBACK.
    if (std::string_view(PQcmdStatus(r.get())) != "COMMIT")
      throw sluice::Retriable("postgres: the batch's transaction was rolled back at COMMIT");
  }

  void rollback() noexcept override {
    in_transaction_ = false;
    seqscan_ = Seqscan::unknown;  // a SET inside the transaction is undone with it
    discard_pipeline();
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) return;
    if (PQpipelineStatus(conn_.get()) != PQ_PIPELINE_OFF) {
      broken_ = true;  // a pipeline that could not be ended: start over on a new connection
      return;
    }
    if (PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) return;
    Result r(PQexec(conn_.get(), "ROLLBACK"));
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK) broken_ = true;
  }

 private:
  // Before every statement: inside a batch's transaction the connection must be the one that
  // began it, still in that transaction; outside one, a lost connection is made again.
  void usable() {
    if (in_transaction_) {
      if (broken_ || PQstatus(conn_.get()) != CONNECTION_OK ||
          PQtransactionStatus(conn_.get()) == PQTRANS_IDLE ||
          PQtransactionStatus(conn_.get()) == PQTRANS_UNKNOWN)
        lost("the next statement");
      return;
    }
    if (broken_ || PQstatus(conn_.get()) != CONNECTION_OK) reconnect();
  }

  [[noreturn]] void lost(const char* before) {
    in_transaction_ = false;
    broken_ = true;
    throw sluice::Retriable(masked(
        std::string("postgres: connection lost inside the batch's "
                    "transaction (before ") +
            before + "): the batch fails whole and is retried: " + PQerrorMessage(conn_.get()),
        secrets_));
  }

  // A prepared statement keeps a generic plan made once (after five custom ones), possibly while
  // a table was still nearly empty and a sequential scan was the cheaper plan; the plan stays as
  // the table grows until autovacuum renews the planner's statistics, a minute or more later.
  // For a key-list read that scan costs rows x keys comparisons (scripts/bench cdc_postgres fell
  // to a quarter of its speed). So key-list reads are planned, custom or generic, with
  // sequential scans off; the statements that must scan (a truncate, the outbox's) with them
  // on. The setting follows the statement about to run: one more round trip on each change,
  // which only the rare scanning statements cause.
  void plan_for(size_t statement) {
    const Seqscan want = keyed_[statement] ? Seqscan::off : Seqscan::on;
    if (seqscan_ == want) return;
    const char* sql = want == Seqscan::off ? "SET enable_seqscan = off" : "SET enable_seqscan = on";
    Result r(PQexec(conn_.get(), sql));
    check(r.get(), sql);
    seqscan_ = want;
  }

  // A new connection (libpq's reset: same parameters); its prepared statements are gone.
  void reconnect() {
    discard_pipeline();
    seqscan_ = Seqscan::unknown;
    PQreset(conn_.get());
    std::fill(prepared_.begin(), prepared_.end(), false);
    if (PQstatus(conn_.get()) != CONNECTION_OK)
      throw sluice::Retriable(masked(
          std::string("postgres: reconnect failed: ") + PQerrorMessage(conn_.get()), secrets_));
    broken_ = false;
    Result r(PQexec(conn_.get(), "SET client_min_messages = warning"));
    check(r.get(), "SET client_min_messages = warning");
    if (warn_)
      warn_(
          "postgres: the connection was lost; reconnected (a batch it was writing "
          "failed whole and is retried from BEGIN)");
  }

  void check(PGresult* r, const std::string& sql) {
    const ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return;
    std::string msg =
        "postgres: " + std::string(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_.get()));
    msg = masked(msg + " (in: " + sql.substr(0, 80) + ")", secrets_);
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    const std::string code = state ? state : "";
    // Class 08 (connection), 40 (serialization, deadlock), 53 (resources), 57 (shutdown).
    if (PQstatus(conn_.get()) != CONNECTION_OK || code.starts_with("08") ||
        code.starts_with("57")) {
      broken_ = true;  // the connection went with the error: the next begin() makes a new one
      throw sluice::Retriable(msg);
    }
    if (code.starts_with("40") || code.starts_with("53")) throw sluice::Retriable(msg);
    throw std::runtime_error(msg);
  }

  std::string prepared_name(size_t statement) {
    std::string name = "sluice_" + std::to_string(statement);
    if (!prepared_.at(statement)) {
      Result p(PQprepare(conn_.get(), name.c_str(), sql_[statement].c_str(), 0, nullptr));
      check(p.get(), sql_[statement]);
      prepared_[statement] = true;
    }
    return name;
  }

  static std::vector<const char*> param_values(const std::vector<SqlValue>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    return values;
  }

  // Sends the pipelined writes and reads their results; the first error throws (the rest of
  // the pipeline is aborted by the server, and the transaction with it).
  void sync() {
    if (pipelined_ == 0) return;
    if (PQpipelineSync(conn_.get()) != 1) {
      discard_pipeline();
      broken_ = true;
      throw sluice::Retriable(std::string("postgres: ") + PQerrorMessage(conn_.get()));
    }
    Result failed;
    size_t failed_statement = 0;
    for (size_t i = 0; i < pipeline_sql_.size(); ++i) {
      Result r(PQgetResult(conn_.get()));
      if (!r) {
        discard_pipeline();
        broken_ = true;
        throw sluice::Retriable(std::string("postgres: ") + PQerrorMessage(conn_.get()));
      }
      const ExecStatusType s = PQresultStatus(r.get());
      if (!failed && s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_PIPELINE_ABORTED) {
        failed = std::move(r);
        failed_statement = pipeline_sql_[i];
      }
      while (Result more{PQgetResult(conn_.get())}) {
      }  // the NULL that ends each query's results
    }
    const Result synced(PQgetResult(conn_.get()));
    pipelined_ = 0;
    pipeline_sql_.clear();
    if (PQexitPipelineMode(conn_.get()) != 1) {
      broken_ = true;
      throw sluice::Retriable(std::string("postgres: ") + PQerrorMessage(conn_.get()));
    }
    if (failed) check(failed.get(), sql_[failed_statement]);
    // Every write succeeded, but the connection may have died before the sync: then they died
    // with the transaction.
    if (!synced || PQresultStatus(synced.get()) != PGRES_PIPELINE_SYNC ||
        PQstatus(conn_.get()) != CONNECTION_OK)
      lost("the end of a pipeline");
  }

  void discard_pipeline() noexcept {
    if (pipelined_ == 0) return;
    pipelined_ = 0;
    pipeline_sql_.clear();
    if (PQstatus(conn_.get()) != CONNECTION_OK) return;
    PQpipelineSync(conn_.get());
    for (;;) {
      Result r(PQgetResult(conn_.get()));
      if (r && PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) break;
      if (!r && PQstatus(conn_.get()) != CONNECTION_OK) break;
    }
    PQexitPipelineMode(conn_.get());
  }

  static constexpr size_t kMaxPipelined = 1000;

  struct Finish {
    void operator()(PGconn* c) const { PQfinish(c); }
  };
  std::vector<std::string> secrets_;  // masked in every message
  Log warn_;
  std::unique_ptr<PGconn, Finish> conn_;
  bool in_transaction_ = false;  // between a successful begin() and commit() / rollback()
  bool broken_ = false;  // this connection's state is unknown: the next begin() makes a new one
  std::vector<std::string> sql_;
  std::vector<bool> prepared_;
  std::vector<bool> keyed_;  // prepared with prepare_keyed()
  enum class Seqscan { unknown, on, off } seqscan_ = Seqscan::unknown;  // enable_seqscan now
  size_t pipelined_ = 0;
  std::vector<size_t> pipeline_sql_;  // the statement of each pipelined write
};

}  // namespace

std::unique_ptr<Database> open_postgres(const std::string& conninfo, Log warn) {
  return std::make_unique<PostgresDatabase>(conninfo, std::move(warn));
}

}  // namespace sluice_projection
