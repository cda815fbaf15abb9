// Reads whole HTTP requests off accepted admin connections on one poll thread, under a deadline
// and connection limits, so a slow or idle client never holds a thread that serves requests.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice::admin {

// The address (as text) and port of a socket's peer, or of its own end; "" and 0 on failure.
std::pair<std::string, int> peer_address(int fd);
std::pair<std::string, int> local_address(int fd);

// {"error": "<message>", "status": <status>}: the body of every admin API error.
std::string error_json(int status, std::string_view message);

// How many connections are open, overall and per client address; a connection over either limit
// is refused. Thread-safe.
class ConnectionLimits {
 public:
  ConnectionLimits(size_t max_total, size_t max_per_client)
      : max_total_(max_total), max_per_client_(max_per_client) {}
  bool admit(const std::string& client);
  void release(const std::string& client);
  // Whether `client` holds as many connections as it may (else only the total is in the way).
  bool client_full(const std::string& client);

 private:
  std::mutex mu_;
  size_t max_total_;
  size_t max_per_client_;
  size_t total_ = 0;
  std::unordered_map<std::string, size_t> per_client_;
};

// One accepted connection, counted against its limits; closing it (on destruction) frees its
// slot. `request` holds the bytes read so far.
class Connection {
 public:
  Connection(int fd, std::string client_ip, int client_port,
             std::shared_ptr<ConnectionLimits> limits);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  int fd() const { return fd_; }
  const std::string& client_ip() const { return client_ip_; }
  int client_port() const { return client_port_; }
  // Counts a connection made without limits against `limits`; false when they are full.
  bool claim_slot(std::shared_ptr<ConnectionLimits> limits);
  bool counted() const { return limits_ != nullptr; }

  std::string request;
  std::chrono::steady_clock::time_point accepted = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point deadline;

 private:
  int fd_;
  std::string client_ip_;
  int client_port_;
  std::shared_ptr<ConnectionLimits> limits_;
};

// Whether `bytes` hold a whole request: the head and as many body bytes as Content-Length says.
// A head over `max_head` bytes, a length over `max_body`, a Transfer-Encoding or a length that is
// not a number count as complete: the HTTP parser refuses them (414, 431, 413 or 400).
bool request_complete(std::string_view bytes, size_t max_head, size_t max_body);

// Writes a whole error answer (best effort, without blocking) before the caller closes.
void answer_error(int fd, int status, std::string_view message);

class RequestReader {
 public:
  struct Limits {
    std::chrono::milliseconds deadline{5000};  // to read the whole request, head and body
    size_t max_connections = 64;
    size_t max_connections_per_client = 16;
    size_t max_head_bytes = 64 * 1024;
    size_t max_body_bytes = 64 * 1024;
    // A connection still sending its request after this long may be closed (503) to make room
    // for a newer one over the limits: slow clients holding every slot cannot keep a request
    // out, and a flood of new connections cannot close one that had no time to send.
    std::chrono::milliseconds eviction_grace{100};
  };
  // Serves a request read whole; runs on the reader thread, so it must hand over, not serve.
  using Dispatch = std::function<void(std::unique_ptr<Connection>)>;

  RequestReader(Limits limits, Dispatch dispatch);
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  void start();
  // Takes an accepted socket. One over the connection limits takes the slot of the oldest
  // connection still sending its request past `eviction_grace` (of its client when the client's
  // limit is the one reached), which is answered 503 and closed; without such a one it is
  // answered 503 and closed itself. Thread-safe.
  void add(int fd);
  // Closes every connection still being read and joins the thread. Idempotent.
  void stop();

 private:
  void run();
  void take_new();
  // Admits `c` (over the limits when added) in place of the oldest evictable connection, or
  // refuses it.
  void make_room(std::unique_ptr<Connection> c);
  // Reads what `c` has sent; false when the connection is done with (handed over or closed).
  bool read_some(std::unique_ptr<Connection>& c);
  int next_timeout_ms() const;

  Limits limits_;
  Dispatch dispatch_;
  std::shared_ptr<ConnectionLimits> counts_;
  int wake_fd_ = -1;
  std::thread thread_;

  std::mutex mu_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Connection>> inbox_;  // added, not yet polled
  std::vector<std::unique_ptr<Connection>> over_;   // added over the limits, not counted yet

  std::vector<std::unique_ptr<Connection>> reading_;  // reader thread only
};

}  // namespace sluice::admin
