// The proxy table: static hooks forwarding to a per-instance Proxy that owns the child process.
#include "isolation/proxy.hpp"

#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

#include "core/call_output_budget.hpp"
#include "core/plugin_unavailable.hpp"
#include "isolation/child_process.hpp"
#include "isolation/replay_filter.hpp"
#include "plugin/host_context.hpp"
#include "plugin/plugin_instance.hpp"

namespace sluice::isolation {

namespace {

using Clock = std::chrono::steady_clock;

// Crash incidents (calls whose child died, restarts that failed) tolerated per window before
// calls fail outright.
constexpr size_t kMaxCrashesPerWindow = 5;
constexpr auto kCrashWindow = std::chrono::seconds(60);
// After a start that failed (the child died or hung loading the library or in create), the next
// start waits 1 s, doubling to 30 s; calls meanwhile fail at once.
constexpr auto kFirstStartRetry = std::chrono::milliseconds(1000);
constexpr auto kMaxStartRetry = std::chrono::milliseconds(30000);
constexpr size_t kMaxQuarantined = 100000;

// What the proxy table needs at create time, found by instance name (create gets no context).
struct ProxySpec {
  plugin::PluginInfo real;
  std::string instance_name;
  core::IsolationSettings settings;
  sluice_plugin table{};
  LoadCrashReporter on_load_crash;
};

using plugin::has_hook;

std::mutex g_specs_mu;
std::map<std::string, std::weak_ptr<ProxySpec>> g_specs;

void set_error(sluice_error* error, std::string_view message, std::string_view field = {}) {
  if (!error) return;
  auto copy = [](char* dst, size_t cap, std::string_view text) {
    if (!dst || cap == 0) return;
    const size_t n = std::min(cap - 1, text.size());
    if (n > 0) std::memcpy(dst, text.data(), n);  // an empty view may have a null data()
    dst[n] = '\0';
  };
  copy(error->message, error->message_capacity, message);
  if (SLUICE_HAS_FIELD(error, sluice_error, field_capacity))
    copy(error->field, error->field_capacity, field);
}

// A record's identity for the quarantine: where it came from and what it holds.
uint64_t fingerprint(const sluice_record& r) {
  auto view = [](sluice_bytes b) {
    return std::string_view(reinterpret_cast<const char*>(b.ptr ? b.ptr : nullptr), b.len);
  };
  uint64_t h = std::hash<std::string_view>{}(view(r.value));
  h ^= std::hash<std::string_view>{}(view(r.key)) * 0x9e3779b97f4a7c15ull;
  h ^= std::hash<std::string_view>{}(view(r.topic)) + static_cast<uint64_t>(r.offset) * 31 +
       static_cast<uint64_t>(r.partition);
  return h;
}

const char* call_name(MessageKind kind) {
  switch (kind) {
    case MessageKind::create:
      return "create()";
    case MessageKind::process:
      return "process()";
    case MessageKind::put:
      return "put()";
    case MessageKind::flush:
      return "flush()";
    case MessageKind::pre_commit:
      return "pre_commit()";
    case MessageKind::snapshot:
      return "snapshot()";
    case MessageKind::restore:
      return "restore()";
    case MessageKind::poll:
      return "poll()";
    case MessageKind::commit:
      return "commit()";
    case MessageKind::set_paused:
      return "set_paused()";
    default:
      return "a call";
  }
}

// How one call to the child ended: a reply, or the child's death (then `crash` says how).
struct Outcome {
  bool crashed = false;
  std::string crash;  // "killed by signal 11 (SIGSEGV)", "call exceeded call_timeout_ms=N"
  sluice_status status = SLUICE_OK;
  std::string message;
  size_t region_size = 0;
  double plugin_us = 0;      // the plugin's own time in the call
  uint32_t flags = 0;        // kEndOfStream
  size_t output = 0;         // the child's output region the reply's records are in
  bool not_started = false;  // no child could be started for the call: `message` says why
  bool abandoned = false;    // a start killed at the stop's grace (stop_starts_at)
  bool loaded = false;       // a create's child said it had loaded the library
  int signal = 0;            // the signal the child died of (0: none, or a timeout)
};

// Hands one output record to the host's writer: as a view into the output region (held until
// the host releases the record) when the region may be viewed and the writer takes views, else
// as a copy.
void append_output(sluice_writer* out, size_t index, const sluice_record& record,
                   OutputRegion* viewed) {
  if (viewed)
    out->append_owned(out->host_ctx, index, &record, &OutputRegion::release, viewed->hold());
  else
    out->append(out->host_ctx, index, &record);
}

}  // namespace

// One isolated instance: the child, its restarts, and the quarantine of poison records.
class Proxy {
 public:
  Proxy(std::shared_ptr<const ProxySpec> spec, const sluice_host_api* host, std::string config)
      : spec_(std::move(spec)), host_(host), config_(std::move(config)) {}
  ~Proxy();

  sluice_status start(sluice_error* error);
  sluice_status batch(MessageKind kind, const sluice_batch* in, sluice_writer* out,
                      sluice_error* error);
  sluice_status simple(MessageKind kind, sluice_error* error, std::string_view payload = {});
  sluice_status poll(sluice_poll_args* args, sluice_writer* out, sluice_error* error);
  void set_paused(int32_t paused);
  sluice_status snapshot(sluice_buffer* out, sluice_error* error);
  sluice_status restore(const uint8_t* data, size_t len, sluice_error* error);
  void memory_pressure(double level);
  CrashState crash_state() const;
  // Any thread: from `when` on, a start in flight is killed and none is begun. An earlier time
  // handed before (a source's grace, from the stop's first sight) stays.
  void stop_starts_at(Clock::time_point when) {
    const Clock::rep at = when.time_since_epoch().count();
    Clock::rep was = stop_starts_at_.load(std::memory_order_acquire);
    while (at < was && !stop_starts_at_.compare_exchange_weak(was, at, std::memory_order_acq_rel)) {
    }
  }
  // Any thread: a restart is in flight, or was killed at the stop's grace (its call returns).
  bool restarting() const { return restarting_.load(std::memory_order_acquire); }

