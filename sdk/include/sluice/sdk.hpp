// The C++ layer over abi.h: base classes, config schema builder, and the registration macro.
//
// A plugin author writes a class derived from sluice::Source, sluice::Transform or
// sluice::Sink with a constructor `T(const sluice::Config&, sluice::Host&)` and a static
// `sluice::ConfigSchema schema()`, then registers it:
//
//   SLUICE_MODULE("acme", "1.2.0", SLUICE_SOURCE(FileSource, "file"), SLUICE_SINK(HttpSink,
//   "http"))
//
// schema() and description() run in the module's init, not in the entry point (abi.h: the entry
// point runs no plugin code); an exception there fails the load with its message.
//
// Every entry point is a noexcept shim: sluice::Retriable becomes SLUICE_RETRY, sluice::Fatal
// SLUICE_FATAL, any other exception SLUICE_ERROR with its what(). Nothing C++ crosses the ABI.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/abi.h"

namespace sluice {

// ---------------------------------------------------------------------------------------------
// Errors a plugin throws; the shims turn them into statuses.

// Transient: the host retries the call with backoff.
class Retriable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The stage cannot go on: its pipeline stops cleanly.
class Fatal : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A config value is wrong; `field` lets the host point at its FILE:LINE:COL.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string field, const std::string& message)
      : std::runtime_error(message), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// ---------------------------------------------------------------------------------------------
// Byte views.

inline std::string_view as_view(sluice_bytes b) {
  return b.ptr ? std::string_view(reinterpret_cast<const char*>(b.ptr), b.len) : std::string_view();
}
inline sluice_bytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline sluice_bytes as_bytes(const std::optional<std::string_view>& s) {
  if (!s) return {nullptr, 0};
  // An empty but present value still needs a non-null pointer.
  static const uint8_t kEmpty = 0;
  return {s->empty() ? &kEmpty : reinterpret_cast<const uint8_t*>(s->data()), s->size()};
}

// JSON helpers. RapidJSON parses and writes recursively, so a value nested deeper than a plugin
// can afford must be refused before it is parsed: this scan needs no recursion.
constexpr size_t kMaxJsonDepth = 256;
// A plugin's config schema (config_schema_json) nested deeper than this is refused by the host.
constexpr size_t kMaxSchemaDepth = 64;
inline size_t json_nesting_depth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest) deepest = depth;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// What parse_json_within found: a document, a text nested deeper than the limit, or the
// reader's error (its code and byte offset).
struct JsonParse {
  bool too_deep = false;
  rapidjson::ParseResult error;
  bool ok() const { return !too_deep && !error.IsError(); }
};

namespace detail {
// Builds a Document as its own handler does, and stops the reader at the first level past the
// limit: the reader recurses once per level, so it never goes deeper than that.
class DepthLimitedHandler {
 public:
  DepthLimitedHandler(rapidjson::Document& doc, size_t limit) : doc_(doc), limit_(limit) {}
  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return doc_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc_.String(s, n, copy); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc_.Key(s, n, copy); }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) { return leave() && doc_.EndObject(n); }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return leave() && doc_.EndArray(n); }
  bool too_deep() const { return too_deep_; }

 private:
  bool enter() {
    too_deep_ = ++depth_ > limit_;
    return !too_deep_;
  }
  bool leave() {
    --depth_;
    return true;
  }
  rapidjson::Document& doc_;
  size_t limit_;
  size_t depth_ = 0;
  bool too_deep_ = false;
};

template <unsigned Flags, typename Stream>
JsonParse parse_json_within(rapidjson::Document& doc, Stream& in, size_t limit) {
  JsonParse out;
  auto generate = [&](rapidjson::Document& d) {
    DepthLimitedHandler handler(d, limit);
    rapidjson::Reader reader;
    out.error = reader.Parse<Flags>(in, handler);
    out.too_deep = handler.too_deep();
    return !out.error.IsError();
  };
  doc.Populate(generate);
  if (out.too_deep) out.error = rapidjson::ParseResult();
  if (!out.ok()) doc.SetNull();  // not the value of an earlier parse
  return out;
}
}  // namespace detail

