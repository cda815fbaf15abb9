// The fields transform: adds, renames, drops and keeps top-level fields of JSON object values.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <sluice/sdk.hpp>
#include <string>
#include <unordered_set>
#include <vector>

namespace {

// A string value of `add`, split once into text and ${record.*} references.
class FieldTemplate {
 public:
  enum class Slot { literal, topic, key, partition, offset, timestamp };

  static FieldTemplate parse(std::string_view text, const std::string& field) {
    static constexpr std::string_view kOpen = "${record.";
    FieldTemplate t;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t open = text.find(kOpen, pos);
      if (open == std::string_view::npos) {
        t.add_literal(text.substr(pos));
        break;
      }
      t.add_literal(text.substr(pos, open - pos));
      size_t close = text.find('}', open);
      if (close == std::string_view::npos)
        throw sluice::ConfigError(field, "unclosed '${record.' in " + field);
      std::string_view name = text.substr(open + kOpen.size(), close - open - kOpen.size());
      Slot slot;
      if (name == "topic")
        slot = Slot::topic;
      else if (name == "key")
        slot = Slot::key;
      else if (name == "partition")
        slot = Slot::partition;
      else if (name == "offset")
        slot = Slot::offset;
      else if (name == "timestamp")
        slot = Slot::timestamp;
      else
        throw sluice::ConfigError(field, "unknown reference '${record." + std::string(name) +
                                             "}' (known: topic, key, partition, offset, "
                                             "timestamp)");
      t.parts_.push_back({slot, {}});
      pos = close + 1;
    }
    return t;
  }

  // A value that is exactly one numeric reference becomes a JSON number, not a string.
  bool is_number() const {
    return parts_.size() == 1 &&
           (parts_[0].slot == Slot::partition || parts_[0].slot == Slot::offset ||
            parts_[0].slot == Slot::timestamp);
  }
  int64_t number(const sluice::RecordView& r) const {
    switch (parts_[0].slot) {
      case Slot::partition:
        return r.partition();
      case Slot::offset:
        return r.offset();
      default:
        return r.timestamp_ms();
    }
  }

  void render(const sluice::RecordView& r, std::string& out) const {
    out.clear();
    for (const auto& p : parts_) {
      switch (p.slot) {
        case Slot::literal:
          out += p.text;
          break;
        case Slot::topic:
          out += r.topic();
          break;
        case Slot::key:
          out += r.key();
          break;  // a null key renders as ""
        case Slot::partition:
          append_int(out, r.partition());
          break;
        case Slot::offset:
          append_int(out, r.offset());
          break;
        case Slot::timestamp:
          append_int(out, r.timestamp_ms());
          break;
      }
    }
  }

 private:
  struct Part {
    Slot slot;
    std::string text;
  };
  static void append_int(std::string& out, int64_t v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
  }
  void add_literal(std::string_view s) {
    if (!s.empty()) parts_.push_back({Slot::literal, std::string(s)});
  }
  std::vector<Part> parts_;
};

struct AddedField {
  std::string name;
  rapidjson::Document constant;           // used when the value has no reference
  std::optional<FieldTemplate> computed;  // set when a string value references the record
};

