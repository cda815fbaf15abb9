// A crash report's line as a signal handler writes it (core::CrashLine): with JSON logs a JSON
// log line like core::json_log_line's, whatever bytes the text holds and wherever it is cut.
#include "core/crash_line.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <string>

#include "core/log_line.hpp"

namespace {

// The crash line of "sluice: " + `text` (prepared with json_text when `json`).
std::string crash_line(bool json, const std::string& text, size_t max = std::string::npos) {
  const std::string prepared = json ? sluice::core::json_text(text, max) : text;
  sluice::core::CrashLine line;
  line.begin(json);
  line.add("sluice: ");
  line.add(prepared.data(), prepared.size());
  line.end();
  return {line.data(), line.size()};
}

rapidjson::Document parsed(const std::string& line) {
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size() - 1);
  INFO("line: ", line);
  REQUIRE(!d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

}  // namespace

TEST_CASE("a JSON crash line holds the text as json_log_line would, in its shape") {
  const std::string text = "t\x1b[2J\n\"\\\t\x01 \xff\xc3\xa9 \xc2\x9b ok";
  const auto d = parsed(crash_line(true, text));
  CHECK(d.MemberCount() == 3);
  CHECK(d["ts_ms"].GetInt64() > 1'600'000'000'000);
  CHECK(std::string(d["level"].GetString()) == "critical");
  const auto reference = parsed(sluice::core::json_log_line(1, "critical", "sluice: " + text));
  CHECK(std::string(d["msg"].GetString(), d["msg"].GetStringLength()) ==
        std::string(reference["msg"].GetString(), reference["msg"].GetStringLength()));
  CHECK(crash_line(true, text).find('\x1b') == std::string::npos);
  CHECK(crash_line(true, text).find("\xc2\x9b") == std::string::npos);  // a C1 CSI, escaped
}

TEST_CASE("a JSON crash line cut short is still one valid JSON line") {
  for (const char* unit : {"\x1b", "\xc3\xa9", "\"", "\xe2\x82\xac", "a"}) {
    CAPTURE(std::string(unit));
    std::string text;
    while (text.size() < 3 * sluice::core::CrashLine::kCapacity) text += unit;
    for (size_t cut : {size_t{7}, size_t{100}, std::string::npos}) {
      CAPTURE(cut);
      const std::string line = crash_line(true, text, cut);
      CHECK(line.size() <= sluice::core::CrashLine::kCapacity);
      parsed(line);
    }
  }
}

TEST_CASE("a text crash line is the text as it is, and a newline") {
  CHECK(crash_line(false, "SIGSEGV in x") == "sluice: SIGSEGV in x\n");
}