 private:
  using Indices = std::vector<size_t>;

  bool ensure_child(std::string* why, std::string* field = nullptr);
  // A call that found no plugin process: RETRY, the records not at fault (they are held, not
  // dead-lettered), once a first start succeeded; before it, the stage's setup error.
  sluice_status not_running(sluice_error* error, const std::string& why,
                            std::string_view field = {}) const;
  bool stopping_starts() const {
    return Clock::now().time_since_epoch().count() >=
           stop_starts_at_.load(std::memory_order_acquire);
  }
  // Waits for the child's next message of a restart's create; false (the child killed) when
  // the stop's grace passes first.
  bool await_start(Deadline deadline);
  // `extra_ms` lengthens the deadline (a poll may wait its own timeout_ms).
  Outcome call(MessageKind kind, size_t region_size, std::string_view payload = {},
               uint32_t extra_ms = 0);
  Outcome await_reply(MessageKind kind, uint64_t call_id, uint32_t extra_ms);
  void answer_drain(const Message& m);
  void after_restart();
  bool deliver_polled(const Outcome& o, sluice_writer* out);
  sluice_status poll_crashed(const Outcome& o, sluice_error* error);
  Outcome attempt(MessageKind kind, const sluice_batch* in, const Indices& indices);
  void deliver(const Outcome& o, const Indices& indices, sluice_writer* out);
  // deliver(), after letting the next call in when the writer takes views (see batch()).
  void deliver_outside(const Outcome& o, const Indices& indices, sluice_writer* out,
                       std::unique_lock<std::recursive_mutex>& lock);
  static void deliver(OutputRegion& region, bool viewable, const Outcome& o, const Indices& indices,
                      sluice_writer* out);
  // The reply's output region as a view, and the region itself if `out` may view it.
  RegionView read_output(const Outcome& o, sluice_writer* out, OutputRegion** viewed);
  static RegionView read_output(OutputRegion& region, bool viewable, const Outcome& o,
                                sluice_writer* out, OutputRegion** viewed);
  static bool takes_views(const sluice_writer* out) {
    return SLUICE_HAS_FIELD(out, sluice_writer, append_owned) && out->append_owned != nullptr;
  }
  sluice_status bisect(MessageKind kind, const sluice_batch* in, const Indices& indices,
                       sluice_writer* out, const std::string& crash, std::string* message);
  Indices admit(const sluice_batch* in, sluice_writer* out);
  void note_crash(MessageKind kind, const std::string& crash,
                  std::string_view then = "restarting it");
  bool too_many_crashes();
  void start_failed();
  std::string not_started_yet() const;
  void count(const char* name, double delta = 1);
  void gauge(const char* name, double value);
  void count_crossing(Clock::time_point started, double plugin_us);
  void log(int32_t level, const std::string& text);
  uint64_t next_call_id() { return ++call_id_; }

