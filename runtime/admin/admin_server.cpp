// The admin HTTP API on cpp-httplib: routing, the bearer-token rule, JSON errors and the bodies.
#include "admin/admin_server.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <poll.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <tuple>
#include <vector>

#include "admin/request_reader.hpp"
#include "config/stage_config.hpp"
#include "middleware/stats.hpp"
#include "pipeline/circuit_breaker.hpp"

namespace sluice::admin {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr const char* kJson = "application/json";
constexpr const char* kPrometheusText = "text/plain; version=0.0.4";
// /health, /stats and /metrics once the process was asked to stop.
constexpr const char* kStoppingHealth = R"({"healthy":false,"status":"stopping","pipelines":{}})";
constexpr std::string_view kStoppingError =
    "stopping: sluice is draining its pipelines; stats and metrics are not served meanwhile";

struct Route {
  std::string_view path;
  std::string_view method;  // GET routes answer HEAD too
  bool mutating;
};

constexpr std::array<Route, 4> kRoutes = {{
    {"/health", "GET", false},
    {"/stats", "GET", false},
    {"/metrics", "GET", false},
    {"/reload", "POST", true},
}};

const Route* find_route(std::string_view path) {
  for (const auto& r : kRoutes)
    if (r.path == path) return &r;
  return nullptr;
}

bool allows(const Route& route, std::string_view method) {
  return method == route.method || (route.method == "GET" && method == "HEAD");
}

std::string_view reason(int status) {
  switch (status) {
    case 400:
      return "malformed request";
    case 401:
      return "missing or wrong bearer token";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 408:
      return "request timed out";
    case 413:
      return "request body too large";
    case 414:
      return "request URI too long";
    case 416:
      return "range not satisfiable";
    case 431:
      return "request headers too large";
    case 500:
      return "internal error";
    case 501:
      return "not implemented";
    case 503:
      return "unavailable";
    default:
      return status >= 500 ? "server error" : "bad request";
  }
}

void send_error(httplib::Response& res, int status, std::string_view message) {
  res.status = status;
  res.set_content(error_json(status, message), kJson);
}

// Compares without leaking, through timing, how much of a guessed token was right.
bool same_secret(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const char g = i < given.size() ? given[i] : '\0';
    diff |= static_cast<unsigned char>(g ^ expected[i]);
  }
  return diff == 0;
}

bool has_bearer_token(const httplib::Request& req, const std::string& token) {
  constexpr std::string_view kScheme = "Bearer ";
  const std::string header = req.get_header_value("Authorization");
  if (header.size() < kScheme.size()) return false;
  // The scheme name is case-insensitive (RFC 7235); the token is not.
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) !=
        std::tolower(static_cast<unsigned char>(kScheme[i])))
      return false;
  return same_secret(std::string_view(header).substr(kScheme.size()), token);
}

// {"reloaded": true, "stage": "<name>" | null}
std::string reloaded_body(const std::string& stage) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("reloaded");
  w.Bool(true);
  w.Key("stage");
  if (stage.empty()) {
    w.Null();
  } else {
    w.String(stage.data(), static_cast<rapidjson::SizeType>(stage.size()));
  }
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) return v6.s6_addr[12] == 127;
  }
  return false;
}

core::AdminSettings apply_admin_flag(core::AdminSettings settings, const std::string& flag) {
  if (flag == "off") {
    settings.enabled = false;
    return settings;
  }
  const auto bad = [&flag] {
    return AdminError(
        fmt::format("--admin: expected HOST:PORT, [IPV6]:PORT or off, got '{}'", flag));
  };
  const auto colon = flag.rfind(':');
  if (colon == std::string::npos) throw bad();
  std::string host = flag.substr(0, colon);
  const std::string port = flag.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    throw bad();  // a bare IPv6 address: the port would be ambiguous
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad();
  const unsigned long number = std::stoul(port);
  if (number > 65535) throw bad();
  if (!host.empty()) settings.host = host;
  settings.port = static_cast<uint16_t>(number);
  settings.enabled = true;
  return settings;
}

