// The secret config values of a pipeline, kept out of every text that leaves the process.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "config/stage_config.hpp"

namespace sluice::pipeline {

// Thread-safe: a reload adds the secrets of a new config while workers redact messages.
class SecretList {
 public:
  void add(const std::vector<std::string>& values) {
    std::lock_guard lock(mu_);
    values_.insert(values_.end(), values.begin(), values.end());
  }
  // `text` with every secret value masked (config::redact); call it on anything logged, written
  // to a dead-letter header, a summary, a failure reason or a stage error.
  std::string redact(std::string text) const {
    std::lock_guard lock(mu_);
    return config::redact(std::move(text), values_);
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> values_;
};

}  // namespace sluice::pipeline
