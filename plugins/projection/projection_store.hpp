// Projection definitions and their tables: how a projection's rows are read and written in SQL.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "database.hpp"

namespace sluice_projection {

enum class ProjectionKind { mirror, aggregate };
enum class Fold { sum, count, last };

struct AggregateField {
  std::string column;
  Fold fold = Fold::sum;
  std::string source_field;  // empty for count
};

struct ProjectionSpec {
  std::string name;  // also the table name
  ProjectionKind kind = ProjectionKind::mirror;
  std::string table;  // source table, "schema.table"
  std::string group_by;
  std::vector<AggregateField> fields;
  size_t sum_count() const;
  size_t last_count() const;
};

// The state of one row as the fold sees it. Three row families share it:
//  - a mirror row (present: the row exists; tombstone: it was deleted at `position`);
//  - an aggregate group row (sums, lasts, rows = contributing source rows);
//  - an aggregate's source row (data = its group key, sums/lasts = what it contributed,
//    tombstone: deleted at `position`).
// present == tombstone == false with an empty position means "never seen".
struct RowState {
  bool present = false;
  bool tombstone = false;
  std::string position;
  std::string data;
  std::vector<double> sums;
  std::vector<std::string> lasts;  // JSON texts
  std::string last_position;
  int64_t rows = 0;
};

enum class RowFamily : char { mirror = 'm', group = 'g', source = 's' };

// A derived event kept in the outbox (sluice_projection_outbox): `event` names the change event
// that caused it ("table|key"), `seq` its place among that event's derived events.
struct OutboxEntry {
  std::string position, event;
  int64_t seq = 0;
  std::string projection, key, payload;
};

// The SQL side of the projections. Not thread-safe: used under the stage's store lock.
class ProjectionStore {
 public:
  // `writers`: more connections to the same database; the queued writes of a batch are then
  // spread over them by the affinity save() is given, and sent in parallel.
  ProjectionStore(std::unique_ptr<Database> db, std::vector<ProjectionSpec> specs,
                  std::vector<std::unique_ptr<Database>> writers = {});

  const std::vector<ProjectionSpec>& specs() const { return specs_; }
  Database& db() { return *db_; }
  size_t writer_count() const { return writers_.size() + 1; }
  // How many of the writers the batches spread their rows over (1..writer_count(); all of
  // them until told): set between batches (`writers: auto` tunes it from batch to batch).
  void use_writers(size_t n) { in_use_ = std::clamp<size_t>(n, 1, writer_count()); }
  size_t writers_in_use() const { return in_use_; }

  // One batch's transaction, on every connection it writes through. A writer's transaction
  // opens with its first write of the batch; commit() commits them once every write has
  // succeeded (an error of any writer throws from write_queued(), and the caller rolls back).
  void begin();
  void commit();
  void rollback() noexcept;
  // Whether save() may spread rows over the writers (default true). Off for a batch that
  // reads its own writes (a truncate reads the rows written before it): those reads go through
  // the first connection, which cannot see the other writers' uncommitted rows.
  void spread_writes(bool on) { spread_ = on; }

  RowState load(size_t projection, RowFamily family, const std::string& key);
  // Reads of the rows of `keys` (one projection, one family each), a statement per read; a key
  // without a row maps to a "never seen" RowState. Results go into `out` under the key
  // `key_prefix + key`. While the batch spreads its writes over more than one writer, the
  // reads are spread over those connections too (a long key list in parts) and run side by
  // side: the other writers' connections have no transaction open yet, and read what is
  // committed, as the first one does before its own writes. Call before any write_queued().
  struct KeyRead {
    size_t projection;
    RowFamily family;
    std::vector<std::string> keys;
    std::string key_prefix;
  };
  void load_all(const std::vector<KeyRead>& reads, std::unordered_map<std::string, RowState>& out);
  // Queues the write of `row`; `before` is the row as loaded, so only the statements needed
  // run. Queued writes go out with write_queued(), several rows a statement; a key is saved at
  // most once between two write_queued() calls. `affinity` picks the writer: rows saved with
  // the same value go through the same connection, so they commit together.
  void save(size_t projection, RowFamily family, const std::string& key, const RowState& row,
            const RowState& before, int64_t now_ms, size_t affinity = 0);
  void write_queued();
  // Drops a projection's rows (mirror), or source rows and emptied groups (aggregate), older than
  // `position` and remembers it: older events are skipped from then on. Rows written by events
  // after the truncate stay, so a truncate that overtakes later events on another lane loses
  // nothing.
  void truncate(size_t projection, const std::string& position);
  // An aggregate's live source rows older than `position` (their contributions go on truncate).
  std::vector<std::pair<std::string, RowState>> sources_before(size_t projection,
                                                               const std::string& position);
  std::string truncated_at(size_t projection);
  // The transactional outbox: a batch's derived events, written in the batch's transaction by
  // write_queued(), so that a replay that skips their events can emit them again. An entry goes
  // through the writer of `affinity`, the one that writes the row whose change it reports: so
  // it commits exactly when that row does, and a retry that skips the row (a commit that
  // failed after another writer's succeeded) finds its derived event. They go out as one row
  // per writer and write_queued() (the entries packed in one text), not one row per derived
  // event: no per-event index entries. A (position, event, projection, key) kept twice is read
  // back once, as first written.
  void outbox_add(const OutboxEntry& e, int64_t now_ms, size_t affinity = 0);
  // The kept derived events of the change events at `positions` (sorted, unique), by
  // (position, event, seq).
  std::vector<OutboxEntry> outbox_at(const std::vector<std::string>& positions);
  // Drops the outbox rows written more than `retention_ms` before its newest row (the
  // pipeline's running time: a stopped pipeline's rows do not age) and remembers the highest
  // position dropped. Returns it ("" when nothing was ever dropped).
  std::string outbox_prune(int64_t retention_ms);
  std::string outbox_pruned_at();

