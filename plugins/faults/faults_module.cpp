// The `faulty` source, transform and sink: plugins that fail in chosen ways, so tests can check
// that the runtime neither loses nor silently drops a record whatever a plugin does.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sluice/sdk.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr open_for_append(const std::string& path, const char* field) {
  if (path.empty()) return nullptr;
  FilePtr f(std::fopen(path.c_str(), "a"));
  if (!f) throw sluice::ConfigError(field, "cannot open " + path);
  return f;
}

// A source whose positions are wrong on purpose: going backwards, repeating, negative or
// random. Values are {"id":K} with K = 0..count-1 in order, so a test can see what arrived.
class FaultySource final : public sluice::Source {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.integer("count").default_value(100).min(0).doc("Records to produce, then end of stream.");
    s.integer("per_poll").default_value(7).min(1).doc("Most records one poll returns.");
    s.string("offsets")
        .default_value("ascending")
        .one_of({"ascending", "backwards", "repeating", "negative", "random"})
        .doc(
            "Offsets given to the records: 0,1,2..; count-1 down to 0; K mod 10; -K-1; or a "
            "seeded hash.");
    s.string("commit_log")
        .default_value("")
        .path()
        .doc("If set, every committed position is appended here as 'PARTITION OFFSET'.");
    s.integer("poll_delay_ms")
        .default_value(0)
        .min(0)
        .max(10000)
        .doc("Sleep this long in each poll that emits records, to stretch a run over commits.");
    s.string("fail_poll")
        .default_value("none")
        .one_of({"none", "fatal", "retry_forever"})
        .doc("fatal: the first poll returns FATAL; retry_forever: every poll returns RETRY.");
    return s;
  }
  static std::string description() { return "Emits {\"id\":K} records with garbage positions."; }

  FaultySource(const sluice::Config& c, sluice::Host& /*host*/)
      : count_(c.get_int("count", 100)),
        per_poll_(c.get_int("per_poll", 7)),
        poll_delay_ms_(c.get_int("poll_delay_ms", 0)),
        offsets_(c.get_string("offsets", "ascending")),
        fail_poll_(c.get_string("fail_poll", "none")),
        commit_log_(open_for_append(c.get_string("commit_log"), "commit_log")) {}

  bool poll(sluice::Output& out, size_t max_records, uint32_t /*timeout_ms*/) override {
    if (fail_poll_ == "fatal") throw sluice::Fatal("faulty source: asked to fail fatally");
    if (fail_poll_ == "retry_forever") throw sluice::Retriable("faulty source: never ready");
    if (poll_delay_ms_ > 0 && next_ < count_ && max_records > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_delay_ms_));
    int64_t emitted = 0;
    while (next_ < count_ && emitted < per_poll_ && static_cast<size_t>(emitted) < max_records) {
      std::string value = "{\"id\":" + std::to_string(next_) + "}";
      sluice::OutRecord r;
      r.value = std::string_view(value);
      r.topic = "faulty";
      r.partition = 0;
      r.offset = offset_of(next_);
      r.timestamp_ms = next_;
      out.emit(r);
      ++next_;
      ++emitted;
    }
    return next_ >= count_;
  }

  void commit(std::span<const sluice::Position> positions) override {
    if (!commit_log_) return;
    for (const auto& p : positions)
      std::fprintf(commit_log_.get(), "%d %lld\n", p.partition, static_cast<long long>(p.offset));
    std::fflush(commit_log_.get());
  }

 private:
  int64_t offset_of(int64_t k) const {
    if (offsets_ == "backwards") return count_ - 1 - k;
    if (offsets_ == "repeating") return k % 10;
    if (offsets_ == "negative") return -k - 1;
    if (offsets_ == "random") {
      uint64_t x = static_cast<uint64_t>(k) * 0x9e3779b97f4a7c15ull;
      x ^= x >> 31;
      return static_cast<int64_t>(x % 1000003) - 500000;
    }
    return k;
  }

  const int64_t count_;
  const int64_t per_poll_;
  const int64_t poll_delay_ms_;
  const std::string offsets_;
  const std::string fail_poll_;
  FilePtr commit_log_;
  int64_t next_ = 0;
};

