// `sluice stats`, `top` and `reload`: find the admin API, fetch /stats over HTTP (admin_client)
// and draw it with admin/stats_view, or ask for a reload.
#include "cli/commands_admin.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string_view>

#include "admin/admin_server.hpp"
#include "admin/stats_view.hpp"
#include "cli/admin_client.hpp"
#include "config/pipeline_spec.hpp"
#include "core/log_line.hpp"

namespace sluice::cli {
namespace {

struct Fetched {
  bool ok = false;
  std::string body;
  std::string error;  // why it is not ok, for the user
};

// Said after every failure to reach the API: which address was tried, and how to pick another.
std::string unreachable(const AdminTarget& target, const std::string& why) {
  return fmt::format(
      "cannot reach the admin API at {} ({}): {}\n"
      "  Is `sluice run` running with its admin API there? Choose the address with --url "
      "http://HOST:PORT, or name the pipeline file (FILE or --config FILE) to use its admin: "
      "section.",
      target.url, target.origin, why);
}

// /stats, /metrics and /health answer within a moment; a whole exchange gets this long.
constexpr std::chrono::seconds kReadDeadline{10};
// A reload drains the stage's in-flight batches before it answers.
constexpr std::chrono::seconds kReloadDeadline{125};

// A stage name as a query value: everything but unreserved characters percent-encoded, so no
// name can end the line or add a parameter.
std::string query_escaped(std::string_view value) {
  std::string out;
  for (const unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

// The request sent to the target, and why it did not get a whole answer, said for the user.
AdminAnswer ask(const AdminTarget& target, const AdminRequest& request) {
  AdminAnswer answer = exchange_with_admin_api(target.url, request);
  switch (answer.outcome) {
    case AdminAnswer::Outcome::answered:
    case AdminAnswer::Outcome::bad_answer:  // its error names the URL already
    case AdminAnswer::Outcome::cancelled:   // the user asked to leave: nothing to explain
      break;
    case AdminAnswer::Outcome::bad_url:
      answer.error = fmt::format("'{}' ({}) is not an admin API address (e.g. {})", target.url,
                                 target.origin, kDefaultAdminUrl);
      break;
    case AdminAnswer::Outcome::unreachable:
      answer.error = unreachable(target, answer.error);
      break;
  }
  return answer;
}

// The uid of the process listening on TCP `port` of this machine (/proc/net/tcp and tcp6).
std::optional<uid_t> listener_uid(int port) {
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits;
      uid_t uid = 0;
      if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid))
        continue;
      const auto colon = local.rfind(':');
      if (state != "0A" || colon == std::string::npos) continue;  // 0A: LISTEN
      if (std::strtol(local.c_str() + colon + 1, nullptr, 16) == port) return uid;
    }
  }
  return std::nullopt;
}

// Whether an address is one of this machine's: loopback, the wildcard (a connection to 0.0.0.0
// or :: reaches this machine) or an address of one of its interfaces.
bool local_address(const sockaddr* a, const std::vector<std::string>& interface_addresses) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a->sa_family == AF_INET) {
    const in_addr v4 = reinterpret_cast<const sockaddr_in*>(a)->sin_addr;
    const uint32_t host_order = ntohl(v4.s_addr);
    if ((host_order >> 24) == 127 || host_order == INADDR_ANY) return true;
    inet_ntop(AF_INET, &v4, text, sizeof text);
  } else if (a->sa_family == AF_INET6) {
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_UNSPECIFIED(&v6)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
      sockaddr_in mapped{};
      mapped.sin_family = AF_INET;
      std::memcpy(&mapped.sin_addr, &v6.s6_addr[12], 4);
      return local_address(reinterpret_cast<const sockaddr*>(&mapped), interface_addresses);
    }
    inet_ntop(AF_INET6, &v6, text, sizeof text);
  } else {
    return false;
  }
  return std::find(interface_addresses.begin(), interface_addresses.end(), text) !=
         interface_addresses.end();
}

