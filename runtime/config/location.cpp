// Location formatting and ConfigError.
#include "config/location.hpp"

#include <fmt/format.h>

namespace sluice::config {

std::string Location::str() const {
  if (line <= 0) return file;
  return fmt::format("{}:{}:{}", file, line, column);
}

ConfigError::ConfigError(Location where, const std::string& message)
    : std::runtime_error(fmt::format("{}: {}", where.str(), message)),
      where_(std::move(where)),
      message_(message) {}

}  // namespace sluice::config