  std::shared_ptr<const ProxySpec> spec_;
  const sluice_host_api* host_;
  // What the parent's host API gives as the pipeline's memory limit (0: unknown).
  uint64_t pipeline_memory_limit() const {
    return SLUICE_HAS_FIELD(host_, sluice_host_api, sluice_host_memory_limit) &&
                   host_->sluice_host_memory_limit
               ? host_->sluice_host_memory_limit(host_->host_ctx)
               : 0;
  }
  std::string config_;
  // Recursive: a source's poll may drain, and the host then commits on the same thread.
  std::recursive_mutex mu_;
  std::unique_ptr<ChildProcess> child_;
  RegionWriter input_;  // a batch into the child's input region, its tables reused call to call
  uint64_t call_id_ = 0;
  bool started_ = false;
  int consecutive_crashes_ = 0;
  // Starts in a row whose child died or hung; none is tried again before next_start_.
  int failed_starts_ = 0;
  Clock::time_point next_start_{};
  std::string start_failure_;  // how the last failed start ended
  std::deque<Clock::time_point> crashes_;
  std::optional<std::string> state_;  // the last snapshot or restore, for a restarted child
  std::unordered_set<uint64_t> quarantine_;
  std::string last_crash_;
  // What crash_state() reads, under its own lock: mu_ is held for a whole call.
  mutable std::mutex shown_mu_;
  CrashState shown_;
  std::deque<Clock::time_point> shown_window_;
  Clock::time_point shown_next_start_{};
  ReplayFilter replay_;  // a source's: what a restarted child polls again
  bool paused_ = false;  // a source's last set_paused, for a restarted child
  std::atomic<Clock::rep> stop_starts_at_{Clock::time_point::max().time_since_epoch().count()};
  std::atomic<bool> restarting_{false};  // restarting()
};

Proxy::~Proxy() {
  if (!child_) return;
  MessageHeader h;
  h.kind = MessageKind::shutdown;
  if (child_->channel().send(h)) child_->wait(2000);
}

void Proxy::count(const char* name, double delta) {
  host_->sluice_host_counter_add(host_->host_ctx, name, delta);
}

// What isolation added to a batch: the whole call as the host saw it, less the plugin's time.
// Stats show the sum and the count (isolation.crossing_us / isolation.batches).
void Proxy::count_crossing(Clock::time_point started, double plugin_us) {
  const std::chrono::duration<double, std::micro> elapsed = Clock::now() - started;
  count("isolation.batches");
  count("isolation.crossing_us", std::max(0.0, elapsed.count() - plugin_us));
}

void Proxy::gauge(const char* name, double value) {
  host_->sluice_host_gauge_set(host_->host_ctx, name, value);
}

void Proxy::log(int32_t level, const std::string& text) {
  host_->sluice_host_log(host_->host_ctx, level, text.data(), text.size());
}

Outcome Proxy::await_reply(MessageKind kind, uint64_t call_id, uint32_t extra_ms) {
  const auto timeout =
      std::chrono::milliseconds(uint64_t{spec_->settings.call_timeout_ms} + extra_ms);
  Deadline deadline = Clock::now() + timeout;
  Outcome o;
  for (;;) {
    if (kind == MessageKind::create && started_ && !await_start(deadline)) {
      o.crashed = o.abandoned = true;
      o.crash = "killed at the stop's grace while it started (no start outlives a stop's grace)";
      child_.reset();
      return o;
    }
    bool timed_out = false;
    auto m = child_->channel().receive(deadline, &timed_out);
    if (!m) {
      o.crashed = true;
      if (timed_out) {
        child_->kill();
        o.crash = fmt::format("call exceeded call_timeout_ms={}", spec_->settings.call_timeout_ms);
        count("isolation.timeouts");
      } else {
        const int status = child_->wait(1000);
        o.crash = describe_wait_status(status);
        if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
        // A create's child that exits before its library loaded did so loading it (ensure_child).
        if (WIFEXITED(status) && (kind != MessageKind::create || o.loaded))
          o.crash += fmt::format(" inside {}", call_name(kind));
        gauge("isolation.last_signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
      }
      child_.reset();
      return o;
    }
    const auto& h = m->header;
    if (h.kind == MessageKind::log)
      host_->sluice_host_log(host_->host_ctx, h.status, m->payload.data(), m->payload.size());
    else if (h.kind == MessageKind::counter_add)
      count(m->payload.c_str(), h.number);
    else if (h.kind == MessageKind::gauge_set)
      gauge(m->payload.c_str(), h.number);
    else if (h.kind == MessageKind::loaded)
      o.loaded = true;
    else if (h.kind == MessageKind::drain) {
      const auto started = Clock::now();
      answer_drain(*m);
      deadline += Clock::now() - started;  // the drain's time is the host's, not the plugin's
      if (!child_) {                       // it died in the commit the drain made
        o.crashed = true;
        o.crash = last_crash_;
        return o;
      }
    } else if (h.kind == MessageKind::reply && h.call_id == call_id) {
      o.status = h.status;
      o.message = m->payload;
      o.region_size = h.region_size;
      o.plugin_us = h.number;
      o.flags = h.flags;
      return o;
    }
  }
}

// A restart's create may hang up to call_timeout_ms; a stop must not wait past its grace for it
// (the pipeline sets stop_starts_at): the wait is cut in slices that look at the stop, and the
// child is killed once it comes. Nothing is read here, so no message is cut short.
bool Proxy::await_start(Deadline deadline) {
  constexpr auto kSlice = std::chrono::milliseconds(100);
  for (;;) {
    if (stopping_starts()) {
      child_->kill();
      child_->wait(1000);
      return false;
    }
    const auto now = Clock::now();
    if (now >= deadline) return true;  // the receive times out as before
    if (child_->channel().wait_readable(std::min<Deadline>(deadline, now + kSlice))) return true;
  }
}

// A source's sluice_host_drain from inside its poll: the host drains and commits (through this
// proxy, on this thread), then the child gets the answer.
void Proxy::answer_drain(const Message& m) {
  const std::vector<sluice_position> positions = decode_positions(m.payload);
  const sluice_status st = host_->sluice_host_drain(
      host_->host_ctx, positions.data(), positions.size(), static_cast<uint32_t>(m.header.number));
  if (!child_) return;
  MessageHeader h;
  h.kind = MessageKind::reply;
  h.call_id = m.header.call_id;
  h.status = st;
  child_->channel().send(h);
}

Outcome Proxy::call(MessageKind kind, size_t region_size, std::string_view payload,
                    uint32_t extra_ms) {
  MessageHeader h;
  h.kind = kind;
  h.call_id = next_call_id();
  h.region_size = region_size;
  h.number = host_->sluice_host_memory_pressure(host_->host_ctx);
  h.output = static_cast<uint32_t>(child_->free_output());
  std::optional<SharedCpu> shared;
  if ((kind == MessageKind::process || kind == MessageKind::put) && spec_->settings.share_cpu)
    shared.emplace(*child_);
  const bool one_cpu = shared && shared->active();
  if (one_cpu) h.flags |= kSharesCallerCpu;
  child_->channel().set_spin(!one_cpu);  // a spin would hold the CPU the child needs
  child_->channel().send(h, payload);    // a dead child shows in the reply's absence
  Outcome o = await_reply(kind, h.call_id, extra_ms);
  o.output = h.output;
  return o;
}

// Starts a child and creates the instance in it (restoring the last state after a crash).
// Restarts after consecutive crashes wait 10 ms, 20 ms, ... up to 1 s. After a start that
// failed, none is tried before its backoff has passed: the call fails at once instead of
// waiting, as every call did, for one more create to time out.
bool Proxy::ensure_child(std::string* why, std::string* field) {
  if (child_) return true;
  if (failed_starts_ > 0 && Clock::now() < next_start_) {
    *why = not_started_yet();
    return false;
  }
  if (started_ && stopping_starts()) {
    *why = "the plugin process is not running, and none is started past the stop's grace";
    return false;
  }
  if (consecutive_crashes_ > 1 && failed_starts_ == 0) {
    const int shift = std::min(consecutive_crashes_ - 2, 7);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10 << shift, 1000)));
  }
  const ProxySpec& s = *spec_;
  child_ = std::make_unique<ChildProcess>(ChildOptions{s.real.file, s.real.name, s.real.kind,
                                                       s.instance_name, s.settings.memory_limit_mb,
                                                       false, pipeline_memory_limit()});
  restarting_.store(started_, std::memory_order_release);
  Outcome o = call(MessageKind::create, 0, config_);
  if (o.abandoned) {  // the stop's doing, not the plugin's: no crash incident
    *why = fmt::format("the plugin process for {} was {}", s.real.file.string(), o.crash);
    return false;  // restarting_ stays: no start follows, and the call is on its way out
  }
  restarting_.store(false, std::memory_order_release);
  if (o.crashed) {
    if (o.signal != 0 && !o.loaded && s.on_load_crash) s.on_load_crash(o.signal);
    // The child says when its library has loaded: a death or hang before that was the load's.
    start_failure_ = o.crash.ends_with(call_name(MessageKind::create)) ? o.crash
                     : o.loaded                                        ? o.crash + " in create()"
                                : o.crash + " while loading the library";
    if (started_) start_failed();  // a first start that fails is the stage's setup error
    *why = fmt::format("the plugin process for {} did not start: {}", s.real.file.string(),
                       start_failure_);
    return false;
  }
  if (o.status != SLUICE_OK) {
    const size_t nul = o.message.find('\0');
    *why = o.message.substr(0, nul);
    if (field && nul != std::string::npos) *field = o.message.substr(nul + 1);
    child_.reset();
    return false;
  }
  const bool restarted = started_;
  started_ = true;
  failed_starts_ = 0;
  {
    std::lock_guard lock(shown_mu_);
    shown_.start_failing = false;
  }
  if (state_ && has_hook(s.real.table, &sluice_plugin::restore)) {
    RegionWriter w(child_->input());
    w.reset();
    w.add_blob(*state_);
    Outcome r = call(MessageKind::restore, w.finish());
    if (r.crashed || r.status != SLUICE_OK)
      log(SLUICE_LOG_WARN, "the restarted plugin process did not take the last snapshot: " +
                               (r.crashed ? r.crash : r.message));
  }
  if (restarted && child_) after_restart();
  return child_ != nullptr;
}

