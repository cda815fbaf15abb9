// Loading a plugin library: permission check, Boost.DLL load, ABI handshake, init, metadata copy.
#include "plugin/plugin_library.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/dll/shared_library_load_mode.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>

#include "core/crash_line.hpp"
#include "plugin/file_trust.hpp"
#include "plugin/host_context.hpp"

namespace sluice::plugin {

namespace {

std::string copy_text(const char* s) { return s ? std::string(s) : std::string(); }

// dlopen's own reason (Boost.DLL only says "Bad file descriptor"), naming the plugin's file
// instead of the /proc/self/fd/N path of its copy.
std::string dlopen_reason(const SealedCopy& copy, const std::filesystem::path& file,
                          const boost::dll::fs::error_code& ec) {
  const char* error = ::dlerror();
  if (error == nullptr) return ec ? ec.message() : "unknown error";
  std::string reason = error;
  const std::string copy_path = copy.path().string();
  for (size_t at = reason.find(copy_path); at != std::string::npos;
       at = reason.find(copy_path, at + file.string().size()))
    reason.replace(at, copy_path.size(), file.string());
  return reason;
}

// Reads the file once: the ELF check and the sealed copy see the same bytes, whatever the file
// does next. The bytes are freed before dlopen, so no big buffer stays pinned under the loader's
// own allocations.
std::unique_ptr<SealedCopy> verified_copy(const std::filesystem::path& file) {
  const std::string bytes = read_plugin_bytes(file);
  if (!is_elf(bytes)) throw PluginLoadError(fmt::format("{}: not a shared object", file.string()));
  return std::make_unique<SealedCopy>(file, bytes);
}

// ---- a crash while loading: the process's last words name the file ----

constexpr std::array<int, 5> kCrashSignals{SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr std::array<const char*, 5> kCrashSignalNames{" (SIGSEGV)", " (SIGBUS)", " (SIGFPE)",
                                                       " (SIGILL)", " (SIGABRT)"};

// What the handler reads, written before the handlers are installed (one load at a time).
std::mutex g_load_mu;
char g_load_message[4096];  // JSON: the inside of the line's "msg" string (core::json_text)
size_t g_load_message_len = 0;
bool g_load_json = false;  // the line is a JSON log line (--log-format json)
std::atomic<long> g_loading_thread{0};
std::array<struct sigaction, kCrashSignals.size()> g_previous{};

// Async-signal-safe: clock_gettime(2), write(2), sigaction(2), raise(3). A crash of another thread
// meanwhile is handed to the handler that was there before.
void on_load_crash(int sig, siginfo_t* info, void*) {
  size_t i = 0;
  while (i + 1 < kCrashSignals.size() && kCrashSignals[i] != sig) ++i;
  if (::syscall(SYS_gettid) != g_loading_thread.load()) {
    ::sigaction(sig, &g_previous[i], nullptr);
    if (info == nullptr || info->si_code <= 0) ::raise(sig);  // sent, not a fault: once more
    return;
  }
  core::CrashLine line;  // one write: the line is never interleaved
  line.begin(g_load_json);
  line.add(g_load_message, g_load_message_len);
  line.add_number(static_cast<uint64_t>(sig));
  line.add(kCrashSignalNames[i]);
  line.end();
  while (::write(STDERR_FILENO, line.data(), line.size()) < 0 && errno == EINTR) {
  }
  struct sigaction fallback {};
  fallback.sa_handler = SIG_DFL;
  ::sigaction(sig, &fallback, nullptr);
  ::raise(sig);  // delivered on return, with the default action: the process dies of it
}

// While it lives, a crash on this thread (a library's constructor that aborts, a module init that
// segfaults) writes "sluice: plugin FILE (stage S) crashed while loading: signal N (NAME)" before
// the process dies of it; without it the process died without a word.
//
// In process such a crash is not journaled, and cannot usefully be: writing a line from here
// would be async-signal-safe (a write(2) to an fd opened before), but there is no journal to
// write to yet. The launcher loads every library of its plugin folders (used or not) before any
// pipeline exists: their schemas check the pipeline file, and a journal belongs to one pipeline
// and is opened when that pipeline starts, after the loads. A library in the folder may belong to
// no pipeline, or to several; and an entry would name no records, so the next run could
// quarantine nothing and would crash the same way when it loads the file again. The stderr line
// is what names it. In a `sluice plugin-host` child (an isolated stage) the host lives on and
// journals the crash itself (call=load, Pipeline::journal_load_crash), told by the child's
// `loaded` message whether it died before or after the load.
class LoadCrashGuard {
 public:
  LoadCrashGuard(const std::filesystem::path& file, const std::string& stage) : lock_(g_load_mu) {
    // With --log-format json the line is a JSON log line, its names escaped here.
    constexpr size_t kMaxName = 1024;
    g_load_json = core::json_crash_lines();
    const std::string name = g_load_json ? core::json_text(file.string(), kMaxName) : file.string();
    const std::string message =
        stage.empty() ? fmt::format("sluice: plugin {} crashed while loading: signal ", name)
                      : fmt::format("sluice: plugin {} (stage {}) crashed while loading: signal ",
                                    name, g_load_json ? core::json_text(stage, kMaxName) : stage);
    g_load_message_len = std::min(message.size(), sizeof g_load_message);
    std::memcpy(g_load_message, message.data(), g_load_message_len);
    g_loading_thread.store(::syscall(SYS_gettid));
    struct sigaction sa {};
    sa.sa_sigaction = on_load_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kCrashSignals.size(); ++i)
      ::sigaction(kCrashSignals[i], &sa, &g_previous[i]);
  }
  ~LoadCrashGuard() {
    for (size_t i = 0; i < kCrashSignals.size(); ++i)
      ::sigaction(kCrashSignals[i], &g_previous[i], nullptr);
    g_loading_thread.store(0);
  }
  LoadCrashGuard(const LoadCrashGuard&) = delete;
  LoadCrashGuard& operator=(const LoadCrashGuard&) = delete;

 private:
  std::lock_guard<std::mutex> lock_;
};

HostContext& module_host() {
  static HostContext host("module");
  return host;
}

}  // namespace

std::string_view kind_name(sluice_kind kind) {
  switch (kind) {
    case SLUICE_KIND_SOURCE:
      return "source";
    case SLUICE_KIND_TRANSFORM:
      return "transform";
    case SLUICE_KIND_SINK:
      return "sink";
  }
  return "unknown";
}

bool is_mapped(const std::filesystem::path& file) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const std::string name = file.string();
  while (std::getline(maps, line))
    if (line.size() > name.size() && line[line.size() - name.size() - 1] == ' ' &&
        line.compare(line.size() - name.size(), name.size(), name) == 0)
      return true;
  return false;
}

