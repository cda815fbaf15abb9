// Shared helpers of the config tests: catching a ConfigError and checking where it points.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <string_view>

#include "config/pipeline_spec.hpp"

namespace sluice::config::testing {

// The what() of the ConfigError that `fn` throws; fails the test when it throws none.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("expected a ConfigError");
  return {};
}

inline std::string parse_error(std::string_view yaml) {
  return error_of([&] { parse_pipelines(yaml, "p.yaml"); });
}

// A minimal valid pipeline to build variants from.
inline std::string with_pipeline(std::string_view extra) {
  return "name: orders\nsource: {type: file, path: in.jsonl}\nsink: {type: file, path: "
         "out.jsonl}\n" +
         std::string(extra);
}

}  // namespace sluice::config::testing

// Checks the exact "FILE:LINE:COL: " prefix and a part of the message.
#define CHECK_CONFIG_ERROR(message, prefix, part)            \
  do {                                                       \
    const std::string checked_message_ = (message);          \
    INFO("message: " << checked_message_);                   \
    CHECK(checked_message_.starts_with(prefix));             \
    CHECK(checked_message_.find(part) != std::string::npos); \
  } while (false)
