// The shared helpers of sluice's Kafka Connect transforms (see kafka_smt.hpp).
#include "kafka_smt.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <cmath>
#include <cstring>

namespace sluice::smt {

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

std::string scalar_text(const rapidjson::Value& v, const char* name) {
  if (v.IsString()) return {v.GetString(), v.GetStringLength()};
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsNumber()) return std::to_string(v.GetDouble());
  throw ConfigError(name, std::string(name) + " must be a string");
}

}  // namespace

std::string option(const Config& c, const char* name, std::string fallback) {
  const rapidjson::Value* v = c.find(name);
  return v ? scalar_text(*v, name) : fallback;
}

std::vector<std::string> list_option(const Config& c, const char* name) {
  std::vector<std::string> out;
  const rapidjson::Value* v = c.find(name);
  if (!v) return out;
  auto add = [&](std::string item) {
    if (!item.empty()) out.push_back(std::move(item));
  };
  if (v->IsArray()) {
    for (const auto& e : v->GetArray()) add(trim(scalar_text(e, name)));
    return out;
  }
  const std::string text = scalar_text(*v, name);
  size_t start = 0;
  for (size_t comma; (comma = text.find(',', start)) != std::string::npos; start = comma + 1)
    add(trim(std::string_view(text).substr(start, comma - start)));
  add(trim(std::string_view(text).substr(start)));
  return out;
}

std::string required_option(const Config& c, const char* name) {
  std::string v = option(c, name);
  if (v.empty()) throw ConfigError(name, std::string(name) + " is required");
  return v;
}

std::vector<std::string> required_list(const Config& c, const char* name) {
  auto v = list_option(c, name);
  if (v.empty()) throw ConfigError(name, std::string(name) + " must name at least one item");
  return v;
}

bool bool_option(const Config& c, const char* name, bool fallback) {
  const std::string text = option(c, name, fallback ? "true" : "false");
  if (text == "true" || text == "TRUE" || text == "True") return true;
  if (text == "false" || text == "FALSE" || text == "False") return false;
  throw ConfigError(name, std::string(name) + " must be true or false");
}

bool syntax_v2(const Config& c) {
  const std::string v = option(c, "field.syntax.version", "V1");
  if (v != "V1" && v != "V2" && v != "v1" && v != "v2")
    throw ConfigError("field.syntax.version", "field.syntax.version must be V1 or V2");
  return v == "V2" || v == "v2";
}

// V2 as Kafka's SingleFieldPath: dots separate; a path step in backticks may hold dots, and
// a backtick is escaped by a backslash inside one.
FieldPath parse_path(const std::string& text, bool v2) {
  if (!v2 || text.find('.') == std::string::npos) return {text};
  FieldPath out;
  std::string step;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    const bool at_step_start = step.empty();
    if (ch == '`' && at_step_start && !quoted) {
      quoted = true;
    } else if (quoted && ch == '\\' && i + 1 < text.size() && text[i + 1] == '`') {
      step += '`';
      ++i;
    } else if (quoted && ch == '`' && (i + 1 == text.size() || text[i + 1] == '.')) {
      quoted = false;
    } else if (!quoted && ch == '.') {
      out.push_back(std::move(step));
      step.clear();
    } else {
      step += ch;
    }
  }
  out.push_back(std::move(step));
  return out;
}

// ---- Data ----

