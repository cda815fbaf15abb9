// `sluice plugin-host`: one plugin instance in a process of its own, serving the host's calls.
#include "isolation/plugin_host.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/crash_line.hpp"
#include "core/log_line.hpp"
#include "isolation/channel.hpp"
#include "isolation/child_process.hpp"
#include "isolation/shared_region.hpp"
#include "plugin/plugin_instance.hpp"
#include "plugin/plugin_library.hpp"

namespace sluice::isolation {

namespace {

struct HostArgs {
  std::string file, plugin, instance;
  int kind = 0;
  uint64_t memory_limit_mb = 0;
  uint64_t pipeline_memory_limit = 0;
  pid_t parent = 0;
  bool check = false;
};

HostArgs parse_args(int argc, char** argv) {
  HostArgs a;
  for (int i = 2; i < argc; ++i) {
    const std::string_view key = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (key == "--check") {
      a.check = true;
      continue;
    }
    ++i;
    if (key == "--file") a.file = value;
    if (key == "--plugin") a.plugin = value;
    if (key == "--instance") a.instance = value;
    if (key == "--kind") a.kind = std::atoi(value);
    if (key == "--memory-limit-mb") a.memory_limit_mb = std::strtoull(value, nullptr, 10);
    if (key == "--pipeline-memory-limit")
      a.pipeline_memory_limit = std::strtoull(value, nullptr, 10);
    if (key == "--parent") a.parent = static_cast<pid_t>(std::atoi(value));
  }
  return a;
}

// No core files (a crash is expected and reported), and the stage's memory limit.
void apply_limits(const HostArgs& a) {
  rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  if (a.memory_limit_mb > 0) {
    const rlim_t bytes = static_cast<rlim_t>(a.memory_limit_mb) << 20;
    rlimit limit{bytes, bytes};
    ::setrlimit(RLIMIT_AS, &limit);
  }
}

// A child whose host died (even while a call hangs) ends too.
void exit_with_parent(pid_t parent) {
  if (parent <= 0) return;
  std::thread([parent] {
    while (::getppid() == parent) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::_exit(70);
  }).detach();
}

// The one instance and everything its calls need.
class PluginHost {
 public:
  explicit PluginHost(const HostArgs& args)
      : args_(args),
        channel_(3),
        input_(4),
        doorbell_(5 + static_cast<int>(kOutputRegions)),
        writer_(input_) {
    for (int i = 0; i < static_cast<int>(kOutputRegions); ++i) outputs_.emplace_back(5 + i);
    doorbell_.map(sizeof(Doorbell));
    auto* counts = std::launder(reinterpret_cast<Doorbell*>(doorbell_.data()));
    channel_.attach_doorbell(&counts->sent_to_host, &counts->sent_to_child);
    api_.struct_size = sizeof api_;
    api_.abi_major = SLUICE_ABI_MAJOR;
    api_.abi_minor = SLUICE_ABI_MINOR;
    api_.host_ctx = this;
    api_.sluice_host_log = &PluginHost::log;
    api_.sluice_host_counter_add = &PluginHost::counter_add;
    api_.sluice_host_gauge_set = &PluginHost::gauge_set;
    api_.sluice_host_memory_pressure = [](void* ctx) {
      return static_cast<PluginHost*>(ctx)->pressure_.load();
    };
    api_.sluice_host_instance_name = [](void* ctx) {
      return static_cast<PluginHost*>(ctx)->args_.instance.c_str();
    };
    api_.sluice_host_drain = [](void* ctx, const sluice_position* ps, size_t n,
                                uint32_t timeout_ms) {
      return static_cast<PluginHost*>(ctx)->forward_drain({ps, n}, timeout_ms);
    };
    api_.sluice_host_memory_limit = [](void* ctx) {
      const HostArgs& a = static_cast<PluginHost*>(ctx)->args_;
      const uint64_t own = a.memory_limit_mb << 20;
      if (own == 0) return a.pipeline_memory_limit;
      return a.pipeline_memory_limit == 0 ? own : std::min(own, a.pipeline_memory_limit);
    };
  }

  int run();