// doc.Parse(text), refusing a value nested deeper than `limit` in the same pass, where a
// json_nesting_depth scan before the parse reads the text twice. On failure `doc` is null.
// Flags as Parse's (rapidjson::kParseValidateEncodingFlag to refuse text that is not UTF-8).
template <unsigned Flags = rapidjson::kParseDefaultFlags>
JsonParse parse_json_within(rapidjson::Document& doc, std::string_view text,
                            size_t limit = kMaxJsonDepth) {
  rapidjson::MemoryStream bytes(text.data(), text.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);
  return detail::parse_json_within<Flags>(doc, in, limit);
}

// The same in place (doc.ParseInsitu): `text` must end with a NUL, and the document's strings
// point into it.
inline JsonParse parse_json_within_insitu(rapidjson::Document& doc, char* text,
                                          size_t limit = kMaxJsonDepth) {
  rapidjson::InsituStringStream in(text);
  return detail::parse_json_within<rapidjson::kParseInsituFlag>(doc, in, limit);
}

// A read-only view of one record of a batch.
class RecordView {
 public:
  explicit RecordView(const sluice_record& r) : r_(&r) {}
  bool has_key() const { return r_->key.ptr != nullptr; }
  bool has_value() const { return r_->value.ptr != nullptr; }  // false for a tombstone
  std::string_view key() const { return as_view(r_->key); }
  std::string_view value() const { return as_view(r_->value); }
  std::string_view topic() const { return as_view(r_->topic); }
  int32_t partition() const { return r_->partition; }
  int64_t offset() const { return r_->offset; }
  int64_t timestamp_ms() const { return r_->timestamp_ms; }
  std::span<const sluice_header> headers() const { return {r_->headers, r_->header_count}; }
  std::optional<std::string_view> header(std::string_view name) const {
    for (const auto& h : headers())
      if (as_view(h.key) == name) return as_view(h.value);
    return std::nullopt;
  }
  const sluice_record& raw() const { return *r_; }

 private:
  const sluice_record* r_;
};

// A batch handed to a transform or sink: valid only during the call.
class Batch {
 public:
  explicit Batch(const sluice_batch& b) : b_(&b) {}
  size_t size() const { return b_->count; }
  bool empty() const { return b_->count == 0; }
  RecordView operator[](size_t i) const { return RecordView(b_->records[i]); }

  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = RecordView;
    using difference_type = std::ptrdiff_t;
    iterator(const sluice_record* p) : p_(p) {}
    RecordView operator*() const { return RecordView(*p_); }
    iterator& operator++() {
      ++p_;
      return *this;
    }
    bool operator==(const iterator& o) const { return p_ == o.p_; }

   private:
    const sluice_record* p_;
  };
  iterator begin() const { return {b_->records}; }
  iterator end() const { return {b_->records + b_->count}; }

 private:
  const sluice_batch* b_;
};

// A record being written. Views only: everything must stay valid until emit() returns.
struct OutRecord {
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;  // nullopt: a tombstone
  std::string_view topic;
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;

  // Starts from an input record: same key, value, topic, headers and position.
  static OutRecord from(const RecordView& in) {
    OutRecord r;
    if (in.has_key()) r.key = in.key();
    if (in.has_value()) r.value = in.value();
    r.topic = in.topic();
    for (const auto& h : in.headers()) r.headers.emplace_back(as_view(h.key), as_view(h.value));
    r.partition = in.partition();
    r.offset = in.offset();
    r.timestamp_ms = in.timestamp_ms();
    return r;
  }
};

// The host-owned output of a poll or process call, and the reject channel of put.
class Output {
 public:
  // `max_bytes`: the byte budget of a poll (sluice_poll_args::max_bytes); UINT64_MAX when none.
  explicit Output(sluice_writer* w, uint64_t max_bytes = UINT64_MAX)
      : w_(w), max_bytes_(max_bytes) {}

