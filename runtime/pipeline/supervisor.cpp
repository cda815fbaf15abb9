// The supervisor loop: start, watch, write stats, stop, and report.
#include "pipeline/supervisor.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <sluice/safe_files.hpp>
#include <thread>

#include "pipeline/call_guard.hpp"

namespace sluice::pipeline {

namespace {

// How long a stop waits for a stage's setup (a plugin's creation) to return.
constexpr auto kStartGrace = std::chrono::seconds(10);

}  // namespace

Supervisor::Supervisor(std::vector<std::unique_ptr<Pipeline>> pipelines, Options options)
    : pipelines_(std::move(pipelines)), options_(std::move(options)) {}

Supervisor::~Supervisor() {
  end_start();
  if (start_watch_.joinable()) start_watch_.join();
}

void Supervisor::request_stop() {
  stop_requested_.store(true);
  // At once, not at the next tick: a pipeline whose setup returns after this reads nothing.
  for (auto& p : pipelines_) p->request_stop();
  if (starting_.load() && !start_watched_.exchange(true))
    start_watch_ = std::thread([this] { watch_start(); });
}

void Supervisor::watch_start() {
  std::unique_lock lock(start_mu_);
  if (start_done_.wait_for(lock, kStartGrace, [this] { return !starting_.load(); })) return;
  const auto& p = *pipelines_.at(starting_index_.load());
  spdlog::error(
      "pipeline {}: stop cannot wait: the setup of its stages (a plugin's creation) has not "
      "returned {} s after the stop; nothing was read by it, and what other pipelines read since "
      "their last commit is read again; exiting with status {}",
      p.name(), std::chrono::duration_cast<std::chrono::seconds>(kStartGrace).count(),
      kExitStuckAtStop);
  exit_now(kExitStuckAtStop);
}

void Supervisor::end_start() {
  {
    std::lock_guard lock(start_mu_);
    starting_.store(false);
  }
  start_done_.notify_all();
}

int Supervisor::run() {
  starting_.store(true);
  try {
    for (size_t i = 0; i < pipelines_.size() && !stop_requested_.load(); ++i) {
      starting_index_.store(i);
      pipelines_[i]->start();
    }
  } catch (...) {
    end_start();
    throw;
  }
  end_start();
  auto last_stats = std::chrono::steady_clock::now();
  bool stopping = false;
  for (;;) {
    bool all_done = true;
    for (auto& p : pipelines_) all_done = all_done && (p->finished() || !p->started());
    if (all_done) break;
    if (stop_requested_.load() && !stopping) {
      stopping = true;
      spdlog::info("stopping: draining what is in flight");
      for (auto& p : pipelines_) p->request_stop();
    }
    for (auto& p : pipelines_) p->enforce_stop_grace();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto now = std::chrono::steady_clock::now();
    if (!options_.stats_file.empty() &&
        now - last_stats >= std::chrono::milliseconds(options_.stats_interval_ms)) {
      last_stats = now;
      write_stats_file();
    }
  }
  for (auto& p : pipelines_) p->wait();
  if (!options_.stats_file.empty()) write_stats_file();
  int code = 0;
  for (const auto& s : summaries())
    if (s.failed) code = 1;
  return code;
}

std::vector<Summary> Supervisor::summaries() const {
  std::vector<Summary> out;
  for (const auto& p : pipelines_) out.push_back(p->summary());
  return out;
}

std::vector<middleware::StageStats> Supervisor::stats() const {
  std::vector<middleware::StageStats> out;
  for (const auto& p : pipelines_)
    for (auto& s : p->stats()) out.push_back(std::move(s));
  return out;
}

std::string Supervisor::stats_json() const { return middleware::to_json(stats()); }

void Supervisor::write_stats_file() const {
  // Write then rename, so a reader never sees half a file; the temporary file is never opened
  // through a link that another user planted (the stats file is often in /tmp).
  std::string error;
  if (!files::replace_file(options_.stats_file.string(), stats_json() + '\n', 0644,
                           /*sync=*/false, error))
    spdlog::warn("cannot write stats file: {}", error);
}

}  // namespace sluice::pipeline