 private:
  void load();
  bool create(const Message& m);
  void serve(const Message& m);
  void batch_call(const Message& m);
  void poll_call(const Message& m);
  void commit_call(const Message& m);
  void state_call(const Message& m);
  sluice_status forward_drain(std::span<const sluice_position> positions, uint32_t timeout_ms);
  // A writer into the output region the request names: the records and rejects of a call.
  sluice_writer output_writer(const Message& m);
  // `plugin_us`: how long the plugin's own call took, so the host can tell the crossing cost.
  void reply(const Message& m, sluice_status status, std::string_view message,
             size_t region_size = 0, double plugin_us = 0, uint32_t flags = 0);

  static void log(void* ctx, int32_t level, const char* message, size_t len);
  static void counter_add(void* ctx, const char* name, double delta);
  static void gauge_set(void* ctx, const char* name, double value);
  void send_metric(MessageKind kind, const char* name, double number);

  HostArgs args_;
  Channel channel_;
  SharedRegion input_;
  SharedRegion doorbell_;  // the Doorbell the host created
  std::vector<SharedRegion> outputs_;
  RegionWriter writer_;  // into the output region of the call at hand
  sluice_host_api api_{};
  std::atomic<double> pressure_{0};
  std::shared_ptr<plugin::PluginLibrary> library_;
  const sluice_plugin* table_ = nullptr;
  std::string load_error_;
  void* instance_ = nullptr;
  plugin::CallError error_;
  uint64_t drain_calls_ = 0;
};

void PluginHost::log(void* ctx, int32_t level, const char* message, size_t len) {
  MessageHeader h;
  h.kind = MessageKind::log;
  h.status = level;
  static_cast<PluginHost*>(ctx)->channel_.send(h, {message ? message : "", message ? len : 0});
}

void PluginHost::counter_add(void* ctx, const char* name, double delta) {
  static_cast<PluginHost*>(ctx)->send_metric(MessageKind::counter_add, name, delta);
}

void PluginHost::gauge_set(void* ctx, const char* name, double value) {
  static_cast<PluginHost*>(ctx)->send_metric(MessageKind::gauge_set, name, value);
}

void PluginHost::send_metric(MessageKind kind, const char* name, double number) {
  if (!name) return;
  MessageHeader h;
  h.kind = kind;
  h.number = number;
  channel_.send(h, name);
}

void PluginHost::load() {
  try {
    // A crash while loading names the file and the stage on stderr (a trial load has none).
    plugin::LoadOptions options;
    if (!args_.check) options.stage = args_.instance;
    library_ = plugin::PluginLibrary::load(args_.file, options);
    for (const auto& info : library_->plugins())
      if (info.kind == args_.kind && info.name == args_.plugin) table_ = info.table;
    if (!table_)
      load_error_ = args_.file + ": no " + std::string(plugin::kind_name(args_.kind)) +
                    " plugin named '" + args_.plugin + "'";
  } catch (const std::exception& e) {
    load_error_ = e.what();
  }
}

void PluginHost::reply(const Message& m, sluice_status status, std::string_view message,
                       size_t region_size, double plugin_us, uint32_t flags) {
  MessageHeader h;
  h.flags = flags;
  h.number = plugin_us;
  h.kind = MessageKind::reply;
  h.status = status;
  h.call_id = m.header.call_id;
  h.region_size = region_size;
  channel_.send(h, message);
}

// Replies with the status and "message\0field", so the host can place a config error.
bool PluginHost::create(const Message& m) {
  if (!load_error_.empty()) {
    reply(m, SLUICE_FATAL, load_error_ + std::string(1, '\0'));
    return false;
  }
  sluice_status st =
      table_->create(&api_, m.payload.data(), m.payload.size(), &instance_, error_.get());
  if (st == SLUICE_OK && instance_ == nullptr) st = SLUICE_ERROR;
  std::string text = st == SLUICE_OK ? std::string() : error_.text();
  if (st != SLUICE_OK && text.empty()) text = "create failed with no reason given";
  reply(m, st, text + std::string(1, '\0') + error_.field);
  return st == SLUICE_OK;
}

int PluginHost::run() {
  load();
  if (load_error_.empty()) {  // the host tells a crash while loading from one in create by it
    MessageHeader h;
    h.kind = MessageKind::loaded;
    channel_.send(h);
  }
  auto first = channel_.receive(std::nullopt);
  if (!first || first->header.kind != MessageKind::create) return 3;
  const bool created = create(*first);
  if (args_.check || !created) {
    if (instance_) table_->destroy(instance_);
    instance_ = nullptr;
    library_.reset();  // runs the module's shutdown and unloads it, as the host would
    return created ? 0 : 1;
  }
  while (auto m = channel_.receive(std::nullopt)) {
    if (m->header.kind == MessageKind::shutdown) break;
    serve(*m);
  }
  table_->destroy(instance_);
  library_.reset();
  return 0;
}

// The level the host's on_memory_pressure was called with (the payload), else the process's.
double memory_level(const Message& m) {
  double level = m.header.number;
  if (m.payload.size() == sizeof level) std::memcpy(&level, m.payload.data(), sizeof level);
  return level;
}

void PluginHost::serve(const Message& m) {
  pressure_.store(m.header.number);
  channel_.set_spin(!(m.header.flags & kSharesCallerCpu));  // for the next request
  error_.get();
  switch (m.header.kind) {
    case MessageKind::process:
    case MessageKind::put:
      return batch_call(m);
    case MessageKind::poll:
      return poll_call(m);
    case MessageKind::commit:
      return commit_call(m);
    case MessageKind::set_paused:
      table_->set_paused(instance_, m.payload == "1" ? 1 : 0);
      return reply(m, SLUICE_OK, {});
    case MessageKind::flush:
      return reply(m, table_->flush(instance_, &error_.error), error_.text());
    case MessageKind::pre_commit:
      return reply(m, table_->pre_commit(instance_, &error_.error), error_.text());
    case MessageKind::snapshot:
    case MessageKind::restore:
      return state_call(m);
    case MessageKind::memory_pressure:
      table_->on_memory_pressure(instance_, memory_level(m));
      return reply(m, SLUICE_OK, {});
    default:
      return reply(m, SLUICE_ERROR, "plugin-host: unknown request");
  }
}

sluice_writer PluginHost::output_writer(const Message& m) {
  if (m.header.output >= outputs_.size()) throw std::runtime_error("no such output region");
  writer_.reset(outputs_[m.header.output]);
  // A process call carries the host's output budget: past it, appends fail here, as in process.
  uint64_t budget = UINT64_MAX;
  if (m.header.kind == MessageKind::process && m.payload.size() == sizeof budget)
    std::memcpy(&budget, m.payload.data(), sizeof budget);
  writer_.set_budget(budget);
  sluice_writer out{};
  out.struct_size = sizeof out;
  out.host_ctx = &writer_;
  out.append = [](void* ctx, size_t index, const sluice_record* r) {
    return static_cast<RegionWriter*>(ctx)->add_record(index, *r) ? SLUICE_OK : SLUICE_ERROR;
  };
  out.append_owned = [](void* ctx, size_t index, const sluice_record* r, void (*release)(void*),
                        void* release_ctx) {
    const bool added = static_cast<RegionWriter*>(ctx)->add_record(index, *r);
    if (release) release(release_ctx);
    return added ? SLUICE_OK : SLUICE_ERROR;
  };
  out.reject = [](void* ctx, size_t index, sluice_status status, const char* msg, size_t len) {
    static_cast<RegionWriter*>(ctx)->add_reject(index, status, {msg ? msg : "", msg ? len : 0});
  };
  return out;
}

void PluginHost::batch_call(const Message& m) {
  const RegionView in = read_region(input_, m.header.region_size);
  const sluice_batch batch{sizeof(sluice_batch), in.records.data(), in.records.size()};
  sluice_writer out = output_writer(m);
  const auto started = std::chrono::steady_clock::now();
  const sluice_status st = m.header.kind == MessageKind::process
                               ? table_->process(instance_, &batch, &out, &error_.error)
                               : table_->put(instance_, &batch, &out, &error_.error);
  const std::chrono::duration<double, std::micro> plugin_time =
      std::chrono::steady_clock::now() - started;
  const size_t size = writer_.finish();
  reply(m, st, error_.text(), size, plugin_time.count());
}

// A source's poll: its records go back in the output region, end of stream in the flags.
void PluginHost::poll_call(const Message& m) {
  PollRequest request;
  std::memcpy(&request, m.payload.data(), std::min(sizeof request, m.payload.size()));
  sluice_poll_args args{sizeof(sluice_poll_args), request.max_records, request.timeout_ms, 0,
                        request.max_bytes};
  sluice_writer out = output_writer(m);
  const auto started = std::chrono::steady_clock::now();
  const sluice_status st = table_->poll(instance_, &args, &out, &error_.error);
  const std::chrono::duration<double, std::micro> plugin_time =
      std::chrono::steady_clock::now() - started;
  const size_t size = writer_.finish();
  reply(m, st, error_.text(), size, plugin_time.count(), args.end_of_stream ? kEndOfStream : 0);
}

// Its own error buffer: a commit may come in while a poll is inside sluice_host_drain.
void PluginHost::commit_call(const Message& m) {
  const std::vector<sluice_position> positions = decode_positions(m.payload);
  plugin::CallError error;
  const sluice_status st =
      table_->commit ? table_->commit(instance_, positions.data(), positions.size(), error.get())
                     : SLUICE_OK;
  reply(m, st, error.text());
}

// sluice_host_drain from inside a poll: the host drains and commits through this child (the
// commit is served here, on the poll's thread, as in process), then answers.
sluice_status PluginHost::forward_drain(std::span<const sluice_position> positions,
                                        uint32_t timeout_ms) {
  MessageHeader h;
  h.kind = MessageKind::drain;
  h.call_id = ++drain_calls_;
  h.number = timeout_ms;
  if (!channel_.send(h, encode_positions(positions))) ::_exit(70);
  while (auto m = channel_.receive(std::nullopt)) {
    if (m->header.kind == MessageKind::reply && m->header.call_id == h.call_id)
      return m->header.status;
    if (m->header.kind == MessageKind::shutdown) ::_exit(0);
    serve(*m);
  }
  ::_exit(70);  // the host is gone
}

// Snapshot: the state goes back as one blob in the output region. Restore: it comes in as one.
void PluginHost::state_call(const Message& m) {
  if (m.header.kind == MessageKind::restore) {
    const RegionView in = read_region(input_, m.header.region_size);
    const sluice_bytes state = in.records.empty() ? sluice_bytes{} : in.records[0].value;
    return reply(m, table_->restore(instance_, state.ptr, state.len, &error_.error), error_.text());
  }
  std::string state;
  sluice_buffer buf{sizeof(sluice_buffer), &state, [](void* ctx, const uint8_t* data, size_t len) {
                      static_cast<std::string*>(ctx)->append(reinterpret_cast<const char*>(data),
                                                             len);
                    }};
  const sluice_status st = table_->snapshot(instance_, &buf, &error_.error);
  output_writer(m);
  writer_.add_blob(state);
  reply(m, st, error_.text(), writer_.finish());
}

// This file is linked only into a program whose main() calls plugin_host_main (a static library
// member is pulled in only for a symbol someone uses): that program may spawn itself as the
// plugin host.
const bool g_serves_plugin_host = [] {
  set_host_executable("/proc/self/exe");
  return true;
}();

}  // namespace

int plugin_host_main(int argc, char** argv) {
  const HostArgs args = parse_args(argc, argv);
  spdlog::set_default_logger(spdlog::stderr_logger_mt("plugin-host"));
  apply_limits(args);
  exit_with_parent(args.parent);
  try {
    PluginHost host(args);
    return host.run();
  } catch (const std::exception& e) {
    // As the parent writes its log lines (--log-format, inherited through the environment):
    // stderr is shared with it, and every line of it parses in JSON format.
    const std::string text = fmt::format("plugin-host {}: {}", args.instance, e.what());
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    const std::string line = core::json_crash_lines()
                                 ? core::json_log_line(now_ms, "error", text)
                                 : fmt::format("[error] {}\n", core::one_line(text));
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
    return 4;
  }
}

}  // namespace sluice::isolation