namespace {

// The request already read whole by the RequestReader, then the socket for the answer.
class ReadRequestStream : public httplib::Stream {
 public:
  ReadRequestStream(const Connection& c, std::chrono::milliseconds write_timeout,
                    const std::function<bool()>& stopping)
      : c_(c), write_timeout_(write_timeout), stopping_(stopping), began_stopping_(stopping()) {}

  // Each write waits up to `write_timeout` for room in the socket: a client that reads slowly
  // still gets its answer, one that stopped reading holds the worker that long per write.
  // stop() ends such a wait at once by shutting the socket down (ServedConnections). An answer
  // begun before the process was asked to stop is cut off within 100 ms once it is (the answers
  // made since are a few hundred bytes of 503).

  bool is_readable() const override { return read_ < c_.request.size(); }
  bool is_writable() const override {
    // In slices, so that a stop asked for meanwhile ends the wait within one.
    constexpr std::chrono::milliseconds kSlice{100};
    for (auto left = write_timeout_; left.count() > 0; left -= kSlice) {
      if (cut_off()) return false;
      pollfd p{c_.fd(), POLLOUT, 0};
      const int n = poll(&p, 1, static_cast<int>(std::min(left, kSlice).count()));
      if (n != 0) return n == 1 && (p.revents & POLLOUT);
    }
    return false;
  }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, c_.request.size() - read_);
    std::memcpy(ptr, c_.request.data() + read_, n);
    read_ += n;
    return static_cast<ssize_t>(n);
  }
  // Without waiting inside send: a blocking send of a large answer waits for the socket's whole
  // send timeout, where neither a stop request nor the write timeout is looked at.
  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      if (!is_writable()) return -1;
      const ssize_t n = send(c_.fd(), ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return n;
    }
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.client_ip();
    port = c_.client_port();
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    std::tie(ip, port) = local_address(c_.fd());
  }
  socket_t socket() const override { return c_.fd(); }

 private:
  bool cut_off() const { return !began_stopping_ && stopping_(); }

  const Connection& c_;
  std::chrono::milliseconds write_timeout_;
  const std::function<bool()>& stopping_;
  bool began_stopping_;
  size_t read_ = 0;
};

// httplib's server, except that an accepted socket goes to the RequestReader instead of being
// read on a pool thread: httplib's read timeout is per recv call, so a client sending a byte a
// second would hold that thread (and delay stop()) for as long as it likes.
class AdminHttpServer : public httplib::Server {
 public:
  std::function<void(socket_t)> on_accept;
  // Whether the process was asked to stop (AdminServer::stopping).
  std::function<bool()> stopping = [] { return false; };

  // Parses and answers a request read whole, then the connection closes (no keep-alive: each
  // request is read under its own deadline).
  void serve(const Connection& c, std::chrono::milliseconds write_timeout) {
    ReadRequestStream stream(c, write_timeout, stopping);
    bool closed = false;
    process_request(stream, true, closed, nullptr);
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    on_accept(sock);
    return true;
  }
};

constexpr std::chrono::milliseconds kWriteTimeout{2000};