namespace {

// What the transforms rely on in a schema, checked once so that they can index it freely: a
// type, and for a struct a list of fields, each with a name and a schema.
// Member `name` of `v` if `v` is an object that has it, else nullptr: one lookup where HasMember
// and operator[] make two (this runs over every schema of every record).
const rapidjson::Value* member_of(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return nullptr;
  const auto it = v.FindMember(name);
  return it == v.MemberEnd() ? nullptr : &it->value;
}

void check_schema(const rapidjson::Value& s) {
  if (s.IsNull()) return;
  const rapidjson::Value* type = member_of(s, "type");
  if (!type || !type->IsString()) throw DataError("Schema must contain 'type' field");
  if (*type != "struct") return;
  const rapidjson::Value* fields = member_of(s, "fields");
  if (!fields || !fields->IsArray())
    throw DataError("Struct schema's \"fields\" argument is not an array.");
  for (const auto& f : fields->GetArray()) {
    const rapidjson::Value* name = member_of(f, "field");
    if (!name || !name->IsString())
      throw DataError("Struct schema's field name not specified properly");
    check_schema(f);
  }
}

// A struct's payload must be an object (or null): the transforms index it as one.
void check_envelope(const rapidjson::Value& envelope) {
  const rapidjson::Value& schema = envelope["schema"];
  check_schema(schema);
  const rapidjson::Value& payload = envelope["payload"];
  if (!schema.IsNull() && schema["type"] == "struct" && !payload.IsObject() && !payload.IsNull())
    throw DataError("Struct schema with a payload that is not an object");
}

// How many '{' and '[' the text holds, strings included: an upper bound of its depth. A loop
// without branches, which the compiler vectorizes; about a tenth of the walk below.
size_t brackets(std::string_view text) {
  size_t n = 0;
  for (const char c : text) n += static_cast<size_t>(c == '{') + static_cast<size_t>(c == '[');
  return n;
}

// Whether JSON text nests deeper than kMaxJsonDepth (past it the recursive parts of rapidjson
// could run out of stack): the SDK's json_nesting_depth, but skipping strings with memchr, since
// most bytes of a schema'd record are in strings.
bool nests_too_deep(std::string_view text) {
  if (brackets(text) <= kMaxJsonDepth) return false;  // the common case, without the walk below
  size_t depth = 0;
  const char* p = text.data();
  const char* const end = p + text.size();
  while (p < end) {
    const char c = *p++;
    if (c == '"') {
      for (;;) {  // to the closing quote: one after an even run of backslashes
        const auto* q = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(end - p)));
        if (!q) return false;  // unterminated: the parser says so
        size_t backslashes = 0;
        for (const char* b = q; b > p && b[-1] == '\\'; --b) ++backslashes;
        p = q + 1;
        if (backslashes % 2 == 0) break;
      }
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return true;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace

// ---- The envelope split: schema and payload ----

namespace {

const char* skip_space(const char* p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  return p;
}

// Past the string that starts at `p` (a '"'), or nullptr when it does not end.
const char* skip_string(const char* p, const char* end) {
  ++p;
  for (;;) {  // to the closing quote: one after an even run of backslashes
    const auto* q = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(end - p)));
    if (!q) return nullptr;
    size_t backslashes = 0;
    for (const char* b = q; b > p && b[-1] == '\\'; --b) ++backslashes;
    p = q + 1;
    if (backslashes % 2 == 0) return p;
  }
}

// Past the JSON value that starts at `p`, as far as brackets and strings tell: the value is
// checked when it is parsed. nullptr when it does not end.
const char* skip_value(const char* p, const char* end) {
  if (p == end) return nullptr;
  if (*p == '"') return skip_string(p, end);
  if (*p != '{' && *p != '[') {
    const char* q = p;
    while (q < end && !std::strchr(",}] \t\n\r", *q)) ++q;
    return q == p ? nullptr : q;
  }
  size_t depth = 0;
  while (p < end) {
    const char c = *p;
    if (c == '"') {
      p = skip_string(p, end);
      if (!p) return nullptr;
      continue;
    }
    if (c == '{' || c == '[') ++depth;
    if ((c == '}' || c == ']') && --depth == 0) return p + 1;
    ++p;
  }
  return nullptr;
}

struct EnvelopeParts {
  std::string_view schema, payload;
};

// The texts of the schema and the payload of a JsonConverter envelope, when `text` is an object
// of exactly these two members (in either order, their names without escapes). Anything else
// (other or repeated members, trailing text) gives nullopt: the whole text is then parsed as one
// document, which also says what is wrong with it.
std::optional<EnvelopeParts> split_envelope(std::string_view text) {
  const char* p = text.data();
  const char* const end = p + text.size();
  p = skip_space(p, end);
  if (p == end || *p++ != '{') return std::nullopt;
  std::optional<std::string_view> schema, payload;
  for (;;) {
    p = skip_space(p, end);
    if (p == end || *p != '"') return std::nullopt;
    const char* name_end = skip_string(p, end);
    if (!name_end) return std::nullopt;
    const std::string_view name(p + 1, static_cast<size_t>(name_end - p - 2));
    auto& part = name == "schema" ? schema : name == "payload" ? payload : schema;
    if ((name != "schema" && name != "payload") || part) return std::nullopt;
    p = skip_space(name_end, end);
    if (p == end || *p++ != ':') return std::nullopt;
    p = skip_space(p, end);
    const char* value_end = skip_value(p, end);
    if (!value_end) return std::nullopt;
    part = std::string_view(p, static_cast<size_t>(value_end - p));
    p = skip_space(value_end, end);
    if (p == end) return std::nullopt;
    if (*p == ',') {
      ++p;
      continue;
    }
    if (*p != '}' || skip_space(p + 1, end) != end || !schema || !payload) return std::nullopt;
    return EnvelopeParts{*schema, *payload};
  }
}

// The common case, {"schema":S,"payload":P} as JsonConverter writes it, with S the text of a
// schema already cached (`known`): S is not scanned at all. Since S is a whole JSON object, the
// object in the text is S; P is all the rest before the final brace, and its parse checks that it
// is one value (else the whole parse runs).
std::optional<EnvelopeParts> split_known(std::string_view text, std::string_view known) {
  static constexpr std::string_view kHead = "{\"schema\":", kMiddle = ",\"payload\":";
  if (known.empty() || text.substr(0, kHead.size()) != kHead) return std::nullopt;
  std::string_view rest = text.substr(kHead.size());
  if (rest.substr(0, known.size()) != known) return std::nullopt;
  rest.remove_prefix(known.size());
  if (rest.substr(0, kMiddle.size()) != kMiddle) return std::nullopt;
  rest.remove_prefix(kMiddle.size());
  const size_t brace = rest.find_last_not_of(" \t\n\r");
  if (brace == std::string_view::npos || rest[brace] != '}') return std::nullopt;
  return EnvelopeParts{text.substr(kHead.size(), known.size()), rest.substr(0, brace)};
}

// Whether a part of an envelope is shallow enough that the envelope cannot nest too deep.
bool shallow_part(std::string_view text) { return brackets(text) < kMaxJsonDepth; }

void write_schema_text(const rapidjson::Value& v, std::string& out) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  out.assign(sb.GetString(), sb.GetSize());
}

}  // namespace

