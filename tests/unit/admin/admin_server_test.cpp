// The admin API over real HTTP against a real supervisor: endpoints, token rule, bad requests.
#include "admin/admin_server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands_admin.hpp"
#include "config/pipeline_spec.hpp"
#include "plugin/plugin_registry.hpp"

using sluice::admin::AdminError;
using sluice::admin::AdminServer;
using sluice::admin::is_loopback_host;

namespace {

std::filesystem::path plugin_dir() {
  const char* dir = std::getenv("SLUICE_BUILD_PLUGIN_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "SLUICE_BUILD_PLUGIN_DIR is not set (run through ctest)");
  return dir;
}

// A supervisor running the pipelines of `yaml` on its own thread until destroyed.
class RunningPipelines {
 public:
  explicit RunningPipelines(const std::string& yaml) {
    registry_.load_directory(plugin_dir());
    auto file = sluice::config::parse_pipelines(yaml, "test.yaml");
    std::vector<std::unique_ptr<sluice::pipeline::Pipeline>> pipelines;
    for (auto& spec : file.pipelines)
      pipelines.push_back(std::make_unique<sluice::pipeline::Pipeline>(spec, registry_));
    supervisor_ = std::make_unique<sluice::pipeline::Supervisor>(
        std::move(pipelines), sluice::pipeline::Supervisor::Options{});
    thread_ = std::thread([this] { code_ = supervisor_->run(); });
  }
  ~RunningPipelines() {
    supervisor_->request_stop();
    thread_.join();
  }
  sluice::pipeline::Supervisor& supervisor() { return *supervisor_; }

 private:
  sluice::plugin::PluginRegistry registry_;
  std::unique_ptr<sluice::pipeline::Supervisor> supervisor_;
  std::thread thread_;
  std::atomic<int> code_{-1};
};

// A supervisor with no pipelines, for the request-handling tests.
sluice::pipeline::Supervisor& empty_supervisor() {
  static sluice::pipeline::Supervisor supervisor({}, {});
  return supervisor;
}

const std::string kUnbounded = R"(
name: tiny
source:
  type: generator
  name: gen
  rate: 2000
sink:
  type: "null"
  name: out
)";

sluice::core::AdminSettings loopback(std::string token = "") {
  sluice::core::AdminSettings s;
  s.host = "127.0.0.1";
  s.port = 0;
  s.token = std::move(token);
  return s;
}

// A started server on an ephemeral loopback port, with `adjust` applied to the default options.
std::unique_ptr<AdminServer> started(const std::function<void(AdminServer::Options&)>& adjust) {
  AdminServer::Options options;
  adjust(options);
  auto server = std::make_unique<AdminServer>(loopback(), empty_supervisor(), nullptr, options);
  server->start();
  return server;
}

httplib::Client client_for(const AdminServer& server) {
  httplib::Client c("127.0.0.1", server.port());
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(10, 0);
  return c;
}

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  REQUIRE_MESSAGE(!d.HasParseError(), "not JSON: " << body);
  return d;
}

// An error answer is a JSON object whose "error" says something.
void check_json_error(const httplib::Result& res, int status) {
  REQUIRE(res);
  CHECK(res->status == status);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  auto d = parse(res->body);
  REQUIRE(d.IsObject());
  REQUIRE(d.HasMember("error"));
  CHECK(std::string(d["error"].GetString()).size() > 0);
}

