// One HTTP/1.1 request to the admin API for `sluice stats`, `top` and `reload`, with caps on the
// answer and one deadline for the whole exchange: whatever listens on the admin port may answer
// without end, and the command must neither grow without bound nor wait for good.
#pragma once

#include <chrono>
#include <csignal>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace sluice::cli {

struct AdminRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query
  // Sent besides Host, Connection: close and Content-Length. Their values never appear in an
  // error (one is the bearer token).
  std::vector<std::pair<std::string, std::string>> headers;
  // Resolving (getaddrinfo, on a helper thread the exchange stops waiting for), connecting,
  // sending and reading the whole answer must all fit in it.
  std::chrono::milliseconds deadline{10000};
  // When set, the exchange gives up within 50 ms of *cancel becoming nonzero (a signal handler's
  // flag: `sluice top` on Ctrl-C), with Outcome::cancelled.
  const volatile std::sig_atomic_t* cancel = nullptr;
};

// How large an answer may be. Past any cap the exchange ends with an error naming it; a
// Content-Length over the body cap is refused before any of the body is read.
struct AnswerCaps {
  size_t max_head_bytes = 64 * 1024;  // status line and headers; a chunked body's trailers too
  size_t max_header_lines = 100;
  // /metrics of a process with thousands of stages is a few MB; this leaves ample room.
  size_t max_body_bytes = 64 * 1024 * 1024;
};

struct AdminAnswer {
  enum class Outcome {
    answered,     // status and body are the server's
    bad_url,      // the URL is not http://HOST[:PORT]
    unreachable,  // nothing could be sent: no address, refused, or no connection in time
    bad_answer,   // something answered, but not a whole HTTP answer within the caps and deadline
    cancelled,    // *AdminRequest::cancel became nonzero first
  };
  Outcome outcome = Outcome::unreachable;
  int status = 0;
  std::string body;
  // Why not answered, in one line. For bad_answer it names the URL; for bad_url and unreachable
  // the caller says which address was tried.
  std::string error;

  bool answered() const { return outcome == Outcome::answered; }
};

// Sends `request` to `url` ("http://HOST[:PORT]" or "HOST[:PORT]", an IPv6 literal in brackets,
// port 80 when none; plain HTTP only) over a new TCP connection, and reads one answer with a
// Content-Length, chunked, or delimited by the connection's close.
AdminAnswer exchange_with_admin_api(const std::string& url, const AdminRequest& request,
                                    const AnswerCaps& caps = {});

}  // namespace sluice::cli
