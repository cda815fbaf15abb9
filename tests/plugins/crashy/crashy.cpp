// Test module crashy: a transform (and a sink) that passes records on, except that a value
// containing `poison` makes it segfault, abort, call exit(0) or loop forever; `leak_kb` leaks that
// much per record and aborts when malloc fails (as an xmalloc would); its state (snapshot) is what
// was last restored; `shrink_input` makes it cut its input region (the memfd the host writes
// batches into) to nothing after each batch, as a hostile plugin could. A source of {"seq":N}
// records that does the same when it reaches one seq, once (a marker file), and keeps its committed
// position in a file. `on_create` makes the transform's, the sink's and the source's create
// misbehave the same ways while `create_fault_file` exists (so a test can let the first create pass
// and fail the restarted child's; `poison_arms_create_fault` makes the first poison record create
// that file just before it crashes, so the restarts after it fail until a test removes it; the
// source's `crash_arms_create_fault` does the same at `crash_at`). Built with CRASHY_CTOR_ABORT,
// the library aborts as soon as it is loaded (with CRASHY_CTOR_ABORT_IN_CHILD, only in a
// plugin-host child).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sluice/sdk.hpp>
#include <stdexcept>
#include <string>

namespace {

#ifdef CRASHY_CTOR_ABORT
__attribute__((constructor)) void abort_on_load() { std::abort(); }
#endif
#ifdef CRASHY_CTOR_ABORT_IN_CHILD
// Aborts as it loads in a `sluice plugin-host` child only (as a library whose constructor fails
// under the child's limits would): the host loads it fine.
__attribute__((constructor)) void abort_on_load_in_child() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string cmdline(std::istreambuf_iterator<char>(in), {});
  if (cmdline.find("plugin-host") != std::string::npos) std::abort();
}
#endif

// Recurses until the stack's guard page is hit (SIGSEGV on a stack with no room left).
__attribute__((noinline)) int overflow_stack(int depth) {
  volatile char pad[4096];
  pad[0] = static_cast<char>(depth);
  return overflow_stack(depth + 1) + pad[0];
}

void crash(const std::string& how) {
  if (how == "segfault") {
    volatile int* nowhere = nullptr;
    *nowhere = 1;
  }
  if (how == "abort") std::abort();
  if (how == "exit") std::exit(0);
  if (how == "hang")
    for (;;) ::pause();
  if (how == "_exit") ::_exit(0);
  if (how == "sigkill") ::raise(SIGKILL);
  if (how == "fpe") ::raise(SIGFPE);
  if (how == "bus") ::raise(SIGBUS);
  if (how == "throw") throw std::runtime_error("crashy threw across the C ABI");
  if (how == "stack_overflow") overflow_stack(1);
  if (how == "pthread_exit") ::pthread_exit(nullptr);
}

// Misbehaves in create (`on_create`) while `create_fault_file` exists, or always without one.
void create_fault(const sluice::Config& c) {
  const std::string how = c.get_string("on_create");
  const std::string file = c.get_string("create_fault_file");
  if (!how.empty() && (file.empty() || ::access(file.c_str(), F_OK) == 0)) crash(how);
}

// The keys create_fault reads.
void create_fault_keys(sluice::ConfigSchema& s) {
  s.string("on_create")
      .default_value("")
      .one_of({"", "segfault", "abort", "exit", "hang", "_exit"})
      .doc("What happens in create while create_fault_file exists (\"\": nothing).");
  s.string("create_fault_file")
      .default_value("")
      .doc("on_create acts only while this file exists (empty: always).");
}

// Leaks `bytes`, aborting when malloc fails (as an xmalloc would).
void leak(size_t bytes) {
  void* p = std::malloc(bytes);
  if (p == nullptr) std::abort();
  std::memset(p, 1, bytes);
}

// Truncates this process's memfd named `name` (from /proc/self/fd) to nothing; returns errno
// (0 when it was cut, ENOENT when there is none).
int shrink_memfd(const std::string& name) {
  for (int fd = 3; fd < 64; ++fd) {
    char link[256] = {};
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = ::readlink(path.c_str(), link, sizeof link - 1);
    if (n <= 0 || std::string_view(link, static_cast<size_t>(n)).find(name) == std::string::npos)
      continue;
    return ::ftruncate(fd, 0) == 0 ? 0 : errno;
  }
  return ENOENT;
}