class FieldsTransform final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.object("add").doc(
        "Fields to set, {name: value}; values are strings, numbers or booleans. Strings may "
        "contain ${record.topic}, ${record.key}, ${record.partition}, ${record.offset}, "
        "${record.timestamp}.");
    s.object("rename").doc(
        "Fields to rename, {old: new}; a field already called `new` is replaced.");
    s.list("drop").doc("Fields to remove.");
    s.list("keep").doc("If given, the only fields that stay (names after renaming).");
    s.validator([](const sluice::Config& c) { parse_add(c); });
    s.validator([](const sluice::Config& c) { parse_rename(c); });
    s.validator([](const sluice::Config& c) {
      c.get_strings("drop");
      c.get_strings("keep");
    });
    return s;
  }
  static std::string description() {
    return "Adds, renames, drops and keeps top-level fields of JSON objects. Order: rename, "
           "drop, keep, then add.";
  }

  FieldsTransform(const sluice::Config& c, sluice::Host& /*host*/)
      : add_(parse_add(c)), rename_(parse_rename(c)), has_keep_(c.has("keep")) {
    for (auto& d : c.get_strings("drop")) drop_.push_back(std::move(d));
    for (auto& k : c.get_strings("keep")) keep_.insert(std::move(k));
  }

  void process(const sluice::Batch& in, sluice::Output& out) override {
    rapidjson::Document doc;
    rapidjson::StringBuffer sb;
    std::string text;
    for (size_t i = 0; i < in.size(); ++i) {
      const sluice::RecordView r = in[i];
      if (!r.has_value()) {  // a tombstone carries a delete downstream; it has no fields
        out.forward(i, r);
        continue;
      }
      if (sluice::json_nesting_depth(r.value()) > sluice::kMaxJsonDepth) {
        out.reject(i, "fields: value nested deeper than " + std::to_string(sluice::kMaxJsonDepth) +
                          " levels");
        continue;
      }
      doc.Parse(r.value().data(), r.value().size());
      if (doc.HasParseError()) {
        out.reject(i, std::string("fields: value is not valid JSON: ") +
                          rapidjson::GetParseError_En(doc.GetParseError()));
        continue;
      }
      if (!doc.IsObject()) {
        out.reject(i, "fields: value is not a JSON object");
        continue;
      }
      apply(r, doc, text);
      sb.Clear();
      rapidjson::Writer<rapidjson::StringBuffer> w(sb);
      doc.Accept(w);
      sluice::OutRecord o = sluice::OutRecord::from(r);
      o.value = std::string_view(sb.GetString(), sb.GetSize());
      out.emit(i, o);
    }
  }

 private:
  void apply(const sluice::RecordView& r, rapidjson::Document& doc, std::string& text) const {
    auto& alloc = doc.GetAllocator();
    for (const auto& [from, to] : rename_) {
      auto it = doc.FindMember(from.c_str());
      if (it == doc.MemberEnd() || from == to) continue;
      rapidjson::Value moved(std::move(it->value));
      doc.EraseMember(it);
      auto existing = doc.FindMember(to.c_str());
      if (existing != doc.MemberEnd()) {
        existing->value = std::move(moved);
      } else {
        doc.AddMember(
            rapidjson::Value(to.c_str(), static_cast<rapidjson::SizeType>(to.size()), alloc), moved,
            alloc);
      }
    }
    for (const auto& name : drop_) {
      auto it = doc.FindMember(name.c_str());
      if (it != doc.MemberEnd()) doc.EraseMember(it);
    }
    if (has_keep_) {
      for (auto it = doc.MemberBegin(); it != doc.MemberEnd();) {
        if (keep_.count(std::string(it->name.GetString(), it->name.GetStringLength())))
          ++it;
        else
          it = doc.EraseMember(it);
      }
    }
    for (const auto& f : add_) {
      rapidjson::Value v;
      if (!f.computed) {
        v.CopyFrom(f.constant, alloc);
      } else if (f.computed->is_number()) {
        v.SetInt64(f.computed->number(r));
      } else {
        f.computed->render(r, text);
        v.SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()), alloc);
      }
      auto it = doc.FindMember(f.name.c_str());
      if (it != doc.MemberEnd()) {
        it->value = std::move(v);
      } else {
        doc.AddMember(rapidjson::Value(f.name.c_str(),
                                       static_cast<rapidjson::SizeType>(f.name.size()), alloc),
                      v, alloc);
      }
    }
  }

  static std::vector<AddedField> parse_add(const sluice::Config& c) {
    std::vector<AddedField> out;
    const rapidjson::Value* add = c.find("add");
    if (!add) return out;
    if (!add->IsObject()) throw sluice::ConfigError("add", "add must be a map of field: value");
    for (const auto& m : add->GetObject()) {
      std::string name(m.name.GetString(), m.name.GetStringLength());
      const std::string where = "add." + name;
      AddedField f;
      f.name = name;
      if (m.value.IsString()) {
        std::string_view s(m.value.GetString(), m.value.GetStringLength());
        if (s.find("${record.") != std::string_view::npos)
          f.computed = FieldTemplate::parse(s, where);
      } else if (!m.value.IsNumber() && !m.value.IsBool()) {
        throw sluice::ConfigError(where, where + " must be a string, number or boolean");
      }
      if (!f.computed) f.constant.CopyFrom(m.value, f.constant.GetAllocator());
      out.push_back(std::move(f));
    }
    return out;
  }

  static std::vector<std::pair<std::string, std::string>> parse_rename(const sluice::Config& c) {
    std::vector<std::pair<std::string, std::string>> out;
    const rapidjson::Value* rename = c.find("rename");
    if (!rename) return out;
    if (!rename->IsObject())
      throw sluice::ConfigError("rename", "rename must be a map of old: new");
    for (const auto& m : rename->GetObject()) {
      std::string from(m.name.GetString(), m.name.GetStringLength());
      if (!m.value.IsString() || m.value.GetStringLength() == 0)
        throw sluice::ConfigError("rename." + from, "rename." + from + " must be a field name");
      out.emplace_back(std::move(from),
                       std::string(m.value.GetString(), m.value.GetStringLength()));
    }
    return out;
  }

  const std::vector<AddedField> add_;
  const std::vector<std::pair<std::string, std::string>> rename_;
  std::vector<std::string> drop_;
  const bool has_keep_;
  std::unordered_set<std::string> keep_;
};

}  // namespace

SLUICE_MODULE("transforms", "0.1.0", SLUICE_TRANSFORM(FieldsTransform, "fields"))
