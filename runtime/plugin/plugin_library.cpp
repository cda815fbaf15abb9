// Loading a plugin library: permission check, Boost.DLL load, ABI handshake, init, metadata copy.
#include "plugin/plugin_library.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/dll/shared_library_load_mode.hpp>
#include <fstream>
#include <set>

#include "plugin/file_trust.hpp"
#include "plugin/host_context.hpp"

namespace sluice::plugin {

namespace {

std::string copy_text(const char* s) { return s ? std::string(s) : std::string(); }

// Reads field `member` of a versioned struct only if it lies inside its struct_size.
template <typename Struct, typename Field>
bool has_field(const Struct* s, Field Struct::*member) {
  const auto offset = reinterpret_cast<size_t>(&(static_cast<Struct*>(nullptr)->*member));
  return s->struct_size >= offset + sizeof(Field);
}

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
  boost::dll::fs::error_code load_ec;
  lib->library_.load(lib->copy_->path().string(),
                     boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, load_ec);
  if (load_ec || !lib->library_.is_loaded())
    throw PluginLoadError(fmt::format("{}: not a loadable shared object: {}", name,
                                      dlopen_reason(*lib->copy_, file, load_ec)));
  if (!lib->library_.has(SLUICE_MODULE_ENTRY))
    throw PluginLoadError(fmt::format("{}: entry symbol {} missing (not a sluice plugin)", name,
                                      SLUICE_MODULE_ENTRY));

  auto get = lib->library_.get<const sluice_module*(uint32_t, uint32_t)>(SLUICE_MODULE_ENTRY);
  const sluice_module* m = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
  if (m == nullptr)
    throw PluginLoadError(fmt::format("{}: the plugin declined host ABI {}.{}", name,
                                      SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR));
  if (m->struct_size < offsetof(sluice_module, abi_minor) + sizeof(uint32_t))
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
  if (!has_field(m, &sluice_module::plugin_count))
    throw PluginLoadError(
        fmt::format("{}: module table too small ({} bytes)", name, m->struct_size));
  lib->module_ = m;
  lib->module_name_ = copy_text(m->name);
  lib->module_version_ = copy_text(m->version);

  std::set<std::pair<sluice_kind, std::string>> seen;
  for (size_t i = 0; i < m->plugin_count; ++i) {
    const sluice_plugin* p = m->plugins[i];
    if (p == nullptr || !has_field(p, &sluice_plugin::destroy) || p->name == nullptr)
      throw PluginLoadError(fmt::format("{}: plugin table {} is malformed", name, i));
    PluginInfo info;
    info.kind = p->kind;
    info.name = p->name;
    info.version = copy_text(p->version);
    info.description = copy_text(p->description);
    info.schema_json = p->config_schema_json ? p->config_schema_json : R"({"fields":[]})";
    info.file = file;
    info.module_name = lib->module_name_;
    info.module_version = lib->module_version_;
    info.table = p;
    if (kind_name(info.kind) == "unknown")
      throw PluginLoadError(
          fmt::format("{}: plugin '{}' has unknown kind {}", name, info.name, info.kind));
    bool needed = info.kind == SLUICE_KIND_SOURCE      ? p->poll != nullptr
                  : info.kind == SLUICE_KIND_TRANSFORM ? p->process != nullptr
                                                       : p->put != nullptr;
    if (!needed || p->create == nullptr || p->destroy == nullptr)
      throw PluginLoadError(fmt::format("{}: {} plugin '{}' lacks its required hooks", name,
                                        kind_name(info.kind), info.name));
    if (!seen.emplace(info.kind, info.name).second)
      throw PluginLoadError(fmt::format("{}: two {} plugins named '{}' in one module", name,
                                        kind_name(info.kind), info.name));
    lib->plugins_.push_back(std::move(info));
  }

  if (has_field(m, &sluice_module::init) && m->init != nullptr) {
    char message[1024] = {};
    char field[256] = {};
    sluice_error err{sizeof(sluice_error), message, sizeof message, field, sizeof field};
    sluice_status st = m->init(module_host().api(), &err);
    if (st != SLUICE_OK)
      throw PluginLoadError(fmt::format("{}: plugin init failed: {}", name,
                                        message[0] ? message : "no reason given"));
  }
  lib->initialized_ = true;
  return lib;
}

PluginLibrary::~PluginLibrary() {
  if (initialized_ && module_->struct_size >= offsetof(sluice_module, shutdown) + sizeof(void*) &&
      module_->shutdown)
    module_->shutdown();
  library_.unload();
  // dlopen knows a library by the path it was opened with, /proc/self/fd/N. A library that
  // stays mapped (one dlclose cannot unload) keeps that name: if N were reused for a newer copy,
  // dlopen would hand back the old library. Such a copy keeps its fd.
  if (copy_ && is_mapped(copy_->mapped_name())) copy_->keep_open();
}

}  // namespace sluice::plugin