// The connections the workers are answering, so a stop can end their writes at once: a client
// that never reads would otherwise hold each worker for the write timeout per write, and the
// queued requests after it (each a /metrics of megabytes to make and send) would wait their turn,
// which made a SIGTERM take 20 s longer with 16 such clients.
class ServedConnections {
 public:
  // Registers `fd` as being answered; false once stopping (the request is then not served).
  bool begin(int fd) {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    fds_.push_back(fd);
    return true;
  }
  void end(int fd) {
    std::lock_guard lock(mu_);
    fds_.erase(std::find(fds_.begin(), fds_.end(), fd));
  }
  // From now on no request is served, and the answers being written fail at their next write
  // (the sockets stay open until their workers are done with them, so no fd is reused meanwhile).
  void stop() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (const int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  std::mutex mu_;
  bool stopping_ = false;
  std::vector<int> fds_;
};

RequestReader::Limits reader_limits(const AdminServer::Options& o) {
  RequestReader::Limits limits;
  limits.deadline = o.request_timeout;
  limits.max_connections = std::max<size_t>(1, o.max_connections);
  limits.max_connections_per_client = std::max<size_t>(1, o.max_connections_per_client);
  limits.eviction_grace = o.eviction_grace;
  limits.max_body_bytes = o.max_body_bytes;
  return limits;
}

}  // namespace

// Accepting (httplib's listen thread), reading requests (the reader's poll thread) and serving
// them (the workers) are three stages, so neither a slow client nor a slow handler holds the
// others up.
struct AdminServer::Http {
  explicit Http(const Options& options)
      : workers(std::max<size_t>(1, options.threads)),
        reader(reader_limits(options), [this](std::unique_ptr<Connection> c) {
          std::shared_ptr<Connection> shared = std::move(c);
          workers.enqueue([this, shared] {
            if (!served.begin(shared->fd())) {
              answer_error(shared->fd(), 503, "the admin API is stopping");
              return;
            }
            server.serve(*shared, kWriteTimeout);
            served.end(shared->fd());
          });
        }) {
    server.on_accept = [this](socket_t sock) { reader.add(sock); };
    reader.start();
  }
  ~Http() { stop_serving(); }

  // Closes connections still sending their request, cuts off the answers being written and
  // answers the queued requests 503.
  void stop_serving() {
    reader.stop();
    served.stop();
    if (workers_running) workers.shutdown();
    workers_running = false;
  }

  AdminHttpServer server;
  ServedConnections served;
  httplib::ThreadPool workers;
  bool workers_running = true;
  RequestReader reader;
};

AdminServer::AdminServer(core::AdminSettings settings, const pipeline::Supervisor& supervisor,
                         ReloadCallback reload, Options options)
    : settings_(std::move(settings)),
      supervisor_(supervisor),
      reload_(std::move(reload)),
      options_(options) {
  token_ = settings_.token;
  if (token_.empty()) {
    if (const char* env = std::getenv("SLUICE_ADMIN_TOKEN")) token_ = env;
  }
}

AdminServer::~AdminServer() { stop(); }

std::string AdminServer::url() const {
  const bool v6 = settings_.host.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}", v6 ? "[" : "", settings_.host, v6 ? "]" : "", port_);
}

