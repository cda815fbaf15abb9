// Parsing in the SimpleDateFormat subset of date_format.hpp.
#include "date_format.hpp"

#include <cctype>

namespace sluice::smt {

std::vector<DateFormat::Item> DateFormat::items() const {
  std::vector<Item> out;
  const std::string& p = pattern_;
  for (size_t i = 0; i < p.size();) {
    if (p[i] == '\'') {
      const size_t end = p.find('\'', i + 1);
      const size_t stop = end == std::string::npos ? p.size() : end;
      out.push_back({0, 0, end == i + 1 ? "'" : p.substr(i + 1, stop - i - 1)});
      i = stop + 1;
    } else if (std::isalpha(static_cast<unsigned char>(p[i]))) {
      size_t n = 1;
      while (i + n < p.size() && p[i + n] == p[i]) ++n;
      out.push_back({p[i], n, {}});
      i += n;
    } else {
      out.push_back({0, 0, std::string(1, p[i++])});
    }
  }
  return out;
}

namespace {

bool numeric(char letter) { return letter != 0 && letter != 'E'; }

// Reads digits: exactly `width` when the next field is numeric too (SimpleDateFormat's rule for
// abutting fields), else as many as there are.
std::optional<int64_t> digits(std::string_view text, size_t& pos, size_t width) {
  const size_t start = pos;
  const bool negative = pos < text.size() && text[pos] == '-';
  if (negative) ++pos;
  int64_t v = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) &&
         (width == 0 || pos - start < width) && pos - start < 18)
    v = v * 10 + (text[pos++] - '0');
  if (pos == start + (negative ? 1 : 0)) return std::nullopt;
  return negative ? -v : v;
}

}  // namespace

std::optional<int64_t> DateFormat::parse(std::string_view text) const {
  using namespace std::chrono;
  int64_t f[7] = {1970, 1, 1, 0, 0, 0, 0};  // y M d H m s S
  const std::string_view letters = "yMdHmsS";
  const auto its = items();
  size_t pos = 0;
  for (size_t i = 0; i < its.size(); ++i) {
    const Item& it = its[i];
    if (it.count == 0) {
      if (text.substr(pos, it.text.size()) != it.text) return std::nullopt;
      pos += it.text.size();
      continue;
    }
    if (!numeric(it.letter) || (it.letter == 'M' && it.count >= 3)) return std::nullopt;
    const bool abutting = i + 1 < its.size() && numeric(its[i + 1].letter);
    auto v = digits(text, pos, abutting ? it.count : 0);
    if (!v) return std::nullopt;
    f[letters.find(it.letter)] = *v;
  }
  // Lenient: start at January 1st of the year and add the rest, so overflows roll over.
  const sys_days year_start{year{static_cast<int>(f[0])} / January / 1};
  const sys_days month_start{year_month_day{year_start} + months{f[1] - 1}};
  const auto t = month_start + days{f[2] - 1} + hours{f[3]} + minutes{f[4]} + seconds{f[5]} +
                 milliseconds{f[6]};
  return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

}  // namespace sluice::smt