// Whether `host` names this machine, resolved as the HTTP client resolves it: "LOCALHOST",
// "127.1", "0x7f000001", "2130706433", "0" and the machine's own addresses all do.
bool this_machine(const std::string& host) {
  std::vector<std::string> interface_addresses;
  if (ifaddrs* list = nullptr; getifaddrs(&list) == 0) {
    for (const ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      char text[INET6_ADDRSTRLEN] = {};
      if (i->ifa_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, text,
                  sizeof text);
      else if (i->ifa_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, text,
                  sizeof text);
      if (text[0] != '\0') interface_addresses.emplace_back(text);
    }
    freeifaddrs(list);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return admin::is_loopback_host(host);
  bool local = false;
  for (const addrinfo* a = found; a != nullptr && !local; a = a->ai_next)
    local = local_address(a->ai_addr, interface_addresses);
  freeaddrinfo(found);
  return local;
}

// Why the token must not go to the target: on this machine (any name or address of it) the port
// is served by another user's process, which may have taken it to collect tokens. Empty when the
// server is this user's or root's, or cannot be told (another machine).
std::string token_refusal(const AdminTarget& target) {
  const std::string scheme = "http://";
  std::string lowered = target.url.substr(0, scheme.size());
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lowered != scheme) return {};
  std::string authority = target.url.substr(scheme.size());
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (const auto at = authority.rfind('@'); at != std::string::npos)
    authority = authority.substr(at + 1);  // user:password@ goes to the same host
  std::string host = authority;
  int port = 80;  // http's, when the URL names none
  if (const auto colon = authority.rfind(':');
      colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    host = authority.substr(0, colon);
    port = std::atoi(authority.c_str() + colon + 1);
  }
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (!this_machine(host)) return {};
  const auto uid = listener_uid(port);
  if (!uid || *uid == ::geteuid() || *uid == 0) return {};
  return fmt::format(
      "the admin API at {} ({}) is served by a process of uid {}, not of this user or root: the "
      "token is not sent to it (another user may have taken the port)",
      target.url, target.origin, *uid);
}

// `cancel`: a stop signal's flag, which ends the fetch within 50 ms (`top`).
Fetched fetch_stats(const AdminTarget& target, const volatile std::sig_atomic_t* cancel = nullptr) {
  Fetched out;
  AdminRequest request;
  request.target = "/stats";
  request.deadline = kReadDeadline;  // reads send no token: they need none
  request.cancel = cancel;
  AdminAnswer answer = ask(target, request);
  if (!answer.answered()) {
    out.error = std::move(answer.error);
    return out;
  }
  if (answer.status != 200) {
    out.error = fmt::format("the admin API at {} answered {}: {}", target.url, answer.status,
                            core::one_line(answer.body));
    return out;
  }
  out.ok = true;
  out.body = std::move(answer.body);
  return out;
}

// "http://HOST:PORT" for connecting to what `sluice run` serves; a wildcard address is
// reached on loopback, an IPv6 literal goes in brackets.
std::string url_of(const std::string& host, uint16_t port) {
  std::string connect_host = host;
  if (host == "0.0.0.0" || host.empty()) connect_host = "127.0.0.1";
  if (host == "::") connect_host = "::1";
  if (connect_host.find(':') != std::string::npos) connect_host = "[" + connect_host + "]";
  return fmt::format("http://{}:{}", connect_host, port);
}

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