class Crashy final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("poison").default_value("").doc("A value containing this text triggers on_poison.");
    s.string("on_poison")
        .default_value("segfault")
        .one_of({"segfault", "abort", "exit", "hang", "_exit", "sigkill", "fpe", "bus", "throw",
                 "stack_overflow", "pthread_exit"})
        .doc("What happens on a poison record.");
    s.integer("leak_kb").default_value(0).min(0).doc("KiB leaked per record.");
    s.boolean("shrink_input")
        .default_value(false)
        .doc("After each batch, cut the input region to nothing (counter shrink_refused if not).");
    s.string("on_destroy")
        .default_value("")
        .one_of({"", "segfault", "abort", "exit", "hang", "_exit"})
        .doc("What happens when the instance is destroyed (\"\": nothing).");
    create_fault_keys(s);
    s.boolean("poison_arms_create_fault")
        .default_value(false)
        .doc(
            "The first poison record creates create_fault_file before it crashes (once: a "
            "marker FILE.armed remembers it).");
    return s;
  }
  static std::string description() { return "Passes records on; crashes on a poison value."; }
  ~Crashy() override {
    if (!on_destroy_.empty()) crash(on_destroy_);
  }

  Crashy(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        poison_(c.get_string("poison")),
        on_poison_(c.get_string("on_poison", "segfault")),
        leak_bytes_(static_cast<size_t>(c.get_int("leak_kb", 0)) * 1024),
        shrink_input_(c.get_bool("shrink_input", false)),
        on_destroy_(c.get_string("on_destroy")),
        armed_fault_(c.get_bool("poison_arms_create_fault", false)
                         ? c.get_string("create_fault_file")
                         : "") {
    create_fault(c);
  }

  // State is whatever was last restored: a test can see a restarted child get it back.
  std::string snapshot() override { return state_; }
  void restore(std::string_view state) override { state_ = state; }

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      const auto r = in[i];
      if (!poison_.empty() && r.value().find(poison_) != std::string_view::npos) {
        if (!armed_fault_.empty() && ::access((armed_fault_ + ".armed").c_str(), F_OK) != 0) {
          std::ofstream(armed_fault_ + ".armed") << "armed\n";
          std::ofstream(armed_fault_) << "armed by a poison record\n";
        }
        crash(on_poison_);
      }
      if (leak_bytes_ > 0) leak(leak_bytes_);
      out.forward(i, r);
    }
    if (shrink_input_ && shrink_memfd("sluice-batch-in") != 0)
      host_.counter_add("shrink_refused", 1);
  }

 private:
  sluice::Host& host_;
  const std::string poison_;
  const std::string on_poison_;
  const size_t leak_bytes_;
  const bool shrink_input_;
  const std::string on_destroy_;
  const std::string armed_fault_;  // create_fault_file, if a poison record creates it
  std::string state_;
};

// The same faults in a sink's put: records are counted (the `put_records` counter), not kept.
class CrashySink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() { return Crashy::schema(); }
  static std::string description() { return "Takes records; crashes on a poison value."; }

  CrashySink(const sluice::Config& c, sluice::Host& host)
      : host_(host), poison_(c.get_string("poison")), on_poison_(c.get_string("on_poison")) {
    create_fault(c);
  }

  void put(const sluice::Batch& in, sluice::Output& /*rejects*/) override {
    for (size_t i = 0; i < in.size(); ++i)
      if (!poison_.empty() && in[i].value().find(poison_) != std::string_view::npos)
        crash(on_poison_);
    host_.counter_add("put_records", static_cast<double>(in.size()));
  }

 private:
  sluice::Host& host_;
  const std::string poison_;
  const std::string on_poison_;
};

