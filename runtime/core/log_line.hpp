// A log line of `--log-format json`: one JSON object per line, valid UTF-8, whatever bytes the
// message holds (a plugin's log text, a stage or metric name it chose).
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/utf8.hpp"

namespace sluice::core {

// `{"ts_ms":...,"level":"...","msg":"..."}` and a newline. Bytes that are not UTF-8 become U+FFFD;
// the writer escapes quotes, backslashes and control characters (NUL, ESC, newline) as \uXXXX.
inline std::string json_log_line(int64_t ts_ms, std::string_view level, std::string_view msg) {
  const std::string text = valid_utf8(msg);
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("ts_ms");
  w.Int64(ts_ms);
  w.Key("level");
  w.String(level.data(), static_cast<rapidjson::SizeType>(level.size()));
  w.Key("msg");
  w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

// A text log line's message (and the run's summary) as one line of visible text: a plugin's
// message or error may hold a newline, a carriage return or terminal escapes, with which it could
// forge a line of sluice's own ("[info] pipeline p: ...") or rewrite the operator's terminal.
// Control characters but the tab become \n, \r or \xNN, and so do the C1 controls as UTF-8
// (U+0080..U+009F, e.g. U+009B, a one-character CSI to some terminals) as \xc2\xNN; everything
// else is left as it is.
inline std::string one_line(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto b = static_cast<unsigned char>(c);
    const bool c1 = b == 0xc2 && i + 1 < text.size() &&
                    (static_cast<unsigned char>(text[i + 1]) & 0xe0) == 0x80;
    if (c1) {
      const auto next = static_cast<unsigned char>(text[++i]);
      out += "\\xc2\\x";
      out += kHex[next >> 4];
      out += kHex[next & 0xf];
    } else if ((b >= 0x20 && b != 0x7f) || c == '\t') {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 0xf];
    }
  }
  return out;
}

}  // namespace sluice::core
