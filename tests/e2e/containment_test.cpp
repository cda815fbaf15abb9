// In-process containment through `sluice run` (docs/containment.md): a transform that segfaults,
// aborts or calls exit()/_exit() on one record is named on stderr and in the crash journal, the
// next runs narrow the crash down to that record and dead-letter it; a transform that hangs
// makes /health say stuck (503) and a stop exits 71 without committing past it.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using namespace sluice::test;

namespace {

constexpr const char* kMarker = "poison";

// `count` lines {"n":i}; line `poison` also holds the marker. Returns the byte offset of it.
size_t write_input(const fs::path& file, int count, int poison) {
  std::string text;
  size_t poison_at = 0;
  for (int i = 0; i < count; ++i) {
    if (i == poison) poison_at = text.size();
    text += "{\"n\":" + std::to_string(i) + (i == poison ? ",\"p\":\"poison\"" : "") + "}\n";
  }
  write_file(file.string(), text);
  return poison_at;
}

std::string pipeline_yaml(const std::string& action, const std::string& extra = "") {
  return "name: contained\nsource: {type: file, path: in.jsonl}\ntransforms:\n"
         "  - {type: poison, marker: " +
         std::string(kMarker) + ", action: " + action + extra +
         "}\nsink: {type: file, path: out.jsonl}\n"
         "dead_letter: {type: file, format: envelope, path: dlq.jsonl}\n"
         "errors: {tolerance: all}\n";
}

std::vector<std::string> run_argv(const fs::path& dir, const std::string& admin = "off") {
  return {bin(),
          "run",
          "--admin",
          admin,
          "--no-plugin-watch",
          "--plugin-path",
          (binary_dir() / "test-plugins" / "poison").string(),
          (dir / "p.yaml").string()};
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::vector<std::string> lines;
  std::istringstream in(read_file(file.string()));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

struct Runs {
  std::vector<ProcessResult> results;
  bool finished() const { return !results.empty() && results.back().exit_code == 0; }
};

// Runs the pipeline again until a run ends with 0, at most `max_runs` times.
Runs run_until_clean(const fs::path& dir, int max_runs) {
  Runs runs;
  while (static_cast<int>(runs.results.size()) < max_runs && !runs.finished())
    runs.results.push_back(run_process(run_argv(dir)));
  return runs;
}

// Every record but the poison one reached the sink (at least once), the poison one is the one
// dead letter, with `reason`, and the journal is cleared.
void check_quarantined(const fs::path& dir, int count, const std::string& reason) {
  const std::vector<std::string> out = lines_of(dir / "out.jsonl");
  const std::set<std::string> distinct(out.begin(), out.end());
  CHECK(distinct.size() == static_cast<size_t>(count - 1));
  CHECK(std::none_of(distinct.begin(), distinct.end(),
                     [](const std::string& line) { return contains(line, kMarker); }));
  const auto dlq = lines_of(dir / "dlq.jsonl");
  REQUIRE(dlq.size() == 1);
  CHECK(contains(dlq[0], kMarker));
  CHECK(contains(dlq[0], reason));
  CHECK_FALSE(fs::exists(dir / ".sluice"));
}

void check_crash_runs(const Runs& runs, int crash_code, const std::string& said) {
  for (size_t i = 0; i + 1 < runs.results.size(); ++i) {
    const auto& r = runs.results[i];
    CAPTURE(i);
    INFO(r.err);
    CHECK(r.exit_code == crash_code);
    CHECK(contains(r.err, said));
    CHECK(contains(r.err,
                   "in plugin 'poison' (stage contained.transform0 of pipeline "
                   "contained), call process() on "));
  }
}

}  // namespace

namespace {

// `count` records, the one at `poison` marked, through poison doing `action`, run again until a
// run ends cleanly (at most 3 runs).
Runs run_poisoned(const std::string& action, int count, int poison) {
  auto dir = scratch("containment-" + action);
  write_input(dir / "in.jsonl", count, poison);
  write_file((dir / "p.yaml").string(), pipeline_yaml(action));
  return run_until_clean(dir, 3);
}

}  // namespace

TEST_CASE("a transform that segfaults on 1 record in 100,000: 99,999 delivered, 1 dead-lettered") {
  const Runs runs = run_poisoned("segfault", 100'000, 54'321);
  const auto dir = binary_dir() / "e2e-scratch" / "containment-segfault";
  INFO(runs.results.back().err);
  REQUIRE(runs.finished());
  CHECK(runs.results.size() <= 3);  // the crash, at most one narrowing crash, the clean run
  check_crash_runs(runs, 128 + SIGSEGV, "sluice: SIGSEGV in plugin 'poison'");
  CHECK(contains(runs.results.back().out, ", 1 dead-lettered,"));
  check_quarantined(dir, 100'000,
                    "plugin 'poison' crashed (SIGSEGV) on this record in an earlier run");
}

TEST_CASE("a transform that aborts on one record: named, narrowed and dead-lettered") {
  const Runs runs = run_poisoned("abort", 2'000, 1'234);
  const auto dir = binary_dir() / "e2e-scratch" / "containment-abort";
  INFO(runs.results.back().err);
  REQUIRE(runs.finished());
  check_crash_runs(runs, 128 + SIGABRT, "sluice: SIGABRT in plugin 'poison'");
  check_quarantined(dir, 2'000, "plugin 'poison' crashed (SIGABRT) on this record");
}

namespace {

// One run of 10 records in scratch(`name`), poison doing `action` on the 6th; with `topic` (YAML
// text) the file source names its records' topic so, and with `json` logs are JSON.
ProcessResult run_once(const std::string& name, const std::string& action,
                       const std::string& topic = "", bool json = false) {
  auto dir = scratch(name);
  write_input(dir / "in.jsonl", 10, 5);
  std::string yaml = pipeline_yaml(action);
  if (!topic.empty()) {
    const std::string source = "source: {type: file, path: in.jsonl}";
    yaml.replace(yaml.find(source), source.size(),
                 "source: {type: file, path: in.jsonl, topic: " + topic + "}");
  }
  write_file((dir / "p.yaml").string(), yaml);
  auto argv = run_argv(dir);
  if (json) argv.insert(argv.begin() + 1, {"--log-format", "json"});
  return run_process(argv);
}

}  // namespace

TEST_CASE("a crash report escapes control characters in the records' positions") {
  // The positions' topics come from the source plugin: an ESC or a newline among them reached
  // stderr raw from the crash handler, and could forge a line or drive the terminal.
  const ProcessResult r =
      run_once("containment-forged-topic", "abort", "\"t\\e[2J\\nsluice: FORGED\"");
  INFO(r.err);
  CHECK(r.exit_code == 128 + SIGABRT);
  CHECK(contains(r.err, "sluice: SIGABRT in plugin 'poison'"));
  CHECK(contains(r.err, "t\\x1b[2J\\nsluice: FORGED"));
  CHECK_FALSE(contains(r.err, "\x1b"));
  CHECK_FALSE(contains(r.err, "\nsluice: FORGED"));
}

namespace {

// The "msg" of each line of `err`, every line a JSON log line {"ts_ms":N,"level":L,"msg":M} of
// valid UTF-8 (a line that is not counts as a failed check).
std::vector<std::string> json_messages(const std::string& err) {
  std::vector<std::string> messages;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);) {
    CAPTURE(line);
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size());
    CHECK_FALSE(doc.HasParseError());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    CHECK(doc.MemberCount() == 3);
    CHECK((doc.HasMember("ts_ms") && doc["ts_ms"].IsInt64() && doc["ts_ms"].GetInt64() > 0));
    CHECK((doc.HasMember("level") && doc["level"].IsString()));
    if (doc.HasMember("msg") && doc["msg"].IsString())
      messages.emplace_back(doc["msg"].GetString(), doc["msg"].GetStringLength());
  }
  return messages;
}

