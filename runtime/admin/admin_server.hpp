// The admin HTTP API: GET /health, /stats, /metrics and POST /reload, served on its own thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "admin/health.hpp"
#include "core/settings.hpp"
#include "pipeline/supervisor.hpp"

namespace sluice::admin {

// The server cannot start: a non-loopback address without a token, or the address is taken.
class AdminError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether `host` names this machine's loopback interface only (127.0.0.0/8, ::1, localhost).
bool is_loopback_host(const std::string& host);

// Applies the launcher's `--admin` value to the file's settings: "off" disables the API,
// "HOST:PORT" or "[V6HOST]:PORT" (":PORT" keeps the host) sets the address and enables it.
// Throws AdminError for anything else.
core::AdminSettings apply_admin_flag(core::AdminSettings settings, const std::string& flag);

// Endpoints (every error is a JSON object {"error": "..."} with a 4xx or 5xx status):
//   GET  /health   health JSON (see health.hpp); 200 when every pipeline is healthy, else 503.
//                  Once the process is stopping, /health, /stats and /metrics answer 503
//                  (stopping()).
//   GET  /stats    {"pipelines": {"<name>": {"state", "failure", "seconds", "records": {"in",
//                  "delivered", "dead_lettered", "filtered", "rejected", "sink"}, "stages":
//                  {"<stage>": <middleware::write_json shape, incl. "plugins">}}}}
//   GET  /metrics  Prometheus text 0.0.4 (middleware::to_prometheus).
//   POST /reload[?stage=NAME]  calls the reload callback; 200 {"reloaded": true, "stage"},
//                  404 for a stage no pipeline has, 500 with the callback's error (which the
//                  pipeline also shows in /health), 501 if no callback was given. Needs
//                  `Authorization: Bearer TOKEN` when a token is set.
// Unknown paths get 404, a known path with another method 405 (with Allow), a missing or wrong
// token 401, a malformed request 400 (or 413/414 when too large).
class AdminServer {
 public:
  // Reloads one stage (by instance name), or every stage when `stage` is empty. Returns "" on
  // success or an error message; runs on a server thread.
  using ReloadCallback = std::function<std::string(const std::string& stage)>;

  struct Options {
    HealthRules health;
    size_t threads = 4;  // requests served at once; an admin API needs few
    size_t max_body_bytes = 64 * 1024;
    // A connection must send its whole request (head and body) within this, else it is answered
    // 408 and closed. Requests are read by one poll thread, so slow clients hold no worker.
    std::chrono::milliseconds request_timeout{5000};
    // Connections open at once, overall and per client address. A connection over them takes
    // the slot of the oldest one still sending its request after `eviction_grace` (its client's
    // when the client's limit is reached), which is answered 503; without one it is answered 503.
    size_t max_connections = 64;
    size_t max_connections_per_client = 16;
    std::chrono::milliseconds eviction_grace{100};
  };

  // The token is AdminSettings::token, else the environment's SLUICE_ADMIN_TOKEN.
  AdminServer(core::AdminSettings settings, const pipeline::Supervisor& supervisor,
              ReloadCallback reload, Options options);
  AdminServer(core::AdminSettings settings, const pipeline::Supervisor& supervisor,
              ReloadCallback reload)
      : AdminServer(std::move(settings), supervisor, std::move(reload), Options{}) {}
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and starts serving on a new thread; a no-op when the settings disable the API. Throws
  // AdminError when the address is not loopback and there is no token, or binding fails.
  void start();
  // Stops accepting, closes connections still sending their request, cuts off the answers being
  // written (a client that does not read them gets no more), answers the requests still queued
  // 503 and joins the threads; slow clients do not delay it. Idempotent.
  void stop();
  // Whether the process is stopping: the supervisor was asked to stop (a SIGINT or SIGTERM).
  // From then on /health answers 503 {"healthy": false, "status": "stopping"}, /stats and
  // /metrics 503 with an error, and the answers being written when it began are cut off at their
  // next write, so no request makes or sends megabytes beside the pipelines' drain.
  bool stopping() const;

  bool running() const { return thread_.joinable(); }
  // The bound port (the ephemeral one when configured as 0); 0 before start().
  uint16_t port() const { return port_; }
  // e.g. http://127.0.0.1:8088 (IPv6 hosts in brackets).
  std::string url() const;

  // Marks a stage degraded in /health with `message`, for problems only the caller knows of
  // (the pipelines' own reload errors and circuit breakers are read from them); an empty
  // message clears it. Thread-safe.
  void set_stage_error(const std::string& pipeline, const std::string& stage,
                       const std::string& message);

  // The bodies the endpoints serve, for callers that want them without HTTP. Every error text
  // in them passes through config::redact() with the pipelines' secrets and the token.
  HealthReport health() const;
  std::string stats_json() const;

 private:
  struct Http;

  std::vector<PipelineObservation> observe() const;
  // Every pipeline's secret config values and the token: no answer may carry them.
  std::vector<std::string> secrets() const;
  // Whether a running pipeline has a stage or plugin instance of this name.
  bool has_stage(const std::string& stage) const;

  core::AdminSettings settings_;
  const pipeline::Supervisor& supervisor_;
  ReloadCallback reload_;
  Options options_;
  std::string token_;
  std::unique_ptr<Http> http_;
  std::thread thread_;
  uint16_t port_ = 0;

  mutable std::mutex errors_mu_;
  StageErrors stage_errors_;
};

}  // namespace sluice::admin
