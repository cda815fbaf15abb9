// "did you mean ...?" suggestions for misspelt keys, enum values and plugin names.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

// Edit distance (insertions, deletions, substitutions) between two strings.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `wrong`: within edit distance 2, or one is a prefix of the other.
// Ties go to the earlier candidate, so callers list candidates in a meaningful order.
std::optional<std::string> closest_name(std::string_view wrong,
                                        const std::vector<std::string>& candidates);

// "; did you mean 'x'?" or "" when nothing is close; ready to append to a message.
std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& candidates);

// "a, b, c": for "expected one of ..." messages.
std::string join_names(const std::vector<std::string>& names);

}  // namespace sluice::config