std::shared_ptr<PluginLibrary> PluginLibrary::load(const std::filesystem::path& file,
                                                   const LoadOptions& options) {
  const std::string name = file.string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw PluginLoadError(fmt::format("{}: file missing", name));
  check_file_permissions(file, options);

  std::shared_ptr<PluginLibrary> lib(new PluginLibrary());
  lib->file_ = file;
  lib->copy_ = verified_copy(file);
  // The library's code runs from here on (its constructors in dlopen, the entry point, init).
  const LoadCrashGuard guard(file, options.stage);
  boost::dll::fs::error_code load_ec;
  lib->library_.load(lib->copy_->path().string(),
                     boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, load_ec);
  if (load_ec || !lib->library_.is_loaded())
    throw PluginLoadError(fmt::format("{}: not a loadable shared object: {}", name,
                                      dlopen_reason(*lib->copy_, file, load_ec)));
  if (!lib->library_.has(SLUICE_MODULE_ENTRY))
    throw PluginLoadError(fmt::format("{}: entry symbol {} missing (not a sluice plugin)", name,
                                      SLUICE_MODULE_ENTRY));

  lib->module_ = handshake(
      lib->library_.get<const sluice_module*(uint32_t, uint32_t)>(SLUICE_MODULE_ENTRY), name);
  lib->module_name_ = copy_text(lib->module_->name);
  lib->module_version_ = copy_text(lib->module_->version);
  lib->read_tables();
  lib->init();
  // Descriptions and schemas are read only now: the module's init may have built them.
  for (PluginInfo& info : lib->plugins_) {
    info.description = copy_text(info.table->description);
    info.schema_json =
        info.table->config_schema_json ? info.table->config_schema_json : R"({"fields":[]})";
  }
  return lib;
}

