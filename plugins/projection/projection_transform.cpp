// The `projection` transform: folds change events into read models and emits derived events.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <deque>
#include <mutex>
#include <optional>
#include <regex>
#include <sluice/sdk.hpp>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../cdc/debezium_decoder.hpp"
#include "projection_store.hpp"
#include "row_cache.hpp"
#include "writer_tuner.hpp"

namespace sluice_projection {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  v.Accept(w);
  return {sb.GetString(), sb.GetSize()};
}

// The same in `sb`, reused from event to event (no buffer allocated for each image).
std::string to_json(const rapidjson::Value& v, rapidjson::StringBuffer& sb) {
  sb.Clear();
  Writer w(sb);
  v.Accept(w);
  return {sb.GetString(), sb.GetSize()};
}

// The row image `data` with the columns named in `unavailable` (Debezium's placeholder for a
// TOASTed value that did not change) taken from the stored image `stored`.
std::string fill_unavailable(const std::string& data, const std::vector<std::string>& unavailable,
                             const std::string& stored) {
  rapidjson::Document now, old;
  now.Parse(data.c_str(), data.size());
  old.Parse(stored.c_str(), stored.size());
  if (now.HasParseError() || old.HasParseError() || !now.IsObject() || !old.IsObject()) return data;
  for (const auto& column : unavailable) {
    auto from = old.FindMember(column.c_str());
    auto to = now.FindMember(column.c_str());
    if (from != old.MemberEnd() && to != now.MemberEnd())
      to->value.CopyFrom(from->value, now.GetAllocator());
  }
  return to_json(now);
}

void check_identifier(const std::string& name, const char* field) {
  static const std::regex kIdentifier("[A-Za-z_][A-Za-z0-9_]{0,62}");
  if (!std::regex_match(name, kIdentifier))
    throw sluice::ConfigError(field,
                              std::string(field) + ": '" + name +
                                  "' is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)");
}

std::string member_string(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  if (it == obj.MemberEnd() || it->value.IsNull()) return {};
  if (!it->value.IsString())
    throw sluice::ConfigError("projections",
                              std::string("projections: ") + name + " must be a string");
  return {it->value.GetString(), it->value.GetStringLength()};
}

std::vector<ProjectionSpec> parse_projections(const sluice::Config& c) {
  const auto* list = c.find("projections");
  if (!list || !list->IsArray() || list->Empty())
    throw sluice::ConfigError("projections", "projections must be a non-empty list");
  std::vector<ProjectionSpec> out;
  for (const auto& e : list->GetArray()) {
    if (!e.IsObject())
      throw sluice::ConfigError("projections", "each projection is a mapping {name, kind, table}");
    ProjectionSpec p;
    p.name = member_string(e, "name");
    check_identifier(p.name, "projections");
    for (const auto& other : out)
      if (other.name == p.name)
        throw sluice::ConfigError("projections", "projections: duplicate name '" + p.name + "'");
    const std::string kind = member_string(e, "kind");
    p.table = member_string(e, "table");
    if (p.table.empty())
      throw sluice::ConfigError("projections", "projection " + p.name + ": table is required");
    if (kind == "mirror" || kind.empty()) {
      p.kind = ProjectionKind::mirror;
    } else if (kind == "aggregate") {
      p.kind = ProjectionKind::aggregate;
      p.group_by = member_string(e, "group_by");
      if (p.group_by.empty())
        throw sluice::ConfigError("projections", "aggregate " + p.name + ": group_by is required");
      auto fields = e.FindMember("fields");
      if (fields == e.MemberEnd() || !fields->value.IsObject() || fields->value.ObjectEmpty())
        throw sluice::ConfigError("projections", "aggregate " + p.name +
                                                     ": fields must map columns to {sum: F}, "
                                                     "{count: true} or {last: F}");
      for (const auto& f : fields->value.GetObject()) {
        AggregateField af;
        af.column = f.name.GetString();
        check_identifier(af.column, "projections");
        if (!f.value.IsObject() || f.value.MemberCount() != 1)
          throw sluice::ConfigError("projections",
                                    "aggregate " + p.name + " field " + af.column +
                                        ": one of {sum: F}, {count: true}, {last: F}");
        const auto& fold = *f.value.MemberBegin();
        const std::string fn = fold.name.GetString();
        if (fn == "sum" || fn == "last") {
          if (!fold.value.IsString())
            throw sluice::ConfigError("projections", "aggregate " + p.name + " field " + af.column +
                                                         ": " + fn + " takes a field name");
          af.fold = fn == "sum" ? Fold::sum : Fold::last;
          af.source_field = fold.value.GetString();
        } else if (fn == "count") {
          af.fold = Fold::count;
        } else {
          throw sluice::ConfigError("projections", "aggregate " + p.name + " field " + af.column +
                                                       ": unknown fold '" + fn +
                                                       "' (sum, count, last)");
        }
        p.fields.push_back(std::move(af));
      }
    } else {
      throw sluice::ConfigError("projections",
                                "projection " + p.name + ": kind must be mirror or aggregate");
    }
    out.push_back(std::move(p));
  }
  return out;
}

// What one change event contributes to one projection, computed before the store is locked.
struct Contribution {
  size_t projection = 0;
  bool has_image = false;                // false for a delete
  std::string data;                      // mirror: the after image
  std::vector<std::string> unavailable;  // mirror: columns holding the unavailable placeholder
  std::string group;                     // aggregate: group key
  std::vector<double> sums;              // aggregate
  std::vector<std::string> lasts;
};

struct ChangeEvent {
  size_t index = 0;
  char op = 0;
  std::string table;
  std::string key;
  std::string position;
  std::string ts_ms;  // JSON text
  std::vector<Contribution> parts;
};