void AdminServer::start() {
  if (!settings_.enabled || running()) return;
  if (token_.empty() && !is_loopback_host(settings_.host))
    throw AdminError(fmt::format(
        "admin API: refusing to listen on {} without a token; anyone who can reach it could "
        "reload plugins. Set admin.token (or SLUICE_ADMIN_TOKEN), or bind to 127.0.0.1",
        settings_.host));

  http_ = std::make_unique<Http>(options_);
  httplib::Server& server = http_->server;
  // httplib owns and deletes the queue it gets from this factory. Its tasks only hand the
  // accepted socket to the reader, so one thread is enough.
  server.new_task_queue = [] { return new httplib::ThreadPool(1); };
  server.set_payload_max_length(options_.max_body_bytes);
  server.set_default_headers({{"Cache-Control", "no-store"}});
  // httplib's default also sets SO_REUSEPORT, which would let a second process share the port
  // silently (and get half the requests); keep only SO_REUSEADDR, so the bind fails instead.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });

  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const Route* route = find_route(req.path);
    if (route == nullptr) {
      // The path is the client's, but an error text is masked like any other (README: Secrets).
      send_error(
          res, 404,
          config::redact(fmt::format("no endpoint {}; try /health, /stats, /metrics, /reload",
                                     req.path.substr(0, 200)),
                         secrets()));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!allows(*route, req.method)) {
      res.set_header("Allow", route->method == "GET" ? "GET, HEAD" : std::string(route->method));
      send_error(res, 405, fmt::format("{} takes {}", route->path, route->method));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (route->mutating && !token_.empty() && !has_bearer_token(req, token_)) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "missing or wrong bearer token (Authorization: Bearer TOKEN)");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Any 4xx/5xx the library produces itself (unparsable request, too large) gets a JSON body too.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        send_error(res, res.status, reason(res.status));
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        what = config::redact(what, secrets());
        spdlog::error("admin API: {} {} failed: {}", req.method, req.path, what);
        send_error(res, 500, what);
      });

  // Once the process is asked to stop, the pipelines' drain must not share the machine with
  // answers of megabytes: /health says "stopping" (503), /stats and /metrics are refused 503
  // (README: Stats, metrics and hot reload).
  http_->server.stopping = [this] { return stopping(); };
  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping()) {
      res.status = 503;
      res.set_content(kStoppingHealth, kJson);
      return;
    }
    const HealthReport report = health();
    res.status = report.healthy ? 200 : 503;
    res.set_content(to_json(report), kJson);
  });
  server.Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping()) return send_error(res, 503, kStoppingError);
    res.set_content(stats_json(), kJson);
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    if (stopping()) return send_error(res, 503, kStoppingError);
    res.set_content(middleware::to_prometheus(supervisor_.stats()), kPrometheusText);
  });
  server.Post("/reload", [this](const httplib::Request& req, httplib::Response& res) {
    std::string stage;
    if (req.has_param("stage")) {
      stage = req.get_param_value("stage");
      if (stage.empty()) return send_error(res, 400, "stage= needs a stage name");
      if (!has_stage(stage))
        return send_error(
            res, 404,
            config::redact(fmt::format("no stage named '{}'", stage.substr(0, 200)), secrets()));
    }
    if (!reload_) return send_error(res, 501, "reload is not available in this process");
    spdlog::info("admin API: reload of {} requested", stage.empty() ? "every stage" : stage);
    // A refused reload shows in /health through the pipeline, which records it per stage.
    const std::string error = reload_(stage);
    if (!error.empty())
      return send_error(res, 500, "reload failed: " + config::redact(error, secrets()));
    res.set_content(reloaded_body(stage), kJson);
  });
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("admin API: {} {} -> {}", req.method, req.path, res.status);
  });

  int bound = 0;
  if (settings_.port == 0) {
    bound = server.bind_to_any_port(settings_.host);
  } else {
    bound = server.bind_to_port(settings_.host, settings_.port) ? settings_.port : -1;
  }
  if (bound <= 0) {
    const int err = errno;
    http_.reset();
    throw AdminError(fmt::format("admin API: cannot listen on {}:{}: {}", settings_.host,
                                 settings_.port,
                                 err != 0 ? std::strerror(err) : "address not available"));
  }
  port_ = static_cast<uint16_t>(bound);
  // Already bound, so a client connecting right after start() returns is queued, not refused.
  auto listening_ended = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([this, listening_ended] {
    http_->server.listen_after_bind();
    listening_ended->store(true);
  });
  // httplib's stop() does nothing until the accept loop runs, so a stop() right after start()
  // would leave the thread listening forever; wait for the loop (it starts at once).
  while (!http_->server.is_running() && !listening_ended->load())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!http_->server.is_running()) {
    thread_.join();
    http_.reset();
    throw AdminError(fmt::format("admin API: cannot serve on {}", url()));
  }
  spdlog::info("admin API listening on {}{}", url(), token_.empty() ? "" : " (token required)");
}

bool AdminServer::stopping() const { return supervisor_.stop_requested(); }

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  http_->server.stop();
  thread_.join();
  http_->stop_serving();
  http_.reset();
}