// ---- SchemaCache ----

const SchemaCache::Schema* SchemaCache::keep(std::string_view text) {
  rapidjson::Document d(&pool_);
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) return nullptr;
  try {
    check_schema(d);
  } catch (const DataError&) {
    return nullptr;
  }
  Schema& s = schemas_.emplace_back();
  s.value.Swap(d);
  write_schema_text(s.value, s.text);
  bytes_ += text.size() + s.text.size();
  return &s;
}

const SchemaCache::Schema* SchemaCache::intern(std::string_view text) {
  if (last_ < interned_.size() && interned_[last_].bytes == text) return interned_[last_].schema;
  for (size_t i = 0; i < interned_.size(); ++i)
    if (interned_[i].bytes == text) {
      last_ = i;
      return interned_[i].schema;
    }
  if (full() || !shallow_part(text)) return nullptr;
  // An invalid schema is kept too (as nullptr), so that it is not parsed twice per record.
  interned_.push_back({std::string(text), keep(text)});
  bytes_ += text.size();
  last_ = interned_.size() - 1;
  return interned_.back().schema;
}

const SchemaCache::Schema* SchemaCache::last(std::string_view& text) const {
  if (last_ >= interned_.size() || !interned_[last_].schema) return nullptr;
  text = interned_[last_].bytes;
  return interned_[last_].schema;
}