// Polls /health until `pred` holds for its JSON, for at most 20 s (the pipeline runs for real).
template <class Pred>
rapidjson::Document wait_for_health(httplib::Client& c, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto res = c.Get("/health");
    if (res) {
      last = res->body;
      auto d = parse(res->body);
      if (pred(d, res->status)) return d;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("health never reached the expected state; last answer: " << last);
  return {};
}

// Connects to the server on `port`.
int connect_to(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

// Sends raw bytes (from a second thread, so an early answer is read while sending) and returns
// the first response, read up to its Content-Length, or what came before the server closed.
// The socket is not half-closed: httplib drops the answer to a peer that has shut down writing.
std::string raw_exchange(uint16_t port, const std::string& bytes) {
  const int fd = connect_to(port);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::thread sender([&] {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may stop reading a request it has refused
      sent += static_cast<size_t>(n);
    }
  });
  std::string answer;
  char buf[4096];
  for (;;) {
    const auto head_end = answer.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t length = 0;
      const auto at = answer.find("Content-Length: ");
      if (at != std::string::npos && at < head_end) length = std::stoul(answer.substr(at + 16));
      if (answer.size() >= head_end + 4 + length) break;
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  shutdown(fd, SHUT_RDWR);  // unblocks the sender if the server stopped reading
  sender.join();
  close(fd);
  return answer;
}

int status_of(const std::string& raw_answer) {
  int status = 0;
  std::sscanf(raw_answer.c_str(), "HTTP/1.%*d %d", &status);
  return status;
}

std::string body_of(const std::string& raw_answer) {
  const auto at = raw_answer.find("\r\n\r\n");
  return at == std::string::npos ? "" : raw_answer.substr(at + 4);
}

// Connections that send the start of a request, then one byte every 500 ms, never finishing it,
// until stop(): the slowloris pattern.
class SlowClients {
 public:
  SlowClients(uint16_t port, int count) {
    for (int i = 0; i < count; ++i) {
      fds_.push_back(connect_to(port));
      const std::string start = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
      REQUIRE(send(fds_.back(), start.data(), start.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(start.size()));
    }
    thread_ = std::thread([this] { trickle(); });
  }
  ~SlowClients() {
    stop();
    for (const int fd : fds_) close(fd);
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<int>& fds() const { return fds_; }

 private:
  void trickle() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; }))
      for (const int fd : fds_) send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  std::vector<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Reads what the server sends on `fd` until it closes (true) or nothing comes for 10 s (false).
bool read_until_closed(int fd, std::string& answer) {
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
    answer.append(buf, static_cast<size_t>(n));
  }
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("health is 200 and names every stage with its plugin while a pipeline runs") {
  RunningPipelines run(kUnbounded);
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  auto d = wait_for_health(c, [](const rapidjson::Document& d, int status) {
    return status == 200 && std::string(d["pipelines"]["tiny"]["state"].GetString()) != "starting";
  });
  CHECK(d["healthy"].GetBool());
  const auto& tiny = d["pipelines"]["tiny"];
  CHECK(tiny["last_error"].IsNull());
  const std::string state = tiny["state"].GetString();
  CHECK((state == "running" || state == "paused"));
  REQUIRE(tiny["stages"].HasMember("gen"));
  REQUIRE(tiny["stages"].HasMember("out"));
  CHECK(std::string(tiny["stages"]["gen"]["role"].GetString()) == "source");
  CHECK(std::string(tiny["stages"]["gen"]["plugin"].GetString()) == "generator");
  CHECK(std::string(tiny["stages"]["out"]["role"].GetString()) == "sink");
  CHECK(std::string(tiny["stages"]["out"]["plugin"].GetString()) == "null");
}

TEST_CASE("health is 503 with the error while a stage error is reported, 200 once cleared") {
  RunningPipelines run(kUnbounded);
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document&, int status) { return status == 200; });

  server.set_stage_error("tiny", "gen", "reload failed: ABI major 9 is not 1");
  auto res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 503);
  auto d = parse(res->body);
  CHECK_FALSE(d["healthy"].GetBool());
  CHECK(std::string(d["status"].GetString()) == "unhealthy");
  CHECK(std::string(d["pipelines"]["tiny"]["state"].GetString()) == "degraded");
  CHECK(std::string(d["pipelines"]["tiny"]["stages"]["gen"]["state"].GetString()) == "degraded");
  CHECK(std::string(d["pipelines"]["tiny"]["stages"]["gen"]["last_error"].GetString()) ==
        "reload failed: ABI major 9 is not 1");
  CHECK(std::string(d["pipelines"]["tiny"]["last_error"].GetString()) ==
        "reload failed: ABI major 9 is not 1");

  server.set_stage_error("tiny", "gen", "");
  res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("health is 503 with the failure once a pipeline has failed") {
  RunningPipelines run(R"(
name: doomed
source:
  type: generator
  name: gen
  count: 50
sink:
  type: latency
  name: flaky
  failure_rate: 1
errors:
  tolerance: none
  retry:
    max_attempts: 1
    initial_backoff_ms: 1
)");
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  auto d = wait_for_health(c, [](const rapidjson::Document& d, int status) {
    return status == 503 && std::string(d["pipelines"]["doomed"]["state"].GetString()) == "failed";
  });
  CHECK_FALSE(d["healthy"].GetBool());
  CHECK(d["pipelines"]["doomed"]["last_error"].IsString());
  CHECK(std::string(d["pipelines"]["doomed"]["last_error"].GetString()).size() > 0);
}

