// The admin API's request reader: one poll loop over every connection still sending its request.
#include "admin/request_reader.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

namespace sluice::admin {
namespace {

std::pair<std::string, int> address_text(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return {text, ntohs(v4.sin_port)};
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(addr);
  inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
  return {text, ntohs(v6.sin6_port)};
}

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  return true;
}

// The value of header `name` (lower case, with the colon) in `head`, or nullopt.
std::optional<std::string_view> header_value(std::string_view head, std::string_view name) {
  for (size_t at = head.find("\r\n"); at != std::string_view::npos;
       at = head.find("\r\n", at + 2)) {
    const std::string_view line = head.substr(at + 2, head.find("\r\n", at + 2) - (at + 2));
    if (!iequals_prefix(line, name)) continue;
    std::string_view value = line.substr(name.size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    return value;
  }
  return std::nullopt;
}

constexpr std::string_view kTooMany = "too many connections to the admin API; try again later";

std::string_view status_text(int status) {
  switch (status) {
    case 408:
      return "Request Timeout";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

std::pair<std::string, int> peer_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {"", 0};
  return address_text(addr);
}

std::pair<std::string, int> local_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {"", 0};
  return address_text(addr);
}

std::string error_json(int status, std::string_view message) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("error");
  w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  w.Key("status");
  w.Int(status);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

bool ConnectionLimits::admit(const std::string& client) {
  std::lock_guard lock(mu_);
  size_t& mine = per_client_[client];
  if (total_ >= max_total_ || mine >= max_per_client_) {
    if (mine == 0) per_client_.erase(client);
    return false;
  }
  ++mine;
  ++total_;
  return true;
}

bool ConnectionLimits::client_full(const std::string& client) {
  std::lock_guard lock(mu_);
  const auto it = per_client_.find(client);
  return it != per_client_.end() && it->second >= max_per_client_;
}

void ConnectionLimits::release(const std::string& client) {
  std::lock_guard lock(mu_);
  const auto it = per_client_.find(client);
  if (it == per_client_.end()) return;
  if (--it->second == 0) per_client_.erase(it);
  --total_;
}

Connection::Connection(int fd, std::string client_ip, int client_port,
                       std::shared_ptr<ConnectionLimits> limits)
    : fd_(fd),
      client_ip_(std::move(client_ip)),
      client_port_(client_port),
      limits_(std::move(limits)) {}

bool Connection::claim_slot(std::shared_ptr<ConnectionLimits> limits) {
  if (!limits->admit(client_ip_)) return false;
  limits_ = std::move(limits);
  return true;
}

Connection::~Connection() {
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
  if (limits_) limits_->release(client_ip_);
}

bool request_complete(std::string_view bytes, size_t max_head, size_t max_body) {
  const size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return bytes.size() >= max_head;
  const std::string_view head = bytes.substr(0, head_end);
  if (header_value(head, "transfer-encoding:")) return true;
  const auto length = header_value(head, "content-length:");
  if (!length) return true;
  if (length->empty() || length->size() > 18 ||
      !std::all_of(length->begin(), length->end(), [](char c) { return c >= '0' && c <= '9'; }))
    return true;
  const size_t body = std::stoull(std::string(*length));
  return body > max_body || bytes.size() >= head_end + 4 + body;
}

void answer_error(int fd, int status, std::string_view message) {
  const std::string body = error_json(status, message);
  const std::string answer = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Cache-Control: no-store\r\nConnection: close\r\n\r\n{}",
      status, status_text(status), body.size(), body);
  (void)send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

RequestReader::RequestReader(Limits limits, Dispatch dispatch)
    : limits_(limits),
      dispatch_(std::move(dispatch)),
      counts_(std::make_shared<ConnectionLimits>(limits.max_connections,
                                                 limits.max_connections_per_client)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "admin API: eventfd");
}

RequestReader::~RequestReader() {
  stop();
  close(wake_fd_);
}

void RequestReader::start() {
  thread_ = std::thread([this] { run(); });
}

void RequestReader::add(int fd) {
  auto [ip, port] = peer_address(fd);
  const bool admitted = counts_->admit(ip);
  auto c = std::make_unique<Connection>(fd, std::move(ip), port,
                                        admitted ? counts_ : std::shared_ptr<ConnectionLimits>());
  c->deadline = c->accepted + limits_.deadline;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (admitted) {
      inbox_.push_back(std::move(c));
    } else if (over_.size() < limits_.max_connections) {
      over_.push_back(std::move(c));  // the reader thread makes room for it, or refuses it
    } else {
      answer_error(c->fd(), 503, kTooMany);
      return;
    }
  }
  const uint64_t one = 1;
  (void)write(wake_fd_, &one, sizeof one);
}