const SchemaCache::Schema* SchemaCache::find(const void* owner, const Schema* in,
                                             int variant) const {
  for (const Made& m : made_)
    if (m.owner == owner && m.in == in && m.variant == variant) return m.out;
  return nullptr;
}

const SchemaCache::Schema* SchemaCache::remember(const void* owner, const Schema* in, int variant,
                                                 const rapidjson::Value& made) {
  if (full()) return nullptr;
  // Through its text: a deep copy of every string, whatever memory the made schema points into.
  std::string text;
  write_schema_text(made, text);
  const Schema* out = keep(text);
  if (out) made_.push_back({owner, in, variant, out});
  return out;
}

void SchemaCache::trim() {
  if (!full()) return;
  made_.clear();
  interned_.clear();
  schemas_.clear();
  pool_.Clear();
  bytes_ = 0;
  last_ = 0;
}

ScratchPool::Lease ScratchPool::take() {
  std::unique_ptr<Scratch> s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!free_.empty()) {
      s = std::move(free_.back());
      free_.pop_back();
    }
  }
  if (!s) s = std::make_unique<Scratch>();
  s->release_large_buffers();
  s->schemas().trim();
  return Lease(*this, std::move(s));
}

void ScratchPool::give(std::unique_ptr<Scratch> s) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_.push_back(std::move(s));
}

// ---- Data ----

// A NUL-terminated copy of `text` to parse in place.
char* Data::insitu_copy(std::string_view text) {
  if (!pool_) {
    insitu_.assign(text.begin(), text.end());
    insitu_.push_back('\0');
    return insitu_.data();
  }
  auto* copy = static_cast<char*>(pool_->Malloc(text.size() + 1));
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  return copy;
}

// An envelope whose schema the cache has: only the payload is parsed. False (nothing parsed)
// for anything the split does not take, or a payload the whole parse would reject, so that the
// whole parse runs and reports it as before.
bool Data::parse_split() {
  SchemaCache* cache = schema_cache();
  if (!cache || !schemas_) return false;
  std::string_view known;
  const SchemaCache::Schema* schema = cache->last(known);
  auto parts = split_known(*raw_, known);
  if (!parts) {
    parts = split_envelope(*raw_);
    schema = parts ? cache->intern(parts->schema) : nullptr;
  }
  if (!schema || !shallow_part(parts->payload)) return false;
  doc_.emplace(pool_);
  doc_->ParseInsitu(insitu_copy(parts->payload));
  const bool is_struct = schema->value["type"] == "struct";
  if (doc_->HasParseError() || (is_struct && !doc_->IsObject() && !doc_->IsNull())) {
    doc_.reset();
    return false;
  }
  split_ = true;
  cached_ = schema;
  return true;
}

void Data::parse_whole() {
  doc_.emplace(pool_);  // with no pool, the document makes its own allocator
  if (!raw_) return;    // stays a JSON null
  if (nests_too_deep(*raw_)) throw DataError("JSON nested too deep");
  // In place: parsing copies no string, which is most of the work on JSON of a schema'd record.
  doc_->ParseInsitu(insitu_copy(*raw_));
  if (doc_->HasParseError())
    throw DataError(std::string("not valid JSON: ") +
                    rapidjson::GetParseError_En(doc_->GetParseError()));
  if (schemas_ && !(doc_->IsObject() && doc_->HasMember("schema") && doc_->HasMember("payload")))
    throw DataError(
        "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may "
        "not contain additional fields");
  if (schemas_) check_envelope(*doc_);
}