  // Source: true once the records emitted so far reach the poll's byte budget. A source stops
  // emitting then (the record that crossed the budget is already taken, which the ABI allows).
  bool full() const { return bytes_ >= max_bytes_; }
  // Bytes of key + value + headers emitted or forwarded so far.
  uint64_t bytes() const { return bytes_; }

  // Source: appends a new record.
  void emit(const OutRecord& r) { emit(SIZE_MAX, r); }
  // Transform: appends a record derived from input record `input_index`.
  void emit(size_t input_index, const OutRecord& r) {
    std::vector<sluice_header> hs;
    hs.reserve(r.headers.size());
    for (const auto& [k, v] : r.headers) hs.push_back({as_bytes(k), as_bytes(v)});
    sluice_record rec{};
    rec.struct_size = sizeof(rec);
    rec.key = as_bytes(r.key);
    rec.value = as_bytes(r.value);
    rec.topic = as_bytes(r.topic);
    rec.headers = hs.data();
    rec.header_count = hs.size();
    rec.partition = r.partition;
    rec.offset = r.offset;
    rec.timestamp_ms = r.timestamp_ms;
    append(input_index, rec);
  }
  // Transform: passes an input record on unchanged.
  void forward(size_t input_index, const RecordView& in) { append(input_index, in.raw()); }
  // Rejects one input record; the error policy decides where it goes.
  void reject(size_t input_index, std::string_view reason, bool retriable = false) {
    w_->reject(w_->host_ctx, input_index, retriable ? SLUICE_RETRY : SLUICE_ERROR, reason.data(),
               reason.size());
  }

 private:
  void append(size_t input_index, const sluice_record& rec) {
    if (w_->append(w_->host_ctx, input_index, &rec) != SLUICE_OK)
      throw std::runtime_error("host refused the record");
    bytes_ += rec.key.len + rec.value.len;
    for (size_t i = 0; i < rec.header_count; ++i)
      bytes_ += rec.headers[i].key.len + rec.headers[i].value.len;
  }

  sluice_writer* w_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Host services.

class Host {
 public:
  enum class Level : int32_t { trace, debug, info, warn, error };
  explicit Host(const sluice_host_api* api) : api_(api) {}

  void log(Level level, std::string_view message) const {
    api_->sluice_host_log(api_->host_ctx, static_cast<int32_t>(level), message.data(),
                          message.size());
  }
  void info(std::string_view m) const { log(Level::info, m); }
  void warn(std::string_view m) const { log(Level::warn, m); }
  void error(std::string_view m) const { log(Level::error, m); }
  void counter_add(const char* name, double delta) const {
    api_->sluice_host_counter_add(api_->host_ctx, name, delta);
  }
  void gauge_set(const char* name, double value) const {
    api_->sluice_host_gauge_set(api_->host_ctx, name, value);
  }
  double memory_pressure() const { return api_->sluice_host_memory_pressure(api_->host_ctx); }
  // The pipeline's memory limit in bytes, for sizing the plugin's own buffers; 0 if unknown (a
  // host older than ABI 1.3). See sluice_host_api::sluice_host_memory_limit.
  uint64_t memory_limit() const {
    if (!SLUICE_HAS_FIELD(api_, sluice_host_api, sluice_host_memory_limit) ||
        api_->sluice_host_memory_limit == nullptr)
      return 0;
    return api_->sluice_host_memory_limit(api_->host_ctx);
  }
  std::string_view instance_name() const { return api_->sluice_host_instance_name(api_->host_ctx); }
  // Sources only, from inside poll: see sluice_host_api::sluice_host_drain.
  bool drain(std::span<const sluice_position> partitions, uint32_t timeout_ms) const {
    if (!SLUICE_HAS_FIELD(api_, sluice_host_api, sluice_host_drain) ||
        api_->sluice_host_drain == nullptr)
      return false;
    return api_->sluice_host_drain(api_->host_ctx, partitions.data(), partitions.size(),
                                   timeout_ms) == SLUICE_OK;
  }
  const sluice_host_api* raw() const { return api_; }