std::string crash_message(const std::vector<std::string>& messages, const std::string& start) {
  for (const auto& m : messages)
    if (m.rfind(start, 0) == 0) return m;
  return "";
}

}  // namespace

TEST_CASE("with --log-format json a crash report is a JSON log line, its positions escaped") {
  // Before, the crash handler wrote a text line among the JSON ones.
  const ProcessResult r =
      run_once("containment-json-report", "abort", "\"t\\e[2J\\n\\\"\\\\\xc3\xa9\"", true);
  INFO(r.err);
  CHECK(r.exit_code == 128 + SIGABRT);
  const auto messages = json_messages(r.err);
  const std::string crash = crash_message(messages, "sluice: SIGABRT in plugin 'poison'");
  CHECK(contains(crash,
                 "in plugin 'poison' (stage contained.transform0 of pipeline contained), call "
                 "process() on "));
  CHECK(contains(crash, "t\x1b[2J\n\"\\\xc3\xa9/0@"));  // the topic's bytes, as they are
  CHECK(contains(r.err, R"(\u001b[2J\n\"\\)"));
  CHECK(r.err.find("\x1b") == std::string::npos);
  for (const std::string fn : {"exit", "_exit"}) {
    CAPTURE(fn);
    const ProcessResult e = run_once("containment-json-" + fn, fn, "", true);
    INFO(e.err);
    CHECK(e.exit_code == 70);
    const auto said = json_messages(e.err);
    CHECK(contains(crash_message(said, "sluice: " + fn + "(0) in plugin 'poison'"),
                   "call process() on "));
    CHECK(crash_message(said, "sluice: a plugin called " + fn + "(0) inside a call") ==
          "sluice: a plugin called " + fn + "(0) inside a call; exiting with status 70");
  }
}

