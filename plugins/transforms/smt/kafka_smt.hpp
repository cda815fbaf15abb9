// What sluice's Kafka Connect transforms (SMTs) share: Kafka-style config, field paths, the
// JsonConverter {schema, payload} envelope, predicates, and the record-at-a-time driver.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <sluice/sdk.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sluice::smt {

// What Kafka throws as a DataException: the record is rejected with this message.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- Kafka-style config: every value may be a string, as in a .properties file ----

// The text of a scalar option (strings, numbers and booleans alike), or `fallback`.
std::string option(const Config& c, const char* name, std::string fallback = {});
// A Kafka list option: a comma-separated string or a list, items trimmed, empties dropped.
std::vector<std::string> list_option(const Config& c, const char* name);
// A scalar option that must be given and not be empty.
std::string required_option(const Config& c, const char* name);
// A list option that must name at least one item.
std::vector<std::string> required_list(const Config& c, const char* name);
// A Kafka boolean option: true/false, as a boolean or as text.
bool bool_option(const Config& c, const char* name, bool fallback);

// ---- Field paths (field.syntax.version V1: one name; V2: dotted, backticks escape) ----

using FieldPath = std::vector<std::string>;
FieldPath parse_path(const std::string& text, bool v2);
bool syntax_v2(const Config& c);  // reads field.syntax.version (V1 or V2)

// ---- One side (key or value) of a record, parsed when first asked for ----

// Connect schemas that repeat from record to record (every change event of a table carries the
// same one), parsed once, and the schemas the transforms make of them, made once: a schema'd
// record's schema is most of its bytes, so parsing, rebuilding and writing it per record was most
// of a chain's time. A cached schema is immutable and lives until trim(), which runs only between
// batches (no record refers to one then). Bounded: past its limits nothing more is cached and the
// records are transformed as before, schema and all.
class SchemaCache {
 public:
  struct Schema {
    rapidjson::Value value;
    std::string text;  // its JSON as rapidjson's Writer writes it
  };
  SchemaCache() = default;
  SchemaCache(const SchemaCache&) = delete;
  SchemaCache& operator=(const SchemaCache&) = delete;
  // The schema of this JSON text, parsed and checked once; nullptr when the text is not a valid
  // struct-or-primitive schema (the record's own parse then says why) or the cache is full.
  const Schema* intern(std::string_view text);
  // The schema found last with its text (a valid one), or nullptr: the records of a table come
  // in runs, so the next record most likely starts with the same text.
  const Schema* last(std::string_view& text) const;
  // The schema `owner` made of `in` (with `variant`, what else the result depends on), if kept.
  const Schema* find(const void* owner, const Schema* in, int variant) const;
  // Keeps a deep copy of `made` as what `owner` makes of `in`; nullptr when the cache is full.
  const Schema* remember(const void* owner, const Schema* in, int variant,
                         const rapidjson::Value& made);
  // Empties the cache once it is full, so that a pipeline whose schemas keep changing is cached
  // again. Only between batches.
  void trim();
  // How many schemas it holds, at most kMaxSchemas.
  size_t size() const { return schemas_.size(); }
  static constexpr size_t kMaxSchemas = 256;

 private:
  const Schema* keep(std::string_view text);
  struct Interned {
    std::string bytes;
    const Schema* schema;
  };
  struct Made {
    const void* owner;
    const Schema* in;
    int variant;
    const Schema* out;
  };
  static constexpr size_t kMaxBytes = 1 << 20;
  bool full() const { return schemas_.size() >= kMaxSchemas || bytes_ >= kMaxBytes; }
  rapidjson::MemoryPoolAllocator<> pool_;
  std::deque<Schema> schemas_;  // a deque: a new one moves none of the others
  std::vector<Interned> interned_;
  std::vector<Made> made_;
  size_t bytes_ = 0;
  size_t last_ = 0;  // the interned entry last found: records of one table come in runs
};

// The memory of the records of one batch, one record at a time: the documents of a record, the
// copy they parse in place and the JSON written of them all come from it, and `next()` takes it
// back for the next record (no allocation per record while a record fits its first block). Its
// schema cache outlives batches: a transform keeps its scratches (ScratchPool).
class Scratch {
 public:
  Scratch() : block_(kBlock), pool_(block_.data(), block_.size()) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  rapidjson::MemoryPoolAllocator<>& pool() { return pool_; }
  SchemaCache& schemas() { return schemas_; }
  // An empty buffer for the JSON written of one side, valid until next(): the buffers keep their
  // memory from record to record, so writing a record allocates nothing.
  rapidjson::StringBuffer& buffer() {
    if (used_ == buffers_.size()) buffers_.emplace_back();
    rapidjson::StringBuffer& b = buffers_[used_++];
    b.Clear();
    return b;
  }
  // Every record loaded with this scratch must be gone.
  void next() {
    pool_.Clear();
    used_ = 0;
  }
  // Between batches: the output buffers give back what a large record made them take (they keep
  // up to kKeepBuffer each), so that a scratch kept for later batches holds little.
  void release_large_buffers() {
    for (auto& b : buffers_)
      if (b.stack_.GetCapacity() > kKeepBuffer) {
        b.Clear();
        b.ShrinkToFit();
      }
  }
  // The bytes its output buffers hold.
  size_t buffer_bytes() const {
    size_t n = 0;
    for (const auto& b : buffers_) n += b.stack_.GetCapacity();
    return n;
  }