TEST_CASE("health is 200 with state finished when a bounded input ended cleanly") {
  RunningPipelines run(R"(
name: bounded
source: {type: generator, count: 20}
sink: {type: "null"}
)");
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  auto d = wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["bounded"]["state"].GetString()) == "finished";
  });
  CHECK(d["healthy"].GetBool());
  auto res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("stats has the seed's shape per stage, the plugins with version and file, and counters") {
  RunningPipelines run(kUnbounded);
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["tiny"]["state"].GetString()) != "starting";
  });
  // Wait until records have gone through, so the counters have something to show.
  rapidjson::Document d;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    auto res = c.Get("/stats");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    CHECK(res->get_header_value("Content-Type") == "application/json");
    d = parse(res->body);
    if (d["pipelines"]["tiny"]["records"]["delivered"].GetUint64() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);

  const auto& tiny = d["pipelines"]["tiny"];
  CHECK(tiny["records"]["in"].GetUint64() >= tiny["records"]["delivered"].GetUint64());
  CHECK(tiny["records"]["delivered"].GetUint64() > 0);
  CHECK(tiny["failure"].IsNull());
  REQUIRE(tiny["stages"].HasMember("out"));
  const auto& stage = tiny["stages"]["out"];
  for (const char* section : {"batch_size", "concurrency", "memory", "performance", "backpressure"})
    CHECK_MESSAGE(stage.HasMember(section), section);
  CHECK(stage["performance"]["records_in"].GetUint64() > 0);
  REQUIRE(stage["plugins"].IsArray());
  REQUIRE(stage["plugins"].Size() == 2);
  const auto& source = stage["plugins"][0];
  CHECK(std::string(source["instance"].GetString()) == "gen");
  CHECK(std::string(source["role"].GetString()) == "source");
  CHECK(std::string(source["name"].GetString()) == "generator");
  CHECK(std::string(source["version"].GetString()).size() > 0);
  CHECK(std::filesystem::path(source["file"].GetString()).filename() == "sluice-generator.so");
  CHECK(std::string(stage["plugins"][1]["role"].GetString()) == "sink");
  CHECK(std::filesystem::path(stage["plugins"][1]["file"].GetString()).filename() ==
        "sluice-basic.so");
  // The profile per stage position, source first, each with its own counts and times.
  REQUIRE(stage["stages"].IsArray());
  REQUIRE(stage["stages"].Size() == 2);
  const auto& gen = stage["stages"][0];
  CHECK(std::string(gen["name"].GetString()) == "tiny.source.generator");
  CHECK(std::string(gen["role"].GetString()) == "source");
  CHECK(std::string(gen["plugin"].GetString()) == "generator");
  CHECK(gen["calls"].GetUint64() > 0);
  CHECK(gen["records_out"].GetUint64() > 0);
  const auto& sink = stage["stages"][1];
  CHECK(std::string(sink["role"].GetString()) == "sink");
  CHECK(sink["records_in"].GetUint64() > 0);
  CHECK(sink["busy_ms"].GetDouble() > 0);
  CHECK(sink["p99_ms"].GetDouble() >= sink["p50_ms"].GetDouble());
  for (const char* wait : {"wait_input_ms", "wait_downstream_ms", "wait_breaker_ms"})
    CHECK_MESSAGE(sink[wait].GetDouble() >= 0, wait);
}

TEST_CASE("metrics are Prometheus text 0.0.4 that promtool check metrics accepts") {
  RunningPipelines run(kUnbounded);
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["tiny"]["state"].GetString()) != "starting";
  });
  // Until the sink has counted records, so the plugin counters are in the text too.
  const std::string sink_counter =
      "sluice_plugin_total{pipeline=\"tiny\",stage=\"out\",name=\"out.records\"}";
  auto res = c.Get("/metrics");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (res && res->body.find(sink_counter) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    res = c.Get("/metrics");
  }
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "text/plain; version=0.0.4");
  CHECK(res->body.find("sluice_records_in_total{pipeline=\"tiny\",stage=\"out\"}") !=
        std::string::npos);
  CHECK(res->body.find("sluice_plugin_info{pipeline=\"tiny\",stage=\"out\",instance=\"gen\"") !=
        std::string::npos);
  // Per stage position, labelled by the position's name.
  CHECK(res->body.find("sluice_stage_calls_total{pipeline=\"tiny\",stage=\"tiny.source.generator\","
                       "role=\"source\",plugin=\"generator\"}") != std::string::npos);
  CHECK(res->body.find("# TYPE sluice_stage_call_seconds summary") != std::string::npos);
  CHECK(res->body.find("sluice_stage_wait_seconds_total{pipeline=\"tiny\",stage=\"tiny.sink.") !=
        std::string::npos);
  // The null sink's record count (sluice_host_counter_add) is a counter, so rate() works.
  CHECK(res->body.find("# TYPE sluice_plugin_total counter\n") != std::string::npos);
  CHECK(res->body.find(sink_counter) != std::string::npos);

  const std::string promtool = SLUICE_PROMTOOL;
  REQUIRE_MESSAGE(std::filesystem::exists(promtool),
                  "promtool not found at configure time: install Debian's `prometheus` package");
  const auto dir =
      std::filesystem::temp_directory_path() / ("sluice-admin-metrics-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "metrics.txt") << res->body; }
  const std::string cmd = promtool + " check metrics < " + (dir / "metrics.txt").string() + " > " +
                          (dir / "promtool.out").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(dir / "promtool.out");
  const std::string report((std::istreambuf_iterator<char>(out)), {});
  CHECK_MESSAGE(rc == 0, "promtool check metrics: " << report);
  std::filesystem::remove_all(dir);
}

