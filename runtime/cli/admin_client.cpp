// The admin API's client: one request over a plain TCP socket, the answer read under caps and a
// deadline (cpp-httplib's client has neither a cap on headers nor on a body without a length).
#include "cli/admin_client.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "core/log_line.hpp"

namespace sluice::cli {
namespace {

using Clock = std::chrono::steady_clock;

// "64 KiB", "64 MiB", or bytes when not a whole multiple.
std::string size_text(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

std::string seconds_text(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? fmt::format("{} s", d.count() / 1000)
                               : fmt::format("{:.1f} s", static_cast<double>(d.count()) / 1000);
}

bool same_lowercase(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() &&
         std::equal(a.begin(), a.end(), lower.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == y;
         });
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct Address {
  std::string host;  // without brackets
  std::string port;
  std::string host_header;
};

// http://HOST[:PORT] or HOST[:PORT]; nothing after the authority but the slashes resolve leaves.
std::optional<Address> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() >= kScheme.size() && same_lowercase(url.substr(0, kScheme.size()), kScheme))
    url.remove_prefix(kScheme.size());
  else if (url.find("://") != std::string_view::npos)
    return std::nullopt;  // https or another scheme: the admin API is plain HTTP
  while (!url.empty() && url.back() == '/') url.remove_suffix(1);
  if (url.empty() || url.find_first_of("/?#@ \t\r\n") != std::string_view::npos)
    return std::nullopt;
  Address a;
  std::string_view port;
  if (url.front() == '[') {
    const auto close = url.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    a.host = std::string(url.substr(1, close - 1));
    const std::string_view rest = url.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::nullopt;
    if (!rest.empty()) port = rest.substr(1);
  } else {
    const auto colon = url.find(':');
    a.host = std::string(url.substr(0, colon));
    if (colon != std::string_view::npos) port = url.substr(colon + 1);
    if (a.host.empty() || port.find(':') != std::string_view::npos) return std::nullopt;
  }
  if (url.back() == ':') return std::nullopt;
  unsigned number = 80;
  if (!port.empty()) {
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc() || end != port.data() + port.size() || number == 0 || number > 65535)
      return std::nullopt;
  }
  a.port = std::to_string(number);
  a.host_header = std::string(url);
  return a;
}

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left until `deadline`, for poll (0 once it has passed).
int ms_left(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1'000'000'000));
}

// How long waits last between looks at a cancel flag.
constexpr std::chrono::milliseconds kCancelSlice{50};

bool cancelled(const volatile std::sig_atomic_t* cancel) {
  return cancel != nullptr && *cancel != 0;
}

// Waits for `events` on `fd` until the deadline; false when it passed, the exchange was
// cancelled (or poll failed).
bool wait_for(int fd, short events, Clock::time_point deadline,
              const volatile std::sig_atomic_t* cancel) {
  for (;;) {
    if (cancelled(cancel)) return false;
    int left = ms_left(deadline);
    if (left == 0) return false;
    if (cancel != nullptr) left = std::min(left, static_cast<int>(kCancelSlice.count()));
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, left);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// getaddrinfo's answer, filled in by the thread that asks it.
struct Lookup {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  int rc = 0;
  addrinfo* found = nullptr;
  Lookup() = default;
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;
  ~Lookup() {
    if (found != nullptr) ::freeaddrinfo(found);
  }
};

// The host's addresses. getaddrinfo cannot be given a deadline (a DNS server that does not
// answer holds it for its timeouts and retries, 10 s and more), so it runs on a thread of its
// own, which is left to finish alone once the deadline passes or the exchange is cancelled.
std::shared_ptr<Lookup> resolve(const Address& a, Clock::time_point deadline,
                                const AdminRequest& request, std::string& error) {
  auto lookup = std::make_shared<Lookup>();
  std::thread([lookup, host = a.host, port = a.port] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    std::lock_guard lock(lookup->mu);
    lookup->rc = rc;
    lookup->found = found;
    lookup->done = true;
    lookup->done_cv.notify_all();
  }).detach();
  std::unique_lock lock(lookup->mu);
  while (!lookup->done) {
    if (cancelled(request.cancel)) {
      error = "cancelled";
      return nullptr;
    }
    if (Clock::now() >= deadline) {
      error = fmt::format(
          "the name {} was not resolved within {} (the deadline for the whole "
          "exchange)",
          a.host, seconds_text(request.deadline));
      return nullptr;
    }
    lookup->done_cv.wait_until(lock, std::min(deadline, Clock::now() + kCancelSlice));
  }
  if (lookup->rc != 0) {
    error = fmt::format("no address for {}: {}", a.host, ::gai_strerror(lookup->rc));
    return nullptr;
  }
  return lookup;
}