class ProjectionTransform final : public sluice::Transform {
 public:
  static std::string description() {
    return "Folds normalized change events (from the debezium transform) into mirror and "
           "aggregate projections in SQLite or PostgreSQL, one transaction per batch, idempotent "
           "by source position, with an optional row cache; emits one derived event per change.";
  }

  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("store")
        .default_value("sqlite")
        .one_of({"sqlite", "postgres"})
        .doc("Where the projections live.");
    s.string("path")
        .default_value("")
        .path(sluice::ConfigSchema::PathKind::output)
        .doc("sqlite: the database file (WAL mode); relative to the pipeline file's folder.");
    s.string("conninfo").default_value("").secret().doc("postgres: a libpq connection string.");
    s.string("synchronous")
        .default_value("NORMAL")
        .one_of({"NORMAL", "FULL"})
        .doc("sqlite: PRAGMA synchronous (NORMAL: durable at checkpoints; FULL: at every commit).");
    s.list("projections")
        .required()
        .doc(
            "[{name, kind: mirror|aggregate, table: schema.table, group_by, fields: {col: {sum: F} "
            "| {count: true} | {last: F}}}]");
    s.object("cache").doc(
        "{capacity, policy: lru|lfu|ttl|adaptive, ttl_ms, warmup}; off when absent, 10000 rows "
        "when capacity is not given.");
    s.string("cache_eviction_policy")
        .default_value("")
        .doc("Seed name of cache.policy (lru, lfu, ttl, adaptive).");
    s.integer("cache_warmup_size").default_value(-1).doc("Seed name of cache.warmup.");
    s.string("input_format")
        .default_value("normalized")
        .one_of({"normalized", "debezium", "debezium_envelope"})
        .doc(
            "normalized: change events from the debezium transform; debezium: Debezium records "
            "decoded inside this stage (no debezium transform needed; as its input_format "
            "record); debezium_envelope: the same from envelope lines (its input_format "
            "envelope). Non-change events are passed over.");
    s.object("key_columns")
        .doc("debezium inputs: table -> primary-key column(s), used when the record key is null.");
    s.string("heartbeat_topic_prefix")
        .default_value("__debezium-heartbeat")
        .doc("debezium inputs: records on topics starting with this are heartbeats.");
    s.string("writers").default_value("auto").doc(
        "postgres: connections that write each batch side by side, rows spread by key (a row "
        "and the rows it changes with always on the same one), 1-64; auto: the projection "
        "measures each batch's write and moves between 1 and 4 toward the fastest "
        "(plugins/projection/README.md). sqlite: 1.");
    s.integer("outbox_retention_ms")
        .default_value(kDefaultOutboxRetentionMs)
        .min(0)
        .doc(
            "How long derived events stay in the outbox (sluice_projection_outbox), in running "
            "time: a replay of their change events within it emits them again (at-least-once "
            "across a crash between the projection's commit and the sink). 0: no outbox.");
    s.string("topic").default_value("projections").doc("Topic of the derived events.");
    s.boolean("emit").default_value(true).doc("false: update projections, emit no derived events.");
    s.string("unavailable_value")
        .default_value("__debezium_unavailable_value")
        .doc(
            "Debezium's unavailable.value.placeholder: a mirror column holding it keeps its stored "
            "value (\"\": off).");
    return s;
  }

  ProjectionTransform(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        topic_(c.get_string("topic", "projections")),
        emit_(c.get_bool("emit", true)),
        outbox_retention_ms_(emit_ ? c.get_int("outbox_retention_ms", kDefaultOutboxRetentionMs)
                                   : 0),
        unavailable_value_(c.get_string("unavailable_value", "__debezium_unavailable_value")),
        input_(parse_input(c)),
        decoder_(sluice_cdc::decoder_options(c)),
        cache_(cache_options(c)) {
    const int64_t writers = parse_writers(c);
    store_ = open_store(c, parse_projections(c), host_, writers);
    if (writers == 0 && store_->writer_count() > 1) {
      tuner_.emplace(WriterTuner::Options{.max_writers = store_->writer_count()});
      store_->use_writers(tuner_->writers());
    }
    for (size_t p = 0; p < store_->specs().size(); ++p) {
      truncated_at_.push_back(store_->truncated_at(p));
      by_table_[store_->specs()[p].table].push_back(p);
    }
    if (outbox_retention_ms_ < 0)
      throw sluice::ConfigError("outbox_retention_ms", "outbox_retention_ms must be >= 0");
    outbox_pruned_at_ = store_->outbox_pruned_at();
    warm_up(warmup_size(c));
  }

  void process(const sluice::Batch& in, sluice::Output& out) override {
    std::vector<ChangeEvent> events;
    events.reserve(in.size());
    double passed_over = 0, rejected = 0;
    Scratch scratch;
    for (size_t i = 0; i < in.size(); ++i) {
      std::string reason;
      ChangeEvent ev;
      const Parsed parsed = input_ == Input::normalized ? parse(in[i], i, ev, reason, scratch)
                                                        : decode(in[i], i, ev, reason, scratch);
      switch (parsed) {
        case Parsed::change:
          events.push_back(std::move(ev));
          break;
        case Parsed::other:
          ++passed_over;
          break;
        case Parsed::bad:
          out.reject(i, "projection: " + reason);
          ++rejected;
          break;
      }
    }

    std::vector<Derived> derived;
    Tally tally;
    PhaseClock clock;
    {
      std::unique_lock lock(mu_);
      clock.lap(clock.waited);
      adjust_capacity();
      const CacheCounts before = cache_.counts();
      BatchState batch;
      const bool spread = !has_truncate(events);
      store_->spread_writes(spread);
      const auto started = std::chrono::steady_clock::now();
      store_->begin();
      try {
        prefetch(events, batch);
        clock.lap(clock.read);
        for (const auto& ev : events) {
          const size_t first = derived.size();
          const double replayed = tally.replayed;
          apply(ev, batch, derived, tally);
          to_outbox(ev, first, tally.replayed > replayed, derived, batch);
        }
        reemit(batch, derived, tally);
        clock.lap(clock.fold);
        flush(batch);
        prune_outbox(batch);
        clock.lap(clock.write);
        store_->commit();
        clock.lap(clock.commit);
      } catch (...) {
        store_->rollback();
        // The cache holds committed rows only, except rows read after a truncate flushed this
        // batch's writes: those are forgotten with the transaction. And a failed batch may
        // still have committed part of its rows (a commit that failed after another writer's
        // succeeded, or a connection lost during COMMIT, which the server may have carried
        // out): the cached images of its rows may be stale, so the retry reads them again.
        if (!batch.truncated.empty()) cache_.clear();
        for (const auto& [ck, d] : batch.dirty) cache_.erase(ck);
        throw;
      }
      if (spread)
        tune_writers(
            events.size(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      for (auto& [ck, d] : batch.dirty) cache_.put(ck, std::move(d.now));
      for (auto& [p, pos] : batch.truncated) truncated_at_[p] = pos;
      if (batch.pruned_at) outbox_pruned_at_ = std::move(*batch.pruned_at);
      report_cache(before);
    }
    if (emit_) {
      for (const auto& d : derived) {
        sluice::OutRecord o = sluice::OutRecord::from(in[d.index]);
        o.key = std::string_view(d.key);
        o.value = std::string_view(d.value);
        o.topic = topic_;
        o.headers.clear();
        o.headers.emplace_back("sluice.projection", store_->specs()[d.projection].name);
        out.emit(d.index, o);
      }
    }
    if (passed_over) host_.counter_add("passed_over", passed_over);
    if (rejected) host_.counter_add("rejected", rejected);
    if (tally.applied) host_.counter_add("rows_changed", tally.applied);
    if (tally.replayed) host_.counter_add("skipped_replayed", tally.replayed);
    if (tally.reemitted && emit_) host_.counter_add("reemitted", tally.reemitted);
    if (tally.noop) host_.counter_add("no_op", tally.noop);
    if (tally.unprojected) host_.counter_add("no_projection", tally.unprojected);
    if (!derived.empty() && emit_) host_.counter_add("derived_events", double(derived.size()));
    clock.report(host_);
  }

  // Where a batch's time went, as counters of seconds: waiting for the store (another lane's
  // batch holds it), reading the rows the batch touches, folding the events, sending the
  // writes (all writers), committing. A fold that reads a row the prefetch missed counts as
  // fold; a truncate's writes too.
  struct PhaseClock {
    std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
    double waited = 0, read = 0, fold = 0, write = 0, commit = 0;
    void lap(double& phase) {
      const auto now = std::chrono::steady_clock::now();
      phase += std::chrono::duration<double>(now - last).count();
      last = now;
    }
    void report(sluice::Host& host) const {
      host.counter_add("store_wait_seconds", waited);
      host.counter_add("read_seconds", read);
      host.counter_add("fold_seconds", fold);
      host.counter_add("write_seconds", write);
      host.counter_add("commit_seconds", commit);
    }
  };

  // `writers: auto`: the batch just committed (its changes, the seconds from BEGIN to COMMIT)
  // goes to the tuner, which picks the writers of the next batch.
  void tune_writers(size_t changes, double seconds) {
    if (tuner_) {
      const std::string decision = tuner_->sample(changes, seconds);
      store_->use_writers(tuner_->writers());
      if (!decision.empty()) host_.info("projection: " + decision);
    }
    host_.gauge_set("writers", static_cast<double>(store_->writers_in_use()));
  }

  void on_memory_pressure(double level) override {
    std::lock_guard lock(mu_);
    const size_t configured = cache_.configured_capacity();
    const size_t target = level >= 1.0 ? configured / 10 : cache_.capacity() / 2;
    const CacheCounts before = cache_.counts();
    cache_.set_capacity(std::min(cache_.capacity(), target));
    report_cache(before);
    host_.info("memory pressure " + std::to_string(level) + ": row cache shrunk to " +
               std::to_string(cache_.capacity()) + " rows");
  }

 private:
  enum class Parsed { change, other, bad };
  enum class Input { normalized, debezium, debezium_envelope };
  // Per batch: the decoder's reused documents (process() may run on several lanes at once).
  struct Scratch {
    sluice_cdc::DecodeScratch decode;
    std::deque<std::string> storage;
    rapidjson::StringBuffer json;  // for the images written out as JSON
  };

  // PostgreSQL connections `writers: auto` opens and moves between: on two cores 2 writers
  // measured fastest and 4 already slower (plugins/projection/README.md); a machine with more
  // cores can name a larger count.
  static constexpr int64_t kAutoMaxWriters = 4;

  // `writers`: 0 for auto (also the old spelling of the default, 0), else the count.
  static int64_t parse_writers(const sluice::Config& c) {
    const auto* v = c.find("writers");
    if (!v) return 0;
    std::string text = v->IsString() ? v->GetString() : "";
    if (text == "auto") return 0;
    int64_t n = -1;
    if (v->IsInt64()) {
      n = v->GetInt64();
      text = std::to_string(n);
    } else if (const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
               ec != std::errc() || end != text.data() + text.size()) {
      n = -1;
    }
    if (n < 0 || n > 64)
      throw sluice::ConfigError("writers",
                                "writers must be auto or a count from 1 to 64, got '" + text + "'");
    return n;
  }

  static std::unique_ptr<ProjectionStore> open_store(const sluice::Config& c,
                                                     std::vector<ProjectionSpec> specs,
                                                     const sluice::Host& host, int64_t writers) {
    const std::string store = c.get_string("store", "sqlite");
    if (store == "sqlite") {
      const std::string path = c.get_string("path");
      if (path.empty()) throw sluice::ConfigError("path", "store sqlite needs path");
      if (writers > 1)
        throw sluice::ConfigError("writers",
                                  "writers > 1 needs store postgres (SQLite has one "
                                  "writer at a time)");
      host.gauge_set("sqlite_page_cache_bytes",
                     static_cast<double>(sqlite_page_cache_bytes(host.memory_limit())));
      return std::make_unique<ProjectionStore>(
          open_sqlite(path, c.get_string("synchronous", "NORMAL"), host.memory_limit()),
          std::move(specs));
    }
    const std::string conninfo = c.get_string("conninfo");
    if (conninfo.empty()) throw sluice::ConfigError("conninfo", "store postgres needs conninfo");
    const Log warn = [host](const std::string& m) { host.warn(m); };
    auto first = open_postgres(conninfo, warn);
    std::vector<std::unique_ptr<Database>> more;
    for (int64_t w = 1; w < (writers > 0 ? writers : kAutoMaxWriters); ++w) {
      if (writers > 0) {
        more.push_back(open_postgres(conninfo, warn));
        continue;
      }
      // auto: the connections past the first are a means of speed, not a requirement (a
      // server near max_connections refuses some): tune between those that opened.
      try {
        more.push_back(open_postgres(conninfo, warn));
      } catch (const std::exception& e) {
        host.warn("projection: writers: auto opened " + std::to_string(w) + " of " +
                  std::to_string(kAutoMaxWriters) +
                  " connections and goes on with them: " + e.what());
        break;
      }
    }
    return std::make_unique<ProjectionStore>(std::move(first), std::move(specs), std::move(more));
  }

  static bool has_truncate(const std::vector<ChangeEvent>& events) {
    for (const auto& ev : events)
      if (ev.op == 't') return true;
    return false;
  }

  // The capacity of a cache that is configured without one.
  static constexpr size_t kCacheCapacityWhenAsked = 10000;

  static Input parse_input(const sluice::Config& c) {
    const std::string v = c.get_string("input_format", "normalized");
    return v == "debezium"            ? Input::debezium
           : v == "debezium_envelope" ? Input::debezium_envelope
                                      : Input::normalized;
  }

  struct Dirty {
    size_t projection;
    RowFamily family;
    std::string key;
    RowState before;  // as read: only `present` and `tombstone` (what save() needs)
    RowState now;
    bool changed = false;
    // Rows one event changes together (an aggregate's source row and its groups) are linked
    // (union-find): a linked set goes through one writer, so that it commits as a whole.
    Dirty* link = nullptr;
  };
  static Dirty& root(Dirty& d) {
    Dirty* r = &d;
    while (r->link) r = r->link;
    for (Dirty* at = &d; at != r;) {  // path compression
      Dirty* next = at->link;
      at->link = r;
      at = next;
    }
    return *r;
  }
  static void join(Dirty& a, Dirty& b) {
    Dirty& ra = root(a);
    Dirty& rb = root(b);
    if (&ra != &rb) rb.link = &ra;
  }
  // The writer a row goes through: the same for every row of a linked set.
  static size_t affinity(Dirty& d) {
    const Dirty& r = root(d);
    return std::hash<std::string>{}(r.key) + r.projection;
  }
  // A derived event: the input record it follows, its key and value, and the row whose change
  // it reports (null for a truncate's): its outbox entry goes through that row's writer.
  struct Derived {
    size_t index;
    std::string key;
    std::string value;
    size_t projection;
    Dirty* row = nullptr;
  };
  struct Tally {
    double applied = 0, replayed = 0, noop = 0, unprojected = 0, reemitted = 0;
  };
  struct BatchState {
    std::unordered_map<std::string, Dirty> dirty;
    std::unordered_map<std::string, RowState> loaded;  // prefetched rows not yet in `dirty`
    std::vector<Dirty*> order;                         // write order (the map's nodes do not move)
    std::vector<std::pair<size_t, std::string>> truncated;
    std::vector<const ChangeEvent*> replays;  // events skipped (in part) as already applied
    std::optional<std::string> pruned_at;     // the outbox's, once this batch commits
    // Outbox entries not yet handed to the store, with the row each reports: its writer is
    // known once the batch's rows are linked (flush()).
    std::vector<std::pair<OutboxEntry, Dirty*>> outbox;
  };

  // How long derived events stay in the outbox: replays come from the source's uncommitted
  // range, seconds to minutes behind; an hour of running time covers them with a wide margin.
  static constexpr int64_t kDefaultOutboxRetentionMs = 3'600'000;
  static constexpr int64_t kOutboxPruneEveryMs = 60'000;

  static std::string event_id(const ChangeEvent& ev) { return ev.table + "|" + ev.key; }

  // The derived events that `ev` produced (derived[first..]) go to the outbox, in this batch's
  // transaction; an event skipped as replayed is remembered, to emit its kept events again.
  void to_outbox(const ChangeEvent& ev, size_t first, bool replayed,
                 const std::vector<Derived>& derived, BatchState& b) {
    if (outbox_retention_ms_ == 0) return;
    if (replayed) b.replays.push_back(&ev);
    if (derived.size() == first) return;
    const std::string id = event_id(ev);
    for (size_t i = first; i < derived.size(); ++i) {
      // Built where it is kept: the payload is copied once, from the derived event.
      auto& e = b.outbox.emplace_back(OutboxEntry{ev.position, id}, derived[i].row).first;
      e.seq = static_cast<int64_t>(i - first);
      e.projection = store_->specs()[derived[i].projection].name;
      e.key = derived[i].key;
      e.payload = derived[i].value;
    }
  }

  // The kept derived events of the batch's replayed events, emitted again where they were
  // first (at-least-once: a crash after the projection's commit but before the sink wrote its
  // derived events replays their change events). Rows dropped by the retention are an error.
  void reemit(BatchState& b, std::vector<Derived>& derived, Tally& tally) {
    if (b.replays.empty()) return;
    std::vector<std::string> positions;
    for (const ChangeEvent* ev : b.replays) positions.push_back(ev->position);
    std::sort(positions.begin(), positions.end());
    positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
    const std::vector<OutboxEntry> kept = store_->outbox_at(positions);
    std::unordered_map<std::string, std::vector<const OutboxEntry*>> by_event;
    for (const auto& e : kept) by_event[e.position + '\n' + e.event].push_back(&e);
    const size_t before = derived.size();
    std::vector<std::string> lost;  // positions at or below the pruned one, nothing kept
    for (const ChangeEvent* ev : b.replays) {
      auto it = by_event.find(ev->position + '\n' + event_id(*ev));
      if (it == by_event.end()) {
        if (!outbox_pruned_at_.empty() && ev->position <= outbox_pruned_at_)
          lost.push_back(ev->position);
        continue;
      }
      for (const OutboxEntry* e : it->second)
        if (auto p = projection_named(e->projection))
          derived.push_back({ev->index, e->key, e->payload, *p});
    }
    tally.reemitted += static_cast<double>(derived.size() - before);
    if (derived.size() > before)
      std::stable_sort(derived.begin(), derived.end(),
                       [](const Derived& x, const Derived& y) { return x.index < y.index; });
    if (!lost.empty()) {
      const auto [lo, hi] = std::minmax_element(lost.begin(), lost.end());
      host_.error("projection: " + std::to_string(lost.size()) +
                  " replayed change event(s) at positions " + *lo + " .. " + *hi +
                  " are at or below the outbox's pruned position " + outbox_pruned_at_ +
                  ": their derived events, if they had any, were dropped by "
                  "outbox_retention_ms and are not emitted again");
    }
  }

  std::optional<size_t> projection_named(const std::string& name) const {
    for (size_t p = 0; p < store_->specs().size(); ++p)
      if (store_->specs()[p].name == name) return p;
    return std::nullopt;
  }

  // At most once a minute, inside the batch's transaction.
  void prune_outbox(BatchState& b) {
    if (outbox_retention_ms_ == 0) return;
    const int64_t now = wall_ms();
    if (now - last_prune_ms_ < kOutboxPruneEveryMs) return;
    last_prune_ms_ = now;
    b.pruned_at = store_->outbox_prune(outbox_retention_ms_);
  }

  static RowCache<RowState>::Options cache_options(const sluice::Config& c) {
    RowCache<RowState>::Options o;
    // Off unless asked for: a batch reads its uncached rows in one statement per row family,
    // so a cache pays only when most lookups hit (measure with your key distribution).
    o.capacity = 0;
    o.policy = EvictionPolicy::adaptive;
    std::string policy = c.get_string("cache_eviction_policy");
    const auto* cache = c.find("cache");
    if (cache || !policy.empty()) o.capacity = kCacheCapacityWhenAsked;
    if (cache) {
      if (!cache->IsObject())
        throw sluice::ConfigError("cache", "cache must be a mapping {capacity, policy, ...}");
      for (const auto& m : cache->GetObject()) {
        const std::string name = m.name.GetString();
        if (name == "capacity" && m.value.IsUint64())
          o.capacity = m.value.GetUint64();
        else if (name == "policy" && m.value.IsString())
          policy = m.value.GetString();
        else if (name == "ttl_ms" && m.value.IsInt64() && m.value.GetInt64() > 0)
          o.ttl_ms = m.value.GetInt64();
        else if (name != "warmup" || !m.value.IsUint64())
          throw sluice::ConfigError("cache", "cache." + name +
                                                 ": unknown key or wrong type (capacity: int, "
                                                 "policy: string, ttl_ms: int, warmup: int)");
      }
    }
    if (!policy.empty()) {
      try {
        o.policy = parse_eviction_policy(policy);
      } catch (const std::invalid_argument& e) {
        throw sluice::ConfigError("cache", e.what());
      }
    }
    return o;
  }

  static size_t warmup_size(const sluice::Config& c) {
    int64_t n = c.get_int("cache_warmup_size", -1);
    if (const auto* cache = c.find("cache"); cache && cache->HasMember("warmup"))
      n = (*cache)["warmup"].GetInt64();
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

  static std::string cache_key(size_t projection, RowFamily family, const std::string& key) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, projection).ptr;
    std::string ck;
    ck.reserve(static_cast<size_t>(end - digits) + 1 + key.size());
    ck.append(digits, end);
    ck += static_cast<char>(family);
    ck += key;
    return ck;
  }

  // Loads the most recently updated rows of every projection, newest last so they stay.
  void warm_up(size_t rows) {
    if (rows == 0) return;
    size_t loaded = 0;
    for (size_t p = 0; p < store_->specs().size(); ++p) {
      const bool aggregate = store_->specs()[p].kind == ProjectionKind::aggregate;
      for (RowFamily f : aggregate ? std::vector{RowFamily::source, RowFamily::group}
                                   : std::vector{RowFamily::mirror}) {
        auto recent = store_->recent(p, f, rows);
        for (auto it = recent.rbegin(); it != recent.rend(); ++it) {
          cache_.put(cache_key(p, f, it->first), std::move(it->second));
          ++loaded;
        }
      }
    }
    host_.gauge_set("cache_size", static_cast<double>(cache_.size()));
    if (loaded > 0) host_.info("row cache warmed up with " + std::to_string(loaded) + " rows");
  }

  void adjust_capacity() {
    if (cache_.capacity() < cache_.configured_capacity() && host_.memory_pressure() < 0.5)
      cache_.set_capacity(
          std::min(cache_.configured_capacity(), std::max<size_t>(cache_.capacity() * 2, 16)));
  }

  void report_cache(const CacheCounts& before) {
    const CacheCounts& now = cache_.counts();
    if (now.hits > before.hits) host_.counter_add("cache_hits", double(now.hits - before.hits));
    if (now.misses > before.misses)
      host_.counter_add("cache_misses", double(now.misses - before.misses));
    if (now.evictions > before.evictions)
      host_.counter_add("cache_evictions", double(now.evictions - before.evictions));
    host_.gauge_set("cache_size", static_cast<double>(cache_.size()));
    host_.gauge_set("cache_capacity", static_cast<double>(cache_.capacity()));
    const double total = double(now.hits + now.misses);
    if (total > 0) host_.gauge_set("cache_hit_rate", double(now.hits) / total);
  }

  Parsed parse(const sluice::RecordView& r, size_t index, ChangeEvent& ev, std::string& reason,
               Scratch& scratch) {
    if (!r.has_value()) return Parsed::other;
    // RapidJSON parses recursively: a value nested past the limit would run out of stack.
    rapidjson::Document d;
    const sluice::JsonParse parsed = sluice::parse_json_within(d, r.value());
    if (parsed.too_deep) {
      reason = "value nested deeper than " + std::to_string(sluice::kMaxJsonDepth) + " levels";
      return Parsed::bad;
    }
    if (!parsed.ok() || !d.IsObject() || !d.HasMember("kind") || !d["kind"].IsString()) {
      reason = "not a normalized change event (put the debezium transform before projection)";
      return Parsed::bad;
    }
    if (std::string_view(d["kind"].GetString()) != "change") return Parsed::other;
    auto str = [&](const char* name) -> std::string {
      auto it = d.FindMember(name);
      return it != d.MemberEnd() && it->value.IsString()
                 ? std::string(it->value.GetString(), it->value.GetStringLength())
                 : std::string();
    };
    const std::string op = str("op");
    ev.index = index;
    ev.op = op.size() == 1 ? op[0] : 0;
    ev.table = str("table");
    ev.position = str("position");
    if (!ev.op || ev.table.empty() || ev.position.empty()) {
      reason = "change event without op, table or position";
      return Parsed::bad;
    }
    if (d.HasMember("key") && !d["key"].IsNull()) ev.key = to_json(d["key"]);
    ev.ts_ms = d.HasMember("ts_ms") ? to_json(d["ts_ms"]) : "null";
    const rapidjson::Value* after =
        d.HasMember("after") && d["after"].IsObject() ? &d["after"] : nullptr;
    return contribute(ev, after, reason, scratch.json);
  }

  // A Debezium record decoded in this stage: the same change event the debezium transform
  // would have emitted, read from the parsed images without writing them out as JSON.
  Parsed decode(const sluice::RecordView& r, size_t index, ChangeEvent& ev, std::string& reason,
                Scratch& scratch) {
    if (auto flagged = r.header("sluice.error")) {
      reason = "the source flagged this record: " + std::string(*flagged);
      return Parsed::bad;
    }
    scratch.decode.reset();
    sluice_cdc::RawEvent raw;
    raw.topic = r.topic();
    raw.partition = r.partition();
    raw.offset = r.offset();
    if (input_ == Input::debezium_envelope) {
      if (!r.has_value()) {
        reason = "envelope input: the record has no value";
        return Parsed::bad;
      }
      reason =
          sluice_cdc::split_envelope_line_parsed(r.value(), raw, scratch.decode, scratch.storage);
      if (!reason.empty()) return Parsed::bad;
    } else {
      if (r.has_key()) raw.key = r.key();
      if (r.has_value()) raw.value = r.value();
      raw.old_key_header = r.header("__debezium.oldkey");
      raw.new_key_header = r.header("__debezium.newkey");
    }
    sluice_cdc::Decoded d = decoder_.decode_in(raw, scratch.decode, false);
    if (!d.error.empty()) {
      reason = "debezium: " + d.error;
      return Parsed::bad;
    }
    if (d.kind != sluice_cdc::EventKind::change) return Parsed::other;
    ev.index = index;
    ev.op = d.op;
    ev.table = std::move(d.table);
    ev.key = std::move(d.key);
    ev.position = std::move(d.position);
    ev.ts_ms = d.ts_ms ? std::to_string(*d.ts_ms) : "null";
    return contribute(ev, d.after, reason, scratch.json);
  }

  // What the change event `ev` (its image `after`) contributes to each projection of its table;
  // `json` is a buffer to write JSON in.
  Parsed contribute(ChangeEvent& ev, const rapidjson::Value* after, std::string& reason,
                    rapidjson::StringBuffer& json) {
    auto projections = by_table_.find(ev.table);
    if (projections == by_table_.end()) return Parsed::change;  // no projection: nothing to do
    if (ev.op != 't' && ev.key.empty()) {
      reason = "change event without a key";
      return Parsed::bad;
    }
    const bool upsert = ev.op == 'c' || ev.op == 'u' || ev.op == 'r';
    if (upsert && !after) {
      reason = std::string("op ") + ev.op + " without an after image";
      return Parsed::bad;
    }
    for (size_t p : projections->second) {
      const ProjectionSpec& spec = store_->specs()[p];
      Contribution c;
      c.projection = p;
      c.has_image = upsert;
      if (upsert && spec.kind == ProjectionKind::mirror) {
        c.data = to_json(*after, json);
        c.unavailable = unavailable_columns(*after);
      }
      if (upsert && spec.kind == ProjectionKind::aggregate) {
        auto g = after->FindMember(spec.group_by.c_str());
        if (g == after->MemberEnd() || g->value.IsNull()) {
          reason = spec.name + ": group_by field '" + spec.group_by + "' is missing or null";
          return Parsed::bad;
        }
        c.group = g->value.IsString()
                      ? std::string(g->value.GetString(), g->value.GetStringLength())
                      : to_json(g->value, json);
        for (const auto& f : spec.fields) {
          if (f.fold == Fold::count) continue;
          auto v = after->FindMember(f.source_field.c_str());
          const bool absent = v == after->MemberEnd() || v->value.IsNull();
          if (f.fold == Fold::last) {
            c.lasts.push_back(absent ? "null" : to_json(v->value, json));
            continue;
          }
          double x = 0;
          if (!absent && v->value.IsNumber()) {
            x = v->value.GetDouble();
          } else if (!absent && v->value.IsString()) {
            // Debezium's decimal.handling.mode=string sends decimals as text.
            char* end = nullptr;
            x = std::strtod(v->value.GetString(), &end);
            if (end == v->value.GetString() || *end != '\0' || !std::isfinite(x)) {
              reason = spec.name + ": field '" + f.source_field + "' is not a number";
              return Parsed::bad;
            }
          } else if (!absent) {
            reason = spec.name + ": field '" + f.source_field + "' is not a number";
            return Parsed::bad;
          }
          c.sums.push_back(x);
        }
      }
      ev.parts.push_back(std::move(c));
    }
    return Parsed::change;
  }

  std::vector<std::string> unavailable_columns(const rapidjson::Value& image) const {
    std::vector<std::string> out;
    if (unavailable_value_.empty()) return out;
    for (const auto& m : image.GetObject())
      if (m.value.IsString() &&
          std::string_view(m.value.GetString(), m.value.GetStringLength()) == unavailable_value_)
        out.emplace_back(m.name.GetString(), m.name.GetStringLength());
    return out;
  }

  Dirty& row(BatchState& b, size_t p, RowFamily f, const std::string& key) {
    std::string ck = cache_key(p, f, key);
    auto it = b.dirty.find(ck);
    if (it != b.dirty.end()) return it->second;
    // The cache gets the row at the end of the batch, once it is committed.
    RowState state;
    if (const RowState* cached = cache_.get(ck))
      state = *cached;
    else if (auto loaded = b.loaded.find(ck); loaded != b.loaded.end())
      state = std::move(loaded->second);
    else
      state = store_->load(p, f, key);
    RowState before{state.present, state.tombstone};
    Dirty& d = b.dirty.emplace(std::move(ck), Dirty{p, f, key, std::move(before), std::move(state)})
                   .first->second;
    b.order.push_back(&d);
    return d;
  }

  // Reads every row the batch's events will touch that the cache does not hold, a few
  // statements per projection and row family instead of one per row: first the mirror and
  // source rows, then the groups, which include the groups the source rows were in.
  void prefetch(const std::vector<ChangeEvent>& events, BatchState& b) {
    Wanted wanted(store_->specs().size());
    // About three rows an event (its row, a group, a group it left): no rehashing on the way.
    wanted.seen.reserve(3 * events.size());
    b.loaded.reserve(3 * events.size());
    b.dirty.reserve(3 * events.size());
    for (const auto& ev : events)
      for (const auto& part : ev.parts)
        want(wanted, part.projection,
             store_->specs()[part.projection].kind == ProjectionKind::mirror ? RowFamily::mirror
                                                                             : RowFamily::source,
             ev.key);
    load_wanted(wanted, b);
    for (const auto& ev : events)
      for (const auto& part : ev.parts) {
        if (store_->specs()[part.projection].kind != ProjectionKind::aggregate) continue;
        if (part.has_image) want(wanted, part.projection, RowFamily::group, part.group);
        const std::string ck = cache_key(part.projection, RowFamily::source, ev.key);
        const RowState* src = cache_.peek(ck);
        if (!src)
          if (auto it = b.loaded.find(ck); it != b.loaded.end()) src = &it->second;
        if (src && src->present) want(wanted, part.projection, RowFamily::group, src->data);
      }
    load_wanted(wanted, b);
  }

  // Per projection, per row family: the keys to read, and all keys asked for (no repeats).
  struct Wanted {
    explicit Wanted(size_t projections) : keys(projections) {}
    std::vector<std::vector<std::vector<std::string>>> keys;  // [projection][family]
    std::unordered_set<std::string> seen;                     // cache keys
  };
  static size_t family_index(RowFamily f) {
    return f == RowFamily::mirror ? 0 : f == RowFamily::group ? 1 : 2;
  }

  void want(Wanted& w, size_t p, RowFamily f, const std::string& key) {
    auto [ck, added] = w.seen.insert(cache_key(p, f, key));
    if (!added || cache_.peek(*ck)) return;
    auto& keys = w.keys[p];
    keys.resize(3);
    keys[family_index(f)].push_back(key);
  }

  void load_wanted(Wanted& w, BatchState& b) {
    static constexpr RowFamily kFamilies[] = {RowFamily::mirror, RowFamily::group,
                                              RowFamily::source};
    std::vector<ProjectionStore::KeyRead> reads;
    for (size_t p = 0; p < w.keys.size(); ++p)
      for (size_t i = 0; i < w.keys[p].size(); ++i) {
        if (w.keys[p][i].empty()) continue;
        reads.push_back({p, kFamilies[i], std::move(w.keys[p][i]), cache_key(p, kFamilies[i], "")});
        w.keys[p][i].clear();
      }
    store_->load_all(reads, b.loaded);
  }

  void flush(BatchState& b) {
    const int64_t now = wall_ms();
    for (Dirty* d : b.order)
      if (d->changed)
        store_->save(d->projection, d->family, d->key, d->now, d->before, now, affinity(*d));
    for (auto& [entry, row] : b.outbox) store_->outbox_add(entry, now, row ? affinity(*row) : 0);
    b.outbox.clear();
    store_->write_queued();
    b.order.clear();
  }

  std::string truncated_at(const BatchState& b, size_t p) const {
    for (auto it = b.truncated.rbegin(); it != b.truncated.rend(); ++it)
      if (it->first == p) return it->second;
    return truncated_at_[p];
  }

  void apply(const ChangeEvent& ev, BatchState& b, std::vector<Derived>& derived, Tally& tally) {
    auto found = by_table_.find(ev.table);
    if (found == by_table_.end()) {
      ++tally.unprojected;
      return;
    }
    if (ev.op == 't') {
      for (size_t p : found->second) {
        if (ev.position <= truncated_at(b, p)) {
          ++tally.replayed;
          continue;
        }
        // Rows written so far in this batch go first; then the older rows are cleared.
        flush(b);
        b.dirty.clear();
        b.loaded.clear();  // read before the truncate
        cache_.clear();
        if (store_->specs()[p].kind == ProjectionKind::aggregate) {
          // Take the truncated source rows' contributions out of their groups.
          for (const auto& [key, src] : store_->sources_before(p, ev.position)) {
            Dirty& g = row(b, p, RowFamily::group, src.data);
            if (!g.now.present) continue;
            g.changed = true;
            for (size_t i = 0; i < src.sums.size() && i < g.now.sums.size(); ++i)
              g.now.sums[i] -= src.sums[i];
            g.now.rows -= 1;
            g.now.position = ev.position;
            // Gone with the truncate unless a later event (another lane) already touched it.
            if (g.now.rows <= 0 && g.now.last_position < ev.position) g.now = RowState{};
          }
          flush(b);
          b.dirty.clear();
          cache_.clear();
        }
        store_->truncate(p, ev.position);
        b.truncated.emplace_back(p, ev.position);
        ++tally.applied;
        derived.push_back({ev.index, store_->specs()[p].name,
                           derived_json(p, "clear", "null", "null", "null", ev), p});
      }
      return;
    }
    for (const auto& part : ev.parts) {
      if (ev.position <= truncated_at(b, part.projection)) {
        ++tally.replayed;
        continue;
      }
      if (store_->specs()[part.projection].kind == ProjectionKind::mirror)
        apply_mirror(ev, part, b, derived, tally);
      else
        apply_aggregate(ev, part, b, derived, tally);
    }
  }

  void apply_mirror(const ChangeEvent& ev, const Contribution& part, BatchState& b,
                    std::vector<Derived>& derived, Tally& tally) {
    Dirty& d = row(b, part.projection, RowFamily::mirror, ev.key);
    RowState& st = d.now;
    if (!st.position.empty() && ev.position <= st.position) {
      ++tally.replayed;
      return;
    }
    d.changed = true;
    if (part.has_image) {
      // Unchanged TOASTed columns come as a placeholder: the stored row still has their value.
      const std::string data = st.present && !part.unavailable.empty()
                                   ? fill_unavailable(part.data, part.unavailable, st.data)
                                   : part.data;
      if (st.present && st.data == data) {
        st.position = ev.position;
        ++tally.noop;
        return;
      }
      derived.push_back({ev.index, ev.key,
                         derived_json(part.projection, st.present ? "update" : "insert", ev.key,
                                      st.present ? st.data : "null", data, ev),
                         part.projection, &d});
      st.present = true;
      st.tombstone = false;
      st.data = data;
    } else {
      if (st.present) {
        derived.push_back({ev.index, ev.key,
                           derived_json(part.projection, "delete", ev.key, st.data, "null", ev),
                           part.projection, &d});
      } else {
        ++tally.noop;
      }
      st.present = false;
      st.tombstone = true;
      st.data.clear();
    }
    st.position = ev.position;
    ++tally.applied;
  }

  void apply_aggregate(const ChangeEvent& ev, const Contribution& part, BatchState& b,
                       std::vector<Derived>& derived, Tally& tally) {
    const size_t p = part.projection;
    const ProjectionSpec& spec = store_->specs()[p];
    Dirty& src_row = row(b, p, RowFamily::source, ev.key);
    RowState& src = src_row.now;
    if (!src.position.empty() && ev.position <= src.position) {
      // Its row has moved on, but `last` is a maximum over every event of the group: taking
      // the older event into it keeps `last` the same in whatever order events arrive.
      if (part.has_image && spec.last_count() > 0) raise_last(ev, part, b, derived);
      ++tally.replayed;
      return;
    }
    src_row.changed = true;
    const bool had = src.present;
    if (had && part.has_image && src.data == part.group && src.sums == part.sums &&
        src.lasts == part.lasts) {
      src.position = ev.position;
      ++tally.noop;
      return;
    }
    // Group images before this event, for the derived events.
    std::vector<std::string> groups;
    if (had) groups.push_back(src.data);
    if (part.has_image && (!had || part.group != src.data)) groups.push_back(part.group);
    std::vector<std::string> old_images;
    for (const auto& g : groups)
      old_images.push_back(group_json(spec, row(b, p, RowFamily::group, g).now));

    if (had) {
      Dirty& g = row(b, p, RowFamily::group, src.data);
      join(src_row, g);
      g.changed = true;
      for (size_t i = 0; i < src.sums.size() && i < g.now.sums.size(); ++i)
        g.now.sums[i] -= src.sums[i];
      g.now.rows -= 1;
      g.now.position = ev.position;
      // A group whose rows are all gone stays (count 0) and keeps its `last`: deleting it would
      // make `last` depend on the order in which lanes and partitions deliver its events.
    }
    if (part.has_image) {
      Dirty& g = row(b, p, RowFamily::group, part.group);
      join(src_row, g);
      g.changed = true;
      if (!g.now.present) {
        g.now = RowState{};
        g.now.present = true;
        g.now.sums.assign(spec.sum_count(), 0.0);
        g.now.lasts.assign(spec.last_count(), "null");
      }
      for (size_t i = 0; i < part.sums.size(); ++i) g.now.sums[i] += part.sums[i];
      g.now.rows += 1;
      // "last" follows the newest contributing event; ties (one snapshot position) by key.
      std::string order = ev.position + "|" + ev.key;
      if (order > g.now.last_position) {
        g.now.lasts = part.lasts;
        g.now.last_position = std::move(order);
      }
      g.now.position = ev.position;
    }
    for (size_t i = 0; i < groups.size(); ++i) {
      Dirty& g = row(b, p, RowFamily::group, groups[i]);
      const std::string new_image = group_json(spec, g.now);
      if (new_image == old_images[i]) continue;
      const char* op = old_images[i] == "null" ? "insert"
                       : new_image == "null"   ? "delete"
                                               : "update";
      derived.push_back(
          {ev.index, groups[i],
           derived_json(p, op, group_key_json(groups[i]), old_images[i], new_image, ev), p, &g});
    }
    src.present = part.has_image;
    src.tombstone = !part.has_image;
    src.data = part.has_image ? part.group : std::string();
    src.sums = part.has_image ? part.sums : std::vector<double>{};
    src.lasts = part.has_image ? part.lasts : std::vector<std::string>{};
    src.position = ev.position;
    ++tally.applied;
  }

  void raise_last(const ChangeEvent& ev, const Contribution& part, BatchState& b,
                  std::vector<Derived>& derived) {
    const size_t p = part.projection;
    const ProjectionSpec& spec = store_->specs()[p];
    std::string order = ev.position + "|" + ev.key;
    Dirty& g = row(b, p, RowFamily::group, part.group);
    if (order <= g.now.last_position) return;
    const std::string old_image = group_json(spec, g.now);
    if (!g.now.present) {
      g.now = RowState{};
      g.now.present = true;
      g.now.sums.assign(spec.sum_count(), 0.0);
      g.now.lasts.assign(spec.last_count(), "null");
      g.now.position = ev.position;
    }
    g.now.lasts = part.lasts;
    g.now.last_position = std::move(order);
    g.changed = true;
    const std::string new_image = group_json(spec, g.now);
    if (new_image != old_image)
      derived.push_back({ev.index, part.group,
                         derived_json(p, old_image == "null" ? "insert" : "update",
                                      group_key_json(part.group), old_image, new_image, ev),
                         p, &g});
  }

  static std::string group_key_json(const std::string& g) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.String(g.c_str(), static_cast<rapidjson::SizeType>(g.size()));
    return {sb.GetString(), sb.GetSize()};
  }

  static std::string group_json(const ProjectionSpec& spec, const RowState& g) {
    if (!g.present) return "null";
    std::string out = "{";
    size_t si = 0, li = 0;
    for (const auto& f : spec.fields) {
      if (out.size() > 1) out += ',';
      out += '"';
      out += f.column;
      out += "\":";
      if (f.fold == Fold::sum)
        out += format_number(si < g.sums.size() ? g.sums[si++] : 0.0);
      else if (f.fold == Fold::count)
        out += std::to_string(g.rows);
      else
        out += li < g.lasts.size() ? g.lasts[li++] : "null";
    }
    return out + "}";
  }

  std::string derived_json(size_t p, const char* op, const std::string& key_json,
                           const std::string& old_json, const std::string& new_json,
                           const ChangeEvent& ev) const {
    std::string out;
    out.reserve(160 + key_json.size() + old_json.size() + new_json.size());
    // Appended piece by piece: no temporary strings.
    for (std::string_view piece :
         {std::string_view(R"({"projection":")"), std::string_view(store_->specs()[p].name),
          std::string_view(R"(","op":")"), std::string_view(op), std::string_view(R"(","key":)"),
          std::string_view(key_json), std::string_view(R"(,"old":)"), std::string_view(old_json),
          std::string_view(R"(,"new":)"), std::string_view(new_json),
          std::string_view(R"(,"source":{"table":")"), std::string_view(ev.table),
          std::string_view(R"(","op":")"), std::string_view(&ev.op, 1),
          std::string_view(R"(","position":")"), std::string_view(ev.position),
          std::string_view(R"(","ts_ms":)"), std::string_view(ev.ts_ms), std::string_view("}}")})
      out += piece;
    return out;
  }

  sluice::Host& host_;
  std::string topic_;
  bool emit_;
  int64_t outbox_retention_ms_;
  std::string outbox_pruned_at_;  // the highest position the outbox dropped
  int64_t last_prune_ms_ = 0;
  std::string unavailable_value_;
  Input input_;
  sluice_cdc::DebeziumDecoder decoder_;  // debezium inputs
  std::mutex mu_;                        // guards the store, the cache and truncated_at_
  RowCache<RowState> cache_;
  std::unique_ptr<ProjectionStore> store_;
  std::optional<WriterTuner> tuner_;  // `writers: auto` on PostgreSQL
  std::vector<std::string> truncated_at_;
  std::unordered_map<std::string, std::vector<size_t>> by_table_;
};

}  // namespace
}  // namespace sluice_projection

SLUICE_MODULE("projection", "0.1.0",
              SLUICE_TRANSFORM(sluice_projection::ProjectionTransform, "projection"))