// Catches SIGINT/SIGTERM for its lifetime so the terminal is restored before exiting; without
// SA_RESTART, so a signal wakes the wait for a key.
class StopSignals {
 public:
  StopSignals() {
    g_stop = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// Keys without Enter and no echo (signals still on, so Ctrl-C works), drawing on the alternate
// screen; everything is put back on destruction, also when leaving by an exception.
class TerminalSession {
 public:
  TerminalSession() {
    keys_ = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (keys_) {
      termios raw = saved_;
      raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    screen_ = isatty(STDOUT_FILENO);
    if (screen_) std::cout << "\x1b[?1049h\x1b[?25l" << std::flush;
  }
  ~TerminalSession() {
    if (screen_) std::cout << "\x1b[?25h\x1b[?1049l" << std::flush;
    if (keys_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;

  // Waits until `deadline`; true if q was pressed. Returns early on a stop signal.
  bool wait_for_quit(std::chrono::steady_clock::time_point deadline) const {
    while (g_stop == 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd fd{STDIN_FILENO, POLLIN, 0};
      const int n = poll(keys_ ? &fd : nullptr, keys_ ? 1 : 0, static_cast<int>(left.count()));
      if (n > 0 && (fd.revents & POLLIN)) {
        char buf[32];
        const ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
        for (ssize_t i = 0; i < got; ++i)
          if (buf[i] == 'q' || buf[i] == 'Q') return true;
      }
    }
    return false;
  }

 private:
  termios saved_{};
  bool keys_ = false;
  bool screen_ = false;
};

std::string title(const std::string& url) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char clock[16];
  std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
  return fmt::format("sluice top  {}  {}  (q or Ctrl-C quits)", url, clock);
}

}  // namespace

AdminTarget resolve_admin_target(const std::optional<std::string>& url_flag,
                                 const std::string& pipeline_file) {
  AdminTarget target;
  if (const char* token = std::getenv("SLUICE_ADMIN_TOKEN")) target.token = token;
  if (url_flag) {
    target.url = *url_flag;
    target.origin = "--url";
  } else if (!pipeline_file.empty()) {
    const config::PipelineFile file = config::load_pipelines(pipeline_file);
    if (file.admin_location.line != 0 && !file.admin.enabled)
      throw config::ConfigError(file.admin_location,
                                "the admin API is off here (admin: enabled: false), so `sluice "
                                "run` of this file serves no stats; give --url if it runs with "
                                "--admin HOST:PORT");
    target.url = url_of(file.admin.host, file.admin.port);
    target.origin =
        file.admin_location.line != 0
            ? fmt::format("the admin: section of {}", file.admin_location.file)
            : fmt::format("the default address; {} has no admin: section", pipeline_file);
    if (!file.admin.token.empty()) target.token = file.admin.token;
  } else {
    target.url = kDefaultAdminUrl;
    target.origin = "the default address";
  }
  while (!target.url.empty() && target.url.back() == '/') target.url.pop_back();
  return target;
}

int run_stats_command(const AdminTarget& target, bool json) {
  const Fetched fetched = fetch_stats(target);
  if (!fetched.ok) {
    std::cerr << fetched.error << std::endl;
    return 1;
  }
  if (json) {
    // sluice's own stats are one line of JSON, which holds no control character (its strings
    // escape them); whatever else answers there reaches the terminal escaped as well.
    std::cout << core::one_line(fetched.body) << std::endl;
    return 0;
  }
  try {
    std::cout << admin::render_stats_table(admin::parse_stats(fetched.body)) << std::flush;
  } catch (const std::exception& e) {
    std::cerr << "the admin API at " << target.url << " sent unreadable stats: " << e.what()
              << std::endl;
    return 1;
  }
  return 0;
}

int run_top_command(const AdminTarget& target, bool once) {
  constexpr auto kRefresh = std::chrono::seconds(1);
  admin::TopView view;

  // A Ctrl-C ends a fetch under way at once (g_stop is set while StopSignals lives).
  auto sample = [&](double elapsed_s) {
    const Fetched fetched = fetch_stats(target, &g_stop);
    if (!fetched.ok) return fetched.error;
    try {
      view.add(admin::parse_stats(fetched.body), elapsed_s);
    } catch (const std::exception& e) {
      return std::string("unreadable stats: ") + e.what();
    }
    return std::string();
  };

  if (once) {
    const std::string error = sample(0);
    if (!error.empty()) {
      std::cerr << error << std::endl;
      return 1;
    }
    std::cout << view.render(title(target.url)) << std::flush;
    return 0;
  }

  StopSignals signals;
  TerminalSession terminal;
  std::optional<std::chrono::steady_clock::time_point> last_sample;
  while (g_stop == 0) {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed =
        last_sample ? std::chrono::duration<double>(now - *last_sample).count() : 0.0;
    // A failed fetch keeps the last figures on screen (the process may be restarting), and the
    // next rate is taken over the whole gap.
    const std::string error = sample(elapsed);
    if (g_stop != 0) break;
    if (error.empty()) last_sample = now;
    std::cout << "\x1b[H\x1b[2J" << view.render(title(target.url), error) << std::flush;
    if (terminal.wait_for_quit(now + kRefresh)) break;
  }
  return 0;
}

int run_stats_command(const std::string& url, bool json) {
  return run_stats_command(resolve_admin_target(url, ""), json);
}

int run_top_command(const std::string& url, bool once) {
  return run_top_command(resolve_admin_target(url, ""), once);
}

int run_reload_command(const AdminTarget& target, const std::string& stage) {
  if (!target.token.empty()) {
    if (const std::string refused = token_refusal(target); !refused.empty()) {
      std::cerr << refused << std::endl;
      return 1;
    }
  }
  AdminRequest request;
  request.method = "POST";
  request.target = stage.empty() ? "/reload" : "/reload?stage=" + query_escaped(stage);
  request.deadline = kReloadDeadline;
  if (!target.token.empty())
    request.headers.emplace_back("Authorization", "Bearer " + target.token);
  const AdminAnswer answer = ask(target, request);
  if (!answer.answered()) {
    std::cerr << answer.error << std::endl;
    return 1;
  }
  (answer.status == 200 ? std::cout : std::cerr) << core::one_line(answer.body) << std::endl;
  return answer.status == 200 ? 0 : 1;
}

}  // namespace sluice::cli