rapidjson::Document& Data::doc() {
  if (!doc_ && !(raw_ && parse_split())) parse_whole();
  return *doc_;
}

bool Data::absent() {
  if (!changed_) return !raw_;
  return payload().IsNull() && !schema_view();
}

bool Data::is_null() {
  if (!raw_ && !changed_) return true;
  return payload().IsNull();
}

rapidjson::Value& Data::payload() {
  rapidjson::Document& d = doc();
  if (schemas_ && !split_ && d.IsObject()) return d["payload"];
  return d;
}

const rapidjson::Value* Data::schema_view() {
  rapidjson::Document& d = doc();
  if (split_) return owns_schema_ ? (own_.IsNull() ? nullptr : &own_) : &cached_->value;
  if (!schemas_ || !d.IsObject()) return nullptr;
  rapidjson::Value& s = d["schema"];
  return s.IsNull() ? nullptr : &s;
}

rapidjson::Value* Data::schema() {
  const rapidjson::Value* view = schema_view();
  if (!split_ || owns_schema_) return const_cast<rapidjson::Value*>(view);  // the record's own
  own_ = copy_of(cached_->value, doc_->GetAllocator());
  owns_schema_ = true;
  cached_ = nullptr;
  return &own_;
}

const SchemaCache::Schema* Data::cached_schema() {
  doc();
  return split_ && !owns_schema_ ? cached_ : nullptr;
}

void Data::set(rapidjson::Value&& payload, rapidjson::Value* schema) {
  rapidjson::Document& d = doc();
  changed_ = true;
  if (!schemas_ || split_) {
    static_cast<rapidjson::Value&>(d).Swap(payload);  // payload lives in d's allocator
    if (!split_) return;
    if (!schema)
      own_.SetNull();
    else if (schema != &own_)
      own_ = std::move(*schema);
    owns_schema_ = true;
    cached_ = nullptr;
    return;
  }
  rapidjson::Value env(rapidjson::kObjectType);
  rapidjson::Value s;
  if (schema) s = std::move(*schema);
  env.AddMember("schema", s, d.GetAllocator());
  env.AddMember("payload", payload, d.GetAllocator());
  static_cast<rapidjson::Value&>(d).Swap(env);
}

void Data::set_cached(rapidjson::Value&& payload, const SchemaCache::Schema* schema) {
  if (!split_) {  // the record's schema was never a cached one: a copy in the record
    rapidjson::Value copy = copy_of(schema->value, allocator());
    set(std::move(payload), &copy);
    return;
  }
  changed_ = true;
  static_cast<rapidjson::Value&>(*doc_).Swap(payload);
  cached_ = schema;
  owns_schema_ = false;
  own_.SetNull();
}

void Data::set_payload(rapidjson::Value&& payload) {
  if (!split_) {
    set(std::move(payload), schema());
    return;
  }
  changed_ = true;
  static_cast<rapidjson::Value&>(*doc_).Swap(payload);
}

void Data::set_null() {
  doc();
  doc_->SetNull();
  changed_ = true;
  if (!split_) return;
  own_.SetNull();
  owns_schema_ = true;
  cached_ = nullptr;
}

// {"schema": S, "payload": P} as the Writer writes the envelope that set() builds. A cached
// schema's text is copied in one memcpy (the Writer's RawValue copies byte by byte).
std::optional<std::string_view> Data::write_split() {
  rapidjson::StringBuffer& text = scratch_->buffer();
  const auto put = [&text](std::string_view s) {
    std::memcpy(text.Push(s.size()), s.data(), s.size());
  };
  put(R"({"schema":)");
  if (!owns_schema_) {
    put(cached_->text);
  } else {
    rapidjson::Writer<rapidjson::StringBuffer> w(text);
    own_.Accept(w);
  }
  put(R"(,"payload":)");
  rapidjson::Writer<rapidjson::StringBuffer> w(text);
  doc_->Accept(w);
  put("}");
  return std::string_view(text.GetString(), text.GetSize());
}

