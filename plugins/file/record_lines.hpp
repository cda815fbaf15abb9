// Turns records into JSON lines (value or envelope format); shared by the file and stdout sinks.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <sluice/sdk.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace sluice_plugins {

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF), as a JSON string must be.
inline bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n || p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i <= n; ++i)
      if ((p[i] & 0xC0) != 0x80) return false;
    p += n + 1;
  }
  return true;
}

inline std::string base64(std::string_view bytes) {
  static constexpr char kDigits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 |
                       uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kDigits[(v >> shift) & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v =
        uint32_t(uint8_t(bytes[i])) << 16 | (two ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += two ? kDigits[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

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

  // The line is JSON whatever the record holds: a key, value, topic or header that is not UTF-8
  // (a JSON string must be) goes in base64 under its name + "_base64", byte for byte, instead of
  // its name (headers: in "headers_base64", a list of {key, value}, both in base64).
  void append_envelope_line(const sluice::RecordView& r, std::string& out) {
    sb_.Clear();
    rapidjson::Writer<rapidjson::StringBuffer> w(sb_);
    w.StartObject();
    if (!r.has_key()) {
      w.Key("key");
      w.Null();
    } else if (!write_text_field(w, "key", r.key())) {
      write_json_or_string(w, r.key(), /*embed_json=*/false);
    }
    if (!r.has_value()) {
      w.Key("value");
      w.Null();
    } else {
      write_value_field(w, r.value());
    }
    if (!write_text_field(w, "topic", r.topic()))
      w.String(r.topic().data(), static_cast<rapidjson::SizeType>(r.topic().size()));
    w.Key("partition");
    w.Int(r.partition());
    w.Key("offset");
    w.Int64(r.offset());
    w.Key("timestamp");
    w.Int64(r.timestamp_ms());
    w.Key("headers");
    w.StartObject();
    std::vector<size_t> binary_headers;  // positions of headers with bytes that are not UTF-8
    for (size_t i = 0; i < r.headers().size(); ++i) {
      auto k = sluice::as_view(r.headers()[i].key);
      auto v = sluice::as_view(r.headers()[i].value);
      if (!valid_utf8(k) || !valid_utf8(v)) {
        binary_headers.push_back(i);
        continue;
      }
      w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
      w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    }
    w.EndObject();
    if (!binary_headers.empty()) {
      w.Key("headers_base64");
      w.StartArray();
      for (size_t i : binary_headers) {
        auto k = sluice::as_view(r.headers()[i].key);
        auto v = sluice::as_view(r.headers()[i].value);
        w.StartObject();
        w.Key("key");
        const std::string k64 = base64(k);
        w.String(k64.data(), static_cast<rapidjson::SizeType>(k64.size()));
        w.Key("value");
        const std::string v64 = base64(v);
        w.String(v64.data(), static_cast<rapidjson::SizeType>(v64.size()));
        w.EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
    out.append(sb_.GetString(), sb_.GetSize());
  }

  // Bytes that are not UTF-8 go as `name`_base64 (true); else only the key `name` is written and
  // the caller writes the value (false).
  static bool write_text_field(rapidjson::Writer<rapidjson::StringBuffer>& w, const char* name,
                               std::string_view text) {
    if (valid_utf8(text)) {
      w.Key(name);
      return false;
    }
    const std::string key = std::string(name) + "_base64";
    const std::string encoded = base64(text);
    w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    w.String(encoded.data(), static_cast<rapidjson::SizeType>(encoded.size()));
    return true;
  }

  // The envelope's value: the record's JSON (compacted) when it parses as UTF-8 within the depth
  // bound, in one pass (the parse checks the encoding), else a JSON string or its base64.
  void write_value_field(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view text) {
    if (embedded<rapidjson::kParseValidateEncodingFlag>(w, text, "value")) return;
    if (!write_text_field(w, "value", text))
      w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  }

  // Embeds `text` as JSON when it parses (compacted), else as a JSON string.
  void write_json_or_string(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view text,
                            bool embed_json = true) {
    if (embed_json && embedded<rapidjson::kParseDefaultFlags>(w, text, nullptr)) return;
    w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  }

  // Writes `key` (unless null) and the parsed `text` when it parses within the depth bound.
  template <unsigned Flags>
  bool embedded(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view text,
                const char* key) {
    const bool parsed = sluice::parse_json_within<Flags>(doc_, text).ok();
    if (parsed) {
      if (key) w.Key(key);
      doc_.Accept(w);
    }
    // A memory pool never reuses what it handed out: without this, every record parsed here
    // would stay allocated until the sink is destroyed.
    doc_.SetNull();
    pool_.Clear();
    return parsed;
  }

  static constexpr size_t kPoolBytes = 16 * 1024;  // a small record parses without a malloc
  LineFormat format_;
  rapidjson::StringBuffer sb_;
  std::unique_ptr<char[]> pool_buffer_{new char[kPoolBytes]};
  rapidjson::MemoryPoolAllocator<> pool_{pool_buffer_.get(), kPoolBytes};
  rapidjson::Document doc_{&pool_};  // after pool_: it allocates from it
};

}  // namespace sluice_plugins