void RequestReader::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  (void)write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  inbox_.clear();
  over_.clear();
}

void RequestReader::take_new() {
  std::vector<std::unique_ptr<Connection>> over;
  {
    std::lock_guard lock(mu_);
    for (auto& c : inbox_) reading_.push_back(std::move(c));
    inbox_.clear();
    over.swap(over_);
  }
  for (auto& c : over) make_room(std::move(c));
}

void RequestReader::make_room(std::unique_ptr<Connection> c) {
  if (c->claim_slot(counts_)) {  // a slot was freed meanwhile
    reading_.push_back(std::move(c));
    return;
  }
  const bool client_full = counts_->client_full(c->client_ip());
  const auto now = std::chrono::steady_clock::now();
  auto victim = reading_.end();
  for (auto it = reading_.begin(); it != reading_.end(); ++it) {
    if (client_full && (*it)->client_ip() != c->client_ip()) continue;
    if (now - (*it)->accepted < limits_.eviction_grace) continue;
    if (victim == reading_.end() || (*it)->accepted < (*victim)->accepted) victim = it;
  }
  if (victim != reading_.end()) {
    answer_error((*victim)->fd(), 503,
                 "too many connections to the admin API: closed for a newer one; send the whole "
                 "request at once");
    reading_.erase(victim);  // frees its slot
  }
  if (!c->claim_slot(counts_)) {
    answer_error(c->fd(), 503, kTooMany);
    return;
  }
  reading_.push_back(std::move(c));
}

int RequestReader::next_timeout_ms() const {
  if (reading_.empty()) return -1;
  auto earliest = reading_.front()->deadline;
  for (const auto& c : reading_) earliest = std::min(earliest, c->deadline);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      earliest - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count() + 1, 0, 60'000));
}

bool RequestReader::read_some(std::unique_ptr<Connection>& c) {
  char buf[16 * 1024];
  const ssize_t n = recv(c->fd(), buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (n <= 0) return false;  // the client went away, or the socket failed: nothing to answer
  c->request.append(buf, static_cast<size_t>(n));
  if (!request_complete(c->request, limits_.max_head_bytes, limits_.max_body_bytes)) return true;
  dispatch_(std::move(c));
  return false;
}

void RequestReader::run() {
  std::vector<pollfd> fds;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    take_new();
    fds.assign(1, pollfd{wake_fd_, POLLIN, 0});
    for (const auto& c : reading_) fds.push_back(pollfd{c->fd(), POLLIN, 0});
    if (poll(fds.data(), fds.size(), next_timeout_ms()) < 0 && errno != EINTR) break;
    uint64_t drained = 0;
    (void)read(wake_fd_, &drained, sizeof drained);
    // fds[i + 1] is reading_[i]: connections added meanwhile wait in the inbox.
    std::vector<std::unique_ptr<Connection>> still;
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < reading_.size(); ++i) {
      auto& c = reading_[i];
      if (fds[i + 1].revents != 0 && !read_some(c)) continue;
      if (now >= c->deadline) {
        answer_error(
            c->fd(), 408,
            fmt::format("the whole request must arrive within {} ms", limits_.deadline.count()));
        continue;
      }
      still.push_back(std::move(c));
    }
    reading_ = std::move(still);
  }
  reading_.clear();  // a stopping server closes what is still being read
}

}  // namespace sluice::admin