 private:
  static constexpr size_t kBlock = 256 * 1024;
  static constexpr size_t kKeepBuffer = 1 << 20;
  std::vector<char> block_;
  rapidjson::MemoryPoolAllocator<> pool_;
  std::deque<rapidjson::StringBuffer> buffers_;  // a deque: a new one moves none of the others
  size_t used_ = 0;
  SchemaCache schemas_;
};

// The scratches of one transform instance: process() may run on several threads at once, each
// call takes one for its batch and gives it back, so the schema caches last from batch to batch.
// There are at most as many as calls ever ran at once.
class ScratchPool {
 public:
  class Lease {
   public:
    Lease(ScratchPool& pool, std::unique_ptr<Scratch> s) : pool_(pool), s_(std::move(s)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.give(std::move(s_)); }
    Scratch& operator*() { return *s_; }

   private:
    ScratchPool& pool_;
    std::unique_ptr<Scratch> s_;
  };
  Lease take();

 private:
  void give(std::unique_ptr<Scratch> s);
  std::mutex mutex_;
  std::vector<std::unique_ptr<Scratch>> free_;
};

class Data {
 public:
  // The documents and the written JSON use `scratch`'s memory when given, else their own.
  Data(std::optional<std::string_view> raw, bool schemas, Scratch* scratch = nullptr)
      : raw_(raw),
        schemas_(schemas),
        scratch_(scratch),
        pool_(scratch ? &scratch->pool() : nullptr) {}
  // The Connect value is null: a tombstone, a null key, or a null payload with a schema.
  bool is_null();
  // The side would be written as absent (a tombstone's value, a null key): what the next
  // transform would see as no bytes. Parses nothing that is not parsed yet.
  bool absent();
  // The Connect value: the payload of an envelope, or the whole JSON without schemas.
  rapidjson::Value& payload();
  // The Connect schema, or nullptr when the data has none (schemaless or null). To change: a
  // cached schema is first copied into the record.
  rapidjson::Value* schema();
  // The same to read only: no copy of a cached schema.
  const rapidjson::Value* schema_view();
  // The cached schema the data has (see SchemaCache), or nullptr when its schema is its own or
  // it has none: what a transform may look its result up by.
  const SchemaCache::Schema* cached_schema();
  // The cache of this record's scratch, or nullptr.
  SchemaCache* schema_cache() { return scratch_ ? &scratch_->schemas() : nullptr; }
  rapidjson::Document::AllocatorType& allocator() { return doc().GetAllocator(); }
  // Replaces the whole side; `schema` only counts with schemas.enable. Both are moved, not
  // copied (a deep copy of a schema costs about what parsing it does): `schema` is left null,
  // and its strings must live as long as the record (this record's documents or its input).
  void set(rapidjson::Value&& payload, rapidjson::Value* schema);
  // The same with a cached schema (schemas.enable only).
  void set_cached(rapidjson::Value&& payload, const SchemaCache::Schema* schema);
  // Replaces the payload and keeps the schema.
  void set_payload(rapidjson::Value&& payload);
  void set_null();
  // The bytes to write: unchanged input, new JSON, or nullopt for null.
  std::optional<std::string_view> bytes();

 private:
  rapidjson::Document& doc();
  bool parse_split();
  void parse_whole();
  char* insitu_copy(std::string_view text);
  std::optional<std::string_view> write_split();
  std::optional<std::string_view> raw_;
  bool schemas_;
  Scratch* scratch_;
  rapidjson::MemoryPoolAllocator<>* pool_;
  std::optional<rapidjson::Document> doc_;
  // Split: an envelope whose schema is cached. doc_ holds the payload alone, and the schema is
  // `cached_`, or `own_` once a transform changed it (or nothing: a null schema).
  bool split_ = false;
  const SchemaCache::Schema* cached_ = nullptr;
  bool owns_schema_ = false;
  rapidjson::Value own_;
  // The document's own copy of the input, parsed in place (its strings point into it; the pool's
  // or a vector's, so that moving a Data never moves the characters).
  std::vector<char> insitu_;
  bool changed_ = false;
  // The JSON of a changed side without a scratch. A StringBuffer: rapidjson writes strings into
  // one with SIMD.
  std::optional<rapidjson::StringBuffer> written_;
};

