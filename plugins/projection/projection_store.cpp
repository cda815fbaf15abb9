// Projection tables in SQL: schema creation, row loading and saving, truncation, warm-up reads.
#include "projection_store.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <functional>
#include <future>
#include <iterator>
#include <set>
#include <stdexcept>
#include <tuple>

namespace sluice_projection {

namespace {

double to_double(const SqlValue& v) { return v ? std::strtod(v->c_str(), nullptr) : 0.0; }
int64_t to_int(const SqlValue& v) { return v ? std::strtoll(v->c_str(), nullptr, 10) : 0; }

std::string contribution_json(const RowState& row) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("s");
  w.StartArray();
  for (double s : row.sums) w.Double(s);
  w.EndArray();
  w.Key("l");
  w.StartArray();
  for (const auto& l : row.lasts) w.String(l.c_str(), static_cast<rapidjson::SizeType>(l.size()));
  w.EndArray();
  w.EndObject();
  return {sb.GetString(), sb.GetSize()};
}

void parse_contribution(const std::string& text, RowState& row) {
  rapidjson::Document d;
  d.Parse(text.c_str(), text.size());
  if (d.HasParseError() || !d.IsObject()) return;
  if (d.HasMember("s") && d["s"].IsArray())
    for (const auto& v : d["s"].GetArray()) row.sums.push_back(v.IsNumber() ? v.GetDouble() : 0);
  if (d.HasMember("l") && d["l"].IsArray())
    for (const auto& v : d["l"].GetArray())
      row.lasts.emplace_back(v.IsString() ? std::string(v.GetString(), v.GetStringLength())
                                          : std::string("null"));
}

std::string json_array(const std::vector<std::string>& strings) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartArray();
  for (const auto& s : strings) w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
  w.EndArray();
  return {sb.GetString(), sb.GetSize()};
}

// The outbox's packed entries: each field as "<length>:<bytes>", six fields an entry.
void pack(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

bool unpack(const std::string& in, size_t& at, std::string& field) {
  const size_t colon = in.find(':', at);
  if (colon == std::string::npos || colon == at) return false;
  size_t n = 0;
  for (size_t i = at; i < colon; ++i) {
    if (in[i] < '0' || in[i] > '9') return false;
    n = n * 10 + static_cast<size_t>(in[i] - '0');
  }
  if (n > in.size() - colon - 1) return false;
  field.assign(in, colon + 1, n);
  at = colon + 1 + n;
  return true;
}

}  // namespace