const sluice_module* PluginLibrary::handshake(sluice_module_get_fn get, const std::string& name) {
  const sluice_module* m = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
  if (m == nullptr)
    throw PluginLoadError(fmt::format("{}: the plugin declined host ABI {}.{}", name,
                                      SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR));
  if (!SLUICE_HAS_FIELD(m, sluice_module, abi_minor))
    throw PluginLoadError(
        fmt::format("{}: module table too small ({} bytes)", name, m->struct_size));
  if (m->abi_major != SLUICE_ABI_MAJOR)
    throw PluginLoadError(fmt::format("{}: ABI major mismatch: plugin {}.{}, host {}.{}", name,
                                      m->abi_major, m->abi_minor, SLUICE_ABI_MAJOR,
                                      SLUICE_ABI_MINOR));
  if (m->abi_minor > SLUICE_ABI_MINOR)
    throw PluginLoadError(
        fmt::format("{}: plugin needs ABI {}.{}, newer than the host's {}.{}; upgrade sluice", name,
                    m->abi_major, m->abi_minor, SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR));
  if (!SLUICE_HAS_FIELD(m, sluice_module, plugin_count))
    throw PluginLoadError(
        fmt::format("{}: module table too small ({} bytes)", name, m->struct_size));
  return m;
}

// Whether a plugin of `kind` carries the hooks it cannot do without, inside its struct_size.
static bool has_required_hooks(const sluice_plugin* p) {
  if (!SLUICE_HAS_FIELD(p, sluice_plugin, destroy) || !p->create || !p->destroy) return false;
  switch (p->kind) {
    case SLUICE_KIND_SOURCE:
      return SLUICE_HAS_FIELD(p, sluice_plugin, poll) && p->poll;
    case SLUICE_KIND_TRANSFORM:
      return SLUICE_HAS_FIELD(p, sluice_plugin, process) && p->process;
    default:
      return SLUICE_HAS_FIELD(p, sluice_plugin, put) && p->put;
  }
}

// Checks the module's plugin tables (kind, name, required hooks, no two of one name) and keeps
// what the entry point promised: kind, name, version. Runs no plugin code.
void PluginLibrary::read_tables() {
  const std::string name = file_.string();
  std::set<std::pair<sluice_kind, std::string>> seen;
  for (size_t i = 0; i < module_->plugin_count; ++i) {
    const sluice_plugin* p = module_->plugins[i];
    if (p == nullptr || !SLUICE_HAS_FIELD(p, sluice_plugin, config_schema_json) ||
        p->name == nullptr)
      throw PluginLoadError(fmt::format("{}: plugin table {} is malformed", name, i));
    PluginInfo info;
    info.kind = p->kind;
    info.name = p->name;
    info.version = copy_text(p->version);
    info.file = file_;
    info.module_name = module_name_;
    info.module_version = module_version_;
    info.table = p;
    if (kind_name(info.kind) == "unknown")
      throw PluginLoadError(
          fmt::format("{}: plugin '{}' has unknown kind {}", name, info.name, info.kind));
    if (!has_required_hooks(p))
      throw PluginLoadError(fmt::format("{}: {} plugin '{}' lacks its required hooks", name,
                                        kind_name(info.kind), info.name));
    if (!seen.emplace(info.kind, info.name).second)
      throw PluginLoadError(fmt::format("{}: two {} plugins named '{}' in one module", name,
                                        kind_name(info.kind), info.name));
    plugins_.push_back(std::move(info));
  }
}

void PluginLibrary::init() {
  if (SLUICE_HAS_FIELD(module_, sluice_module, init) && module_->init != nullptr) {
    char message[1024] = {};
    char field[256] = {};
    sluice_error err{sizeof(sluice_error), message, sizeof message, field, sizeof field};
    sluice_status st = module_->init(module_host().api(), &err);
    if (st != SLUICE_OK)
      throw PluginLoadError(fmt::format("{}: plugin init failed: {}", file_.string(),
                                        message[0] ? message : "no reason given"));
  }
  initialized_ = true;
}

PluginLibrary::~PluginLibrary() {
  if (initialized_ && SLUICE_HAS_FIELD(module_, sluice_module, shutdown) && module_->shutdown)
    module_->shutdown();
  library_.unload();
  // dlopen knows a library by the path it was opened with, /proc/self/fd/N. A library that
  // stays mapped (one dlclose cannot unload) keeps that name: if N were reused for a newer copy,
  // dlopen would hand back the old library. Such a copy keeps its fd.
  if (copy_ && is_mapped(copy_->mapped_name())) copy_->keep_open();
}

}  // namespace sluice::plugin
