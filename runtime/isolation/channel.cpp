// Framing of control messages: a fixed header and a payload, written and read whole.
#include "isolation/channel.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sluice::isolation {

namespace {
constexpr uint32_t kMaxPayload = 64u << 20;

// How long a receiver spins on the peer's count before it sleeps on the socket. A batch's round
// trip sleeps twice (the child for the request, the host for the reply), and each wake-up through
// the scheduler costs tens of µs, far more on a busy machine. Every wait spins kMinSpin (a reply
// often comes sooner), and up to twice the receiver's recent typical wait while that stays under
// max_spin(); where the peer takes longer, or a loaded machine keeps it from running, a longer
// spin would only take its CPU. SLUICE_ISOLATION_SPIN_US sets max_spin() (0: never spin).
constexpr std::chrono::nanoseconds kMinSpin = std::chrono::microseconds(20);

std::chrono::nanoseconds max_spin() {
  static const std::chrono::nanoseconds budget = [] {
    const char* given = std::getenv("SLUICE_ISOLATION_SPIN_US");
    return std::chrono::nanoseconds(std::chrono::microseconds(given ? std::atoll(given) : 200));
  }();
  return budget;
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

bool Channel::send(const MessageHeader& header, std::string_view payload) {
  MessageHeader h = header;
  h.payload_len = static_cast<uint32_t>(payload.size());
  iovec parts[2] = {{&h, sizeof h}, {const_cast<char*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = parts;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  size_t left = sizeof h + payload.size();
  std::lock_guard lock(send_mu_);
  while (left > 0) {
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    left -= static_cast<size_t>(n);
    // Skip what was sent: advance through the iovecs.
    size_t sent = static_cast<size_t>(n);
    while (sent > 0 && msg.msg_iovlen > 0) {
      const size_t take = std::min(sent, msg.msg_iov->iov_len);
      msg.msg_iov->iov_base = static_cast<char*>(msg.msg_iov->iov_base) + take;
      msg.msg_iov->iov_len -= take;
      sent -= take;
      if (msg.msg_iov->iov_len == 0) {
        ++msg.msg_iov;
        --msg.msg_iovlen;
      }
    }
  }
  if (sent_) sent_->fetch_add(1, std::memory_order_release);  // the whole message is in the socket
  return true;
}

void Channel::spin_for_peer(std::chrono::steady_clock::time_point now) {
  if (peer_sent_->load(std::memory_order_acquire) != received_) return;
  const auto most = max_spin();
  const auto least = std::min(kMinSpin, most);
  const auto budget = typical_wait_ < most ? std::clamp(2 * typical_wait_, least, most) : least;
  if (budget.count() <= 0) return;
  const auto until = now + budget;
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    if (peer_sent_->load(std::memory_order_acquire) != received_) return;
    if (i % 64 == 0) {
      if (std::chrono::steady_clock::now() >= until) return;
      if (i % 1024 == 0) ::sched_yield();  // the peer may be waiting for this core
    }
  }
}

// An average over the last few waits (1/8 each), a long idle wait counted as 4x the spin at
// most, so a busy spell after it spins again within a few calls.
void Channel::note_wait(std::chrono::nanoseconds waited) {
  waited = std::min(waited, 4 * max_spin());
  typical_wait_ += (waited - typical_wait_) / 8;
}

bool Channel::read_exact(void* buf, size_t len, std::optional<Deadline> deadline, bool* timed_out) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      pollfd pfd{fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        if (timed_out) *timed_out = true;
        return false;
      }
    }
    ssize_t n = ::read(fd_, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool Channel::wait_readable(Deadline deadline) const {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd_, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    return ready != 0;  // an error too: the receive after it says what happened
  }
}

std::optional<Message> Channel::receive(std::optional<Deadline> deadline, bool* timed_out) {
  Message m;
  const auto started = std::chrono::steady_clock::now();
  if (peer_sent_ && spin_) spin_for_peer(started);
  if (!read_exact(&m.header, sizeof m.header, deadline, timed_out)) return std::nullopt;
  if (peer_sent_) note_wait(std::chrono::steady_clock::now() - started);
  if (m.header.payload_len > kMaxPayload) return std::nullopt;
  m.payload.resize(m.header.payload_len);
  if (!read_exact(m.payload.data(), m.payload.size(), deadline, timed_out)) return std::nullopt;
  ++received_;
  return m;
}

// Each position: partition (int32), offset (int64), topic length (uint32), topic bytes.
std::string encode_positions(std::span<const sluice_position> positions) {
  std::string out;
  for (const auto& p : positions) {
    const auto topic_len = static_cast<uint32_t>(p.topic.ptr ? p.topic.len : 0);
    out.append(reinterpret_cast<const char*>(&p.partition), sizeof p.partition);
    out.append(reinterpret_cast<const char*>(&p.offset), sizeof p.offset);
    out.append(reinterpret_cast<const char*>(&topic_len), sizeof topic_len);
    if (topic_len > 0) out.append(reinterpret_cast<const char*>(p.topic.ptr), topic_len);
  }
  return out;
}

std::vector<sluice_position> decode_positions(std::string_view bytes) {
  std::vector<sluice_position> out;
  constexpr size_t kFixed = sizeof(int32_t) + sizeof(int64_t) + sizeof(uint32_t);
  size_t at = 0;
  while (bytes.size() - at >= kFixed) {
    sluice_position p{};
    p.struct_size = sizeof p;
    uint32_t topic_len = 0;
    std::memcpy(&p.partition, bytes.data() + at, sizeof p.partition);
    std::memcpy(&p.offset, bytes.data() + at + sizeof p.partition, sizeof p.offset);
    std::memcpy(&topic_len, bytes.data() + at + sizeof p.partition + sizeof p.offset,
                sizeof topic_len);
    at += kFixed;
    if (bytes.size() - at < topic_len) break;  // torn: never read past the payload
    p.topic = {reinterpret_cast<const uint8_t*>(bytes.data() + at), topic_len};
    at += topic_len;
    out.push_back(p);
  }
  return out;
}

}  // namespace sluice::isolation
