// The SQLite backend of the projection store: one connection, WAL mode, prepared statements.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <sluice/safe_files.hpp>
#include <sluice/sdk.hpp>

#include "database.hpp"

namespace sluice_projection {

namespace {

// Why SQLite's last open on this thread was refused (empty if it was not).
thread_local std::string refused_open;

// SQLite opens the database, its -wal, -shm and -journal itself, following links and creating
// what is missing. The check before sqlite3_open leaves a window in which another user can plant
// a link at a name not created yet (the -wal appears only at the first write); so every open
// SQLite makes goes through open_checked instead: never through a link another user planted in a
// folder others can write, and a file planted there is refused. Files opened to read only are
// judged as data read, the others as state.
int checked_open(const char* path, int flags, int mode) {
  const auto use = (flags & O_ACCMODE) == O_RDONLY && (flags & O_CREAT) == 0
                       ? sluice::files::Use::read_data
                       : sluice::files::Use::state;
  std::string error;
  errno = 0;
  const int fd = sluice::files::open_checked(path, flags, static_cast<mode_t>(mode), use, error);
  if (fd >= 0) return fd;
  // open_checked leaves errno as open(2) set it when the open itself failed; a refusal sets
  // EACCES (or leaves ELOOP, from its first try through the link). The reason goes with it.
  if (errno == 0 || errno == ELOOP || errno == EACCES) {
    refused_open = error;
    errno = EACCES;
  }
  return -1;
}

// Installs checked_open as the "open" of SQLite's unix VFS (every unix VFS shares that table),
// once per loaded copy of this plugin; a copy being unloaded gives SQLite its own open back
// unless another copy has installed its own since.
class CheckedOpenInstall {
 public:
  CheckedOpenInstall() {
    vfs_ = sqlite3_vfs_find("unix");
    if (vfs_ == nullptr || vfs_->iVersion < 3 || vfs_->xSetSystemCall == nullptr)
      throw std::runtime_error("sqlite: the unix VFS cannot take a checked open");
    if (vfs_->xSetSystemCall(vfs_, "open", reinterpret_cast<sqlite3_syscall_ptr>(&checked_open)) !=
        SQLITE_OK)
      throw std::runtime_error("sqlite: cannot install the checked open");
  }
  ~CheckedOpenInstall() {
    if (vfs_->xGetSystemCall(vfs_, "open") == reinterpret_cast<sqlite3_syscall_ptr>(&checked_open))
      vfs_->xSetSystemCall(vfs_, "open", nullptr);
  }
  CheckedOpenInstall(const CheckedOpenInstall&) = delete;
  CheckedOpenInstall& operator=(const CheckedOpenInstall&) = delete;

 private:
  sqlite3_vfs* vfs_ = nullptr;
};

void install_checked_open() { static const CheckedOpenInstall installed; }

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase(const std::string& path, const std::string& synchronous, uint64_t memory_limit)
      : path_(path) {
    // SQLite follows links and reuses files already there: in a folder others can write, a file
    // or link planted at any of its names would receive the projections (safe_files.hpp).
    for (const char* suffix : {"", "-wal", "-shm", "-journal"})
      if (auto why = sluice::files::distrust_reason(path + suffix, sluice::files::Use::state);
          !why.empty())
        throw std::runtime_error("sqlite database: " + why);
    install_checked_open();
    refused_open.clear();
    sqlite3* db = nullptr;
    int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db_.reset(db);
    if (rc != SQLITE_OK)
      throw std::runtime_error("cannot open sqlite database " + path + ": " +
                               (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + refusal());
    sqlite3_busy_timeout(db, 5000);
    // Before WAL mode, which fixes the page size of a new database (an existing one keeps its
    // own). A batch rewrites rows spread over the whole table; with 16 KB pages instead of 4 KB
    // its commit and the checkpoints wrote 38% fewer WAL frames and pages (one or two pwrites
    // each): about 15% less CPU per event in the 100k-event cdc benchmark; at 1M events (a
    // database past the page cache) within the noise (plugins/projection/README.md).
    exec("PRAGMA page_size=16384");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=" + synchronous);
    // SQLite copies the WAL back into the database every 1,000 pages by default: at 16 KB pages
    // that was after every batch, and a batch touches most of the projection tables' pages: each
    // was written to the WAL, read back and written again into the database. Every 16,384 pages
    // (256 MB of WAL), a page that several batches rewrote is copied back once
    // (plugins/projection/README.md, "The SQLite layout").
    exec("PRAGMA wal_autocheckpoint=16384");
    // The row cache misses land here: SQLite's default 2 MB page cache made most of them page
    // reads from the kernel (a quarter of the CPU of the 1M-event cdc benchmark). 64 MB at most,
    // and an eighth of the pipeline's memory limit, which does not count this cache: with a 64 MB
    // limit, a 64 MB cache of 900 KB rows took the process to 175 MB.
    exec("PRAGMA cache_size=-" + std::to_string(sqlite_page_cache_bytes(memory_limit) / 1024));
    // WAL mode has created the file (":memory:" and URIs have none to watch).
    watching_ = ::stat(path.c_str(), &opened_) == 0;
  }

  const char* keyed_table_options() const override { return " WITHOUT ROWID"; }

  // One row a statement. SQLite undoes an upsert of several rows that fails half way from a
  // statement journal, a temporary file it writes every page the statement changes into first;
  // a one-row statement needs none. At 64 rows a statement that journal took five times the
  // bytes of the WAL (plugins/projection/README.md, "The SQLite layout"); the statement is
  // prepared once and SQLite runs in process, so more statements cost no round trips.
  size_t upsert_rows() const override { return 1; }

  void exec(const std::string& sql) override {
    char* err = nullptr;
    int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      fail(rc, "sqlite: " + msg + " (in: " + sql.substr(0, 80) + ")");
    }
  }

