// Test module poison. `poison` (transform) passes every record through, except one whose value
// contains `marker`: on it, it does `action`: segfault (a write through a null pointer), abort,
// exit (exit(0)), _exit, _Exit, quick_exit (each with 0), sigkill (raise(SIGKILL), as the OOM
// killer would) or hang (sleeps forever). `setup_ms` makes its creation take that long (-1:
// forever), as a plugin connecting to a server that does not answer. docs/containment.md's tests.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <sluice/sdk.hpp>
#include <string>
#include <thread>

namespace {

class Poison final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("marker").required().doc("a record whose value contains this is the poison");
    s.string("action").required().one_of(
        {"segfault", "abort", "exit", "_exit", "_Exit", "quick_exit", "sigkill", "hang"});
    s.integer("setup_ms").default_value(0).min(-1).doc("how long creation takes (-1: forever)");
    return s;
  }
  Poison(const sluice::Config& c, sluice::Host& /*host*/)
      : marker_(c.get_string("marker")), action_(c.get_string("action")) {
    const int64_t setup_ms = c.get_int("setup_ms", 0);
    if (setup_ms < 0)
      for (;;) pause();
    std::this_thread::sleep_for(std::chrono::milliseconds(setup_ms));
  }

  void process(const sluice::Batch& in, sluice::Output& out) override {
    for (size_t i = 0; i < in.size(); ++i) {
      const auto value = in[i].value();
      if (std::string_view(value).find(marker_) != std::string_view::npos) fail();
      out.emit(i, sluice::OutRecord::from(in[i]));
    }
  }

 private:
  void fail() const {
    if (action_ == "segfault") *static_cast<volatile int*>(null()) = 1;
    if (action_ == "abort") std::abort();
    if (action_ == "exit") std::exit(0);
    if (action_ == "_exit") _exit(0);
    if (action_ == "_Exit") std::_Exit(0);
    if (action_ == "quick_exit") std::quick_exit(0);
    if (action_ == "sigkill") ::raise(SIGKILL);  // as the OOM killer would
    for (;;) pause();
  }
  // Hidden from the optimizer, so the write above really happens.
  static void* null() {
    static void* volatile p = nullptr;
    return p;
  }

  std::string marker_, action_;
};

}  // namespace

SLUICE_MODULE("poison", "1.0.0", SLUICE_TRANSFORM(Poison, "poison"))