// A connected socket to any of the host's addresses, or the reason there is none.
std::optional<Socket> connect_to(const Address& a, Clock::time_point deadline,
                                 const AdminRequest& request, std::string& error) {
  const auto lookup = resolve(a, deadline, request, error);
  if (!lookup) return std::nullopt;
  error = "no address to connect to";
  std::optional<Socket> connected;
  for (const addrinfo* i = lookup->found; i != nullptr && !connected; i = i->ai_next) {
    Socket s(::socket(i->ai_family, i->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (s.fd() < 0) {
      error = std::strerror(errno);
      continue;
    }
    int err = 0;
    if (::connect(s.fd(), i->ai_addr, i->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        if (!wait_for(s.fd(), POLLOUT, deadline, request.cancel)) {
          error = "no connection before the deadline";
          break;
        }
        socklen_t len = sizeof err;
        if (::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
    }
    if (err != 0) {
      error = std::strerror(err);
      continue;
    }
    connected.emplace(std::move(s));
  }
  return connected;
}

bool send_all(int fd, std::string_view bytes, Clock::time_point deadline,
              const volatile std::sig_atomic_t* cancel) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, deadline, cancel)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Reads an HTTP/1.x answer from the bytes as they arrive, within the caps. Only unread bytes of
// the head, a chunk's size line or trailers are buffered; the body goes straight to `body`.
class AnswerReader {
 public:
  enum class Step { more, done, failed };

  explicit AnswerReader(const AnswerCaps& caps) : caps_(caps) {}

  Step take(std::string_view bytes) {
    if (phase_ == Phase::done) return Step::done;  // whatever follows a whole answer is ignored
    pending_.append(bytes);
    return advance();
  }
  // The server closed the connection.
  Step end() {
    if (phase_ == Phase::done) return Step::done;
    if (phase_ == Phase::body_to_close) {
      phase_ = Phase::done;
      return Step::done;
    }
    return fail("closed the connection before its answer was whole");
  }

  int status = 0;
  std::string body;
  std::string error;  // what was wrong, after "the admin API at URL "

 private:
  enum class Phase {
    status_line,
    headers,
    body_sized,
    chunk_size,
    chunk_data,
    chunk_end,
    trailers,
    body_to_close,
    done
  };

  Step fail(std::string why) {
    error = std::move(why);
    return Step::failed;
  }

  // Takes the next whole line off `pending_` (without its CRLF or LF), counting it against the
  // head caps when `head`; nullopt when there is none yet.
  std::optional<std::string> next_line(bool head, size_t max_line, Step& step) {
    const auto nl = pending_.find('\n');
    const size_t line_bytes = nl == std::string::npos ? pending_.size() : nl + 1;
    if (head && head_bytes_ + line_bytes > caps_.max_head_bytes) {
      step = fail(fmt::format("sent more than {} of status line and headers",
                              size_text(caps_.max_head_bytes)));
      return std::nullopt;
    }
    if (!head && line_bytes > max_line) {
      step = fail(fmt::format("sent a chunk size line over {}", size_text(max_line)));
      return std::nullopt;
    }
    step = Step::more;
    if (nl == std::string::npos) return std::nullopt;
    std::string line = pending_.substr(0, nl);
    pending_.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (head) {
      head_bytes_ += line_bytes;
      // + 1: the status line; the empty line that ends the head is not counted.
      if (!line.empty() && ++head_lines_ > caps_.max_header_lines + 1) {
        step = fail(fmt::format("sent more than {} header lines", caps_.max_header_lines));
        return std::nullopt;
      }
    }
    return line;
  }

  Step advance() {
    for (;;) {
      Step step = Step::more;
      switch (phase_) {
        case Phase::status_line:
        case Phase::headers:
        case Phase::trailers: {
          constexpr std::string_view kVersion = "HTTP/1.";
          if (phase_ == Phase::status_line &&
              pending_.compare(0, kVersion.size(), kVersion, 0, pending_.size()) != 0)
            return fail("did not answer in HTTP/1.x");
          const auto line = next_line(true, 0, step);
          if (!line) return step;
          if (phase_ == Phase::status_line) {
            step = status_line(*line);
          } else if (line->empty() && phase_ == Phase::trailers) {
            phase_ = Phase::done;
            return Step::done;
          } else if (line->empty()) {
            step = head_ended();
          } else if (phase_ == Phase::headers) {
            step = header(*line);
          }
          break;
        }
        case Phase::chunk_size: {
          const auto line = next_line(false, 1024, step);
          if (!line) return step;
          step = chunk_size(*line);
          break;
        }
        case Phase::chunk_end: {
          const auto line = next_line(false, 1024, step);
          if (!line) return step;
          if (!line->empty()) return fail("sent a chunk longer than its size said");
          phase_ = Phase::chunk_size;
          break;
        }
        case Phase::body_sized:
        case Phase::chunk_data: {
          const size_t n = std::min(left_, pending_.size());
          body.append(pending_, 0, n);
          pending_.erase(0, n);
          left_ -= n;
          if (left_ != 0) return Step::more;
          if (phase_ == Phase::body_sized)
            phase_ = Phase::done;
          else
            phase_ = Phase::chunk_end;
          break;
        }
        case Phase::body_to_close: {
          if (body.size() + pending_.size() > caps_.max_body_bytes)
            return fail(
                fmt::format("sent a body over {} (the cap)", size_text(caps_.max_body_bytes)));
          body.append(pending_);
          pending_.clear();
          return Step::more;
        }
        case Phase::done:
          return Step::done;
      }
      if (step != Step::more) return step;
    }
  }

  Step status_line(std::string_view line) {
    // HTTP/1.x NNN reason
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
        !std::all_of(line.begin() + 9, line.begin() + 12,
                     [](char c) { return c >= '0' && c <= '9'; }) ||
        (line.size() > 12 && line[12] != ' '))
      return fail("did not answer in HTTP/1.x");
    status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    content_length_.reset();
    chunked_ = false;
    phase_ = Phase::headers;
    return Step::more;
  }

  Step header(std::string_view line) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return fail("sent a malformed header line");
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trimmed(line.substr(colon + 1));
    if (same_lowercase(name, "content-length")) {
      size_t length = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (ec == std::errc::result_out_of_range)
        return fail(fmt::format("announced a body of {} bytes (Content-Length), over {} (the cap)",
                                value.substr(0, 40), size_text(caps_.max_body_bytes)));
      if (ec != std::errc() || end != value.data() + value.size())
        return fail("sent a malformed Content-Length");
      if (content_length_ && *content_length_ != length)
        return fail("sent two different Content-Lengths");
      content_length_ = length;
    } else if (same_lowercase(name, "transfer-encoding")) {
      // Only chunked is understood, and it must be the last coding (RFC 9112 6.1).
      const auto comma = value.rfind(',');
      const std::string_view last =
          trimmed(comma == std::string_view::npos ? value : value.substr(comma + 1));
      if (!same_lowercase(last, "chunked") ||
          (comma != std::string_view::npos &&
           !same_lowercase(trimmed(value.substr(0, comma)), "identity")))
        return fail(fmt::format("sent a Transfer-Encoding this client does not read ({})",
                                core::one_line(value.substr(0, 40))));
      chunked_ = true;
    }
    return Step::more;
  }

  Step head_ended() {
    if (status >= 100 && status < 200) {  // an interim answer: the real one follows
      phase_ = Phase::status_line;
      return Step::more;
    }
    if (status == 204 || status == 304) {
      phase_ = Phase::done;
      return Step::done;
    }
    if (chunked_) {
      phase_ = Phase::chunk_size;
    } else if (content_length_) {
      if (*content_length_ > caps_.max_body_bytes)
        return fail(fmt::format("announced a body of {} bytes (Content-Length), over {} (the cap)",
                                *content_length_, size_text(caps_.max_body_bytes)));
      body.reserve(*content_length_);
      left_ = *content_length_;
      phase_ = Phase::body_sized;
    } else {
      phase_ = Phase::body_to_close;
    }
    return Step::more;
  }

  Step chunk_size(std::string_view line) {
    const std::string_view digits = trimmed(line.substr(0, line.find(';')));
    size_t size = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && size > caps_.max_body_bytes))
      return fail(fmt::format("announced a chunk over {} (the cap for the body)",
                              size_text(caps_.max_body_bytes)));
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
      return fail("sent a malformed chunk size");
    if (size == 0) {
      phase_ = Phase::trailers;
      return Step::more;
    }
    if (body.size() + size > caps_.max_body_bytes)
      return fail(fmt::format("sent a body over {} (the cap)", size_text(caps_.max_body_bytes)));
    left_ = size;
    phase_ = Phase::chunk_data;
    return Step::more;
  }

  const AnswerCaps& caps_;
  Phase phase_ = Phase::status_line;
  std::string pending_;
  size_t head_bytes_ = 0;
  size_t head_lines_ = 0;
  std::optional<size_t> content_length_;
  bool chunked_ = false;
  size_t left_ = 0;  // of the sized body or the current chunk
};

