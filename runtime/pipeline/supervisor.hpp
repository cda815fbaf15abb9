// Runs a file's pipelines side by side until their input ends or a stop is asked for.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/pipeline.hpp"

namespace sluice::pipeline {

class Supervisor {
 public:
  struct Options {
    std::filesystem::path stats_file;  // rewritten every stats interval when set
    uint32_t stats_interval_ms = 1000;
  };

  Supervisor(std::vector<std::unique_ptr<Pipeline>> pipelines, Options options);

  // Starts every pipeline (throws config::ConfigError if one cannot be created: those already
  // started are stopped) and blocks until all have ended. Returns 0, or 1 if any failed.
  int run();
  // From any thread (a signal-handling thread): stop intake everywhere and drain.
  void request_stop() { stop_requested_.store(true); }

  std::vector<Summary> summaries() const;
  std::vector<middleware::StageStats> stats() const;
  std::string stats_json() const;
  const std::vector<std::unique_ptr<Pipeline>>& pipelines() const { return pipelines_; }

 private:
  void write_stats_file() const;

  std::vector<std::unique_ptr<Pipeline>> pipelines_;
  Options options_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace sluice::pipeline