std::optional<std::string_view> Data::bytes() {
  if (!changed_) return raw_;
  if (absent()) return std::nullopt;
  if (split_) return write_split();
  rapidjson::StringBuffer& text =
      scratch_ ? scratch_->buffer() : written_.emplace(nullptr, raw_ ? raw_->size() + 256 : 256);
  rapidjson::Writer<rapidjson::StringBuffer> w(text);
  doc_->Accept(w);
  return std::string_view(text.GetString(), text.GetSize());
}

// ---- Values ----

std::string type_name(const rapidjson::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsObject()) return "java.util.HashMap";
  if (v.IsArray()) return "java.util.ArrayList";
  if (v.IsString()) return "java.lang.String";
  if (v.IsBool()) return "java.lang.Boolean";
  if (v.IsInt64()) return "java.lang.Long";
  return "java.lang.Double";
}

// Java's Double.toString: shortest digits, scientific below 1e-3 and from 1e7.
std::string java_double(double v) {
  char buf[64];
  const double mag = std::fabs(v);
  const bool sci = mag != 0 && (mag < 1e-3 || mag >= 1e7);
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v,
                                 sci ? std::chars_format::scientific : std::chars_format::fixed);
  std::string s(buf, end);
  if (!sci) return s.find('.') == std::string::npos ? s + ".0" : s;
  const size_t e = s.find('e');
  std::string mantissa = s.substr(0, e), exponent = s.substr(e + 1);
  if (mantissa.find('.') == std::string::npos) mantissa += ".0";
  return mantissa + "E" + std::to_string(std::stoi(exponent));  // "e-04" -> "E-4"
}

rapidjson::Value& require_map(rapidjson::Value& v, const char* purpose) {
  if (!v.IsObject())
    throw DataError(std::string("Only Map objects supported in absence of schema for [") + purpose +
                    "], found: " + type_name(v));
  return v;
}

rapidjson::Value str(std::string_view s, rapidjson::Document::AllocatorType& a) {
  return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
}

rapidjson::Value& schemaless(Data& d) {
  if (d.schema_view()) throw DataError("sluice does not transform schema'd records here yet");
  return d.payload();
}

namespace {

size_t named_group(const std::string& name, const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return i + 1;
  throw DataError("No group with name {" + name + "}");
}

}  // namespace

std::string java_replacement(const std::string& repl, const std::smatch& m,
                             const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < repl.size(); ++i) {
    if (repl[i] == '\\' && i + 1 < repl.size()) {
      out += repl[++i];
    } else if (repl[i] == '$' && i + 1 < repl.size() && repl[i + 1] == '{') {
      const size_t close = repl.find('}', i);
      if (close == std::string::npos) throw DataError("named capturing group is missing '}'");
      out += m[named_group(repl.substr(i + 2, close - i - 2), names)].str();
      i = close;
    } else if (repl[i] == '$' && i + 1 < repl.size() &&
               std::isdigit(static_cast<unsigned char>(repl[i + 1]))) {
      size_t group = static_cast<size_t>(repl[++i] - '0');
      // Java takes more digits while they still name a group.
      while (i + 1 < repl.size() && std::isdigit(static_cast<unsigned char>(repl[i + 1])) &&
             group * 10 + static_cast<size_t>(repl[i + 1] - '0') < m.size())
        group = group * 10 + static_cast<size_t>(repl[++i] - '0');
      if (group >= m.size()) throw DataError("No group " + std::to_string(group));
      out += m[group].str();
    } else {
      out += repl[i];
    }
  }
  return out;
}

void put(rapidjson::Value& o, std::string_view name, rapidjson::Value&& v,
         rapidjson::Document::AllocatorType& a) {
  auto it = o.FindMember(rapidjson::StringRef(name.data(), name.size()));
  if (it != o.MemberEnd())
    it->value = std::move(v);
  else
    o.AddMember(str(name, a), v, a);
}