// A transform that passes records on unchanged, except one whose value contains `poison`: then
// it throws (the whole batch fails), rejects only that record, or fails fatally.
class FaultyTransform final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("poison").default_value("").doc("A value containing this text triggers `on_poison`.");
    s.string("on_poison")
        .default_value("throw")
        .one_of({"throw", "reject", "fatal", "retry"})
        .doc(
            "throw: std::runtime_error from process (ERROR for the batch); reject: reject that "
            "record only; fatal: sluice::Fatal; retry: sluice::Retriable every time.");
    s.integer("delay_ms")
        .default_value(0)
        .min(0)
        .doc("Each process call waits this long first (a slow stage in front of any sink).");
    return s;
  }
  static std::string description() { return "Passes records on; fails on a poison value."; }

  FaultyTransform(const sluice::Config& c, sluice::Host& /*host*/)
      : poison_(c.get_string("poison")),
        on_poison_(c.get_string("on_poison", "throw")),
        delay_ms_(c.get_int("delay_ms", 0)) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    for (size_t i = 0; i < in.size(); ++i) {
      const auto r = in[i];
      if (!poison_.empty() && r.value().find(poison_) != std::string_view::npos) {
        if (on_poison_ == "reject") {
          out.reject(i, "faulty transform: poison record");
          continue;
        }
        if (on_poison_ == "fatal") throw sluice::Fatal("faulty transform: poison record is fatal");
        if (on_poison_ == "retry") throw sluice::Retriable("faulty transform: poison, retry");
        throw std::runtime_error("faulty transform: threw on a poison record");
      }
      out.forward(i, r);
    }
  }

 private:
  const std::string poison_;
  const std::string on_poison_;
  const int64_t delay_ms_;
};

// A sink that appends values as lines to `path`, failing in a chosen pattern. Puts that fail
// write nothing, so the file holds exactly what was delivered (plus redeliveries).
class FaultySink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("path").default_value("").path().doc("Where delivered values go, one per line.");
    s.string("mode")
        .default_value("ok")
        .one_of({"ok", "fail_forever", "fail_every_second_batch", "reject_poison"})
        .doc(
            "ok; fail_forever: every put fails; fail_every_second_batch: the 2nd, 4th, ... put "
            "fails; reject_poison: records containing `poison` are rejected, the rest written.");
    s.string("failure")
        .default_value("retry")
        .one_of({"retry", "error", "fatal"})
        .doc("How a put fails: sluice::Retriable, std::runtime_error, or sluice::Fatal.");
    s.string("poison").default_value("").doc("For reject_poison.");
    s.string("fail_at_end")
        .default_value("none")
        .one_of({"none", "flush", "pre_commit"})
        .doc("A hook of the end of a run that throws std::runtime_error.");
    s.integer("put_delay_ms")
        .default_value(0)
        .min(0)
        .doc(
            "Each put waits this long before it writes (a slow sink: a wide window between a "
            "transform's work and the sink's write).");
    return s;
  }
  static std::string description() { return "Writes values to a file; fails as configured."; }

  FaultySink(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        mode_(c.get_string("mode", "ok")),
        failure_(c.get_string("failure", "retry")),
        poison_(c.get_string("poison")),
        fail_at_end_(c.get_string("fail_at_end", "none")),
        put_delay_ms_(c.get_int("put_delay_ms", 0)),
        out_(open_for_append(c.get_string("path"), "path")) {}

  void flush() override {
    if (fail_at_end_ == "flush") throw std::runtime_error("faulty sink: flush failed");
  }
  void pre_commit() override {
    if (fail_at_end_ == "pre_commit") throw std::runtime_error("faulty sink: pre_commit failed");
  }

  void put(const sluice::Batch& in, sluice::Output& rejects) override {
    const uint64_t call = ++puts_;
    host_.counter_add("puts", 1);
    const bool fail =
        mode_ == "fail_forever" || (mode_ == "fail_every_second_batch" && call % 2 == 0);
    if (fail) {
      host_.counter_add("failed_puts", 1);
      const std::string why =
          "faulty sink: put " + std::to_string(call) + " failed (" + mode_ + ")";
      if (failure_ == "error") throw std::runtime_error(why);
      if (failure_ == "fatal") throw sluice::Fatal(why);
      throw sluice::Retriable(why);
    }
    if (put_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(put_delay_ms_));
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < in.size(); ++i) {
      const auto v = in[i].value();
      if (mode_ == "reject_poison" && !poison_.empty() &&
          v.find(poison_) != std::string_view::npos) {
        rejects.reject(i, "faulty sink: poison record");
        continue;
      }
      if (out_) {
        std::fwrite(v.data(), 1, v.size(), out_.get());
        std::fputc('\n', out_.get());
      }
    }
    if (out_) std::fflush(out_.get());
  }

 private:
  sluice::Host& host_;
  const std::string mode_;
  const std::string failure_;
  const std::string poison_;
  const std::string fail_at_end_;
  const int64_t put_delay_ms_;
  std::mutex mu_;
  FilePtr out_;
  std::atomic<uint64_t> puts_{0};
};

}  // namespace

SLUICE_MODULE("faults", "0.1.0", SLUICE_SOURCE(FaultySource, "faulty"),
              SLUICE_TRANSFORM(FaultyTransform, "faulty"), SLUICE_SINK(FaultySink, "faulty"))
