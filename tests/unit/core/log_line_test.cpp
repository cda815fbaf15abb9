// The JSON log line: valid UTF-8 JSON whatever bytes the message holds, and the text kept where
// it was valid.
#include "core/log_line.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <string>

namespace {

// The "msg" of `line` parsed as strict UTF-8 JSON; fails the test when it does not parse.
std::string parsed_msg(const std::string& line) {
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);  // one line, whatever the message
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size() - 1);
  INFO("line: ", line, " error: ", rapidjson::GetParseError_En(d.GetParseError()));
  REQUIRE(!d.HasParseError());
  REQUIRE(d.IsObject());
  CHECK(d["ts_ms"].GetInt64() == 1234);
  CHECK(std::string(d["level"].GetString()) == "warning");
  return {d["msg"].GetString(), d["msg"].GetStringLength()};
}

constexpr std::string_view kFffd = "\xEF\xBF\xBD";

std::string fffd(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += kFffd;
  return out;
}

}  // namespace

TEST_CASE("a JSON log line is valid UTF-8 JSON whatever bytes a plugin logged") {
  struct Case {
    const char* what;
    std::string bytes;
    std::string msg;  // as parsed back
  };
  const Case cases[] = {
      {"bytes that start nothing",
       "a\xff\xfe"
       "b",
       "a" + fffd(2) + "b"},
      {"a lone continuation byte", "x\x80y", "x" + fffd(1) + "y"},
      {"a truncated 3-byte sequence", "x\xe2\x82y", "x" + fffd(2) + "y"},
      {"a truncated sequence at the end", "x\xe2\x82", "x" + fffd(2)},
      {"an overlong '/'", "\xc0\xaf", fffd(2)},
      {"an overlong NUL", "\xc0\x80", fffd(2)},
      {"an overlong 3-byte form", "\xe0\x80\xaf", fffd(3)},
      {"a surrogate", "\xed\xa0\x80", fffd(3)},
      {"past U+10FFFF", "\xf4\x90\x80\x80", fffd(4)},
      {"a NUL", std::string("a\0b", 3), std::string("a\0b", 3)},
      {"ESC and a colour", "\x1b[31mred", "\x1b[31mred"},
      {"newline, tab, quote, backslash", "1\n2\t\"\\", "1\n2\t\"\\"},
      {"valid multi-byte text", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    CHECK(parsed_msg(sluice::core::json_log_line(1234, "warning", c.bytes)) == c.msg);
  }
}

TEST_CASE("control characters are escaped in the JSON line, never written raw") {
  const std::string line =
      sluice::core::json_log_line(1234, "warning", std::string("\x1b\0\x01\x7f", 4));
  CHECK(line.find('\x1b') == std::string::npos);
  CHECK(line.find('\0') == std::string::npos);
  CHECK(line.find("\\u001B") != std::string::npos);
  CHECK(line.find("\\u0000") != std::string::npos);
}

TEST_CASE("a text log line is one line of visible text, whatever a plugin's message holds") {
  using sluice::core::one_line;
  // A newline would let a plugin write a line that looks like sluice's own.
  CHECK(one_line("bad\n[info] pipeline p: 10 records in") ==
        "bad\\n[info] pipeline p: 10 records in");
  CHECK(one_line(std::string("a\0b\x1b[2J\r\x7f", 9)) == "a\\x00b\\x1b[2J\\r\\x7f");
  CHECK(one_line("tab\tstays, caf\xc3\xa9 too") == "tab\tstays, caf\xc3\xa9 too");
  CHECK(one_line("") == "");
  // U+009B is a one-character CSI to terminals that take C1 controls; U+00A0 is text.
  CHECK(one_line("x\xc2\x9b"
                 "31m\xc2\x80\xc2\xa0\xc2") == "x\\xc2\\x9b31m\\xc2\\x80\xc2\xa0\xc2");
}