// A new child after a crash: counted; a source's is told it is paused, and what it polls again
// is dropped.
void Proxy::after_restart() {
  count("isolation.restarts");
  {
    std::lock_guard lock(shown_mu_);
    ++shown_.restarts;
  }
  if (spec_->real.kind != SLUICE_KIND_SOURCE) return;
  replay_.child_restarted();
  if (paused_) call(MessageKind::set_paused, 0, "1");
}

sluice_status Proxy::start(sluice_error* error) {
  std::lock_guard lock(mu_);
  std::string why, field;
  if (ensure_child(&why, &field)) return SLUICE_OK;
  return not_running(error, why, field);
}

// A plugin that is down says nothing about the records of the call: RETRY, marked for the
// pipeline (core::t_plugin_unavailable), which retries with its errors.retry backoff and, once
// the retries are spent, fails the run without committing or dead-lettering them.
sluice_status Proxy::not_running(sluice_error* error, const std::string& why,
                                 std::string_view field) const {
  set_error(error, why, field);
  if (!started_) return SLUICE_ERROR;  // the first start's failure is the stage's setup error
  core::t_plugin_unavailable = true;
  return SLUICE_RETRY;
}

Outcome Proxy::attempt(MessageKind kind, const sluice_batch* in, const Indices& indices) {
  std::string why;
  if (!ensure_child(&why)) {
    Outcome o;
    o.status = SLUICE_ERROR;
    o.message = why;
    o.not_started = true;
    return o;
  }
  input_.reset(child_->input());
  for (size_t i : indices) input_.add_record(i, in->records[i]);
  // A transform's output budget goes with the call: the child writes its outputs into shared
  // memory before the host's writer sees one, so it is the child that must stop at the budget.
  const uint64_t budget = core::t_call_output_budget;
  if (kind == MessageKind::process && budget != core::kUnboundedOutput) {
    const std::string_view payload(reinterpret_cast<const char*>(&budget), sizeof budget);
    return call(kind, input_.finish(), payload);
  }
  return call(kind, input_.finish());
}

RegionView Proxy::read_output(const Outcome& o, sluice_writer* out, OutputRegion** viewed) {
  return read_output(child_->output(o.output), ChildProcess::viewable(o.output), o, out, viewed);
}

RegionView Proxy::read_output(OutputRegion& region, bool viewable, const Outcome& o,
                              sluice_writer* out, OutputRegion** viewed) {
  *viewed = takes_views(out) && viewable ? &region : nullptr;
  return read_region(region.region(), o.region_size);
}

void Proxy::deliver(const Outcome& o, const Indices& indices, sluice_writer* out) {
  deliver(child_->output(o.output), ChildProcess::viewable(o.output), o, indices, out);
}