// ---- Schemas ----

namespace {

// Kafka's requireStruct on a schema (nullptr for none).
void check_struct(const rapidjson::Value* s, const char* purpose) {
  if (!s || !s->IsObject() || !s->HasMember("type") || (*s)["type"] != "struct") {
    const std::string found = s && s->IsObject() && s->HasMember("type") && (*s)["type"].IsString()
                                  ? (*s)["type"].GetString()
                                  : "null";
    throw DataError(std::string("Only Struct objects supported for [") + purpose +
                    "], found: " + found);
  }
  if (!s->HasMember("fields") || !(*s)["fields"].IsArray())
    throw DataError("struct schema without fields");
}

}  // namespace

rapidjson::Value& require_struct(Data& d, const char* purpose) {
  check_struct(d.schema_view(), purpose);
  return *d.schema();
}

const rapidjson::Value& require_struct_view(Data& d, const char* purpose) {
  const rapidjson::Value* s = d.schema_view();
  check_struct(s, purpose);
  return *s;
}

const rapidjson::Value* field_schema(const rapidjson::Value& struct_schema, std::string_view name) {
  for (const auto& f : struct_schema["fields"].GetArray()) {
    auto it = f.FindMember("field");
    if (it != f.MemberEnd() && it->value.IsString() &&
        std::string_view(it->value.GetString(), it->value.GetStringLength()) == name)
      return &f;
  }
  return nullptr;
}

rapidjson::Value* field_schema(rapidjson::Value& struct_schema, std::string_view name) {
  return const_cast<rapidjson::Value*>(
      field_schema(static_cast<const rapidjson::Value&>(struct_schema), name));
}

rapidjson::Value copy_of(const rapidjson::Value& v, rapidjson::Document::AllocatorType& a) {
  if (v.IsObject()) {
    rapidjson::Value out(rapidjson::kObjectType);
    for (const auto& m : v.GetObject()) out.AddMember(copy_of(m.name, a), copy_of(m.value, a), a);
    return out;
  }
  if (v.IsArray()) {
    rapidjson::Value out(rapidjson::kArrayType);
    out.Reserve(v.Size(), a);
    for (const auto& item : v.GetArray()) out.PushBack(copy_of(item, a), a);
    return out;
  }
  return rapidjson::Value(v, a);  // a scalar: rapidjson copies it without a Document
}

rapidjson::Value struct_like(const rapidjson::Value& like, rapidjson::Document::AllocatorType& a) {
  rapidjson::Value out(rapidjson::kObjectType);
  out.AddMember("type", "struct", a);
  out.AddMember("fields", rapidjson::Value(rapidjson::kArrayType), a);
  for (const char* basic : {"optional", "name", "version", "doc", "parameters"}) {
    auto it = like.FindMember(basic);
    if (it != like.MemberEnd())
      out.AddMember(rapidjson::StringRef(basic), copy_of(it->value, a), a);
  }
  if (!out.HasMember("optional")) out.AddMember("optional", false, a);
  return out;
}

void add_field(rapidjson::Value& out, std::string_view name, const rapidjson::Value& schema,
               rapidjson::Document::AllocatorType& a) {
  rapidjson::Value copy = copy_of(schema, a);
  move_field(out, name, copy, a);
}

void move_field(rapidjson::Value& out, std::string_view name, rapidjson::Value& schema,
                rapidjson::Document::AllocatorType& a) {
  rapidjson::Value f(std::move(schema));
  f.RemoveMember("field");
  f.AddMember("field", str(name, a), a);
  out["fields"].PushBack(f, a);
}

rapidjson::Value primitive_schema(const char* type, bool optional,
                                  rapidjson::Document::AllocatorType& a, const char* name) {
  rapidjson::Value s(rapidjson::kObjectType);
  s.AddMember("type", rapidjson::StringRef(type), a);
  s.AddMember("optional", optional, a);
  if (name) {
    s.AddMember("name", rapidjson::StringRef(name), a);
    s.AddMember("version", 1, a);
  }
  return s;
}