 private:
  const sluice_host_api* api_;
};

// ---------------------------------------------------------------------------------------------
// Config: the JSON object the host hands to create(), already checked and defaulted.

class Config {
 public:
  Config(const char* json, size_t len) {
    doc_.Parse(json, len);
    if (doc_.HasParseError() || !doc_.IsObject())
      throw ConfigError("", "config is not a JSON object");
  }
  bool has(const char* name) const {
    auto it = doc_.FindMember(name);
    return it != doc_.MemberEnd() && !it->value.IsNull();
  }
  std::string get_string(const char* name, std::string fallback = {}) const {
    const auto* v = find(name);
    if (!v) return fallback;
    if (!v->IsString()) throw ConfigError(name, std::string(name) + " must be a string");
    return {v->GetString(), v->GetStringLength()};
  }
  int64_t get_int(const char* name, int64_t fallback = 0) const {
    const auto* v = find(name);
    if (!v) return fallback;
    if (!v->IsInt64()) throw ConfigError(name, std::string(name) + " must be an integer");
    return v->GetInt64();
  }
  double get_double(const char* name, double fallback = 0) const {
    const auto* v = find(name);
    if (!v) return fallback;
    if (!v->IsNumber()) throw ConfigError(name, std::string(name) + " must be a number");
    return v->GetDouble();
  }
  bool get_bool(const char* name, bool fallback = false) const {
    const auto* v = find(name);
    if (!v) return fallback;
    if (!v->IsBool()) throw ConfigError(name, std::string(name) + " must be a boolean");
    return v->GetBool();
  }
  std::vector<std::string> get_strings(const char* name) const {
    std::vector<std::string> out;
    const auto* v = find(name);
    if (!v) return out;
    if (!v->IsArray()) throw ConfigError(name, std::string(name) + " must be a list");
    for (const auto& e : v->GetArray()) {
      if (!e.IsString()) throw ConfigError(name, std::string(name) + " must be a list of strings");
      out.emplace_back(e.GetString(), e.GetStringLength());
    }
    return out;
  }
  // The raw JSON value (lists, objects), or nullptr when absent.
  const rapidjson::Value* find(const char* name) const {
    auto it = doc_.FindMember(name);
    return it == doc_.MemberEnd() || it->value.IsNull() ? nullptr : &it->value;
  }
  const rapidjson::Document& json() const { return doc_; }

 private:
  rapidjson::Document doc_;
};

// ---------------------------------------------------------------------------------------------
// Config schema builder, in the spirit of Kafka Connect's ConfigDef.

class ConfigSchema {
 public:
  enum class Type { string, integer, number, boolean, list, object };
  // What `sluice validate` checks of a path field: an input must exist and be readable, an
  // output's folder must exist and be writable; for any other path the folder must exist.
  enum class PathKind { any, input, output };
  using Validator = std::function<void(const Config&)>;  // throws ConfigError

 private:
  struct FieldSpec {
    std::string name;
    Type type = Type::string;
    std::string doc;
    bool required = false;
    bool secret = false;
    bool path = false;
    const char* path_kind = "any";  // "input" | "output" | "any", for `sluice validate`
    std::string default_json;
    std::vector<std::string> one_of;
    std::optional<double> min, max;
  };

