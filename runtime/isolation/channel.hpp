// Control messages between the host and a plugin-host child over a Unix socketpair.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/abi.h"

namespace sluice::isolation {

enum class MessageKind : uint32_t {
  // host -> child
  create = 1,
  process,
  put,
  flush,
  pre_commit,
  snapshot,
  restore,
  memory_pressure,
  shutdown,
  poll,        // a source's: sluice_poll_args in the payload (PollRequest)
  commit,      // a source's: positions in the payload (encode_positions)
  set_paused,  // a source's: `status` is the flag
  // child -> host
  reply = 100,
  log,
  counter_add,
  gauge_set,
  drain,   // a source's sluice_host_drain from inside its poll: positions in the payload
  loaded,  // the library is loaded (its constructors, entry point and init ran): a death before
           // it is a crash while loading
};

// The flags of a reply.
constexpr uint32_t kEndOfStream = 1;  // a poll's sluice_poll_args::end_of_stream
// A request's: the host has put the child on the caller's CPU (ChildProcess::share_cpu), so the
// child must not spin for the next request: it would spin on the core the host works on.
constexpr uint32_t kSharesCallerCpu = 2;

// A poll's arguments, as the payload of a `poll` request.
struct PollRequest {
  uint32_t max_records = 0;
  uint32_t timeout_ms = 0;
  uint64_t max_bytes = 0;
};

// Every message: this header, then `payload_len` bytes (an error text, a config, a log line).
struct MessageHeader {
  MessageKind kind{};
  int32_t status = 0;        // a call's sluice_status, or a log level
  uint64_t call_id = 0;      // echoed by the reply
  uint64_t region_size = 0;  // bytes of the input (request) or output (reply) region in use
  double number = 0;         // memory pressure (requests), a counter delta or gauge value, or the
                             // plugin's own time in µs (the reply to a batch call), or a
                             // drain's timeout in ms
  uint32_t flags = 0;        // a reply's kEndOfStream, a request's kSharesCallerCpu
  uint32_t payload_len = 0;
  uint32_t output = 0;  // a request's: which of the child's output regions the call writes into
};

struct Message {
  MessageHeader header;
  std::string payload;
};

using Deadline = std::chrono::steady_clock::time_point;

// Source positions as bytes (commit, drain) and back; the decoded positions' topics point into
// `bytes`, which must outlive them.
std::string encode_positions(std::span<const sluice_position> positions);
std::vector<sluice_position> decode_positions(std::string_view bytes);

// One end of the socketpair. Sends are whole messages; a send to a dead peer returns false
// (never SIGPIPE).
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  // Counts of sent messages in memory both ends map (a Doorbell): this end's, bumped after each
  // send, and the peer's, which receive() spins on before it sleeps on the socket. Both must
  // outlive the channel.
  void attach_doorbell(std::atomic<uint64_t>* sent, const std::atomic<uint64_t>* peer_sent) {
    sent_ = sent;
    peer_sent_ = peer_sent;
  }
  // Whether receive() spins on the peer's count before it sleeps (with a doorbell attached). Off
  // while both ends share one CPU: a spin there only delays the peer it waits for.
  void set_spin(bool on) { spin_ = on; }
  bool send(const MessageHeader& header, std::string_view payload = {});
  // The next message, or nullopt if the peer closed the socket (or broke the framing);
  // `timed_out` is set when the deadline passed first.
  std::optional<Message> receive(std::optional<Deadline> deadline, bool* timed_out = nullptr);
  // Whether the socket has something to read (a message, or the peer's end) by `deadline`;
  // reads nothing.
  bool wait_readable(Deadline deadline) const;

 private:
  bool read_exact(void* buf, size_t len, std::optional<Deadline> deadline, bool* timed_out);
  // Returns once the peer's count says a message is waiting, or the spin is over.
  void spin_for_peer(std::chrono::steady_clock::time_point now);
  void note_wait(std::chrono::nanoseconds waited);
  int fd_;
  std::mutex send_mu_;  // a plugin may log from its own threads while a reply goes out
  std::atomic<uint64_t>* sent_ = nullptr;
  const std::atomic<uint64_t>* peer_sent_ = nullptr;
  bool spin_ = true;
  uint64_t received_ = 0;  // messages read whole; the peer's count differs while one waits
  std::chrono::nanoseconds typical_wait_{0};  // for a message, lately (note_wait)
};

}  // namespace sluice::isolation