std::string format_number(double v) {
  char buf[40];
  if (std::isfinite(v) && std::fabs(v) < 1e15 && v == std::floor(v))
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else
    std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

size_t ProjectionSpec::sum_count() const {
  size_t n = 0;
  for (const auto& f : fields) n += f.fold == Fold::sum;
  return n;
}

size_t ProjectionSpec::last_count() const {
  size_t n = 0;
  for (const auto& f : fields) n += f.fold == Fold::last;
  return n;
}

ProjectionStore::ProjectionStore(std::unique_ptr<Database> db, std::vector<ProjectionSpec> specs,
                                 std::vector<std::unique_ptr<Database>> writers)
    : db_(std::move(db)),
      writers_(std::move(writers)),
      open_(writer_count(), false),
      slices_(writer_count()),
      specs_(std::move(specs)),
      outbox_(writer_count()),
      outbox_insert_(writer_count(), SIZE_MAX),
      keyed_on_(writer_count()) {
  in_use_ = writer_count();
  create_tables();
  for (auto& s : stmts_)
    for (auto& bulk : s.bulk) {
      bulk.queued.resize(writer_count());
      bulk.prepared.assign(writer_count(), std::vector<size_t>(std::size(kBulkSizes), SIZE_MAX));
    }
}

void ProjectionStore::begin() {
  db_->begin();
  open_[0] = true;
}

void ProjectionStore::commit() {
  // The other writers first: the first connection's commit also ends the batch's reads.
  for (size_t w = 1; w < writer_count(); ++w)
    if (open_[w]) {
      open_[w] = false;
      writer(w).commit();
    }
  open_[0] = false;
  db_->commit();
}

void ProjectionStore::rollback() noexcept {
  for (size_t w = 0; w < writer_count(); ++w)
    if (open_[w]) writer(w).rollback();
  std::fill(open_.begin(), open_.end(), false);
  clear_queues();
}

void ProjectionStore::create_tables() {
  db_->exec(
      "CREATE TABLE IF NOT EXISTS sluice_projection_meta (projection TEXT PRIMARY KEY, "
      "truncated_at " +
      std::string(db_->position_type()) + " NOT NULL)");
  select_meta_ =
      db_->prepare("SELECT truncated_at FROM sluice_projection_meta WHERE projection = $1");
  upsert_meta_ = db_->prepare(
      "INSERT INTO sluice_projection_meta (projection, truncated_at) VALUES ($1, $2) ON CONFLICT "
      "(projection) DO UPDATE SET truncated_at = excluded.truncated_at");
  create_outbox();
  for (const auto& p : specs_) {
    Statements s{};
    const std::string& t = p.name;
    const std::string pos = db_->position_type();
    const std::string key = db_->key_type();
    const std::string keyed = db_->keyed_table_options();
    if (p.kind == ProjectionKind::mirror) {
      db_->exec("CREATE TABLE IF NOT EXISTS " + t + " (key " + key +
                " PRIMARY KEY, data TEXT NOT NULL, source_position " + pos +
                " NOT NULL, updated_ms BIGINT NOT NULL)" + keyed);
      db_->exec("CREATE TABLE IF NOT EXISTS " + t + "__deleted (key " + key +
                " PRIMARY KEY, source_position " + pos + " NOT NULL, updated_ms BIGINT NOT NULL)" +
                keyed);
      s.select_main = db_->prepare("SELECT data, source_position FROM " + t + " WHERE key = $1");
      s.select_side = db_->prepare("SELECT source_position FROM " + t + "__deleted WHERE key = $1");
      s.many_main = prepare_in_list("SELECT key, data, source_position FROM " + t + " WHERE key");
      s.many_side =
          prepare_in_list("SELECT key, source_position FROM " + t + "__deleted WHERE key");
      s.bulk[upsert_main] = {
          "INSERT INTO " + t + " (key, data, source_position, updated_ms) VALUES ",
          " ON CONFLICT (key) DO UPDATE SET data = excluded.data, "
          "source_position = excluded.source_position, updated_ms = "
          "excluded.updated_ms",
          4};
      s.bulk[delete_main] = {"DELETE FROM " + t + " WHERE key IN (", ")", 1, false};
      s.bulk[upsert_side] = {
          "INSERT INTO " + t + "__deleted (key, source_position, updated_ms) VALUES ",
          " ON CONFLICT (key) DO UPDATE SET source_position = "
          "excluded.source_position, updated_ms = excluded.updated_ms",
          3};
      s.bulk[delete_side] = {"DELETE FROM " + t + "__deleted WHERE key IN (", ")", 1, false};
      s.recent_main = db_->prepare("SELECT key, data, source_position FROM " + t +
                                   " ORDER BY updated_ms DESC LIMIT $1");
      s.recent_side = db_->prepare("SELECT key, source_position FROM " + t +
                                   "__deleted ORDER BY updated_ms DESC LIMIT $1");
      s.clear_main = db_->prepare("DELETE FROM " + t + " WHERE source_position < $1");
      s.clear_side = db_->prepare("DELETE FROM " + t + "__deleted WHERE source_position < $1");
    } else {
      std::string cols, defs, insert_cols, updates;
      for (const auto& f : p.fields) {
        const char* type = f.fold == Fold::sum     ? "DOUBLE PRECISION"
                           : f.fold == Fold::count ? "BIGINT"
                                                   : "TEXT";
        defs += ", " + f.column + " " + type;
        cols += f.column + ", ";
        insert_cols += ", " + f.column;
        updates += f.column + " = excluded." + f.column + ", ";
      }
      db_->exec("CREATE TABLE IF NOT EXISTS " + t + " (group_key " + key + " PRIMARY KEY" + defs +
                ", row_count BIGINT NOT NULL, last_position " + pos + ", source_position " + pos +
                " NOT NULL, updated_ms BIGINT NOT NULL)" + keyed);
      db_->exec("CREATE TABLE IF NOT EXISTS " + t + "__sources (key " + key +
                " PRIMARY KEY, group_key TEXT, contribution TEXT, "
                "source_position " +
                pos + " NOT NULL, deleted INTEGER NOT NULL, updated_ms BIGINT NOT NULL)" + keyed);
      s.select_main =
          db_->prepare("SELECT " + cols + "row_count, last_position, source_position FROM " + t +
                       " WHERE group_key = $1");
      s.select_side =
          db_->prepare("SELECT group_key, contribution, source_position, deleted FROM " + t +
                       "__sources WHERE key = $1");
      s.many_main = prepare_in_list("SELECT group_key, " + cols +
                                    "row_count, last_position, source_position FROM " + t +
                                    " WHERE group_key");
      s.many_side =
          prepare_in_list("SELECT key, group_key, contribution, source_position, deleted FROM " +
                          t + "__sources WHERE key");
      s.bulk[upsert_main] = {"INSERT INTO " + t + " (group_key" + insert_cols +
                                 ", row_count, last_position, source_position, updated_ms) VALUES ",
                             " ON CONFLICT (group_key) DO UPDATE SET " + updates +
                                 "row_count = excluded.row_count, last_position = "
                                 "excluded.last_position, source_position = "
                                 "excluded.source_position, updated_ms = excluded.updated_ms",
                             p.fields.size() + 5};
      s.bulk[delete_main] = {"DELETE FROM " + t + " WHERE group_key IN (", ")", 1, false};
      s.bulk[upsert_side] = {"INSERT INTO " + t +
                                 "__sources (key, group_key, contribution, source_position, "
                                 "deleted, updated_ms) VALUES ",
                             " ON CONFLICT (key) DO UPDATE SET group_key = excluded.group_key, "
                             "contribution = excluded.contribution, source_position = "
                             "excluded.source_position, deleted = excluded.deleted, updated_ms = "
                             "excluded.updated_ms",
                             6};
      s.recent_main = db_->prepare("SELECT group_key, " + cols +
                                   "row_count, last_position, source_position FROM " + t +
                                   " ORDER BY updated_ms DESC LIMIT $1");
      s.recent_side =
          db_->prepare("SELECT key, group_key, contribution, source_position, deleted FROM " + t +
                       "__sources ORDER BY updated_ms DESC LIMIT $1");
      s.clear_side = db_->prepare("DELETE FROM " + t + "__sources WHERE source_position < $1");
      // Groups left empty by rows older than the truncate go with it.
      s.clear_main = db_->prepare("DELETE FROM " + t +
                                  " WHERE row_count <= 0 AND (last_position IS NULL OR "
                                  "last_position < $1)");
      s.sources_before = db_->prepare("SELECT key, group_key, contribution, source_position FROM " +
                                      t + "__sources WHERE source_position < $1 AND deleted = 0");
    }
    stmts_.push_back(s);
  }
}

// The outbox's meta row: not a projection name (those are plain identifiers).
static const char* const kOutboxMeta = "sluice.outbox";

void ProjectionStore::create_outbox() {
  const std::string pos = db_->position_type();
  db_->exec("CREATE TABLE IF NOT EXISTS sluice_projection_outbox (id " +
            std::string(db_->serial_key()) + ", low " + pos + " NOT NULL, high " + pos +
            " NOT NULL, created_ms BIGINT NOT NULL, entries TEXT NOT NULL)");
  db_->exec(
      "CREATE INDEX IF NOT EXISTS sluice_projection_outbox_created ON sluice_projection_outbox "
      "(created_ms)");
  db_->tune_outbox("sluice_projection_outbox", "entries");
  try {
    outbox_insert_[0] = db_->prepare(
        "INSERT INTO sluice_projection_outbox (low, high, created_ms, entries) VALUES ($1, $2, "
        "$3, $4)");
  } catch (const std::exception& e) {
    throw std::runtime_error(
        std::string(e.what()) +
        "; sluice_projection_outbox has the layout of an older sluice (one row per derived "
        "event): let the pipeline catch up (its source offsets committed), then drop that table");
  }
  // Rows whose range of positions meets the replayed range; entries are filtered after.
  outbox_select_ = db_->prepare(
      "SELECT entries FROM sluice_projection_outbox WHERE high >= $1 AND low <= $2 ORDER BY id");
  outbox_cutoff_ = db_->prepare("SELECT max(created_ms) - $1 FROM sluice_projection_outbox");
  outbox_pruned_max_ =
      db_->prepare("SELECT max(high) FROM sluice_projection_outbox WHERE created_ms < $1");
  outbox_delete_ = db_->prepare("DELETE FROM sluice_projection_outbox WHERE created_ms < $1");
}

void ProjectionStore::outbox_add(const OutboxEntry& e, int64_t now_ms, size_t affinity) {
  OutboxRow& o = outbox_[writer_of(affinity)];
  if (o.entries.empty() || e.position < o.low) o.low = e.position;
  if (o.entries.empty() || e.position > o.high) o.high = e.position;
  o.created_ms = now_ms;
  pack(o.entries, e.position);
  pack(o.entries, e.event);
  pack(o.entries, std::to_string(e.seq));
  pack(o.entries, e.projection);
  pack(o.entries, e.key);
  pack(o.entries, e.payload);
}

void ProjectionStore::write_outbox(size_t w) {
  OutboxRow& o = outbox_[w];
  if (o.entries.empty()) return;
  if (outbox_insert_[w] == SIZE_MAX)
    outbox_insert_[w] = writer(w).prepare(
        "INSERT INTO sluice_projection_outbox (low, high, created_ms, entries) VALUES ($1, $2, "
        "$3, $4)");
  writer(w).write(outbox_insert_[w], {std::move(o.low), std::move(o.high),
                                      std::to_string(o.created_ms), std::move(o.entries)});
  o = {};
}

std::vector<OutboxEntry> ProjectionStore::outbox_at(const std::vector<std::string>& positions) {
  std::vector<OutboxEntry> out;
  if (positions.empty()) return out;
  std::set<std::tuple<std::string, std::string, std::string, std::string>> seen;
  for (const auto& r : db_->run(outbox_select_, {positions.front(), positions.back()})) {
    const std::string entries = r[0].value_or("");
    size_t at = 0;
    std::string seq;
    OutboxEntry e;
    while (at < entries.size()) {
      if (!unpack(entries, at, e.position) || !unpack(entries, at, e.event) ||
          !unpack(entries, at, seq) || !unpack(entries, at, e.projection) ||
          !unpack(entries, at, e.key) || !unpack(entries, at, e.payload))
        throw std::runtime_error("sluice_projection_outbox: a row's entries are malformed");
      e.seq = std::strtoll(seq.c_str(), nullptr, 10);
      // The first kept copy of a (position, event, projection, key) wins (rows in the order
      // written): an event changes a row of a projection at most once, but a replayed event
      // that still raised a group's `last` kept that group's derived event again. Not `seq`:
      // the parts of one event written by two writers may both start at 0 (one committed,
      // the other applied again by the retry).
      if (std::binary_search(positions.begin(), positions.end(), e.position) &&
          seen.emplace(e.position, e.event, e.projection, e.key).second)
        out.push_back(e);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const OutboxEntry& a, const OutboxEntry& b) {
    return std::tie(a.position, a.event, a.seq) < std::tie(b.position, b.event, b.seq);
  });
  return out;
}

std::string ProjectionStore::outbox_prune(int64_t retention_ms) {
  const std::string pruned = outbox_pruned_at();
  auto cutoff = db_->run(outbox_cutoff_, {std::to_string(retention_ms)});
  if (cutoff.empty() || !cutoff[0][0]) return pruned;
  const SqlValue before = cutoff[0][0];
  auto highest = db_->run(outbox_pruned_max_, {before});
  if (highest.empty() || !highest[0][0]) return pruned;
  db_->run(outbox_delete_, {before});
  if (*highest[0][0] <= pruned) return pruned;
  db_->run(upsert_meta_, {std::string(kOutboxMeta), highest[0][0]});
  return *highest[0][0];
}

std::string ProjectionStore::outbox_pruned_at() {
  auto rows = db_->run(select_meta_, {std::string(kOutboxMeta)});
  return rows.empty() ? std::string() : rows[0][0].value_or("");
}

RowState ProjectionStore::row_from_main(size_t projection, const SqlRow& r, size_t first) const {
  const ProjectionSpec& p = specs_[projection];
  RowState row;
  row.present = true;
  if (p.kind == ProjectionKind::mirror) {
    row.data = r[first].value_or("null");
    row.position = r[first + 1].value_or("");
    return row;
  }
  size_t c = first;
  for (const auto& f : p.fields) {
    if (f.fold == Fold::sum) row.sums.push_back(to_double(r[c]));
    if (f.fold == Fold::last) row.lasts.push_back(r[c].value_or("null"));
    ++c;
  }
  row.rows = to_int(r[c]);
  row.last_position = r[c + 1].value_or("");
  row.position = r[c + 2].value_or("");
  return row;
}

RowState ProjectionStore::row_from_side(const SqlRow& r) {
  RowState row;
  row.data = r[1].value_or("");
  parse_contribution(r[2].value_or(""), row);
  row.position = r[3].value_or("");
  row.tombstone = to_int(r[4]) != 0;
  row.present = !row.tombstone;
  return row;
}

// work(w) for each connection w < n that has_work(w): 1..n-1 on their own threads, 0 on this
// one (always); all are waited for, and the first error is thrown.
void ProjectionStore::side_by_side(size_t n, const std::function<bool(size_t)>& has_work,
                                   const std::function<void(size_t)>& work) {
  std::vector<std::future<void>> others;
  for (size_t w = 1; w < n; ++w)
    if (has_work(w)) others.push_back(std::async(std::launch::async, work, w));
  std::exception_ptr failed;
  try {
    work(0);
  } catch (...) {
    failed = std::current_exception();
  }
  for (auto& f : others) try {
      f.get();
    } catch (...) {
      if (!failed) failed = std::current_exception();
    }
  if (failed) std::rethrow_exception(failed);
}

size_t ProjectionStore::prepare_in_list(const std::string& head) {
  const std::string sql = head + db_->in_json_param();
  const size_t statement = db_->prepare_keyed(sql);
  keyed_sql_.emplace(statement, sql);
  return statement;
}

size_t ProjectionStore::keyed_on(size_t w, size_t statement) {
  if (w == 0) return statement;
  auto [it, added] = keyed_on_[w].try_emplace(statement);
  if (added) it->second = writer(w).prepare_keyed(keyed_sql_.at(statement));
  return it->second;
}

RowState ProjectionStore::load(size_t projection, RowFamily family, const std::string& key) {
  const Statements& s = stmts_[projection];
  RowState row;
  switch (family) {
    case RowFamily::mirror: {
      auto main = db_->run(s.select_main, {key});
      if (!main.empty()) return row_from_main(projection, main[0], 0);
      auto side = db_->run(s.select_side, {key});
      if (!side.empty()) {
        row.tombstone = true;
        row.position = side[0][0].value_or("");
      }
      return row;
    }
    case RowFamily::group: {
      auto main = db_->run(s.select_main, {key});
      if (!main.empty()) return row_from_main(projection, main[0], 0);
      return row;
    }
    case RowFamily::source: {
      auto side = db_->run(s.select_side, {key});
      if (side.empty()) return row;
      SqlRow keyed{key};
      keyed.insert(keyed.end(), side[0].begin(), side[0].end());
      return row_from_side(keyed);
    }
  }
  return row;
}

void ProjectionStore::load_all(const std::vector<KeyRead>& reads,
                               std::unordered_map<std::string, RowState>& out) {
  const size_t connections = spread_ ? std::min(in_use_, writer_count()) : 1;
  if (connections == 1) {
    for (const auto& r : reads) load_many_on(0, r.projection, r.family, r.keys, r.key_prefix, out);
    return;
  }
  // Each read in parts of at least kPart keys, each part to the connection with the fewest
  // keys so far; a connection runs its parts one after the other.
  static constexpr size_t kPart = 256;
  struct Part {
    const KeyRead* read;
    std::vector<std::string> keys;
  };
  std::vector<std::vector<Part>> plan(connections);
  std::vector<size_t> load(connections, 0);
  for (const auto& r : reads) {
    const size_t parts = std::clamp<size_t>(r.keys.size() / kPart, 1, connections);
    const size_t each = (r.keys.size() + parts - 1) / parts;
    for (size_t from = 0; from < r.keys.size(); from += each) {
      const size_t to = std::min(r.keys.size(), from + each);
      const size_t w =
          static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      plan[w].push_back({&r,
                         {r.keys.begin() + static_cast<ptrdiff_t>(from),
                          r.keys.begin() + static_cast<ptrdiff_t>(to)}});
      load[w] += to - from;
    }
  }
  std::vector<std::unordered_map<std::string, RowState>> found(connections);
  auto run_on = [&](size_t w) {
    for (const Part& part : plan[w])
      load_many_on(w, part.read->projection, part.read->family, part.keys, part.read->key_prefix,
                   w == 0 ? out : found[w]);
  };
  side_by_side(
      connections, [&](size_t w) { return !plan[w].empty(); }, run_on);
  for (size_t w = 1; w < connections; ++w)
    for (auto& [key, row] : found[w]) out.insert_or_assign(key, std::move(row));
}

void ProjectionStore::load_many_on(size_t w, size_t projection, RowFamily family,
                                   const std::vector<std::string>& keys,
                                   const std::string& key_prefix,
                                   std::unordered_map<std::string, RowState>& out) {
  const Statements& s = stmts_[projection];
  Database& db = writer(w);
  for (const auto& key : keys) out.try_emplace(key_prefix + key);
  if (family == RowFamily::source) {
    for (const auto& r : db.run(keyed_on(w, s.many_side), {json_array(keys)}))
      out[key_prefix + r[0].value_or("")] = row_from_side(r);
    return;
  }
  for (const auto& r : db.run(keyed_on(w, s.many_main), {json_array(keys)}))
    out[key_prefix + r[0].value_or("")] = row_from_main(projection, r, 1);
  if (family != RowFamily::mirror) return;
  std::vector<std::string> not_live;  // mirror keys without a live row: look for a tombstone
  for (const auto& key : keys)
    if (!out[key_prefix + key].present) not_live.push_back(key);
  if (not_live.empty()) return;
  for (const auto& r : db.run(keyed_on(w, s.many_side), {json_array(not_live)})) {
    RowState& row = out[key_prefix + r[0].value_or("")];
    row.tombstone = true;
    row.position = r[1].value_or("");
  }
}

void ProjectionStore::save(size_t projection, RowFamily family, const std::string& key,
                           const RowState& row, const RowState& before, int64_t now_ms,
                           size_t affinity) {
  const ProjectionSpec& p = specs_[projection];
  Bulk* bulk = stmts_[projection].bulk;
  std::string now = std::to_string(now_ms);
  const size_t w = writer_of(affinity);
  auto queue = [&](BulkKind kind, std::initializer_list<SqlValue> params) {
    auto& q = bulk[kind].queued[w];
    q.insert(q.end(), params);
  };
  switch (family) {
    case RowFamily::mirror:
      if (row.present) {
        queue(upsert_main, {key, row.data, row.position, now});
        if (before.tombstone) queue(delete_side, {key});
      } else if (row.tombstone) {
        if (before.present) queue(delete_main, {key});
        queue(upsert_side, {key, row.position, now});
      }
      return;
    case RowFamily::group: {
      if (!row.present) {
        if (before.present) queue(delete_main, {key});
        return;
      }
      std::vector<SqlValue>& q = bulk[upsert_main].queued[w];
      q.emplace_back(key);
      size_t si = 0, li = 0;
      for (const auto& f : p.fields) {
        if (f.fold == Fold::sum)
          q.emplace_back(format_number(row.sums.at(si++)));
        else if (f.fold == Fold::count)
          q.emplace_back(std::to_string(row.rows));
        else
          q.emplace_back(row.lasts.at(li++));
      }
      q.emplace_back(std::to_string(row.rows));
      q.emplace_back(row.last_position);
      q.emplace_back(row.position);
      q.emplace_back(std::move(now));
      return;
    }
    case RowFamily::source:
      queue(upsert_side, {key, row.data, contribution_json(row), row.position,
                          std::string(row.tombstone ? "1" : "0"), now});
      return;
  }
}

size_t ProjectionStore::writer_of(size_t affinity) const {
  return spread_ && in_use_ > 1 ? affinity % in_use_ : 0;
}

bool ProjectionStore::queued_on(size_t w) const {
  if (!outbox_[w].entries.empty()) return true;
  for (const auto& s : stmts_)
    for (const auto& bulk : s.bulk)
      if (!bulk.queued[w].empty()) return true;
  return false;
}

void ProjectionStore::clear_queues() {
  for (auto& s : stmts_)
    for (auto& bulk : s.bulk)
      for (auto& q : bulk.queued) q.clear();
  for (auto& o : outbox_) o = {};
}

// Writer w's queued rows, inside its transaction of the batch (opened here on first use), on
// the server before this returns.
void ProjectionStore::write_queued_on(size_t w) {
  if (!queued_on(w)) return;
  if (!open_[w]) {
    writer(w).begin();
    open_[w] = true;
  }
  for (auto& s : stmts_)
    for (auto& bulk : s.bulk) write_bulk(bulk, w);
  write_outbox(w);
  // Every error shows here, before any writer commits.
  writer(w).flush();
}

void ProjectionStore::write_queued() {
  try {
    side_by_side(
        writer_count(), [this](size_t w) { return queued_on(w); },
        [this](size_t w) { write_queued_on(w); });
  } catch (...) {
    // The transaction fails with this batch: nothing of it may leak into the next one.
    clear_queues();
    throw;
  }
}

// The statement writing `rows` rows of `bulk`.
std::string ProjectionStore::bulk_sql(const Bulk& bulk, size_t rows) {
  std::string sql = bulk.head;
  for (size_t r = 0, param = 1; r < rows; ++r) {
    sql += r ? ", " : "";
    sql += bulk.tuples ? "(" : "";
    for (size_t c = 0; c < bulk.width; ++c, ++param)
      sql += (c ? ", $" : "$") + std::to_string(param);
    sql += bulk.tuples ? ")" : "";
  }
  return sql + bulk.tail;
}

// Rows go out kBulkSizes[0] a statement (at most the backend's upsert_rows()); the remainder in
// the smaller sizes.
void ProjectionStore::write_bulk(Bulk& bulk, size_t w) {
  std::vector<SqlValue>& queued = bulk.queued[w];
  if (queued.empty()) return;
  std::vector<size_t>& prepared = bulk.prepared[w];
  std::vector<SqlValue>& slice = slices_[w];
  Database& db = writer(w);
  const size_t rows = queued.size() / bulk.width;
  const size_t most = bulk.tuples ? db.upsert_rows() : SIZE_MAX;  // an IN list: any size
  size_t done = 0;
  for (size_t i = 0; i < std::size(kBulkSizes); ++i) {
    const size_t n = kBulkSizes[i];
    if (n > most || rows - done < n) continue;
    if (prepared[i] == SIZE_MAX) prepared[i] = db.prepare(bulk_sql(bulk, n));
    for (; rows - done >= n; done += n) {
      const auto first = queued.begin() + static_cast<ptrdiff_t>(done * bulk.width);
      slice.assign(std::make_move_iterator(first),
                   std::make_move_iterator(first + static_cast<ptrdiff_t>(n * bulk.width)));
      db.write(prepared[i], slice);
    }
  }
  queued.clear();
}

void ProjectionStore::truncate(size_t projection, const std::string& position) {
  db_->run(stmts_[projection].clear_main, {position});
  db_->run(stmts_[projection].clear_side, {position});
  db_->run(upsert_meta_, {specs_[projection].name, position});
}

std::vector<std::pair<std::string, RowState>> ProjectionStore::sources_before(
    size_t projection, const std::string& position) {
  std::vector<std::pair<std::string, RowState>> out;
  for (const auto& r : db_->run(stmts_[projection].sources_before, {position})) {
    RowState row;
    row.present = true;
    row.data = r[1].value_or("");
    parse_contribution(r[2].value_or(""), row);
    row.position = r[3].value_or("");
    out.emplace_back(r[0].value_or(""), std::move(row));
  }
  return out;
}

std::string ProjectionStore::truncated_at(size_t projection) {
  auto rows = db_->run(select_meta_, {specs_[projection].name});
  return rows.empty() ? std::string() : rows[0][0].value_or("");
}

std::vector<std::pair<std::string, RowState>> ProjectionStore::recent(size_t projection,
                                                                      RowFamily family,
                                                                      size_t limit) {
  std::vector<std::pair<std::string, RowState>> out;
  const Statements& s = stmts_[projection];
  const std::string n = std::to_string(limit);
  if (family == RowFamily::source) {
    for (const auto& r : db_->run(s.recent_side, {n}))
      out.emplace_back(r[0].value_or(""), row_from_side(r));
    return out;
  }
  for (const auto& r : db_->run(s.recent_main, {n}))
    out.emplace_back(r[0].value_or(""), row_from_main(projection, r, 1));
  return out;
}

}  // namespace sluice_projection
