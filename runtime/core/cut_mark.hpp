// The mark a text cut at a fixed buffer's end carries (a plugin's error message that filled the
// host's 2,048-byte buffer): config::redact() masks, before it, the start of a secret the cut
// left behind.
#pragma once

#include <string_view>

namespace sluice::core {

inline constexpr std::string_view kCutMark = "...[cut]";

}  // namespace sluice::core
