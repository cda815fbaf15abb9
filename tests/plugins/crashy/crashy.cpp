// Test module crashy: a transform (and a sink) that passes records on, except that a value
// containing `poison` makes it segfault, abort, call exit(0) or loop forever; `leak_kb` leaks that
// much per record and aborts when malloc fails (as an xmalloc would); its state (snapshot) is what
// was last restored. Built with CRASHY_CTOR_ABORT,
// the library aborts as soon as it is loaded.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sluice/sdk.hpp>

namespace {

#ifdef CRASHY_CTOR_ABORT
__attribute__((constructor)) void abort_on_load() { std::abort(); }
#endif

void crash(const std::string& how) {
  if (how == "segfault") {
    volatile int* nowhere = nullptr;
    *nowhere = 1;
  }
  if (how == "abort") std::abort();
  if (how == "exit") std::exit(0);
  if (how == "hang")
    for (;;) ::pause();
}

class Crashy final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("poison").default_value("").doc("A value containing this text triggers on_poison.");
    s.string("on_poison")
        .default_value("segfault")
        .one_of({"segfault", "abort", "exit", "hang"})
        .doc("What happens on a poison record.");
    s.integer("leak_kb").default_value(0).min(0).doc("KiB leaked per record.");
    return s;
  }
  static std::string description() { return "Passes records on; crashes on a poison value."; }

  Crashy(const sluice::Config& c, sluice::Host& /*host*/)
      : poison_(c.get_string("poison")),
        on_poison_(c.get_string("on_poison", "segfault")),
        leak_bytes_(static_cast<size_t>(c.get_int("leak_kb", 0)) * 1024) {}

  // State is whatever was last restored: a test can see a restarted child get it back.
  std::string snapshot() override { return state_; }
  void restore(std::string_view state) override { state_ = state; }

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      const auto r = in[i];
      if (!poison_.empty() && r.value().find(poison_) != std::string_view::npos) crash(on_poison_);
      if (leak_bytes_ > 0) leak();
      out.forward(i, r);
    }
  }

 private:
  void leak() const {
    void* p = std::malloc(leak_bytes_);
    if (p == nullptr) std::abort();
    std::memset(p, 1, leak_bytes_);
  }

  const std::string poison_;
  const std::string on_poison_;
  const size_t leak_bytes_;
  std::string state_;
};

// The same faults in a sink's put: records are counted (the `put_records` counter), not kept.
class CrashySink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() { return Crashy::schema(); }
  static std::string description() { return "Takes records; crashes on a poison value."; }

  CrashySink(const sluice::Config& c, sluice::Host& host)
      : host_(host), poison_(c.get_string("poison")), on_poison_(c.get_string("on_poison")) {}

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

}  // namespace

SLUICE_MODULE("crashy", "1.0.0", SLUICE_TRANSFORM(Crashy, "crashy"),
              SLUICE_SINK(CrashySink, "crashy"))