// Hands a successful call's outputs and rejects to the host's writer, with the batch's indices.
// The outputs stay where the child wrote them: the host's records view the output region, which
// no call writes into again until the host has released them all.
void Proxy::deliver(OutputRegion& region, bool viewable, const Outcome& o, const Indices& indices,
                    sluice_writer* out) {
  OutputRegion* viewed = nullptr;
  const RegionView view = read_output(region, viewable, o, out, &viewed);
  auto original = [&](uint64_t i) { return i < indices.size() ? indices[i] : SIZE_MAX; };
  for (size_t k = 0; k < view.records.size(); ++k)
    append_output(out, original(view.indices[k]), view.records[k], viewed);
  for (const auto& r : view.rejects) {
    const std::string_view message = view.reject_message(r);
    out->reject(out->host_ctx, original(r.input_index), r.status, message.data(), message.size());
  }
}

// The host's records view the outputs in place, so handing them over needs no child: the
// region, held for the while, is the one thing it reads, and no call writes into a held region
// (free_output), nor does a dead child's region go away while held. So the next call (another
// worker's batch, at a stage concurrency above 1) goes into the child while this one's outputs
// are handed on, and its sink and the rest of its batch run: the host's share of a batch
// overlaps the child's work on the next. Outputs copied out of the last region (never viewed)
// are read under the lock, as the next call may write into that region.
void Proxy::deliver_outside(const Outcome& o, const Indices& indices, sluice_writer* out,
                            std::unique_lock<std::recursive_mutex>& lock) {
  if (!takes_views(out) || !ChildProcess::viewable(o.output)) return deliver(o, indices, out);
  OutputRegion* region = &child_->output(o.output);
  region->hold();
  lock.unlock();
  deliver(*region, true, o, indices, out);
  OutputRegion::release(region);
}

// Rejects records that crashed the plugin before; returns the indices of the others.
Proxy::Indices Proxy::admit(const sluice_batch* in, sluice_writer* out) {
  Indices indices;
  indices.reserve(in->count);
  for (size_t i = 0; i < in->count; ++i) {
    if (!quarantine_.empty() && quarantine_.count(fingerprint(in->records[i]))) {
      const std::string m = "plugin crashed on this record before (quarantined): " + last_crash_;
      out->reject(out->host_ctx, i, SLUICE_ERROR, m.data(), m.size());
      continue;
    }
    indices.push_back(i);
  }
  return indices;
}

void Proxy::note_crash(MessageKind kind, const std::string& crash, std::string_view then) {
  count("isolation.crashes");
  last_crash_ = crash;
  {
    std::lock_guard lock(shown_mu_);
    ++shown_.crashes;
    shown_.last_crash = crash;
  }
  const bool named = crash.find(call_name(kind)) != std::string::npos;
  log(SLUICE_LOG_WARN, fmt::format("plugin process {}{}{}; {}", crash, named ? "" : " in ",
                                   named ? "" : call_name(kind), then));
}

// A restart whose child died or hung (start_failure_ says how) is a crash incident, as one in a
// call is: counted, in the crash window, and /health shows the stage degraded until a
// start succeeds. The next start waits out a backoff (1 s doubling to 30 s).
void Proxy::start_failed() {
  ++failed_starts_;
  const auto delay =
      std::min(kFirstStartRetry * (1 << std::min(failed_starts_ - 1, 5)), kMaxStartRetry);
  next_start_ = Clock::now() + delay;
  note_crash(MessageKind::create, start_failure_,
             fmt::format("the next start in {} ms; calls until then are retried (errors.retry), "
                         "their records held",
                         delay.count()));
  ++consecutive_crashes_;
  too_many_crashes();
  std::lock_guard lock(shown_mu_);
  shown_.start_failing = true;
  shown_.start_failure = shown_.last_crash = start_failure_;
  shown_.failed_starts = failed_starts_;
  shown_next_start_ = next_start_;
}

// Why a call fails while a failed start's backoff runs.
std::string Proxy::not_started_yet() const {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(next_start_ - Clock::now());
  return fmt::format(
      "the plugin process is not running: its last start failed ({}, {} in a row); the next start "
      "in {} ms",
      start_failure_, failed_starts_, std::max<int64_t>(left.count(), 0));
}

bool Proxy::too_many_crashes() {
  const auto now = Clock::now();
  crashes_.push_back(now);
  while (!crashes_.empty() && now - crashes_.front() > kCrashWindow) crashes_.pop_front();
  {
    std::lock_guard lock(shown_mu_);
    shown_window_ = crashes_;
  }
  return crashes_.size() > kMaxCrashesPerWindow;
}

CrashState Proxy::crash_state() const {
  std::lock_guard lock(shown_mu_);
  CrashState s = shown_;
  const auto now = Clock::now();
  const auto in_window =
      std::count_if(shown_window_.begin(), shown_window_.end(),
                    [&](Clock::time_point t) { return now - t <= kCrashWindow; });
  s.breaker_open = static_cast<size_t>(in_window) > kMaxCrashesPerWindow || s.start_failing;
  if (s.start_failing)
    s.next_start_in_ms = std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(shown_next_start_ - now).count());
  return s;
}