 public:
  class Field {
   public:
    Field(ConfigSchema& owner, size_t index) : owner_(&owner), index_(index) {}
    Field& doc(std::string text) {
      spec().doc = std::move(text);
      return *this;
    }
    Field& required() {
      spec().required = true;
      return *this;
    }
    Field& secret() {
      spec().secret = true;
      return *this;
    }
    // A filesystem path: the host resolves a relative one against the pipeline file's folder.
    // `sluice validate` checks it as `kind` says.
    Field& path(PathKind kind = PathKind::any) {
      spec().path = true;
      spec().path_kind = kind == PathKind::input    ? "input"
                         : kind == PathKind::output ? "output"
                                                    : "any";
      return *this;
    }
    Field& default_value(std::string v) {
      spec().default_json = quote(v);
      return *this;
    }
    Field& default_value(const char* v) { return default_value(std::string(v)); }
    Field& default_value(int64_t v) {
      spec().default_json = std::to_string(v);
      return *this;
    }
    Field& default_value(int v) { return default_value(static_cast<int64_t>(v)); }
    Field& default_value(double v) {
      spec().default_json = number(v);
      return *this;
    }
    Field& default_value(bool v) {
      spec().default_json = v ? "true" : "false";
      return *this;
    }
    Field& one_of(std::vector<std::string> values) {
      spec().one_of = std::move(values);
      return *this;
    }
    Field& min(double v) {
      spec().min = v;
      return *this;
    }
    Field& max(double v) {
      spec().max = v;
      return *this;
    }
    // Continue declaring on the schema.
    Field string(std::string name) { return owner_->string(std::move(name)); }
    Field integer(std::string name) { return owner_->integer(std::move(name)); }
    Field number(std::string name) { return owner_->number(std::move(name)); }
    Field boolean(std::string name) { return owner_->boolean(std::move(name)); }
    Field list(std::string name) { return owner_->list(std::move(name)); }
    Field object(std::string name) { return owner_->object(std::move(name)); }
    ConfigSchema& validator(Validator v) { return owner_->validator(std::move(v)); }
    operator ConfigSchema&() { return *owner_; }
    operator ConfigSchema() const { return *owner_; }

   private:
    FieldSpec& spec() { return owner_->fields_[index_]; }
    static std::string number(double v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", v);
      return buf;
    }
    static std::string quote(const std::string& s) {
      rapidjson::StringBuffer sb;
      rapidjson::Writer<rapidjson::StringBuffer> w(sb);
      w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
      return sb.GetString();
    }
    ConfigSchema* owner_;
    size_t index_;
  };

  Field string(std::string name) { return add(std::move(name), Type::string); }
  Field integer(std::string name) { return add(std::move(name), Type::integer); }
  Field number(std::string name) { return add(std::move(name), Type::number); }
  Field boolean(std::string name) { return add(std::move(name), Type::boolean); }
  Field list(std::string name) { return add(std::move(name), Type::list); }
  Field object(std::string name) { return add(std::move(name), Type::object); }
  // A check over the whole config, run by validate() and before create().
  ConfigSchema& validator(Validator v) {
    validators_.push_back(std::move(v));
    return *this;
  }

  void validate(const Config& c) const {
    for (const auto& v : validators_) v(c);
  }