// Records {"seq":N} at offsets N of topic crashy, partition 0, from the committed position on.
// On reaching seq `crash_at` it crashes (`on_poison`) if `crash_marker` does not exist yet (and
// creates it first), so it crashes once; `drain_at` makes that poll drain partition 0 first.
class CrashySource final : public sluice::Source {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.integer("count").default_value(0).min(0).doc("Records in all (0 = unbounded).");
    s.integer("crash_at").default_value(-1).doc("The seq at which a poll crashes (-1: never).");
    s.string("on_poison")
        .default_value("segfault")
        .one_of({"segfault", "abort", "exit", "hang", "_exit", "sigkill", "fpe", "bus", "throw",
                 "stack_overflow", "pthread_exit"})
        .doc("What happens at crash_at.");
    s.string("crash_marker")
        .default_value("")
        .path(sluice::ConfigSchema::PathKind::output)
        .doc("Crash only while this file does not exist.");
    s.string("position_file")
        .default_value("")
        .path(sluice::ConfigSchema::PathKind::output)
        .doc("Where commits are kept (empty: nowhere).");
    s.integer("drain_at").default_value(-1).doc("The seq before which a poll drains.");
    s.integer("leak_kb").default_value(0).min(0).doc("KiB leaked per record.");
    s.boolean("crash_after_commit")
        .default_value(false)
        .doc("At crash_at, emit nothing until a commit came, then crash (so some are committed).");
    create_fault_keys(s);
    s.boolean("crash_arms_create_fault")
        .default_value(false)
        .doc("The crash at crash_at creates create_fault_file first (so the restarts fail).");
    return s;
  }
  static std::string description() { return "{\"seq\":N} records; crashes once at one seq."; }

  CrashySource(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        count_(c.get_int("count", 0)),
        crash_at_(c.get_int("crash_at", -1)),
        drain_at_(c.get_int("drain_at", -1)),
        on_poison_(c.get_string("on_poison", "segfault")),
        marker_(c.get_string("crash_marker")),
        position_file_(c.get_string("position_file")),
        leak_bytes_(static_cast<size_t>(c.get_int("leak_kb", 0)) * 1024),
        crash_after_commit_(c.get_bool("crash_after_commit", false)),
        armed_fault_(
            c.get_bool("crash_arms_create_fault", false) ? c.get_string("create_fault_file") : "") {
    create_fault(c);
    std::ifstream in(position_file_);
    int64_t committed = -1;
    if (!position_file_.empty() && in >> committed) seq_ = committed + 1;
  }

  bool poll(sluice::Output& out, size_t max_records, uint32_t /*timeout_ms*/) override {
    sluice::OutRecord rec;
    rec.topic = "crashy";
    for (size_t i = 0; i < max_records && !out.full() && !done(); ++i, ++seq_) {
      if (seq_ == crash_at_ && crash_after_commit_ && !committed_) return false;
      if (seq_ == crash_at_ && !marker_.empty() && ::access(marker_.c_str(), F_OK) != 0) {
        std::ofstream(marker_) << "crashed\n";
        if (!armed_fault_.empty()) std::ofstream(armed_fault_) << "armed by crash_at\n";
        crash(on_poison_);
      }
      if (seq_ == drain_at_ && i == 0) {
        const sluice_position p{sizeof(sluice_position), {}, 0, seq_ - 1};
        host_.gauge_set("drained", host_.drain({&p, 1}, 30000) ? 1 : -1);
      }
      if (leak_bytes_ > 0) leak(leak_bytes_);
      value_ = "{\"seq\":" + std::to_string(seq_) + "}";
      rec.topic = "crashy";
      rec.value = std::string_view(value_);
      rec.offset = seq_;
      out.emit(rec);
    }
    return done();
  }

  void commit(std::span<const sluice::Position> positions) override {
    committed_ = committed_ || !positions.empty();
    for (const auto& p : positions) {
      host_.counter_add("commits", 1);
      if (!position_file_.empty()) std::ofstream(position_file_, std::ios::trunc) << p.offset;
    }
  }
  void set_paused(bool paused) override { host_.gauge_set("paused", paused ? 1 : 0); }
  void on_memory_pressure(double level) override { host_.gauge_set("pressure", level); }
  std::string snapshot() override { return std::to_string(seq_); }
  void restore(std::string_view state) override { seq_ = std::stoll(std::string(state)); }

 private:
  bool done() const { return count_ > 0 && seq_ >= count_; }

  sluice::Host& host_;
  const int64_t count_, crash_at_, drain_at_;
  const std::string on_poison_, marker_, position_file_;
  const size_t leak_bytes_;
  const bool crash_after_commit_;
  const std::string armed_fault_;  // create_fault_file, if the crash at crash_at creates it
  bool committed_ = false;         // a commit came (commit and poll run on the same source thread)
  int64_t seq_ = 0;
  std::string value_;
};

}  // namespace

SLUICE_MODULE("crashy", "1.0.0", SLUICE_SOURCE(CrashySource, "crashy"),
              SLUICE_TRANSFORM(Crashy, "crashy"), SLUICE_SINK(CrashySink, "crashy"))