// A batch crashed the child twice: runs halves in fresh children until the records that crash
// it alone are found; those are rejected and quarantined, the rest go through.
sluice_status Proxy::bisect(MessageKind kind, const sluice_batch* in, const Indices& indices,
                            sluice_writer* out, const std::string& crash, std::string* message) {
  if (indices.size() == 1) {
    quarantine_.insert(fingerprint(in->records[indices[0]]));
    if (quarantine_.size() > kMaxQuarantined) quarantine_.clear();
    count("isolation.quarantined");
    const std::string m = "plugin crashed on this record: " + crash;
    out->reject(out->host_ctx, indices[0], SLUICE_ERROR, m.data(), m.size());
    return SLUICE_OK;
  }
  const size_t mid = indices.size() / 2;
  sluice_status worst = SLUICE_OK;
  for (const Indices& half : {Indices(indices.begin(), indices.begin() + mid),
                              Indices(indices.begin() + mid, indices.end())}) {
    const Outcome o = attempt(kind, in, half);
    sluice_status st = o.status;
    if (o.crashed) {
      note_crash(kind, o.crash);
      st = bisect(kind, in, half, out, o.crash, message);
    } else if (child_) {
      deliver(o, half, out);
    }
    if (st != SLUICE_OK && worst == SLUICE_OK) *message = o.message;
    worst = std::max(worst, st);
  }
  return worst;
}

sluice_status Proxy::batch(MessageKind kind, const sluice_batch* in, sluice_writer* out,
                           sluice_error* error) {
  std::unique_lock lock(mu_);
  const auto started = Clock::now();
  const Indices indices = admit(in, out);
  if (indices.empty()) return SLUICE_OK;
  std::string message;
  sluice_status status = SLUICE_OK;
  Outcome o = attempt(kind, in, indices);
  if (o.crashed) {
    note_crash(kind, o.crash);
    ++consecutive_crashes_;
    if (too_many_crashes()) {
      set_error(error, fmt::format("plugin process crashed {} times in {} s (last: {})",
                                   crashes_.size(), kCrashWindow.count(), o.crash));
      return SLUICE_ERROR;
    }
    o = attempt(kind, in, indices);  // a crash need not be the batch's fault: once more
  }
  if (o.not_started)  // no child to run it in: the batch waits, the crashes stay counted
    return not_running(error, o.message);
  if (o.crashed) {
    note_crash(kind, o.crash);
    status = bisect(kind, in, indices, out, o.crash, &message);
  } else {
    status = o.status;
    message = o.message;
    const bool counted = consecutive_crashes_ == 0;
    consecutive_crashes_ = 0;
    if (child_) deliver_outside(o, indices, out, lock);
    if (counted) count_crossing(started, o.plugin_us);
  }
  if (status != SLUICE_OK) set_error(error, message);
  return status;
}

// flush, pre_commit and commit: a child that dies in them fails the call (it restarts on the
// next one).
sluice_status Proxy::simple(MessageKind kind, sluice_error* error, std::string_view payload) {
  std::lock_guard lock(mu_);
  std::string why;
  if (!ensure_child(&why)) return not_running(error, why);
  const Outcome o = call(kind, 0, payload);
  if (o.crashed) {
    note_crash(kind, o.crash);
    set_error(error, fmt::format("plugin process {} in {}", o.crash, call_name(kind)));
    return SLUICE_ERROR;
  }
  if (o.status != SLUICE_OK) set_error(error, o.message);
  return o.status;
}

// The records of a poll that died with its child were never read (the host reads the output
// region only after a reply): none is half-delivered. The next poll starts a new child.
sluice_status Proxy::poll(sluice_poll_args* args, sluice_writer* out, sluice_error* error) {
  std::lock_guard lock(mu_);
  const auto started = Clock::now();
  std::string why;
  if (!ensure_child(&why)) return not_running(error, why);
  const bool has_max_bytes =
      args->struct_size >= offsetof(sluice_poll_args, max_bytes) + sizeof(uint64_t);
  const PollRequest request{args->max_records, args->timeout_ms,
                            has_max_bytes ? args->max_bytes : UINT64_MAX};
  const std::string_view payload(reinterpret_cast<const char*>(&request), sizeof request);
  Outcome o;
  do {  // a restarted child's poll of replays only: polled again at once
    o = call(MessageKind::poll, 0, payload, args->timeout_ms);
    if (o.crashed) return poll_crashed(o, error);
  } while (!deliver_polled(o, out) && o.status == SLUICE_OK && !(o.flags & kEndOfStream));
  if (o.flags & kEndOfStream) args->end_of_stream = 1;
  if (consecutive_crashes_ == 0) count_crossing(started, o.plugin_us);
  consecutive_crashes_ = 0;
  if (o.status != SLUICE_OK) set_error(error, o.message);
  return o.status;
}

// A poll whose child died is an empty poll: the crash is counted and logged, and the next poll
// restarts the child (with backoff). Too many crashes in a window fail the poll.
sluice_status Proxy::poll_crashed(const Outcome& o, sluice_error* error) {
  note_crash(MessageKind::poll, o.crash);
  ++consecutive_crashes_;
  if (!too_many_crashes()) return SLUICE_OK;
  set_error(error, fmt::format("plugin process crashed {} times in {} s (last: {})",
                               crashes_.size(), kCrashWindow.count(), o.crash));
  return SLUICE_ERROR;
}

// False when every record polled was a replay (dropped): the host got nothing from this poll.
bool Proxy::deliver_polled(const Outcome& o, sluice_writer* out) {
  OutputRegion* viewed = nullptr;
  const RegionView view = read_output(o, out, &viewed);
  size_t replays = 0;
  for (const sluice_record& r : view.records) {
    if (replay_.replaying() && replay_.is_replay(r)) {
      ++replays;
      continue;
    }
    replay_.delivered(r);
    append_output(out, SIZE_MAX, r, viewed);
  }
  if (replays > 0) count("isolation.replayed_dropped", static_cast<double>(replays));
  return replays == 0 || replays < view.records.size();
}

