// A crash report written from a signal handler, in the log's format: with `--log-format json` a
// JSON log line like every other (core::json_log_line, level "critical"), so that stderr stays
// JSON lines to the end. The handler may not allocate or lock: the text it writes is prepared
// before (json_text), and the handler only reads the clock (clock_gettime) and copies bytes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include "core/utf8.hpp"

namespace sluice::core {

// Set by the launcher's setup_logging (and at a plugin-host child's start, from
// kCrashLineFormatEnv) before any plugin is loaded.
inline std::atomic<bool> g_json_crash_lines{false};

inline bool json_crash_lines() { return g_json_crash_lines.load(std::memory_order_relaxed); }
inline void set_json_crash_lines(bool json) {
  g_json_crash_lines.store(json, std::memory_order_relaxed);
}

// The environment variable that hands the format ("json" or "text") to a plugin-host child,
// which inherits the launcher's environment and stderr.
inline constexpr const char* kCrashLineFormatEnv = "SLUICE_PLUGIN_HOST_LOG_FORMAT";

// `text` as the inside of a JSON string (no quotes), at most `max` bytes, cut between characters:
// bytes that are not UTF-8 become U+FFFD, quotes and backslashes are escaped, and so are the
// control characters (newline as \n, NUL and ESC as \u0000 and \u001b, as core::json_log_line
// writes them) and, for the terminal's sake, DEL and the C1 controls (U+0080..U+009F).
inline std::string json_text(std::string_view text, size_t max = std::string::npos) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  char esc[7] = {'\\', 'u', '0', '0', '0', '0', '\0'};
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    std::string_view unit;
    const auto b = static_cast<unsigned char>(text[i]);
    const bool c1 = length == 2 && b == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if (length == 0) {
      unit = kReplacementCharacter;
    } else if (b == '\n' || b == '\r' || b == '\t' || b == '\b' || b == '\f') {
      unit = b == '\n' ? "\\n" : b == '\r' ? "\\r" : b == '\t' ? "\\t" : b == '\b' ? "\\b" : "\\f";
    } else if (b < 0x20 || b == 0x7f || c1) {
      const unsigned code = c1 ? static_cast<unsigned char>(text[i + 1]) : b;
      esc[4] = kHex[code >> 4];
      esc[5] = kHex[code & 0xf];
      unit = std::string_view(esc, 6);
    } else if (text[i] == '"') {
      unit = "\\\"";
    } else if (text[i] == '\\') {
      unit = "\\\\";
    } else {
      unit = text.substr(i, length);
    }
    if (unit.size() > max - out.size()) break;
    out += unit;
    i += length == 0 ? 1 : length;
  }
  return out;
}

// A line formatted into a fixed buffer, async-signal-safe: begin, add..., end, then one write(2)
// of data()/size(). What does not fit is cut; the end of the line always fits.
class CrashLine {
 public:
  static constexpr size_t kCapacity = 8192;

  // JSON: `{"ts_ms":<now>,"level":"critical","msg":"`; text: nothing.
  void begin(bool json) {
    json_ = json;
    len_ = 0;
    if (!json) return;
    add("{\"ts_ms\":");
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    add_number(static_cast<uint64_t>(now.tv_sec) * 1000 +
               static_cast<uint64_t>(now.tv_nsec) / 1'000'000);
    add(",\"level\":\"critical\",\"msg\":\"");
  }
  // Bytes that need no escaping in JSON (ASCII text of sluice's own), or text prepared for the
  // line's format (json_text in JSON).
  void add(const char* s, size_t n) {
    size_t take = n < room() ? n : room();
    if (json_ && take < n) take = whole_units(s, take);
    std::memcpy(buf_ + len_, s, take);
    len_ += take;
  }
  void add(const char* s) { add(s, std::strlen(s)); }
  void add_number(uint64_t n) {
    char digits[20];
    size_t k = 0;
    do {
      digits[k++] = static_cast<char>('0' + n % 10);
      n /= 10;
    } while (n != 0);
    while (k > 0 && room() > 0) buf_[len_++] = digits[--k];
  }
  // `"}` in JSON, and the newline.
  void end() {
    if (json_) {
      buf_[len_++] = '"';
      buf_[len_++] = '}';
    }
    buf_[len_++] = '\n';
  }
  const char* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  static constexpr size_t kEnd = 3;  // `"}\n`
  size_t room() const { return kCapacity - kEnd - len_; }
  // The bytes of json_text output in s[0..n) that end on a whole escape or character.
  static size_t whole_units(const char* s, size_t n) {
    size_t at = 0;
    for (;;) {
      const auto b = static_cast<unsigned char>(s[at]);
      size_t unit = 1;
      if (b == '\\') {
        unit = s[at + 1] == 'u' ? 6 : 2;
      } else if (b >= 0xf0) {
        unit = 4;
      } else if (b >= 0xe0) {
        unit = 3;
      } else if (b >= 0xc0) {
        unit = 2;
      }
      if (at + unit > n) return at;
      at += unit;
    }
  }

  char buf_[kCapacity];
  size_t len_ = 0;
  bool json_ = false;
};

}  // namespace sluice::core
