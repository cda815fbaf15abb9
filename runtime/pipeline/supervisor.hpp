// Runs a file's pipelines side by side until their input ends or a stop is asked for.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts every pipeline (throws config::ConfigError if one cannot be created: those already
  // started are stopped) and blocks until all have ended. Returns 0, or 1 if any failed.
  int run();
  // From any thread (a signal-handling thread): stop intake everywhere and drain. Pipelines not
  // started yet are not started. A stop that finds a pipeline still setting up its stages waits
  // kStartGrace for that setup to return (a plugin's creation cannot be cancelled), then ends
  // the process with kExitStuckAtStop: nothing was read by that pipeline, and what the others
  // read since their last commit is read again.
  void request_stop();
  // Whether a stop was asked for (it stays true once the pipelines have drained).
  bool stop_requested() const { return stop_requested_.load(); }

  std::vector<Summary> summaries() const;
  std::vector<middleware::StageStats> stats() const;
  std::string stats_json() const;
  const std::vector<std::unique_ptr<Pipeline>>& pipelines() const { return pipelines_; }

 private:
  void write_stats_file() const;
  // The stop's watch over a start in progress (request_stop's thread).
  void watch_start();
  void end_start();  // wakes the watch: every start has returned (or thrown)

  std::vector<std::unique_ptr<Pipeline>> pipelines_;
  Options options_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> starting_{false};
  std::atomic<size_t> starting_index_{0};  // the pipeline being started
  std::mutex start_mu_;
  std::condition_variable start_done_;
  std::atomic<bool> start_watched_{false};
  std::thread start_watch_;
};

}  // namespace sluice::pipeline