  std::string to_json() const {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.StartObject();
    w.Key("fields");
    w.StartArray();
    for (const auto& f : fields_) {
      w.StartObject();
      w.Key("name");
      w.String(f.name.c_str());
      w.Key("type");
      w.String(type_name(f.type));
      if (!f.doc.empty()) {
        w.Key("doc");
        w.String(f.doc.c_str());
      }
      w.Key("required");
      w.Bool(f.required);
      w.Key("secret");
      w.Bool(f.secret);
      if (f.path) {
        w.Key("path");
        w.Bool(true);
        w.Key("path_kind");
        w.String(f.path_kind);
      }
      if (!f.default_json.empty()) {
        w.Key("default");
        w.RawValue(f.default_json.c_str(), f.default_json.size(), rapidjson::kObjectType);
      }
      if (!f.one_of.empty()) {
        w.Key("enum");
        w.StartArray();
        for (const auto& e : f.one_of) w.String(e.c_str());
        w.EndArray();
      }
      if (f.min) {
        w.Key("min");
        w.Double(*f.min);
      }
      if (f.max) {
        w.Key("max");
        w.Double(*f.max);
      }
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return sb.GetString();
  }

  static const char* type_name(Type t) {
    switch (t) {
      case Type::string:
        return "string";
      case Type::integer:
        return "int";
      case Type::number:
        return "double";
      case Type::boolean:
        return "bool";
      case Type::list:
        return "list";
      case Type::object:
        return "object";
    }
    return "string";
  }

 private:
  Field add(std::string name, Type t) {
    FieldSpec f;
    f.name = std::move(name);
    f.type = t;
    fields_.push_back(std::move(f));
    return Field(*this, fields_.size() - 1);
  }
  std::vector<FieldSpec> fields_;
  std::vector<Validator> validators_;
};

// ---------------------------------------------------------------------------------------------
// Base classes. Derive, give a (const Config&, Host&) constructor and a static schema().

// A source position: a topic (may be empty), partition and last done offset.
struct Position {
  std::string_view topic;
  int32_t partition;
  int64_t offset;
};

class Source {
 public:
  virtual ~Source() = default;
  // Emit up to `max_records` records, and stop early once `out.full()` (the poll's byte budget,
  // sluice_poll_args::max_bytes, is used up); return true once the input is exhausted for good.
  // With max_records == 0 (backpressure, or no byte room) emit nothing but keep any session
  // alive.
  virtual bool poll(Output& out, size_t max_records, uint32_t timeout_ms) = 0;
  // Positions that are done end to end: persist them.
  virtual void commit(std::span<const Position> /*positions*/) {}
  virtual void set_paused(bool /*paused*/) {}
  virtual void on_memory_pressure(double /*level*/) {}
  virtual std::string snapshot() { return {}; }
  virtual void restore(std::string_view /*state*/) {}
};

class Transform {
 public:
  virtual ~Transform() = default;
  // For each input record, emit 0..n records (by input index), or reject it.
  virtual void process(const Batch& in, Output& out) = 0;
  virtual void on_memory_pressure(double /*level*/) {}
  virtual std::string snapshot() { return {}; }
  virtual void restore(std::string_view /*state*/) {}
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Return once every record is durable; reject single records through `rejects`.
  virtual void put(const Batch& in, Output& rejects) = 0;
  virtual void flush() {}
  virtual void pre_commit() {}
  virtual void on_memory_pressure(double /*level*/) {}
  virtual std::string snapshot() { return {}; }
  virtual void restore(std::string_view /*state*/) {}
};

// ---------------------------------------------------------------------------------------------
// The noexcept shims behind SLUICE_MODULE.

namespace detail {

inline void write_text(char* buf, size_t cap, std::string_view text) {
  if (!buf || cap == 0) return;
  size_t n = text.size() < cap - 1 ? text.size() : cap - 1;
  if (n > 0) std::memcpy(buf, text.data(), n);  // an empty view may have a null data()
  buf[n] = '\0';
}

inline void report(sluice_error* e, std::string_view message, std::string_view field = {}) {
  if (!e) return;
  write_text(e->message, e->message_capacity, message);
  if (SLUICE_HAS_FIELD(e, sluice_error, field_capacity))
    write_text(e->field, e->field_capacity, field);
}

// Runs `fn`, turning every exception into a status and an error message.
template <typename Fn>
sluice_status guarded(sluice_error* e, Fn&& fn) noexcept {
  try {
    fn();
    return SLUICE_OK;
  } catch (const Retriable& ex) {
    report(e, ex.what());
    return SLUICE_RETRY;
  } catch (const Fatal& ex) {
    report(e, ex.what());
    return SLUICE_FATAL;
  } catch (const ConfigError& ex) {
    report(e, ex.what(), ex.field());
    return SLUICE_ERROR;
  } catch (const std::exception& ex) {
    report(e, ex.what());
    return SLUICE_ERROR;
  } catch (...) {
    report(e, "unknown exception");
    return SLUICE_ERROR;
  }
}

// The byte budget of a poll: sluice_poll_args::max_bytes if the host's struct has it (ABI 1.1),
// else no byte bound (an older host bounds polls by records only).
inline uint64_t poll_max_bytes(const sluice_poll_args& args) {
  return SLUICE_FIELD_OR(&args, sluice_poll_args, max_bytes, UINT64_MAX);
}

// One plugin of a module: its table and the step that completes it (run by the module's init).
struct PluginEntry {
  sluice_plugin* table;
  void (*prepare)();
};

template <typename T>
struct Instance {
  Host host;
  std::unique_ptr<T> object;
};

template <typename T>
std::string description_of() {
  if constexpr (requires { T::description(); })
    return T::description();
  else
    return {};
}

template <typename T, sluice_kind Kind>
struct Adapter {
  static T& self(void* inst) { return *static_cast<Instance<T>*>(inst)->object; }

