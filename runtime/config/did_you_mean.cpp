// Levenshtein-based suggestions.
#include "config/did_you_mean.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

namespace sluice::config {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({above + 1, row[j - 1] + 1, substitution});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> closest_name(std::string_view wrong,
                                        const std::vector<std::string>& candidates) {
  constexpr size_t kMaxDistance = 2;
  // A prefix match ("max_batch" for "max_batch_size") counts as distance 1 unless the edit
  // distance is even smaller; a one- or two-letter prefix says too little to suggest anything.
  constexpr size_t kMinPrefix = 3;
  std::optional<std::string> best;
  size_t best_distance = kMaxDistance + 1;
  for (const auto& candidate : candidates) {
    if (candidate == wrong) continue;
    size_t distance = edit_distance(wrong, candidate);
    const bool prefix = std::min(wrong.size(), candidate.size()) >= kMinPrefix &&
                        (candidate.starts_with(wrong) || wrong.starts_with(candidate));
    if (prefix) distance = std::min<size_t>(distance, 1);
    if (distance <= kMaxDistance && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& candidates) {
  auto best = closest_name(wrong, candidates);
  return best ? fmt::format("; did you mean '{}'?", *best) : std::string();
}

std::string join_names(const std::vector<std::string>& names) {
  return names.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace sluice::config