  // The most recently updated rows (for cache warm-up).
  std::vector<std::pair<std::string, RowState>> recent(size_t projection, RowFamily family,
                                                       size_t limit);

 private:
  // A statement over many rows: `head`, then `width` placeholders per row, then `tail`;
  // prepared for a few row counts (kBulkSizes) on first use.
  struct Bulk {
    std::string head, tail;
    size_t width = 1;
    bool tuples = true;  // rows as "($1, $2)"; false: bare "$1" (an IN list)
    // [writer][kBulkSizes entry]: the statement handle on that writer; SIZE_MAX until prepared
    std::vector<std::vector<size_t>> prepared;
    std::vector<std::vector<SqlValue>> queued;  // [writer]: flat parameters of waiting rows
  };
  static constexpr size_t kBulkSizes[] = {64, 8, 1};  // rows a bulk statement writes
  enum BulkKind : size_t { upsert_main, delete_main, upsert_side, delete_side, kBulkKinds };
  struct Statements {
    size_t select_main, select_side;
    size_t recent_main, recent_side;
    size_t clear_main, clear_side, sources_before;
    size_t many_main, many_side;  // WHERE key is one of the strings of the JSON array $1
    Bulk bulk[kBulkKinds];
  };
  RowState row_from_main(size_t projection, const SqlRow& r, size_t first) const;
  static RowState row_from_side(const SqlRow& r);
  void create_tables();
  void create_outbox();
  size_t prepare_in_list(const std::string& head);
  void load_many_on(size_t w, size_t projection, RowFamily family,
                    const std::vector<std::string>& keys, const std::string& key_prefix,
                    std::unordered_map<std::string, RowState>& out);
  // The handle on writer w of a statement prepared with prepare_in_list() (on the first
  // connection): prepared on w at its first use there.
  size_t keyed_on(size_t w, size_t statement);
  static void side_by_side(size_t n, const std::function<bool(size_t)>& has_work,
                           const std::function<void(size_t)>& work);
  Database& writer(size_t w) { return w == 0 ? *db_ : *writers_[w - 1]; }
  size_t writer_of(size_t affinity) const;
  bool queued_on(size_t w) const;
  void write_queued_on(size_t w);
  static std::string bulk_sql(const Bulk& bulk, size_t rows);
  void write_bulk(Bulk& bulk, size_t w);
  void clear_queues();

  std::unique_ptr<Database> db_;
  std::vector<std::unique_ptr<Database>> writers_;  // writers 1..n-1; writer 0 is db_
  std::vector<char> open_;  // [writer]: its transaction is open (char: writers set theirs at once)
  std::vector<std::vector<SqlValue>> slices_;  // [writer]: one bulk statement's parameters
  bool spread_ = true;
  size_t in_use_ = 1;
  std::vector<ProjectionSpec> specs_;
  std::vector<Statements> stmts_;
  size_t select_meta_ = 0, upsert_meta_ = 0;
  // [writer]: the outbox entries queued for it since the last write_queued(): packed, and the
  // lowest and highest position among them.
  struct OutboxRow {
    std::string entries, low, high;
    int64_t created_ms = 0;
  };
  std::vector<OutboxRow> outbox_;
  void write_outbox(size_t w);
  std::vector<size_t> outbox_insert_;                  // [writer]: SIZE_MAX until prepared on it
  std::unordered_map<size_t, std::string> keyed_sql_;  // prepare_in_list()'s statements
  std::vector<std::unordered_map<size_t, size_t>> keyed_on_;  // [writer]: handle there
  size_t outbox_select_ = 0, outbox_cutoff_ = 0, outbox_pruned_max_ = 0, outbox_delete_ = 0;
};

// Number text for SQL and JSON: integers without a fraction, others with full precision.
std::string format_number(double v);

}  // namespace sluice_projection