  static sluice_status validate(const char* json, size_t len, sluice_error* e) noexcept {
    return guarded(e, [&] {
      Config c(json, len);
      T::schema().validate(c);
    });
  }
  static sluice_status create(const sluice_host_api* host, const char* json, size_t len, void** out,
                              sluice_error* e) noexcept {
    return guarded(e, [&] {
      Config c(json, len);
      T::schema().validate(c);
      auto inst = std::make_unique<Instance<T>>(Instance<T>{Host(host), nullptr});
      inst->object = std::make_unique<T>(c, inst->host);
      *out = inst.release();
    });
  }
  static void destroy(void* inst) noexcept {
    try {
      delete static_cast<Instance<T>*>(inst);
    } catch (...) {
    }
  }
  static sluice_status poll(void* inst, sluice_poll_args* args, sluice_writer* w,
                            sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_SOURCE) {
      return guarded(e, [&] {
        const uint64_t max_bytes = poll_max_bytes(*args);
        Output out(w, max_bytes);
        const size_t max_records = max_bytes == 0 ? 0 : args->max_records;
        if (self(inst).poll(out, max_records, args->timeout_ms)) args->end_of_stream = 1;
      });
    } else {
      return SLUICE_FATAL;
    }
  }
  static sluice_status commit(void* inst, const sluice_position* ps, size_t n,
                              sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_SOURCE) {
      return guarded(e, [&] {
        std::vector<Position> v;
        v.reserve(n);
        for (size_t i = 0; i < n; ++i)
          v.push_back({as_view(ps[i].topic), ps[i].partition, ps[i].offset});
        self(inst).commit(v);
      });
    } else {
      return SLUICE_OK;
    }
  }
  static void set_paused(void* inst, int32_t paused) noexcept {
    if constexpr (Kind == SLUICE_KIND_SOURCE) {
      try {
        self(inst).set_paused(paused != 0);
      } catch (...) {
      }
    }
  }
  static sluice_status process(void* inst, const sluice_batch* in, sluice_writer* w,
                               sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_TRANSFORM) {
      return guarded(e, [&] {
        Output out(w);
        self(inst).process(Batch(*in), out);
      });
    } else {
      return SLUICE_FATAL;
    }
  }
  static sluice_status put(void* inst, const sluice_batch* in, sluice_writer* w,
                           sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_SINK) {
      return guarded(e, [&] {
        Output out(w);
        self(inst).put(Batch(*in), out);
      });
    } else {
      return SLUICE_FATAL;
    }
  }
  static sluice_status flush(void* inst, sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_SINK) return guarded(e, [&] { self(inst).flush(); });
    return SLUICE_OK;
  }
  static sluice_status pre_commit(void* inst, sluice_error* e) noexcept {
    if constexpr (Kind == SLUICE_KIND_SINK) return guarded(e, [&] { self(inst).pre_commit(); });
    return SLUICE_OK;
  }
  static void on_memory_pressure(void* inst, double level) noexcept {
    try {
      self(inst).on_memory_pressure(level);
    } catch (...) {
    }
  }
  static sluice_status snapshot(void* inst, sluice_buffer* out, sluice_error* e) noexcept {
    return guarded(e, [&] {
      std::string s = self(inst).snapshot();
      out->append(out->host_ctx, reinterpret_cast<const uint8_t*>(s.data()), s.size());
    });
  }
  static sluice_status restore(void* inst, const uint8_t* data, size_t len,
                               sluice_error* e) noexcept {
    return guarded(
        e, [&] { self(inst).restore(std::string_view(reinterpret_cast<const char*>(data), len)); });
  }

  // The plugin's table. The entry point returns it holding only names and hooks (no code of
  // the author's runs there); prepare(), from the module's init, adds the description and the
  // schema, which T builds.
  static sluice_plugin& table() {
    static sluice_plugin t = [] {
      sluice_plugin p{};
      p.struct_size = sizeof(p);
      p.kind = Kind;
      p.validate = &validate;
      p.create = &create;
      p.destroy = &destroy;
      if constexpr (Kind == SLUICE_KIND_SOURCE) {
        p.poll = &poll;
        p.commit = &commit;
        p.set_paused = &set_paused;
      }
      if constexpr (Kind == SLUICE_KIND_TRANSFORM) p.process = &process;
      if constexpr (Kind == SLUICE_KIND_SINK) {
        p.put = &put;
        p.flush = &flush;
        p.pre_commit = &pre_commit;
      }
      p.on_memory_pressure = &on_memory_pressure;
      p.snapshot = &snapshot;
      p.restore = &restore;
      return p;
    }();
    return t;
  }
  static void prepare() {
    static const std::string schema = T::schema().to_json();
    static const std::string desc = description_of<T>();
    table().config_schema_json = schema.c_str();
    table().description = desc.c_str();
  }
  static PluginEntry entry(const char* name, const char* version) {
    table().name = name;
    table().version = version;
    return {&table(), &prepare};
  }
};