Target target_option(const Config& c) {
  const std::string t = option(c, "target", "value");
  if (t == "value") return Target::value;
  if (t == "key") return Target::key;
  throw ConfigError("target", "target must be key or value");
}

// ---- Predicates ----

namespace {

Predicate make_predicate(const Config& p) {
  const std::string type = option(p, "type");
  if (type == "record_is_tombstone") return [](const Subject& r) { return r.tombstone(); };
  if (type == "has_header_key") {
    const std::string name = option(p, "name");
    if (name.empty()) throw ConfigError("predicate.name", "has_header_key needs a name");
    return [name](const Subject& r) { return r.has_header(name); };
  }
  if (type == "topic_name_matches") {
    const std::string pattern = option(p, "pattern");
    if (pattern.empty())
      throw ConfigError("predicate.pattern", "topic_name_matches needs a pattern");
    try {
      auto re = std::make_shared<std::regex>(pattern, std::regex::ECMAScript);
      return [re](const Subject& r) {
        const std::string topic(r.topic());
        return std::regex_match(topic, *re);
      };
    } catch (const std::regex_error& e) {
      throw ConfigError("predicate.pattern", "invalid pattern: " + std::string(e.what()));
    }
  }
  throw ConfigError("predicate.type",
                    "predicate type must be has_header_key, record_is_tombstone or "
                    "topic_name_matches");
}

}  // namespace

Predicate predicate_option(const Config& c) {
  const rapidjson::Value* p = c.find("predicate");
  if (!p) return [](const Subject&) { return true; };
  if (!p->IsObject()) throw ConfigError("predicate", "predicate must be a mapping");
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  p->Accept(w);
  Predicate test = make_predicate(Config(sb.GetString(), sb.GetSize()));
  if (!bool_option(c, "negate", false)) return test;
  return [test](const Subject& r) { return !test(r); };
}

// ---- The driver ----

Record load_record(const RecordView& r, bool schemas, Scratch& scratch) {
  Record rec{Data(r.has_key() ? std::optional(r.key()) : std::nullopt, schemas, &scratch),
             Data(r.has_value() ? std::optional(r.value()) : std::nullopt, schemas, &scratch),
             std::string(r.topic()),
             r.partition(),
             r.offset(),
             r.timestamp_ms(),
             {}};
  rec.headers.reserve(r.headers().size());
  for (const auto& h : r.headers())
    rec.headers.emplace_back(std::string(as_view(h.key)), std::string(as_view(h.value)));
  return rec;
}

void emit_record(Output& out, size_t i, Record& rec) {
  OutRecord o;
  o.key = rec.key.bytes();
  o.value = rec.value.bytes();
  o.topic = rec.topic;
  o.partition = rec.partition;
  o.offset = rec.offset;
  o.timestamp_ms = rec.timestamp_ms;
  o.headers.reserve(rec.headers.size());
  for (const auto& [k, v] : rec.headers)
    o.headers.emplace_back(k, v ? std::string_view(*v) : std::string_view());
  out.emit(i, o);
}

void declare_common(ConfigSchema& s, bool has_target) {
  s.object("predicate")
      .doc(
          "Apply only to records this predicate selects: {type: has_header_key|"
          "record_is_tombstone|topic_name_matches, name: ..., pattern: ...}.");
  s.boolean("negate").doc("Apply to the records the predicate does not select.");
  s.boolean("schemas.enable")
      .doc("Keys and values are JsonConverter {schema, payload} envelopes.")
      .default_value(false);
  if (!has_target) return;
  s.boolean("replace.null.with.default").doc("Accepted; sluice keeps nulls as they are.");
  s.string("target").doc("The side to transform (Kafka's $Key/$Value).").one_of({"key", "value"});
}

}  // namespace sluice::smt