TEST_CASE("reload calls the callback with the named stage, or with none for every stage") {
  RunningPipelines run(kUnbounded);
  std::vector<std::string> calls;
  std::mutex mu;
  AdminServer server(loopback(), run.supervisor(), [&](const std::string& stage) {
    std::lock_guard lock(mu);
    calls.push_back(stage);
    return std::string();
  });
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["tiny"]["state"].GetString()) != "starting";
  });

  auto res = c.Post("/reload?stage=gen", "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
  auto d = parse(res->body);
  CHECK(d["reloaded"].GetBool());
  CHECK(std::string(d["stage"].GetString()) == "gen");

  res = c.Post("/reload", "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(parse(res->body)["stage"].IsNull());

  check_json_error(c.Post("/reload?stage=nope", "", "text/plain"), 404);
  check_json_error(c.Post("/reload?stage=", "", "text/plain"), 400);

  std::lock_guard lock(mu);
  CHECK(calls == std::vector<std::string>{"gen", ""});
}

TEST_CASE("a failed reload answers 500 with the error; health shows what the pipeline recorded") {
  RunningPipelines run(kUnbounded);
  std::atomic<bool> broken{true};
  auto& tiny = *run.supervisor().pipelines().front();
  // Does what pipeline::Reloader does: the pipeline keeps the stage's last reload error.
  AdminServer server(loopback(), run.supervisor(), [&](const std::string& stage) {
    const std::string error = broken ? "undefined symbol: sluice_module_get" : "";
    tiny.set_stage_error(stage, error);
    return error;
  });
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document&, int status) { return status == 200; });

  auto res = c.Post("/reload?stage=out", "", "text/plain");
  check_json_error(res, 500);
  CHECK(parse(res->body)["error"].GetString() ==
        std::string("reload failed: undefined symbol: sluice_module_get"));
  res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 503);
  auto d = parse(res->body);
  CHECK(std::string(d["pipelines"]["tiny"]["stages"]["out"]["state"].GetString()) == "degraded");
  CHECK(std::string(d["pipelines"]["tiny"]["stages"]["out"]["last_error"].GetString()) ==
        "undefined symbol: sluice_module_get");

  broken = false;
  res = c.Post("/reload?stage=out", "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
  res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("health, stats and reload answers never show a secret a plugin's error quotes") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("sluice-admin-secret-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // conninfo is a secret field of the projection plugin; the sqlite store does not use it.
  RunningPipelines run(
      "name: guarded\nsource: {type: generator, name: gen, rate: 0.01}\n"
      "transforms:\n  - type: projection\n    name: proj\n"
      "    path: " +
      (dir / "p.db").string() +
      "\n    conninfo: \"postgresql://app:hunter2-pw@db.example:5432/o\"\n"
      "    projections: [{name: m, kind: mirror, table: t}]\n"
      "sink: {type: \"null\", name: out}\n");
  auto& guarded = *run.supervisor().pipelines().front();
  // What a plugin's error may say: the password alone, or a URL rewritten around it.
  const std::string leak =
      "cannot connect to postgresql://app:hunter2-pw@db.example/o (password hunter2-pw)";
  AdminServer server(loopback("admin-token-1234"), run.supervisor(), [&](const std::string& stage) {
    guarded.set_stage_error(stage, leak);
    return leak;
  });
  server.start();
  auto c = client_for(server);
  // Records, were one to come, would be rejected by projection and fail the pipeline: the
  // stage errors below show either way.
  wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["guarded"]["state"].GetString()) != "starting";
  });

  c.set_bearer_token_auth("admin-token-1234");
  auto res = c.Post("/reload?stage=proj", "", "text/plain");
  check_json_error(res, 500);
  CHECK(res->body.find("hunter2-pw") == std::string::npos);
  server.set_stage_error("guarded", "gen", "token admin-token-1234 and hunter2-pw");

  res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->body.find("hunter2-pw") == std::string::npos);
  CHECK(res->body.find("admin-token-1234") == std::string::npos);
  const auto d = parse(res->body);
  CHECK(std::string(d["pipelines"]["guarded"]["stages"]["proj"]["last_error"].GetString()) ==
        "cannot connect to postgresql://app:***@db.example/o (password ***)");
  res = c.Get("/stats");
  REQUIRE(res);
  CHECK(res->body.find("hunter2-pw") == std::string::npos);
  // An error answer that quotes what the client sent is masked too.
  res = c.Get("/x-hunter2-pw-admin-token-1234");
  check_json_error(res, 404);
  CHECK(res->body.find("hunter2-pw") == std::string::npos);
  CHECK(res->body.find("admin-token-1234") == std::string::npos);
  res = c.Post("/reload?stage=admin-token-1234", "", "text/plain");
  check_json_error(res, 404);
  CHECK(res->body.find("admin-token-1234") == std::string::npos);
  server.stop();
  std::filesystem::remove_all(dir);
}