// The module table of SLUICE_MODULE: plugin pointers and the steps that complete them. Built in
// the entry point from static data only; `init` runs the steps (T::schema() and description()),
// turning an exception into the init's error.
template <size_t N>
class ModuleTables {
 public:
  using InitFn = sluice_status (*)(const sluice_host_api*, sluice_error*);
  ModuleTables(const char* name, const char* version, const PluginEntry (&entries)[N], InitFn init)
      : entries_(entries) {
    for (size_t i = 0; i < N; ++i) plugins_[i] = entries[i].table;
    module_.struct_size = sizeof(module_);
    module_.abi_major = SLUICE_ABI_MAJOR;
    module_.abi_minor = SLUICE_ABI_MINOR;
    module_.name = name;
    module_.version = version;
    module_.plugins = plugins_;
    module_.plugin_count = N;
    module_.init = init;
  }
  const sluice_module* module() const { return &module_; }
  sluice_status init(sluice_error* error) const noexcept {
    return guarded(error, [&] {
      for (const PluginEntry& e : entries_) e.prepare();
    });
  }

 private:
  const PluginEntry (&entries_)[N];
  const sluice_plugin* plugins_[N] = {};
  sluice_module module_{};
};

}  // namespace detail
}  // namespace sluice

#define SLUICE_SOURCE(T, NAME) \
  ::sluice::detail::Adapter<T, SLUICE_KIND_SOURCE>::entry(NAME, sluice_module_version_)
#define SLUICE_TRANSFORM(T, NAME) \
  ::sluice::detail::Adapter<T, SLUICE_KIND_TRANSFORM>::entry(NAME, sluice_module_version_)
#define SLUICE_SINK(T, NAME) \
  ::sluice::detail::Adapter<T, SLUICE_KIND_SINK>::entry(NAME, sluice_module_version_)

// Expands to the module table, its init (which builds the schemas: plugin code stays out of
// the entry point, as abi.h requires) and the exported entry point.
#define SLUICE_MODULE(NAME, VERSION, ...)                                                          \
  static sluice_status sluice_module_init_(const sluice_host_api*, sluice_error*) noexcept;        \
  static const auto& sluice_module_tables_() {                                                     \
    static const char* const sluice_module_version_ = VERSION;                                     \
    static const ::sluice::detail::PluginEntry entries[] = {__VA_ARGS__};                          \
    static const ::sluice::detail::ModuleTables tables(NAME, VERSION, entries,                     \
                                                       &sluice_module_init_);                      \
    return tables;                                                                                 \
  }                                                                                                \
  static sluice_status sluice_module_init_(const sluice_host_api*, sluice_error* error) noexcept { \
    return sluice_module_tables_().init(error);                                                    \
  }                                                                                                \
  extern "C" SLUICE_EXPORT const sluice_module* sluice_module_get(uint32_t, uint32_t) {            \
    return sluice_module_tables_().module();                                                       \
  }