  size_t prepare(const std::string& sql) override {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK)
      fail(rc, "sqlite: cannot prepare '" + sql + "': " + sqlite3_errmsg(db_.get()));
    statements_.emplace_back(s);
    return statements_.size() - 1;
  }

  std::vector<SqlRow> run(size_t statement, const std::vector<SqlValue>& params) override {
    sqlite3_stmt* s = statements_.at(statement).get();
    sqlite3_reset(s);
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i + 1);
      int rc = params[i] ? sqlite3_bind_text(s, index, params[i]->data(),
                                             static_cast<int>(params[i]->size()), SQLITE_STATIC)
                         : sqlite3_bind_null(s, index);
      if (rc != SQLITE_OK) fail(rc, std::string("sqlite: bind: ") + sqlite3_errmsg(db_.get()));
    }
    std::vector<SqlRow> rows;
    for (;;) {
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        std::string msg = sqlite3_errmsg(db_.get());
        sqlite3_reset(s);
        fail(rc, "sqlite: " + msg);
      }
      SqlRow row;
      const int n = sqlite3_column_count(s);
      row.reserve(n);
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(s, c) == SQLITE_NULL) {
          row.emplace_back(std::nullopt);
        } else {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
          row.emplace_back(std::string(text, sqlite3_column_bytes(s, c)));
        }
      }
      rows.push_back(std::move(row));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rows;
  }

  // IMMEDIATE takes the write lock up front, so a busy database shows at BEGIN, not mid-batch.
  void begin() override { exec("BEGIN IMMEDIATE"); }
  void commit() override {
    check_file_is_there();
    exec("COMMIT");
  }
  void rollback() noexcept override {
    if (!sqlite3_get_autocommit(db_.get()))
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  // A database file deleted or replaced under the running pipeline keeps taking writes through
  // the open connection, into a file no one will read: every batch would "succeed" and be
  // committed at the source while its rows were lost. So each commit first checks that the path
  // still names the file that was opened; if not, the batch is rolled back and the pipeline
  // stops, its source positions uncommitted.
  void check_file_is_there() {
    if (!watching_) return;
    struct stat now {};
    if (::stat(path_.c_str(), &now) == 0 && now.st_dev == opened_.st_dev &&
        now.st_ino == opened_.st_ino)
      return;
    throw sluice::Fatal("sqlite database " + path_ +
                        " was deleted or replaced while the pipeline ran; the rows written "
                        "since went with the old file, so the run stops here without "
                        "committing this batch (restore the database, or start over)");
  }

  // What checked_open refused since the last call, as a sentence to append to SQLite's message.
  static std::string refusal() {
    std::string why;
    std::swap(why, refused_open);
    return why.empty() ? why : " (" + why + ")";
  }

  [[noreturn]] static void fail(int rc, const std::string& original) {
    const std::string message = original + refusal();
    // A planted file stops the pipeline (nothing committed): no record is to blame for it.
    if (message != original) throw sluice::Fatal(message);
    const int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR)
      throw sluice::Retriable(message);
    throw std::runtime_error(message);
  }
  struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  struct FinalizeStmt {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  std::string path_;
  struct stat opened_ {};
  bool watching_ = false;
  // Statements are declared after the connection so they are finalized first.
  std::unique_ptr<sqlite3, CloseDb> db_;
  std::vector<std::unique_ptr<sqlite3_stmt, FinalizeStmt>> statements_;
};

}  // namespace

uint64_t sqlite_page_cache_bytes(uint64_t memory_limit) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  if (memory_limit == 0) return 64 * kMiB;
  return std::clamp<uint64_t>(memory_limit / 8, 2 * kMiB, 64 * kMiB);
}

std::unique_ptr<Database> open_sqlite(const std::string& path, const std::string& synchronous,
                                      uint64_t memory_limit) {
  return std::make_unique<SqliteDatabase>(path, synchronous, memory_limit);
}

}  // namespace sluice_projection
