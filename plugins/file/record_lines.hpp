// Turns records into JSON lines (value or envelope format); shared by the file and stdout sinks.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstring>
#include <memory>
#include <sluice/sdk.hpp>
#include <string>
#include <string_view>

namespace sluice_plugins {

enum class LineFormat { value, envelope };

inline LineFormat parse_line_format(const std::string& name) {
  if (name == "value") return LineFormat::value;
  if (name == "envelope") return LineFormat::envelope;
  throw sluice::ConfigError("format", "format must be 'value' or 'envelope', not '" + name + "'");
}

inline void declare_line_format(sluice::ConfigSchema& s) {
  s.string("format")
      .default_value("value")
      .one_of({"value", "envelope"})
      .doc(
          "value: the record value per line (tombstone: null); envelope: "
          "{key,value,topic,partition,offset,timestamp,headers} per line.");
}

// Appends one line (with its '\n') for `r` to `out`.
class LineEncoder {
 public:
  explicit LineEncoder(LineFormat format) : format_(format) {}
  LineEncoder(const LineEncoder&) = delete;  // doc_ points at pool_
  LineEncoder& operator=(const LineEncoder&) = delete;

  void append(const sluice::RecordView& r, std::string& out) {
    if (format_ == LineFormat::value)
      append_value_line(r, out);
    else
      append_envelope_line(r, out);
    out += '\n';
  }

 private:
  // A value is written as it is unless that would break the one-record-per-line framing.
  void append_value_line(const sluice::RecordView& r, std::string& out) {
    if (!r.has_value()) {
      out += "null";
      return;
    }
    std::string_view v = r.value();
    // Two memchr scans, not find_first_of("\r\n"): libstdc++ runs that as one memchr over the
    // two-byte set per byte of the value, a quarter of a Kafka -> file pipeline's CPU.
    if (std::memchr(v.data(), '\n', v.size()) == nullptr &&
        std::memchr(v.data(), '\r', v.size()) == nullptr) {
      out += v;
      return;
    }
    sb_.Clear();
    rapidjson::Writer<rapidjson::StringBuffer> w(sb_);
    write_json_or_string(w, v);
    out.append(sb_.GetString(), sb_.GetSize());
  }

  void append_envelope_line(const sluice::RecordView& r, std::string& out) {
    sb_.Clear();
    rapidjson::Writer<rapidjson::StringBuffer> w(sb_);
    w.StartObject();
    w.Key("key");
    if (r.has_key())
      write_json_or_string(w, r.key(), /*embed_json=*/false);
    else
      w.Null();
    w.Key("value");
    if (r.has_value())
      write_json_or_string(w, r.value());
    else
      w.Null();
    w.Key("topic");
    w.String(r.topic().data(), static_cast<rapidjson::SizeType>(r.topic().size()));
    w.Key("partition");
    w.Int(r.partition());
    w.Key("offset");
    w.Int64(r.offset());
    w.Key("timestamp");
    w.Int64(r.timestamp_ms());
    w.Key("headers");
    w.StartObject();
    for (const auto& h : r.headers()) {
      auto k = sluice::as_view(h.key);
      auto v = sluice::as_view(h.value);
      w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
      w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    }
    w.EndObject();
    w.EndObject();
    out.append(sb_.GetString(), sb_.GetSize());
  }

  // Embeds `text` as JSON when it parses (compacted), else as a JSON string.
  void write_json_or_string(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view text,
                            bool embed_json = true) {
    if (embed_json && sluice::json_nesting_depth(text) <= sluice::kMaxJsonDepth) {
      doc_.Parse(text.data(), text.size());
      const bool parsed = !doc_.HasParseError();
      if (parsed) doc_.Accept(w);
      // A memory pool never reuses what it handed out: without this, every record parsed here
      // would stay allocated until the sink is destroyed.
      doc_.SetNull();
      pool_.Clear();
      if (parsed) return;
    }
    w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  }

  static constexpr size_t kPoolBytes = 16 * 1024;  // a small record parses without a malloc
  LineFormat format_;
  rapidjson::StringBuffer sb_;
  std::unique_ptr<char[]> pool_buffer_{new char[kPoolBytes]};
  rapidjson::MemoryPoolAllocator<> pool_{pool_buffer_.get(), kPoolBytes};
  rapidjson::Document doc_{&pool_};  // after pool_: it allocates from it
};

}  // namespace sluice_plugins