// A header value is nullopt for a null header (Kafka's headers may be null).
using Headers = std::vector<std::pair<std::string, std::optional<std::string>>>;

// A record being transformed.
struct Record {
  Data key;
  Data value;
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  Headers headers;
};

// ---- Predicates (HasHeaderKey, RecordIsTombstone, TopicNameMatches) ----

// What a predicate looks at: the record as the transform gets it (an input record, or within a
// chain the record as the steps before left it).
class Subject {
 public:
  virtual ~Subject() = default;
  virtual std::string_view topic() const = 0;
  virtual bool tombstone() const = 0;
  virtual bool has_header(std::string_view name) const = 0;
};

// A record of a batch as a Subject.
class ViewSubject final : public Subject {
 public:
  explicit ViewSubject(const RecordView& r) : r_(r) {}
  std::string_view topic() const override { return r_.topic(); }
  bool tombstone() const override { return !r_.has_value(); }
  bool has_header(std::string_view name) const override { return r_.header(name).has_value(); }

 private:
  const RecordView& r_;
};

// A record being transformed as a Subject.
class RecordSubject final : public Subject {
 public:
  explicit RecordSubject(Record& r) : r_(r) {}
  std::string_view topic() const override { return r_.topic; }
  bool tombstone() const override { return r_.value.absent(); }
  bool has_header(std::string_view name) const override {
    for (const auto& h : r_.headers)
      if (h.first == name) return true;
    return false;
  }

 private:
  Record& r_;
};

using Predicate = std::function<bool(const Subject&)>;
// Reads `predicate: {type: ..., <Kafka's keys>}` and `negate`; always true when absent.
Predicate predicate_option(const Config& c);

// ---- Helpers on Connect values ----

std::string type_name(const rapidjson::Value& v);
// Java's Double.toString: shortest digits, scientific below 1e-3 and from 1e7.
std::string java_double(double v);  // as Kafka names Java types in errors
// Kafka's requireMap: the schemaless value must be an object.
rapidjson::Value& require_map(rapidjson::Value& v, const char* purpose);
rapidjson::Value str(std::string_view s, rapidjson::Document::AllocatorType& a);
// The Connect value of a side, for the transforms that do not handle schemas yet: a record
// with a schema is rejected.
rapidjson::Value& schemaless(Data& d);
// A Java replacement string ($n and ${name} groups, backslash escapes) applied to a match;
// names[i] is the name of group i + 1 (or "").
std::string java_replacement(const std::string& repl, const std::smatch& m,
                             const std::vector<std::string>& names = {});
// A deep copy of `v` in `a`; strings the source holds by reference (its record's in-place parse,
// literals) stay references, as with rapidjson's copy. rapidjson 1.1 copies an object or array
// through a temporary Document, with a stack from malloc for each copy: this is about twice as
// fast, and copies like schemas are on every record's path.
rapidjson::Value copy_of(const rapidjson::Value& v, rapidjson::Document::AllocatorType& a);
// Sets `name` in object `o`, replacing an existing member in place.
void put(rapidjson::Value& o, std::string_view name, rapidjson::Value&& v,
         rapidjson::Document::AllocatorType& a);

// ---- Connect schemas, in the JsonConverter's JSON form ({"type": "struct", "fields": [..]}) ----

// Kafka's requireStruct: the side's schema must be a struct schema; returns it.
rapidjson::Value& require_struct(Data& d, const char* purpose);
// The same, to read only: a cached schema is not copied.
const rapidjson::Value& require_struct_view(Data& d, const char* purpose);
// The schema of field `name` of a struct schema, or nullptr.
rapidjson::Value* field_schema(rapidjson::Value& struct_schema, std::string_view name);
const rapidjson::Value* field_schema(const rapidjson::Value& struct_schema, std::string_view name);
// An empty struct schema with the name, version, doc, parameters and optionality of `like`
// (Kafka's SchemaUtil.copySchemaBasics).
rapidjson::Value struct_like(const rapidjson::Value& like, rapidjson::Document::AllocatorType& a);
// Appends a copy of `schema` as field `name` to the struct schema `out`.
void add_field(rapidjson::Value& out, std::string_view name, const rapidjson::Value& schema,
               rapidjson::Document::AllocatorType& a);
// The same without the copy, for a schema being rebuilt from the one it replaces: `schema` is
// moved (left null), so its old struct must not be read again. `name` may point into it.
void move_field(rapidjson::Value& out, std::string_view name, rapidjson::Value& schema,
                rapidjson::Document::AllocatorType& a);
// A primitive schema {"type", "optional"}, with a logical `name` and version 1 when given.
rapidjson::Value primitive_schema(const char* type, bool optional,
                                  rapidjson::Document::AllocatorType& a,
                                  const char* name = nullptr);

