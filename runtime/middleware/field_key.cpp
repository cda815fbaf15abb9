// The ordering key of `ordering: field`, read in one streaming pass.
#include "middleware/field_key.hpp"

#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>

namespace sluice::middleware {

namespace {

using Mask = uint64_t;  // one bit per path, bit p for paths[p]
constexpr size_t kMaxStreamedPaths = 64;

// The value at paths[p] in a parsed document, if it is there and not null.
const rapidjson::Value* find(const rapidjson::Value& root, const std::vector<std::string>& path) {
  const rapidjson::Value* v = &root;
  for (const auto& part : path) {
    if (!v->IsObject()) return nullptr;
    auto it = v->FindMember(rapidjson::StringRef(part.data(), part.size()));
    if (it == v->MemberEnd()) return nullptr;
    v = &it->value;
  }
  return v->IsNull() ? nullptr : v;
}

std::string text_of(const rapidjson::Value& v) {
  if (v.IsString()) return {v.GetString(), v.GetStringLength()};
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return {sb.GetString(), sb.GetSize()};
}

// More paths than a mask has bits: the whole document is parsed (no one writes that many).
std::optional<std::string> key_from_document(std::string_view json, const FieldPaths& paths) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  if (doc.HasParseError()) return std::nullopt;
  for (const auto& path : paths)
    if (const rapidjson::Value* v = find(doc, path)) return text_of(*v);
  return std::nullopt;
}

// SAX handler. masks_[d - 1] holds the paths whose first d parts name the object being read at
// depth d; pending_ the paths the last key completed or continued. A path's value is the next
// value event after its last key; a container value is written out as it streams by (capture).
// The best (lowest) path found so far wins; finding path 0 ends the parse.
class KeyFinder {
 public:
  explicit KeyFinder(const FieldPaths& paths) : paths_(paths) {
    for (size_t p = 0; p < paths.size(); ++p) all_ |= Mask{1} << p;
  }

  bool found_first() const { return best_ == 0; }
  std::optional<std::string> result() const {
    if (best_ == kNone) return std::nullopt;
    return value_;
  }

  bool Null() {
    if (capture_) capture_->Null();
    pending_ = 0;  // a null is no key: the next path is tried
    return true;
  }
  bool Bool(bool b) {
    return scalar([&](Writer& w) { w.Bool(b); });
  }
  bool Int(int i) {
    return scalar([&](Writer& w) { w.Int(i); });
  }
  bool Uint(unsigned u) {
    return scalar([&](Writer& w) { w.Uint(u); });
  }
  bool Int64(int64_t i) {
    return scalar([&](Writer& w) { w.Int64(i); });
  }
  bool Uint64(uint64_t u) {
    return scalar([&](Writer& w) { w.Uint64(u); });
  }
  bool Double(double d) {
    return scalar([&](Writer& w) { w.Double(d); });
  }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return scalar([&](Writer& w) { w.RawNumber(s, n, copy); });
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (capture_) capture_->String(s, n, copy);
    const Mask done = complete(pending_);
    pending_ = 0;
    if (done != 0) offer(lowest(done), std::string(s, n));
    return !found_first();
  }

  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    if (capture_) capture_->Key(s, n, copy);
    const size_t depth = masks_.size();
    const std::string_view key(s, n);
    pending_ = 0;
    for (Mask m = masks_.back(); m != 0; m &= m - 1) {
      const size_t p = lowest(m);
      if (paths_[p][depth - 1] == key) pending_ |= Mask{1} << p;
    }
    return true;
  }

  bool StartObject() { return open(true); }
  bool EndObject(rapidjson::SizeType n) {
    return close([&](auto& w) { w.EndObject(n); });
  }
  bool StartArray() { return open(false); }
  bool EndArray(rapidjson::SizeType n) {
    return close([&](auto& w) { w.EndArray(n); });
  }

 private:
  using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
  static constexpr size_t kNone = SIZE_MAX;

  static size_t lowest(Mask m) { return static_cast<size_t>(std::countr_zero(m)); }

  // Of `m`, the paths that end at the current depth (the value now read is theirs).
  Mask complete(Mask m) const {
    Mask out = 0;
    for (; m != 0; m &= m - 1)
      if (paths_[lowest(m)].size() == masks_.size()) out |= Mask{1} << lowest(m);
    return out;
  }

  void offer(size_t p, std::string text) {
    if (p >= best_) return;
    best_ = p;
    value_ = std::move(text);
  }

  // A number or a boolean: its JSON text is the key.
  template <class WriteFn>
  bool scalar(WriteFn write) {
    if (capture_) write(*capture_);
    const Mask done = complete(pending_);
    pending_ = 0;
    if (done == 0) return true;
    rapidjson::StringBuffer sb;
    Writer w(sb);
    write(w);
    offer(lowest(done), std::string(sb.GetString(), sb.GetSize()));
    return !found_first();
  }

  bool open(bool object) {
    const Mask done = masks_.empty() ? 0 : complete(pending_);
    const Mask child = !object ? 0 : masks_.empty() ? all_ : (pending_ & ~done);
    pending_ = 0;
    if (capture_) ++capture_depth_;
    if (done != 0 && lowest(done) < std::min(best_, capture_path_)) start_capture(lowest(done));
    if (capture_) object ? capture_->StartObject() : capture_->StartArray();
    masks_.push_back(child);
    return true;
  }

  template <class WriteFn>
  bool close(WriteFn write) {
    masks_.pop_back();
    pending_ = 0;
    if (!capture_) return true;
    write(*capture_);
    if (--capture_depth_ > 0) return true;
    offer(capture_path_, std::string(capture_buffer_.GetString(), capture_buffer_.GetSize()));
    capture_.reset();
    capture_path_ = kNone;
    return !found_first();
  }

  // A container that is the value of path p: written out as it streams by. A better path whose
  // value is a container inside it replaces it (the outer one can no longer win).
  void start_capture(size_t p) {
    capture_buffer_.Clear();
    capture_ = std::make_unique<Writer>(capture_buffer_);
    capture_path_ = p;
    capture_depth_ = 1;
  }

  const FieldPaths& paths_;
  Mask all_ = 0;
  std::vector<Mask> masks_;
  Mask pending_ = 0;
  size_t best_ = kNone;
  std::string value_;
  std::unique_ptr<Writer> capture_;
  rapidjson::StringBuffer capture_buffer_;
  size_t capture_path_ = kNone;
  size_t capture_depth_ = 0;
};

}  // namespace

std::optional<std::string> json_field_key(std::string_view json, const FieldPaths& paths) {
  if (paths.size() > kMaxStreamedPaths) return key_from_document(json, paths);
  KeyFinder finder(paths);
  rapidjson::Reader reader;
  rapidjson::MemoryStream stream(json.data(), json.size());
  const rapidjson::ParseResult r = reader.Parse<rapidjson::kParseIterativeFlag>(stream, finder);
  // Stopped by the finder once path 0 was read: the rest of the text is not needed.
  if (r.IsError() && !(r.Code() == rapidjson::kParseErrorTermination && finder.found_first()))
    return std::nullopt;
  return finder.result();
}

}  // namespace sluice::middleware