std::string request_text(const Address& a, const AdminRequest& r) {
  std::string text = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", r.method,
                                 r.target, a.host_header);
  for (const auto& [name, value] : r.headers) text += fmt::format("{}: {}\r\n", name, value);
  if (r.method != "GET" && r.method != "HEAD") text += "Content-Length: 0\r\n";
  text += "\r\n";
  return text;
}

}  // namespace

AdminAnswer exchange_with_admin_api(const std::string& url, const AdminRequest& request,
                                    const AnswerCaps& caps) {
  AdminAnswer answer;
  const auto deadline = Clock::now() + request.deadline;
  const auto address = parse_url(url);
  if (!address) {
    answer.outcome = AdminAnswer::Outcome::bad_url;
    answer.error = "not an address of the form http://HOST:PORT";
    return answer;
  }
  const auto cancel = [&answer] {
    answer.outcome = AdminAnswer::Outcome::cancelled;
    answer.error = "cancelled";
    return answer;
  };
  std::string why;
  auto socket = connect_to(*address, deadline, request, why);
  if (cancelled(request.cancel)) return cancel();
  if (!socket) {
    answer.error = why;
    return answer;
  }
  if (!send_all(socket->fd(), request_text(*address, request), deadline, request.cancel)) {
    if (cancelled(request.cancel)) return cancel();
    answer.error = "the connection closed while the request was sent";
    return answer;
  }

  AnswerReader reader(caps);
  bool received = false;
  const auto bad = [&](std::string what) {
    answer.outcome = AdminAnswer::Outcome::bad_answer;
    answer.error = fmt::format("the admin API at {} {}", url, what);
    return answer;
  };
  char buffer[64 * 1024];
  for (;;) {
    if (!wait_for(socket->fd(), POLLIN, deadline, request.cancel)) {
      if (cancelled(request.cancel)) return cancel();
      const std::string limit = seconds_text(request.deadline);
      if (!received) {
        answer.error = fmt::format("it took the connection but sent no answer within {}", limit);
        return answer;
      }
      return bad(
          fmt::format("did not finish its answer within {} (the deadline for the whole "
                      "exchange)",
                      limit));
    }
    const ssize_t n = ::recv(socket->fd(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) {
      if (!received) {
        answer.error = std::strerror(errno);
        return answer;
      }
      return bad(fmt::format("broke off its answer: {}", std::strerror(errno)));
    }
    if (n == 0 && !received) {
      answer.error = "it closed the connection without an answer";
      return answer;
    }
    received = true;
    const auto step = n == 0 ? reader.end() : reader.take({buffer, static_cast<size_t>(n)});
    if (step == AnswerReader::Step::failed) return bad(reader.error);
    if (step == AnswerReader::Step::done) break;
  }
  answer.outcome = AdminAnswer::Outcome::answered;
  answer.status = reader.status;
  answer.body = std::move(reader.body);
  return answer;
}

}  // namespace sluice::cli