TEST_CASE("a transform that calls exit, _exit, _Exit or quick_exit in a call fails, status 70") {
  for (const std::string fn : {"exit", "_exit", "_Exit", "quick_exit"}) {
    CAPTURE(fn);
    const Runs runs = run_poisoned(fn, 2'000, 777);
    const auto dir = binary_dir() / "e2e-scratch" / ("containment-" + fn);
    INFO(runs.results.back().err);
    REQUIRE(runs.finished());
    REQUIRE(runs.results.size() >= 2);
    check_crash_runs(runs, 70, "sluice: " + fn + "(0) in plugin 'poison'");
    check_quarantined(dir, 2'000, "plugin 'poison' called " + fn + "(0) inside process()");
  }
}

namespace {

// GET http://127.0.0.1:port/health: the status line and body, "" when nothing answers.
std::string get_health(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) answer.append(buf, n);
    }
  }
  ::close(fd);
  return answer;
}

}  // namespace

TEST_CASE(
    "a transform that hangs: /health says stuck (503), a stop exits 71 committing before it") {
  auto dir = scratch("containment-hang");
  const size_t poison_at = write_input(dir / "in.jsonl", 2'000, 1'500);
  write_file((dir / "p.yaml").string(), pipeline_yaml("hang", ", call_timeout_ms: 300"));
  const int port = 21000 + static_cast<int>(::getpid() % 20000);
  const int pid = start_process(run_argv(dir, "127.0.0.1:" + std::to_string(port)),
                                (dir / "stdout").string(), (dir / "stderr").string());
  std::string health;
  for (int i = 0; i < 200 && !contains(health, "\"stuck\""); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    health = get_health(port);
  }
  INFO(health);
  CHECK(contains(health, " 503 "));
  CHECK(contains(health, "\"state\":\"stuck\""));
  CHECK(contains(health, "call process() on "));
  ::kill(pid, SIGTERM);
  const auto stop = std::chrono::steady_clock::now();
  CHECK(wait_process(pid) == 71);
  CHECK(std::chrono::steady_clock::now() - stop < std::chrono::seconds(30));
  const std::string err = read_file((dir / "stderr").string());
  INFO(err);
  CHECK(contains(err, "stop cannot drain: stuck: plugin 'poison'"));
  // Nothing at or past the stuck record was committed: a restart reads it again. Acks go by
  // poll run (ARCHITECTURE.md, Acks), so when the stuck batch shares its run with the records
  // before it, nothing of that run is committed at all, and there may be no offset yet.
  const std::string offsets = read_file((dir / "in.jsonl.sluice-offset").string());
  INFO(offsets);
  const std::string key = "\"line_offset\":";
  const auto at = offsets.find(key);
  if (at != std::string::npos) CHECK(std::stoull(offsets.substr(at + key.size())) <= poison_at);
}

namespace {

struct StoppedRun {
  int exit_code;
  std::chrono::steady_clock::duration after_stop;
  std::string err;
};

// Starts the pipeline with a transform whose creation takes `setup_ms` (-1: forever), and sends
// one SIGTERM a second later, as a service manager does.
StoppedRun stop_during_setup(const fs::path& dir, const std::string& setup_ms) {
  write_input(dir / "in.jsonl", 100, -1);
  write_file((dir / "p.yaml").string(), pipeline_yaml("hang", ", setup_ms: " + setup_ms));
  const int pid =
      start_process(run_argv(dir), (dir / "stdout").string(), (dir / "stderr").string());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ::kill(pid, SIGTERM);
  const auto stop = std::chrono::steady_clock::now();
  const int code = wait_within(pid, std::chrono::seconds(40));
  return {code, std::chrono::steady_clock::now() - stop, read_file((dir / "stderr").string())};
}

}  // namespace

TEST_CASE("a stop during a stage's setup that never returns exits 71 after the grace") {
  auto dir = scratch("containment-setup-hang");
  const StoppedRun run = stop_during_setup(dir, "-1");
  INFO(run.err);
  CHECK(run.exit_code == 71);
  CHECK(run.after_stop >= std::chrono::seconds(9));
  CHECK(contains(run.err, "pipeline contained: stop cannot wait: the setup of its stages"));
  CHECK_FALSE(fs::exists(dir / "out.jsonl"));
}

TEST_CASE("a stop during a slow stage setup waits for it, then ends cleanly with nothing read") {
  auto dir = scratch("containment-setup-slow");
  const StoppedRun run = stop_during_setup(dir, "3000");
  INFO(run.err);
  CHECK(run.exit_code == 0);
  CHECK_FALSE(contains(run.err, "stop cannot wait"));
  // The pipeline was never started: no record was read, none is committed.
  CHECK(lines_of(dir / "out.jsonl").empty());
  CHECK_FALSE(fs::exists(dir / "in.jsonl.sluice-offset"));
}

TEST_CASE("call_timeout_ms that is not a number is a config error at its FILE:LINE:COL") {
  auto dir = scratch("containment-config");
  write_file((dir / "p.yaml").string(), pipeline_yaml("hang", ", call_timeout_ms: soon"));
  auto r =
      run_process({bin(), "validate", "--plugin-path",
                   (binary_dir() / "test-plugins" / "poison").string(), (dir / "p.yaml").string()});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(contains(r.err, (dir / "p.yaml").string() + ":4:"));
  CHECK(contains(r.err, "call_timeout_ms: expected"));
}