// A schema a transform makes of a record's: when the record's schema is a cached one, it is made
// once per distinct schema and `variant` (what else the result depends on) and kept in the cache;
// else (or once the cache is full) made into the record. `make(allocator)` builds it, reading the
// input schema only, and may throw a DataError (nothing is kept then).
struct NewSchema {
  const SchemaCache::Schema* cached = nullptr;
  rapidjson::Value own;
};
template <class Make>
NewSchema make_schema(Data& d, const void* owner, int variant, Make make) {
  NewSchema out;
  const SchemaCache::Schema* in = d.cached_schema();
  SchemaCache* cache = d.schema_cache();
  if (in && (out.cached = cache->find(owner, in, variant))) return out;
  out.own = make(d.allocator());
  if (in) out.cached = cache->remember(owner, in, variant, out.own);
  return out;
}
// Replaces the side with `payload` and the new schema.
inline void set_new(Data& d, rapidjson::Value&& payload, NewSchema& schema) {
  if (schema.cached)
    d.set_cached(std::move(payload), schema.cached);
  else
    d.set(std::move(payload), &schema.own);
}

// `target: key|value` (for SMTs Kafka has as $Key and $Value).
enum class Target { key, value };
Target target_option(const Config& c);
inline Data& side(Record& r, Target t) { return t == Target::key ? r.key : r.value; }

// ---- The driver ----

// Declares what every SMT accepts: predicate, negate, schemas.enable (and target).
void declare_common(ConfigSchema& s, bool has_target);

// A record of a batch, loaded for transforming (its JSON is parsed when first asked for, in
// `scratch`'s memory).
Record load_record(const RecordView& r, bool schemas, Scratch& scratch);
// Appends the transformed record, derived from input record `i`.
void emit_record(Output& out, size_t i, Record& rec);

// One SMT with its predicate, applied to a loaded record: a stage of its own (Transform below)
// or a step of the `chain` transform (chain.cpp), which parses and writes each record once.
class Step {
 public:
  virtual ~Step() = default;
  virtual bool applies(const Subject& s) const = 0;
  // False drops the record; a DataError rejects it.
  virtual bool apply(Record& r) = 0;
};

template <class Impl>
class StepOf final : public Step {
 public:
  explicit StepOf(const Config& c) : impl_(c), applies_(predicate_option(c)) {}
  bool applies(const Subject& s) const override { return applies_(s); }
  bool apply(Record& r) override { return impl_.apply(r); }

 private:
  Impl impl_;
  Predicate applies_;
};

// Runs `apply` on each record the predicate selects; `apply` returns false to drop the record.
// A DataError rejects the record with its message.
template <class Impl>
class Transform final : public sluice::Transform {
 public:
  static ConfigSchema schema() {
    ConfigSchema s;
    Impl::declare(s);
    declare_common(s, Impl::kHasTarget);
    s.validator([](const Config& c) { Impl{c}; });
    s.validator([](const Config& c) { predicate_option(c); });
    return s;
  }
  static std::string description() { return Impl::kDescription; }

  Transform(const Config& c, Host& /*host*/)
      : step_(c), schemas_(bool_option(c, "schemas.enable", false)) {}

  void process(const Batch& in, Output& out) override {
    ScratchPool::Lease lease = scratches_.take();
    Scratch& scratch = *lease;
    for (size_t i = 0; i < in.size(); ++i) {
      const RecordView r = in[i];
      if (!step_.applies(ViewSubject(r))) {
        out.forward(i, r);
        continue;
      }
      scratch.next();
      Record rec = load_record(r, schemas_, scratch);
      try {
        if (step_.apply(rec)) emit_record(out, i, rec);
      } catch (const DataError& e) {
        out.reject(i, std::string(Impl::kName) + ": " + e.what());
      }
    }
  }

 private:
  StepOf<Impl> step_;
  bool schemas_;
  ScratchPool scratches_;
};

// What the `chain` transform knows of an SMT: its name, its config schema and a step maker.
struct StepType {
  const char* name;
  ConfigSchema (*schema)();
  std::unique_ptr<Step> (*make)(const Config&);
};

template <class Impl>
StepType step_type() {
  return {Impl::kName, &Transform<Impl>::schema, [](const Config& c) -> std::unique_ptr<Step> {
            return std::make_unique<StepOf<Impl>>(c);
          }};
}

inline constexpr const char* kModuleVersion = "0.1.0";

// The plugin entry of one SMT, for the module's list (module.cpp).
template <class Impl>
detail::PluginEntry plugin_table() {
  return detail::Adapter<Transform<Impl>, SLUICE_KIND_TRANSFORM>::entry(Impl::kName,
                                                                        kModuleVersion);
}

}  // namespace sluice::smt