void AdminServer::set_stage_error(const std::string& pipeline, const std::string& stage,
                                  const std::string& message) {
  std::lock_guard lock(errors_mu_);
  if (message.empty()) {
    if (auto it = stage_errors_.find(pipeline); it != stage_errors_.end()) {
      it->second.erase(stage);
      if (it->second.empty()) stage_errors_.erase(it);
    }
  } else {
    stage_errors_[pipeline][stage] = message;
  }
}

std::vector<PipelineObservation> AdminServer::observe() const {
  std::vector<PipelineObservation> out;
  for (const auto& p : supervisor_.pipelines()) {
    PipelineObservation o;
    // finished first: a pipeline seen finished has its final stats.
    o.finished = p->finished();
    o.summary = p->summary();
    o.stats = p->stats();
    o.stage_errors = p->stage_errors();
    if (const auto* breaker = p->circuit_breaker();
        breaker != nullptr && breaker->state() != pipeline::CircuitBreaker::State::closed) {
      // The breaker guards the sink, and the stage is named after it.
      for (const auto& s : o.stats) {
        o.stage_errors.emplace(s.stage,
                               fmt::format("circuit breaker {} after {} consecutive failures",
                                           pipeline::CircuitBreaker::name(breaker->state()),
                                           breaker->consecutive_failures()));
      }
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<std::string> AdminServer::secrets() const {
  std::vector<std::string> out;
  for (const auto& p : supervisor_.pipelines())
    out.insert(out.end(), p->secrets().begin(), p->secrets().end());
  if (!token_.empty()) out.push_back(token_);
  return out;
}

HealthReport AdminServer::health() const {
  const auto observed = observe();
  HealthReport report;
  {
    std::lock_guard lock(errors_mu_);
    report = evaluate_health(observed, stage_errors_, options_.health);
  }
  // Errors come from plugins and reloads, which may quote a secret of their config.
  const auto secret_values = secrets();
  for (auto& p : report.pipelines) {
    p.last_error = config::redact(p.last_error, secret_values);
    for (auto& s : p.stages) s.last_error = config::redact(s.last_error, secret_values);
  }
  return report;
}

bool AdminServer::has_stage(const std::string& stage) const {
  for (const auto& p : supervisor_.pipelines()) {
    for (const auto& s : p->stats()) {
      if (s.stage == stage) return true;
      for (const auto& plugin : s.plugins)
        if (plugin.instance == stage) return true;
    }
  }
  return false;
}

std::string AdminServer::stats_json() const {
  const auto observed = observe();
  HealthReport report;
  {
    std::lock_guard lock(errors_mu_);
    report = evaluate_health(observed, stage_errors_, options_.health);
  }
  const auto secret_values = secrets();
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  auto key = [&w](std::string_view k) {
    w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
  };
  w.StartObject();
  key("pipelines");
  w.StartObject();
  for (size_t i = 0; i < observed.size(); ++i) {
    const auto& o = observed[i];
    const auto& s = o.summary;
    key(s.pipeline);
    w.StartObject();
    key("state");
    w.String(health_state_name(report.pipelines[i].state));
    key("failure");
    if (s.failed) {
      const std::string failure = config::redact(s.failure, secret_values);
      w.String(failure.data(), static_cast<rapidjson::SizeType>(failure.size()));
    } else {
      w.Null();
    }
    key("seconds");
    w.Double(s.seconds);
    key("records");
    w.StartObject();
    key("in");
    w.Uint64(s.records_in);
    key("delivered");
    w.Uint64(s.delivered);
    key("dead_lettered");
    w.Uint64(s.dead_lettered);
    key("filtered");
    w.Uint64(s.filtered);
    key("rejected");
    w.Uint64(s.rejected);
    key("sink");
    w.Uint64(s.sink_records);
    w.EndObject();
    key("stages");
    w.StartObject();
    for (const auto& stage : o.stats) {
      key(stage.stage);
      middleware::write_json(w, stage);
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace sluice::admin
