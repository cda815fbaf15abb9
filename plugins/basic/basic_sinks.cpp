// The stdout sink (records as JSON lines on standard output) and the null sink (counts only).
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <sluice/sdk.hpp>

#include "record_lines.hpp"

namespace {

using sluice_plugins::LineEncoder;

class StdoutSink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    sluice_plugins::declare_line_format(s);
    return s;
  }
  static std::string description() { return "Writes records to standard output as JSON lines."; }

  StdoutSink(const sluice::Config& c, sluice::Host& host)
      : host_(host), encoder_(sluice_plugins::parse_line_format(c.get_string("format", "value"))) {}

  void put(const sluice::Batch& in, sluice::Output& /*rejects*/) override {
    std::lock_guard lock(mutex_);
    lines_.clear();
    for (const auto& r : in) encoder_.append(r, lines_);
    if (std::fwrite(lines_.data(), 1, lines_.size(), stdout) != lines_.size() ||
        std::fflush(stdout) != 0)
      throw sluice::Retriable(std::string("cannot write to stdout: ") + std::strerror(errno));
    host_.counter_add("records", static_cast<double>(in.size()));
  }

 private:
  sluice::Host& host_;
  std::mutex mutex_;
  LineEncoder encoder_;  // guarded by mutex_
  std::string lines_;    // guarded by mutex_
};

// Discards records; the `records` counter shows how many arrived. The cheapest possible sink,
// so benchmarks measure the runtime rather than the sink.
class NullSink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() { return {}; }
  static std::string description() { return "Discards records, counting them."; }

  NullSink(const sluice::Config& /*c*/, sluice::Host& host) : host_(host) {}

  void put(const sluice::Batch& in, sluice::Output& /*rejects*/) override {
    host_.counter_add("records", static_cast<double>(in.size()));
  }

 private:
  sluice::Host& host_;
};

}  // namespace

SLUICE_MODULE("basic", "0.1.0", SLUICE_SINK(StdoutSink, "stdout"), SLUICE_SINK(NullSink, "null"))
