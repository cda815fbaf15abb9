// `sluice stats` and `sluice top`: fetch /stats over HTTP and draw it with admin/stats_view.
#include "cli/commands_admin.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <iostream>
#include <optional>

#include "admin/stats_view.hpp"

namespace sluice::cli {
namespace {

struct Fetched {
  bool ok = false;
  std::string body;
  std::string error;  // why it is not ok, for the user
};

Fetched fetch_stats(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  Fetched out;
  httplib::Client client(url);
  if (!client.is_valid()) {
    out.error = fmt::format("'{}' is not an admin API address (e.g. {})", url, kDefaultAdminUrl);
    return out;
  }
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(5, 0);
  auto res = client.Get("/stats");
  if (!res) {
    out.error =
        fmt::format("cannot reach the admin API at {}: {}", url, httplib::to_string(res.error()));
    return out;
  }
  if (res->status != 200) {
    out.error = fmt::format("the admin API at {} answered {}: {}", url, res->status, res->body);
    return out;
  }
  out.ok = true;
  out.body = std::move(res->body);
  return out;
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

int run_stats_command(const std::string& url, bool json) {
  const Fetched fetched = fetch_stats(url);
  if (!fetched.ok) {
    std::cerr << fetched.error << std::endl;
    return 1;
  }
  if (json) {
    std::cout << fetched.body << std::endl;
    return 0;
  }
  try {
    std::cout << admin::render_stats_table(admin::parse_stats(fetched.body)) << std::flush;
  } catch (const std::exception& e) {
    std::cerr << "the admin API at " << url << " sent unreadable stats: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}

int run_top_command(const std::string& url, bool once) {
  constexpr auto kRefresh = std::chrono::seconds(1);
  admin::TopView view;

  auto sample = [&](double elapsed_s) {
    const Fetched fetched = fetch_stats(url);
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
    std::cout << view.render(title(url)) << std::flush;
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
    if (error.empty()) last_sample = now;
    std::cout << "\x1b[H\x1b[2J" << view.render(title(url), error) << std::flush;
    if (terminal.wait_for_quit(now + kRefresh)) break;
  }
  return 0;
}

}  // namespace sluice::cli
