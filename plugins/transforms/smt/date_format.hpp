// Java's SimpleDateFormat, the part of it Kafka's TimestampRouter and TimestampConverter use.
#pragma once

#include <chrono>
#include <optional>
#include <sluice/sdk.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::smt {

// The subset of Java's SimpleDateFormat sluice formats and parses, in UTC as Kafka does:
// the letters y M d H m s S E and 'quoted text'.
class DateFormat {
 public:
  explicit DateFormat(const std::string& pattern) : pattern_(pattern) {
    for (char ch : pattern)
      if (std::isalpha(static_cast<unsigned char>(ch)) &&
          std::string_view("yMdHmsSE").find(ch) == std::string_view::npos &&
          !in_quotes(pattern, ch))
        throw ConfigError("timestamp.format",
                          std::string("timestamp.format: letter '") + ch +
                              "' is not supported (supported: y M d H m s S E and 'text')");
  }

  // Parses as SimpleDateFormat does, leniently: fields may overflow (month 13 is January of
  // the next year) and text after the pattern is ignored. nullopt when the text does not match.
  std::optional<int64_t> parse(std::string_view text) const;

  std::string format(int64_t ms) const {
    using namespace std::chrono;
    const sys_time<milliseconds> t{milliseconds(ms)};
    const sys_days day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{t - day};
    const Fields f{static_cast<int>(ymd.year()),
                   static_cast<int>(unsigned(ymd.month())),
                   static_cast<int>(unsigned(ymd.day())),
                   static_cast<int>(hms.hours().count()),
                   static_cast<int>(hms.minutes().count()),
                   static_cast<int>(hms.seconds().count()),
                   static_cast<int>(hms.subseconds().count()),
                   static_cast<int>(weekday(day).c_encoding())};
    return render(f);
  }

 private:
  struct Fields {
    int year, month, day, hour, minute, second, milli, weekday;
  };
  // Whether `ch` only ever appears inside quotes (then it is text, not a field).
  static bool in_quotes(const std::string& p, char ch) {
    bool quoted = false;
    for (char c : p) {
      if (c == '\'')
        quoted = !quoted;
      else if (c == ch && !quoted)
        return false;
    }
    return true;
  }
  static std::string padded(int v, size_t width) {
    std::string s = std::to_string(v);
    return s.size() >= width ? s : std::string(width - s.size(), '0') + s;
  }
  static std::string field(char letter, size_t n, const Fields& f) {
    static const char* kDays[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                  "Thursday", "Friday", "Saturday"};
    static const char* kMonths[] = {"January",   "February", "March",    "April",
                                    "May",       "June",     "July",     "August",
                                    "September", "October",  "November", "December"};
    switch (letter) {
      case 'y':
        return n == 2 ? padded(f.year % 100, 2) : padded(f.year, n);
      case 'M':
        if (n >= 3) return n == 3 ? std::string(kMonths[f.month - 1], 3) : kMonths[f.month - 1];
        return padded(f.month, n);
      case 'd':
        return padded(f.day, n);
      case 'H':
        return padded(f.hour, n);
      case 'm':
        return padded(f.minute, n);
      case 's':
        return padded(f.second, n);
      case 'S':
        return padded(f.milli, n);
      default:
        return n <= 3 ? std::string(kDays[f.weekday], 3) : kDays[f.weekday];
    }
  }
  std::string render(const Fields& f) const {
    std::string out;
    const std::string& p = pattern_;
    for (size_t i = 0; i < p.size();) {
      if (p[i] == '\'') {
        const size_t end = p.find('\'', i + 1);
        if (end == i + 1)
          out += '\'';  // '' is a quote
        else
          out += p.substr(i + 1, (end == std::string::npos ? p.size() : end) - i - 1);
        i = end == std::string::npos ? p.size() : end + 1;
      } else if (std::isalpha(static_cast<unsigned char>(p[i]))) {
        size_t n = 1;
        while (i + n < p.size() && p[i + n] == p[i]) ++n;
        out += field(p[i], n, f);
        i += n;
      } else {
        out += p[i++];
      }
    }
    return out;
  }
  // The pattern as runs of one letter (count > 0) or literal text (count 0).
  struct Item {
    char letter;
    size_t count;
    std::string text;
  };
  std::vector<Item> items() const;
  std::string pattern_;
};

}  // namespace sluice::smt