TEST_CASE("reload without a callback answers 501, and a throwing callback 500") {
  AdminServer none(loopback(), empty_supervisor(), nullptr);
  none.start();
  auto c = client_for(none);
  check_json_error(c.Post("/reload", "", "text/plain"), 501);

  AdminServer throwing(loopback(), empty_supervisor(),
                       [](const std::string&) -> std::string { throw std::runtime_error("boom"); });
  throwing.start();
  auto t = client_for(throwing);
  check_json_error(t.Post("/reload", "", "text/plain"), 500);
  // Still serving after the exception.
  auto res = t.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("with a token, reload needs the bearer token; reads do not") {
  int calls = 0;
  AdminServer server(loopback("s3cret"), empty_supervisor(), [&](const std::string&) {
    ++calls;
    return std::string();
  });
  server.start();
  auto c = client_for(server);

  auto res = c.Post("/reload", "", "text/plain");
  check_json_error(res, 401);
  CHECK(res->get_header_value("WWW-Authenticate") == "Bearer");
  check_json_error(c.Post("/reload", {{"Authorization", "Bearer wrong"}}, "", "text/plain"), 401);
  check_json_error(c.Post("/reload", {{"Authorization", "Bearer s3cre"}}, "", "text/plain"), 401);
  check_json_error(c.Post("/reload", {{"Authorization", "Basic s3cret"}}, "", "text/plain"), 401);
  CHECK(calls == 0);

  res = c.Post("/reload", {{"Authorization", "Bearer s3cret"}}, "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(calls == 1);

  for (const char* path : {"/health", "/stats", "/metrics"}) {
    res = c.Get(path);
    REQUIRE(res);
    CHECK_MESSAGE(res->status == 200, path);
  }
}

TEST_CASE("the token comes from SLUICE_ADMIN_TOKEN when the settings have none") {
  ScopedEnv env("SLUICE_ADMIN_TOKEN", "from-env");
  AdminServer server(loopback(), empty_supervisor(), [](const std::string&) { return ""; });
  server.start();
  auto c = client_for(server);
  check_json_error(c.Post("/reload", "", "text/plain"), 401);
  auto res = c.Post("/reload", {{"Authorization", "Bearer from-env"}}, "", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("binding a non-loopback address without a token is refused at start") {
  unsetenv("SLUICE_ADMIN_TOKEN");
  auto settings = loopback();
  settings.host = "0.0.0.0";
  AdminServer open(settings, empty_supervisor(), nullptr);
  CHECK_THROWS_AS(open.start(), AdminError);
  CHECK_FALSE(open.running());
  try {
    open.start();
  } catch (const AdminError& e) {
    CHECK(std::string(e.what()).find("token") != std::string::npos);
  }

  settings.token = "t";
  AdminServer guarded(settings, empty_supervisor(), nullptr);
  guarded.start();
  CHECK(guarded.running());
  CHECK(guarded.port() != 0);
}

TEST_CASE("loopback hosts are told apart from the others") {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1"})
    CHECK_MESSAGE(is_loopback_host(host), host);
  for (const char* host : {"0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "example.com", ""})
    CHECK_MESSAGE(!is_loopback_host(host), host);
}

TEST_CASE("a port already taken is a clear start error") {
  AdminServer first(loopback(), empty_supervisor(), nullptr);
  first.start();
  auto settings = loopback();
  settings.port = first.port();
  AdminServer second(settings, empty_supervisor(), nullptr);
  CHECK_THROWS_AS(second.start(), AdminError);
}

TEST_CASE("a disabled admin API does not listen") {
  auto settings = loopback();
  settings.enabled = false;
  AdminServer server(settings, empty_supervisor(), nullptr);
  server.start();
  CHECK_FALSE(server.running());
  CHECK(server.port() == 0);
}

TEST_CASE("unknown paths are 404 and wrong methods 405, with a JSON error") {
  AdminServer server(loopback(), empty_supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  check_json_error(c.Get("/nope"), 404);
  check_json_error(c.Get("/"), 404);
  check_json_error(c.Get("/stats/extra"), 404);

  auto res = c.Get("/reload");
  check_json_error(res, 405);
  CHECK(res->get_header_value("Allow") == "POST");
  res = c.Post("/stats", "", "text/plain");
  check_json_error(res, 405);
  CHECK(res->get_header_value("Allow") == "GET, HEAD");
  check_json_error(c.Delete("/health"), 405);
  check_json_error(c.Put("/metrics", "x", "text/plain"), 405);

  res = c.Head("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("malformed requests get a 4xx and the server keeps serving") {
  AdminServer server(loopback(), empty_supervisor(), nullptr);
  server.start();

  SUBCASE("garbage bytes") {
    std::string garbage;
    for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 7919) % 256);
    const std::string answer = raw_exchange(server.port(), garbage + "\r\n\r\n");
    CHECK(status_of(answer) == 400);
    CHECK(body_of(answer).find("\"error\"") != std::string::npos);
  }
  SUBCASE("a request line that is not HTTP") {
    const std::string answer = raw_exchange(server.port(), "HELLO\r\n\r\n");
    CHECK(status_of(answer) == 400);
  }
  SUBCASE("a huge header") {
    const std::string request =
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(256 * 1024, 'a') + "\r\n\r\n";
    const int status = status_of(raw_exchange(server.port(), request));
    CHECK(status >= 400);
    CHECK(status < 500);
  }
  SUBCASE("very many headers") {
    std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 20000; ++i) request += "X-H" + std::to_string(i) + ": v\r\n";
    request += "\r\n";
    // Either refused or answered, but answered: no crash, no hang.
    CHECK(status_of(raw_exchange(server.port(), request)) != 0);
  }
  SUBCASE("a huge URI") {
    const std::string request =
        "GET /health?" + std::string(100000, 'q') + " HTTP/1.1\r\nHost: x\r\n\r\n";
    const int status = status_of(raw_exchange(server.port(), request));
    CHECK(status >= 400);
    CHECK(status < 500);
  }
  SUBCASE("a body larger than allowed") {
    // Refused on the length alone, before any of the body is read.
    const std::string request =
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(1 << 20) +
        "\r\n\r\n";
    CHECK(status_of(raw_exchange(server.port(), request)) == 413);
  }
  SUBCASE("a bad Content-Length") {
    const std::string answer = raw_exchange(
        server.port(), "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n");
    const int status = status_of(answer);
    CHECK(status >= 400);
    CHECK(status < 600);
  }
  SUBCASE("a connection closed mid-request") {
    const int fd = connect_to(server.port());
    CHECK(send(fd, "GET /hea", 8, MSG_NOSIGNAL) == 8);
    close(fd);
  }

  auto c = client_for(server);
  auto res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("health answers while more slow clients than worker threads hold partial requests") {
  const auto server = started([](AdminServer::Options& o) { o.threads = 2; });
  SlowClients slow(server->port(), 8);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // every slow one has been taken

  httplib::Client c("127.0.0.1", server->port());
  c.set_connection_timeout(3, 0);
  c.set_read_timeout(3, 0);  // a functional bound: the answer must come while they still send
  auto res = c.Get("/health");
  REQUIRE_MESSAGE(res, "no answer from /health while slow clients are connected");
  CHECK(res->status == 200);
}

TEST_CASE("a client that does not finish its request in time gets 408 and is closed") {
  const auto server =
      started([](AdminServer::Options& o) { o.request_timeout = std::chrono::milliseconds(1000); });
  SlowClients slow(server->port(), 1);  // keeps sending, one byte every 500 ms
  std::string answer;
  CHECK_MESSAGE(read_until_closed(slow.fds().front(), answer),
                "the server kept a connection open that never finished its request");
  CHECK(status_of(answer) == 408);
  CHECK(body_of(answer).find("\"error\"") != std::string::npos);
}

TEST_CASE("a client over its connection limit takes the slot of its oldest slow connection") {
  const auto server = started([](AdminServer::Options& o) { o.max_connections_per_client = 2; });
  SlowClients slow(server->port(), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // past the eviction grace
  // Loopback clients are all one address: a slow one must not keep /health from answering.
  httplib::Client c("127.0.0.1", server->port());
  c.set_connection_timeout(3, 0);
  c.set_read_timeout(3, 0);  // a functional bound: well before the slow ones' 5 s deadline
  auto res = c.Get("/health");
  REQUIRE_MESSAGE(res, "no answer from /health while its client's slots were held");
  CHECK(res->status == 200);
  // The oldest slow connection made room: answered 503 and closed; the other is still read.
  std::string answer;
  CHECK(read_until_closed(slow.fds().front(), answer));
  CHECK(status_of(answer) == 503);
  CHECK(body_of(answer).find("\"error\"") != std::string::npos);
}

TEST_CASE("a connection over the limits with no slow one to replace is answered 503 and closed") {
  const auto server = started([](AdminServer::Options& o) {
    o.max_connections_per_client = 2;
    o.eviction_grace = std::chrono::seconds(60);
  });
  // Connections within the eviction grace: none of them makes room for the third.
  const int a = connect_to(server->port());
  const int b = connect_to(server->port());
  const int extra = connect_to(server->port());
  std::string answer;
  CHECK(read_until_closed(extra, answer));
  CHECK(status_of(answer) == 503);
  for (const int fd : {a, b, extra}) close(fd);
  // Their slots are free again once the server has seen them close.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto c = client_for(*server);
  auto res = c.Get("/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("stop() returns while slow clients are still sending, closing their connections") {
  AdminServer server(loopback(), empty_supervisor(), nullptr);
  server.start();
  SlowClients slow(server.port(), 6);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto stopped = std::async(std::launch::async, [&server] { server.stop(); });
  // A functional bound, far below the request deadline, not a speed target: stop() must not
  // wait for the slow clients at all.
  const bool prompt = stopped.wait_for(std::chrono::seconds(3)) == std::future_status::ready;
  slow.stop();  // lets a stop() that waits for them finish, so the test ends either way
  stopped.wait();
  CHECK_MESSAGE(prompt, "stop() waited for clients that never finish their request");
  CHECK_FALSE(server.running());
  std::string answer;
  CHECK(read_until_closed(slow.fds().front(), answer));
}

// Clients that ask for a /metrics of megabytes and never read it: each worker waited 2 s per
// stalled write and the requests queued behind them were made and written in turn, so a stop
// (SIGTERM of `sluice run`) took 20 s longer with 16 such clients (probe19a).
namespace {

// 3000 stages: /metrics is about 4.8 MB, more than a loopback socket's buffers hold. Every step
// sets the same field, so a record stays small: with a field of its own per step, a record grew
// to 3000 fields through the chain, each step parsing all it had so far, and under TSan one batch
// took minutes; a stop awaits the batch under way, so the case seemed to hang in its drain.
std::string wide_pipeline() {
  std::string yaml = "name: wide\nsource: {type: generator, name: gen, rate: 10}\ntransforms:\n";
  for (int i = 1; i <= 3000; ++i) yaml += "  - {type: fields, add: {f: x}}\n";
  return yaml + "sink: {type: \"null\", name: out}\n";
}

// Once /metrics has all 3000 stages, `count` connections that ask for it and never read, their
// receive buffers small; after a second the workers' writes to them have stalled.
std::vector<int> stalled_metrics_readers(const AdminServer& server, int count) {
  auto c = client_for(server);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t metrics_bytes = 0;
  while (metrics_bytes < 4'000'000 && std::chrono::steady_clock::now() < deadline) {
    if (auto res = c.Get("/metrics")) metrics_bytes = res->body.size();
  }
  REQUIRE(metrics_bytes >= 4'000'000);
  std::vector<int> readers;
  for (int i = 0; i < count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    const int small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size()));
    readers.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return readers;
}

}  // namespace

TEST_CASE("stop() cuts off answers clients do not read and answers the queued requests 503") {
  RunningPipelines running(wide_pipeline());
  AdminServer server(loopback(), running.supervisor(), nullptr);
  server.start();
  const std::vector<int> readers = stalled_metrics_readers(server, 16);  // 4 times the workers
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("stop() with 16 clients that do not read: " << seconds << " s");
  // Below a single stalled write's 2 s; before, 16 clients held it for over 8 s. Under a
  // sanitizer a worker still making its 4.8 MB /metrics takes seconds to notice the stop (3.4 s
  // seen under TSan on a loaded machine), so there the bound is the old 8 s; the 503 below tells
  // the fix from before in every build.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  CHECK(seconds < 8);
#else
  CHECK(seconds < 2);
#endif
  // The last one asked was still queued: answered 503, not served.
  std::string answer;
  CHECK(read_until_closed(readers.back(), answer));
  CHECK(answer.rfind("HTTP/1.1 503", 0) == 0);
  for (const int fd : readers) close(fd);
}

// The pipelines drain after a SIGTERM while the admin server still runs (it stops after them):
// 16 clients asking for a 4.8 MB /metrics were served beside the drain, which took a loaded
// machine's SIGTERM from 4.7 s to 18.8 s. From the stop request on, nothing big is made or sent.
TEST_CASE("once a stop is requested, health says stopping and stats and metrics are refused 503") {
  RunningPipelines running(wide_pipeline());
  AdminServer server(loopback(), running.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document&, int status) { return status == 200; });
  REQUIRE(c.Get("/stats")->status == 200);
  const std::vector<int> readers = stalled_metrics_readers(server, 16);

  const auto t0 = std::chrono::steady_clock::now();
  running.supervisor().request_stop();
  // The last one asked was still queued behind 4 workers' stalled writes: answered 503 at once,
  // the stalled answers cut off (before: served whole after the others' 2 s write timeouts).
  std::string answer;
  CHECK(read_until_closed(readers.back(), answer));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("the queued /metrics answered " << seconds << " s after the stop request");
  CHECK(answer.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(answer.find("stopping") != std::string::npos);
  // Within a write's 100 ms slice and the making of a /metrics a worker had begun (0.1 s; seen
  // 0.08 s). Before, the queued one waited for rounds of blocked sends (each up to the socket's
  // 5 s send timeout), then was served 200: the 503 above is what tells the two apart. Under a
  // sanitizer making a /metrics alone takes seconds (3.2-5.5 s seen under TSan), so the time is
  // checked in the plain build only.
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  CHECK(seconds < 1);
#endif
  for (const int fd : readers) close(fd);

  auto health = c.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 503);
  const auto d = parse(health->body);
  CHECK(std::string(d["status"].GetString()) == "stopping");
  CHECK_FALSE(d["healthy"].GetBool());
  for (const char* path : {"/stats", "/metrics"}) {
    CAPTURE(path);
    auto res = c.Get(path);
    REQUIRE(res);
    check_json_error(res, 503);
    CHECK(res->body.find("stopping") != std::string::npos);
  }
  server.stop();
}

TEST_CASE("port 0 binds an ephemeral port and stop() releases it") {
  AdminServer server(loopback(), empty_supervisor(), nullptr);
  server.start();
  const uint16_t port = server.port();
  REQUIRE(port != 0);
  CHECK(server.url() == "http://127.0.0.1:" + std::to_string(port));
  server.stop();
  CHECK_FALSE(server.running());
  server.stop();  // idempotent
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1, 0);
  CHECK_FALSE(c.Get("/health"));
}

// A loopback port listened on by another user (uid 65534): what a local user who took the port
// before `sluice run` (or while it is down) sees of the admin commands. Records what each
// connection sent, answering {}.
class SquattedPort {
 public:
  SquattedPort() {
    REQUIRE(::seteuid(65534) == 0);  // the socket belongs to whoever created it
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::seteuid(0) == 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    REQUIRE(listen(fd_, 8) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~SquattedPort() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string received() {
    std::lock_guard lock(mu_);
    return received_;
  }

 private:
  void serve() {
    for (;;) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      timeval tv{2, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char buf[4096];
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      {
        std::lock_guard lock(mu_);
        if (n > 0) received_.append(buf, static_cast<size_t>(n));
      }
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
      send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      close(c);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::string received_;
  std::thread thread_;
};

TEST_CASE("the admin commands never send the token to a port another local user listens on") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: listening as another user needs root");
    return;
  }
  SquattedPort squatter;
  const sluice::cli::AdminTarget target{squatter.url(), "--url", "root-admin-token-77"};
  // A read needs no token, so none is sent, whoever listens.
  CHECK(sluice::cli::run_stats_command(target, true) == 0);
  CHECK(squatter.received().find("GET /stats") != std::string::npos);
  // A reload needs it: refused before connecting, naming the listener's uid.
  CHECK(sluice::cli::run_reload_command(target, "") == 1);
  CHECK(squatter.received().find("root-admin-token-77") == std::string::npos);
  CHECK(squatter.received().find("POST") == std::string::npos);
}

TEST_CASE("sluice stats and top --once fail with 1 when nothing listens at the URL") {
  AdminServer server(loopback(), empty_supervisor(), nullptr);
  server.start();
  const std::string url = server.url();
  server.stop();
  CHECK(sluice::cli::run_stats_command(url, false) == 1);
  CHECK(sluice::cli::run_top_command(url, true) == 1);
  CHECK(sluice::cli::run_stats_command("not a url at all", false) == 1);
}

TEST_CASE("sluice stats and top --once succeed against a running pipeline's admin API") {
  RunningPipelines run(kUnbounded);
  AdminServer server(loopback(), run.supervisor(), nullptr);
  server.start();
  auto c = client_for(server);
  wait_for_health(c, [](const rapidjson::Document& d, int) {
    return std::string(d["pipelines"]["tiny"]["state"].GetString()) != "starting";
  });
  CHECK(sluice::cli::run_stats_command(server.url(), false) == 0);
  CHECK(sluice::cli::run_stats_command(server.url() + "/", true) == 0);
  CHECK(sluice::cli::run_top_command(server.url(), true) == 0);
}

TEST_CASE("--admin takes HOST:PORT, [V6]:PORT, :PORT or off, and refuses anything else") {
  sluice::core::AdminSettings base;
  base.token = "kept";
  auto s = sluice::admin::apply_admin_flag(base, "0.0.0.0:9000");
  CHECK(s.host == "0.0.0.0");
  CHECK(s.port == 9000);
  CHECK(s.enabled);
  CHECK(s.token == "kept");
  s = sluice::admin::apply_admin_flag(base, "[::1]:0");
  CHECK(s.host == "::1");
  CHECK(s.port == 0);
  s = sluice::admin::apply_admin_flag(base, ":7000");
  CHECK(s.host == base.host);
  CHECK(s.port == 7000);
  CHECK_FALSE(sluice::admin::apply_admin_flag(base, "off").enabled);
  for (const char* bad : {"", "8088", "host:", "host:http", "host:70000", "::1:80", "h:-1"})
    CHECK_THROWS_AS_MESSAGE(sluice::admin::apply_admin_flag(base, bad), AdminError, bad);
}