// A restarted child is told too (after_restart).
void Proxy::set_paused(int32_t paused) {
  std::lock_guard lock(mu_);
  paused_ = paused != 0;
  if (!child_) return;
  const Outcome o = call(MessageKind::set_paused, 0, paused_ ? "1" : "0");
  if (o.crashed) note_crash(MessageKind::set_paused, o.crash);
}

sluice_status Proxy::snapshot(sluice_buffer* out, sluice_error* error) {
  std::lock_guard lock(mu_);
  std::string why;
  if (!ensure_child(&why)) return not_running(error, why);
  const Outcome o = call(MessageKind::snapshot, 0);
  if (o.crashed || o.status != SLUICE_OK) {
    if (o.crashed) note_crash(MessageKind::snapshot, o.crash);
    set_error(error, o.crashed ? "plugin process " + o.crash : o.message);
    return o.crashed ? SLUICE_ERROR : o.status;
  }
  const RegionView view = read_region(child_->output(o.output).region(), o.region_size);
  const sluice_bytes blob = view.records.empty() ? sluice_bytes{} : view.records[0].value;
  state_.emplace(reinterpret_cast<const char*>(blob.ptr), blob.len);
  out->append(out->host_ctx, blob.ptr, blob.len);
  return SLUICE_OK;
}

sluice_status Proxy::restore(const uint8_t* data, size_t len, sluice_error* error) {
  std::lock_guard lock(mu_);
  state_.emplace(reinterpret_cast<const char*>(data), len);
  std::string why;
  if (!ensure_child(&why)) return not_running(error, why);
  RegionWriter w(child_->input());
  w.reset();
  w.add_blob(*state_);
  const Outcome o = call(MessageKind::restore, w.finish());
  if (o.crashed || o.status != SLUICE_OK) {
    set_error(error, o.crashed ? "plugin process " + o.crash : o.message);
    return SLUICE_ERROR;
  }
  return SLUICE_OK;
}

// From the memory monitor's thread: skipped while a call runs, so the monitor never waits.
void Proxy::memory_pressure(double level) {
  std::unique_lock<std::recursive_mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || !child_) return;
  const Outcome o =
      call(MessageKind::memory_pressure, 0, {reinterpret_cast<const char*>(&level), sizeof level});
  if (o.crashed) note_crash(MessageKind::memory_pressure, o.crash);
}

namespace {

Proxy* as_proxy(void* instance) { return static_cast<Proxy*>(instance); }

sluice_status proxy_create(const sluice_host_api* host, const char* config_json, size_t config_len,
                           void** instance, sluice_error* error) {
  const std::string name = host->sluice_host_instance_name(host->host_ctx);
  std::shared_ptr<ProxySpec> spec;
  {
    std::lock_guard lock(g_specs_mu);
    auto it = g_specs.find(name);
    if (it != g_specs.end()) spec = it->second.lock();
  }
  if (!spec) {
    set_error(error, "isolation: no proxy was prepared for instance '" + name + "'");
    return SLUICE_FATAL;
  }
  try {
    auto proxy = std::make_unique<Proxy>(spec, host, std::string(config_json, config_len));
    const sluice_status st = proxy->start(error);
    if (st == SLUICE_OK) *instance = proxy.release();
    return st;
  } catch (const std::exception& e) {
    set_error(error, std::string("cannot start the plugin process: ") + e.what());
    return SLUICE_ERROR;
  }
}

void proxy_destroy(void* instance) { delete as_proxy(instance); }

// The host calls the table as it calls a plugin's: no exception may leave it (a failed spawn,
// a shared region that cannot grow), so each becomes an ERROR with its message.
template <typename Call>
sluice_status guarded(sluice_error* error, Call&& call) {
  try {
    return call();
  } catch (const std::exception& e) {
    set_error(error, std::string("plugin process: ") + e.what());
    return SLUICE_ERROR;
  }
}

sluice_status proxy_process(void* instance, const sluice_batch* in, sluice_writer* out,
                            sluice_error* error) {
  return guarded(error,
                 [&] { return as_proxy(instance)->batch(MessageKind::process, in, out, error); });
}

sluice_status proxy_put(void* instance, const sluice_batch* in, sluice_writer* rejects,
                        sluice_error* error) {
  return guarded(error,
                 [&] { return as_proxy(instance)->batch(MessageKind::put, in, rejects, error); });
}

sluice_status proxy_poll(void* instance, sluice_poll_args* args, sluice_writer* out,
                         sluice_error* error) {
  return guarded(error, [&] { return as_proxy(instance)->poll(args, out, error); });
}

sluice_status proxy_commit(void* instance, const sluice_position* positions, size_t count,
                           sluice_error* error) {
  return guarded(error, [&] {
    return as_proxy(instance)->simple(MessageKind::commit, error,
                                      encode_positions({positions, count}));
  });
}

void proxy_set_paused(void* instance, int32_t paused) {
  guarded(nullptr, [&] {
    as_proxy(instance)->set_paused(paused);
    return SLUICE_OK;
  });
}

sluice_status proxy_flush(void* instance, sluice_error* error) {
  return guarded(error, [&] { return as_proxy(instance)->simple(MessageKind::flush, error); });
}

sluice_status proxy_pre_commit(void* instance, sluice_error* error) {
  return guarded(error, [&] { return as_proxy(instance)->simple(MessageKind::pre_commit, error); });
}

void proxy_on_memory_pressure(void* instance, double level) {
  guarded(nullptr, [&] {
    as_proxy(instance)->memory_pressure(level);
    return SLUICE_OK;
  });
}

sluice_status proxy_snapshot(void* instance, sluice_buffer* out, sluice_error* error) {
  return guarded(error, [&] { return as_proxy(instance)->snapshot(out, error); });
}

sluice_status proxy_restore(void* instance, const uint8_t* data, size_t len, sluice_error* error) {
  return guarded(error, [&] { return as_proxy(instance)->restore(data, len, error); });
}

// The proxy table offers exactly the optional hooks the real plugin has, so the host's
// `has()` checks answer the same in both modes. `validate` stays with the real table (the
// host runs it before create).
void fill_table(ProxySpec& s) {
  const sluice_plugin* real = s.real.table;
  sluice_plugin& t = s.table;
  t.struct_size = sizeof(sluice_plugin);
  t.kind = s.real.kind;
  t.name = s.real.name.c_str();
  t.version = s.real.version.c_str();
  t.description = s.real.description.c_str();
  t.config_schema_json = s.real.schema_json.c_str();
  t.create = &proxy_create;
  t.destroy = &proxy_destroy;
  if (has_hook(real, &sluice_plugin::poll)) t.poll = &proxy_poll;
  if (has_hook(real, &sluice_plugin::commit)) t.commit = &proxy_commit;
  if (has_hook(real, &sluice_plugin::set_paused)) t.set_paused = &proxy_set_paused;
  if (has_hook(real, &sluice_plugin::process)) t.process = &proxy_process;
  if (has_hook(real, &sluice_plugin::put)) t.put = &proxy_put;
  if (has_hook(real, &sluice_plugin::flush)) t.flush = &proxy_flush;
  if (has_hook(real, &sluice_plugin::pre_commit)) t.pre_commit = &proxy_pre_commit;
  if (has_hook(real, &sluice_plugin::on_memory_pressure))
    t.on_memory_pressure = &proxy_on_memory_pressure;
  if (has_hook(real, &sluice_plugin::snapshot)) t.snapshot = &proxy_snapshot;
  if (has_hook(real, &sluice_plugin::restore)) t.restore = &proxy_restore;
}

}  // namespace

