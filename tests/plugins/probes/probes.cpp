// Test module probes. `thread_probe` (source) appends "<hook> <tid>" to `path` for every hook
// the host calls, so a test can check abi.h's threading rule; `fanout` (transform) emits
// `copies` records of `bytes` bytes per input record; `leaky` (transform) rejects every record
// with a message that quotes its secret `token` (or fails its batch with one cut inside the
// token), and names metrics after it; `garbled_log` (transform) passes every record on and logs
// bytes that are not UTF-8, a NUL, ESC and a newline.
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <sluice/sdk.hpp>
#include <stdexcept>
#include <string>

namespace {

class ThreadProbe final : public sluice::Source {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("path").required().doc("file the hook calls are appended to");
    s.integer("per_poll").default_value(10);
    return s;
  }
  ThreadProbe(const sluice::Config& c, sluice::Host& /*host*/)
      : path_(c.get_string("path")), per_poll_(c.get_int("per_poll", 10)) {
    note("create");
  }
  ~ThreadProbe() override { note("destroy"); }

  bool poll(sluice::Output& out, size_t max_records, uint32_t /*timeout_ms*/) override {
    note("poll");
    usleep(2000);  // no busy loop: a test runs this for a while
    for (size_t i = 0; i < max_records && i < static_cast<size_t>(per_poll_); ++i) {
      sluice::OutRecord r;
      const std::string value = "{\"n\":" + std::to_string(next_) + "}";
      r.value = value;
      r.topic = "probe";
      r.offset = next_++;
      out.emit(r);
    }
    return false;
  }
  void commit(std::span<const sluice::Position> /*positions*/) override { note("commit"); }
  void set_paused(bool /*paused*/) override { note("set_paused"); }
  void on_memory_pressure(double /*level*/) override { note("on_memory_pressure"); }
  std::string snapshot() override {
    note("snapshot");
    return std::to_string(next_);
  }
  void restore(std::string_view state) override {
    note("restore");
    next_ = std::stoll(std::string(state));
  }

 private:
  void note(const char* hook) {
    static std::mutex mu;
    std::lock_guard lock(mu);
    std::ofstream(path_, std::ios::app) << hook << ' ' << ::syscall(SYS_gettid) << '\n';
  }

  std::string path_;
  int64_t per_poll_;
  int64_t next_ = 0;
};

class Fanout final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.integer("copies").default_value(1000);
    s.integer("bytes").default_value(100000);
    return s;
  }
  Fanout(const sluice::Config& c, sluice::Host& /*host*/)
      : copies_(c.get_int("copies", 1000)), value_(c.get_int("bytes", 100000), 'x') {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      auto r = sluice::OutRecord::from(in[i]);
      r.value = value_;
      for (int64_t k = 0; k < copies_; ++k) out.emit(i, r);
    }
  }

 private:
  int64_t copies_;
  std::string value_;
};

class Leaky final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("token").required().secret();
    s.integer("cut_after")
        .default_value(0)
        .doc(
            "0: reject each record, quoting the token; N: fail the batch with a message of "
            "which the host's 2,048-byte buffer keeps only the token's first N bytes");
    s.string("label").default_value("").doc("not secret: a counter label_<label> is kept");
    return s;
  }
  Leaky(const sluice::Config& c, sluice::Host& host)
      : token_(c.get_string("token")),
        cut_after_(c.get_int("cut_after", 0)),
        label_(c.get_string("label", "")),
        host_(host) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    // Metric names are the plugin's text too.
    host_.counter_add(("seen_" + token_).c_str(), static_cast<double>(in.size()));
    host_.gauge_set(("last_" + token_).c_str(), static_cast<double>(in.size()));
    if (!label_.empty()) host_.counter_add(("label_" + label_).c_str(), 1);
    if (cut_after_ > 0)
      throw std::runtime_error(std::string(2047 - static_cast<size_t>(cut_after_), 'x') + token_);
    for (size_t i = 0; i < in.size(); ++i) out.reject(i, "login with token " + token_ + " refused");
  }

 private:
  std::string token_;
  int64_t cut_after_;
  std::string label_;
  sluice::Host& host_;
};

class GarbledLog final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() { return {}; }
  GarbledLog(const sluice::Config& /*c*/, sluice::Host& host) : host_(host) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    static constexpr char kBytes[] =
        "bad utf8: \xff\xfe lone \x80 cut \xe2\x82 overlong \xc0\xaf nul \0 esc \x1b[31m "
        "quote \" newline \n end";
    host_.warn(std::string_view(kBytes, sizeof(kBytes) - 1));
    for (size_t i = 0; i < in.size(); ++i) out.emit(i, sluice::OutRecord::from(in[i]));
  }

 private:
  sluice::Host& host_;
};

}  // namespace

SLUICE_MODULE("probes", "1.0.0", SLUICE_SOURCE(ThreadProbe, "thread_probe"),
              SLUICE_TRANSFORM(Fanout, "fanout"), SLUICE_TRANSFORM(Leaky, "leaky"),
              SLUICE_TRANSFORM(GarbledLog, "garbled_log"))
