// Call slots, the crash handler, the exit()/_exit() interposition and the watchdog thread.
// Everything the crash handler touches is prepared before the call: it only reads its
// thread's slot and the clock, and calls write(2) and raise(3).
#include "pipeline/call_guard.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/crash_line.hpp"
#include "core/log_line.hpp"

namespace sluice::pipeline {

struct Slot {
  std::atomic<bool> claimed{false};
  std::atomic<int64_t> started_ns{0};   // 0: no call in flight
  std::atomic<int64_t> reported_ns{0};  // the start of the call the watchdog reported stuck
  std::atomic<uint32_t> timeout_ms{0};
  int depth = 0;  // owner thread only
  std::atomic<int> journal_fd{-1};
  void* altstack = nullptr;
  std::mutex text_mu;  // the texts, between the owner and readers on other threads
  std::string pipeline, stage, human, line;
  bool json = false;       // the crash report is a JSON log line, with human_json
  std::string human_json;  // human's message as the inside of a JSON string, when json
};

namespace {

constexpr size_t kSlots = 256;
constexpr size_t kAltStackBytes = 64 * 1024;
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(100);

// Never freed: the watchdog and a late crash may read them while statics are destroyed.
Slot* const g_slots = new Slot[kSlots];
thread_local Slot* t_slot = nullptr;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- async-signal-safe output ----

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Writes "sluice: <cause> in <human>" to stderr (a JSON log line with --log-format json) and
// "cause=<cause>\t<line>\n" to the journal. `cause` is ASCII of sluice's own.
void report(const Slot& s, const char* cause) {
  core::CrashLine out;  // on the alternate signal stack
  out.begin(s.json);
  out.add("sluice: ");
  out.add(cause);
  out.add(" in ");
  const std::string& human = s.json ? s.human_json : s.human;
  out.add(human.data(), human.size());
  out.end();
  write_all(STDERR_FILENO, out.data(), out.size());
  const int journal = s.journal_fd.load(std::memory_order_relaxed);
  if (journal < 0) return;
  out.begin(false);
  out.add("cause=");
  out.add(cause);
  out.add("\t");
  out.add(s.line.data(), s.line.size());
  out.end();
  write_all(journal, out.data(), out.size());  // one write: a line is never interleaved
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
  }
  return "signal";
}

// SA_RESETHAND has put the default action back: raising again ends the process with the signal.
void on_crash(int sig, siginfo_t*, void*) {
  const Slot* s = t_slot;
  if (s != nullptr && s->depth > 0) {
    report(*s, signal_name(sig));
  } else {
    core::CrashLine out;
    out.begin(core::json_crash_lines());
    out.add("sluice: ");
    out.add(signal_name(sig));
    out.add(" outside any plugin call");
    out.end();
    write_all(STDERR_FILENO, out.data(), out.size());
  }
  ::raise(sig);
}

void install_handlers() {
  struct sigaction sa {};
  sa.sa_sigaction = on_crash;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

// ---- slots ----

// Mapped, not allocated: its pages cost memory only once a crash handler has run on them.
void* map_altstack() {
  void* p = ::mmap(nullptr, kAltStackBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void release_slot(Slot* s) {
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  ::sigaltstack(&off, nullptr);
  s->claimed.store(false, std::memory_order_release);
}

// Gives the thread's slot back when the thread ends. Constructed on a thread's first claim (the
// store to `armed` makes sure of it); t_slot itself stays a plain pointer the handler can read.
struct SlotRelease {
  bool armed = false;
  ~SlotRelease() {
    if (armed && t_slot) release_slot(t_slot);
    t_slot = nullptr;
  }
};
thread_local SlotRelease t_release;

// This thread's slot (claimed with an alternate signal stack on first use); nullptr when every
// slot is taken, and then this thread's calls are not reported.
Slot* my_slot() {
  if (t_slot) return t_slot;
  for (size_t i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].claimed.compare_exchange_strong(expected, true)) continue;
    Slot* s = &g_slots[i];
    if (!s->altstack) s->altstack = map_altstack();
    stack_t st{};
    st.ss_sp = s->altstack;
    st.ss_size = kAltStackBytes;
    if (s->altstack) ::sigaltstack(&st, nullptr);
    t_release.armed = true;  // registers the release at thread exit
    t_slot = s;
    return s;
  }
  return nullptr;
}

// Bytes of the call's text the crash handler copies into a JSON crash line, at most (the line
// holds 8 KiB; the rest of it is short).
constexpr size_t kMaxHumanJson = 7 * 1024;

std::string human_text(const std::string& pipeline, const std::string& stage,
                       const std::string& plugin, const char* call, const JournalEntry& e) {
  return fmt::format("plugin '{}' (stage {} of pipeline {}), call {}() on {}", plugin, stage,
                     pipeline, call, describe_ranges(e.ranges, e.records));
}

// The first slot with a call in flight, this thread's first.
Slot* slot_in_flight() {
  if (t_slot && t_slot->depth > 0) return t_slot;
  for (size_t i = 0; i < kSlots; ++i)
    if (g_slots[i].claimed.load() && g_slots[i].started_ns.load() != 0) return &g_slots[i];
  return nullptr;
}

// exit(N) or _exit(N) while a plugin call is in flight: the plugin's failure, never a clean
// end. Reported like a crash, then the process ends with kExitPluginExited.
void exit_in_call(const char* fn, int status) {
  Slot* s = slot_in_flight();
  if (!s) return;
  const std::string cause = fmt::format("{}({})", fn, status);
  {
    // Another thread's slot is written under its lock (this thread's own one is not changing).
    std::unique_lock lock(s->text_mu, std::defer_lock);
    if (s != t_slot) lock.lock();
    report(*s, cause.c_str());
  }
  core::CrashLine tail;
  tail.begin(core::json_crash_lines());
  tail.add("sluice: a plugin called ");
  tail.add(cause.c_str());
  tail.add(" inside a call; exiting with status ");
  tail.add_number(kExitPluginExited);
  tail.end();
  write_all(STDERR_FILENO, tail.data(), tail.size());
  ::syscall(SYS_exit_group, kExitPluginExited);
}

using ExitFn = void (*)(int);
ExitFn real_exit(const char* name) { return reinterpret_cast<ExitFn>(::dlsym(RTLD_NEXT, name)); }

// The start of the slot's call if it is past its deadline at `now`, else 0.
int64_t stuck_since(const Slot& s, int64_t now) {
  const int64_t started = s.started_ns.load();
  const int64_t timeout_ms = s.timeout_ms.load(std::memory_order_relaxed);
  if (started == 0 || timeout_ms == 0) return 0;
  return now - started < timeout_ms * 1'000'000 ? 0 : started;
}

void watchdog_loop() {
  for (;;) {
    std::this_thread::sleep_for(kWatchdogPeriod);
    const int64_t now = now_ns();
    for (size_t i = 0; i < kSlots; ++i) {
      Slot& s = g_slots[i];
      const int64_t started = stuck_since(s, now);
      if (started == 0 || s.reported_ns.exchange(started) == started) continue;
      std::lock_guard lock(s.text_mu);
      spdlog::error("pipeline {}: {} is stuck: no return after {} ms (call_timeout_ms)", s.pipeline,
                    s.human, s.timeout_ms.load());
    }
  }
}

}  // namespace

CallScope::CallScope(const CallPolicy& policy, const std::string& stage, const std::string& plugin,
                     const char* call, std::span<const sluice_record> records) {
  slot_ = my_slot();
  if (!slot_) return;
  outer_ = slot_->depth++ == 0;
  if (!outer_) return;
  JournalEntry e{"", policy.pipeline, stage, plugin, call, records.size(), ranges_of(records)};
  {
    std::lock_guard lock(slot_->text_mu);
    slot_->pipeline = policy.pipeline;
    slot_->stage = stage;
    // Written to stderr by the crash handler: the positions' topics come from the source plugin,
    // so control characters are escaped here, as in every log line of the format.
    const std::string human = human_text(policy.pipeline, stage, plugin, call, e);
    slot_->human = core::one_line(human);
    slot_->json = core::json_crash_lines();
    if (slot_->json) slot_->human_json = core::json_text(human, kMaxHumanJson);
    slot_->line = encode_call(e);
  }
  slot_->timeout_ms.store(policy.timeout_ms, std::memory_order_relaxed);
  slot_->journal_fd.store(policy.journal ? policy.journal->fd() : -1, std::memory_order_relaxed);
  slot_->started_ns.store(now_ns());
}

CallScope::~CallScope() {
  if (!slot_) return;
  --slot_->depth;
  if (outer_) slot_->started_ns.store(0);
}

std::vector<StuckCall> stuck_calls(const std::string& pipeline) {
  std::vector<StuckCall> out;
  const int64_t now = now_ns();
  for (size_t i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    const int64_t started = stuck_since(s, now);
    if (started == 0) continue;
    std::lock_guard lock(s.text_mu);
    if (s.pipeline != pipeline) continue;
    out.push_back({s.stage, fmt::format("stuck: {} has not returned for {:.1f} s (call_timeout_ms "
                                        "{})",
                                        s.human, static_cast<double>(now - started) / 1e9,
                                        s.timeout_ms.load())});
  }
  return out;
}

std::optional<CallInFlight> call_in_flight(const std::string& pipeline, const std::string& stage) {
  const int64_t now = now_ns();
  for (size_t i = 0; i < kSlots; ++i) {
    Slot& s = g_slots[i];
    const int64_t started = s.started_ns.load();
    if (started == 0) continue;
    std::lock_guard lock(s.text_mu);
    if (s.pipeline == pipeline && s.stage == stage)
      return CallInFlight{s.human, std::chrono::nanoseconds(now - started)};
  }
  return std::nullopt;
}

[[noreturn]] void leave(const char* fn, int status) {
  exit_in_call(fn, status);
  const auto real = real_exit(fn);
  if (real) real(status);
  ::syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

void exit_now(int status) {
  ::syscall(SYS_exit_group, status);
  __builtin_unreachable();
}

void install_call_guard() {
  static std::once_flag once;
  std::call_once(once, [] {
    (void)real_exit("exit");
    install_handlers();
    std::thread(watchdog_loop).detach();
  });
}

}  // namespace sluice::pipeline

// The executable's exit, _exit, _Exit and quick_exit come first in the lookup of every plugin
// (the link exports them, see CMakeLists.txt), so a plugin's call lands here; the host's own
// calls too, and pass through to libc's when no plugin call is in flight.
extern "C" void exit(int status) noexcept { sluice::pipeline::leave("exit", status); }
extern "C" void _exit(int status) { sluice::pipeline::leave("_exit", status); }
extern "C" void _Exit(int status) noexcept { sluice::pipeline::leave("_Exit", status); }
extern "C" void quick_exit(int status) noexcept { sluice::pipeline::leave("quick_exit", status); }