plugin::PluginInfo make_proxy(const plugin::PluginInfo& real, const std::string& instance_name,
                              const core::IsolationSettings& settings,
                              LoadCrashReporter on_load_crash) {
  auto spec = std::make_shared<ProxySpec>();
  spec->real = real;
  spec->instance_name = instance_name;
  spec->settings = settings;
  spec->on_load_crash = std::move(on_load_crash);
  fill_table(*spec);
  {
    std::lock_guard lock(g_specs_mu);
    for (auto it = g_specs.begin(); it != g_specs.end();)
      it = it->second.expired() ? g_specs.erase(it) : std::next(it);
    g_specs[instance_name] = spec;
  }
  plugin::PluginInfo info = real;
  info.table = &spec->table;
  // Keeps the spec (and through it the real library) alive as long as the info is copied.
  info.library = std::shared_ptr<plugin::PluginLibrary>(spec, real.library.get());
  return info;
}

plugin::PluginInfo plugin_info_for(const plugin::PluginInfo& real, const std::string& instance_name,
                                   const core::IsolationSettings& settings,
                                   LoadCrashReporter on_load_crash) {
  return settings.process ? make_proxy(real, instance_name, settings, std::move(on_load_crash))
                          : real;
}

std::string trial_load(const std::filesystem::path& file, sluice_kind kind,
                       const std::string& plugin_name, const std::string& config_json) {
  constexpr int kTrialTimeoutMs = 30000;
  if (host_executable().empty()) return "";  // not the launcher (a test): nothing to try with
  try {
    ChildProcess child(ChildOptions{file, plugin_name, kind, "trial-load", 0, true, 0});
    MessageHeader h;
    h.kind = MessageKind::create;
    h.call_id = 1;
    child.channel().send(h, config_json);
    bool timed_out = false;
    const Deadline deadline = Clock::now() + std::chrono::milliseconds(kTrialTimeoutMs);
    std::optional<Message> m;
    do {
      m = child.channel().receive(deadline, &timed_out);
    } while (m && m->header.kind != MessageKind::reply);
    if (!m) {
      if (timed_out) child.kill();
      return fmt::format(
          "the new {} {} while loading in a trial process (handshake, init, "
          "create)",
          file.string(), timed_out ? "hung" : describe_wait_status(child.wait(5000)));
    }
    // A clean refusal (a bad handshake, a create error) is left to the real load to report:
    // the running instance may hold what create wants (a file source's lock).
    if (m->header.status != SLUICE_OK) return "";
    const int status = child.wait(kTrialTimeoutMs);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return fmt::format("the new {} {} in a trial process while destroying the instance",
                         file.string(), describe_wait_status(status));
    return "";
  } catch (const std::exception& e) {
    return fmt::format("trial load of {} failed: {}", file.string(), e.what());
  }
}

CrashState crash_state(void* handle) {
  return handle ? as_proxy(handle)->crash_state() : CrashState{};
}

void stop_starts_at(void* handle, std::chrono::steady_clock::time_point when) {
  if (handle) as_proxy(handle)->stop_starts_at(when);
}

bool restarting(void* handle) { return handle != nullptr && as_proxy(handle)->restarting(); }

}  // namespace sluice::isolation
