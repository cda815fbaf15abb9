// `sluice plugins list` and `sluice plugins inspect`.
#include "cli/commands_plugins.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <iostream>
#include <set>

#include "plugin/schema_check.hpp"

namespace sluice::cli {
namespace {

using Value = rapidjson::Value;
using plugin::json_text;

// Member `key` of `f` as `inspect` shows it: a string as is, anything else as JSON; "" if absent.
std::string attribute(const Value& f, const char* key) {
  const auto it = f.FindMember(key);
  if (it == f.MemberEnd() || it->value.IsNull()) return "";
  if (it->value.IsString()) return it->value.GetString();
  // 60000 rather than JSON's 60000.0, as a user writes it in YAML.
  return it->value.IsDouble() ? fmt::format("{}", it->value.GetDouble()) : json_text(it->value);
}

bool flag(const Value& f, const char* key) {
  const auto it = f.FindMember(key);
  return it != f.MemberEnd() && it->value.IsTrue();
}

// One schema field on one line: name, type, then every attribute it has: required, secret,
// path (with what `sluice validate` checks of it: input, output or any), default, min, max,
// enum, and the description.
std::string schema_field_line(const Value& f) {
  std::string line = fmt::format("  {:<20} {:<7}", attribute(f, "name"), attribute(f, "type"));
  if (flag(f, "required")) line += " required";
  if (flag(f, "secret")) line += " secret";
  if (flag(f, "path")) {
    const std::string kind = attribute(f, "path_kind");
    line += kind.empty() || kind == "any" ? " path" : fmt::format(" {} path", kind);
  }
  if (f.HasMember("default") && !f["default"].IsNull()) line += " = " + json_text(f["default"]);
  for (const char* key : {"min", "max", "enum"})
    if (const std::string value = attribute(f, key); !value.empty())
      line += fmt::format(" {} {}", key, value);
  if (const std::string doc = attribute(f, "doc"); !doc.empty()) line += "  " + doc;
  return line + "\n";
}

// "transform plugin 'x' (FILE)", as schema errors name a plugin.
std::string plugin_label(const plugin::PluginInfo& p) {
  return fmt::format("{} plugin '{}' ({})", plugin::kind_name(p.kind), p.name, p.file.string());
}

// Says each problem of the plugin's schema on stderr; returns how many there were.
size_t report_schema_problems(const plugin::PluginInfo& p) {
  const auto problems = plugin::schema_problems(p.schema_json);
  for (const auto& problem : problems)
    std::cerr << fmt::format("error: {}: broken config schema: {}\n", plugin_label(p), problem);
  return problems.size();
}

// A plugin as `inspect` shows it: kind, name, version, description and its config fields.
void print_plugin(const plugin::PluginInfo& p) {
  std::cout << fmt::format("\n{} {} {}\n", plugin::kind_name(p.kind), p.name, p.version);
  if (!p.description.empty()) std::cout << "  " << p.description << "\n";
  rapidjson::Document d;
  d.Parse(p.schema_json.c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("fields") || !d["fields"].IsArray())
    return;
  for (const auto& f : d["fields"].GetArray())
    if (f.IsObject()) std::cout << schema_field_line(f);
}

void print_module(const plugin::PluginInfo& p) {
  std::cout << fmt::format("module {} {} ({})\nABI {}.{}\n", p.module_name, p.module_version,
                           p.file.string(), SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
}

// Prints the plugins, each under its module; exit 2 if any schema is broken.
int inspect(const std::vector<const plugin::PluginInfo*>& plugins) {
  size_t problems = 0;
  std::set<std::filesystem::path> modules_shown;
  for (const auto* p : plugins) {
    if (modules_shown.insert(p->file).second) print_module(*p);
    print_plugin(*p);
    problems += report_schema_problems(*p);
  }
  return problems == 0 ? 0 : 2;
}

bool names_a_file(const std::string& target) {
  std::error_code ec;
  return std::filesystem::exists(target, ec) || target.find('/') != std::string::npos ||
         target.ends_with(".so");
}

// Every plugin of any kind named `name`; throws PluginLoadError if there is none to use.
std::vector<const plugin::PluginInfo*> plugins_named(const plugin::PluginRegistry& registry,
                                                     const std::string& name) {
  std::vector<const plugin::PluginInfo*> found;
  for (sluice_kind kind : {SLUICE_KIND_SOURCE, SLUICE_KIND_TRANSFORM, SLUICE_KIND_SINK})
    if (const auto* p = registry.find(kind, name)) found.push_back(p);
  if (!found.empty()) return found;
  for (sluice_kind kind : {SLUICE_KIND_SOURCE, SLUICE_KIND_TRANSFORM, SLUICE_KIND_SINK})
    if (const auto why = registry.unusable(kind, name)) throw plugin::PluginLoadError(*why);
  throw plugin::PluginLoadError(
      fmt::format("no plugin named '{}' on the plugin path (`sluice "
                  "plugins list` shows them){}",
                  name, registry.skipped_note()));
}

}  // namespace

int run_plugins_list(const plugin::PluginRegistry& registry) {
  std::cout << fmt::format("{:<10} {:<16} {:<10} {}\n", "KIND", "NAME", "VERSION", "FILE");
  size_t problems = 0;
  for (const auto* p : registry.all()) {
    std::cout << fmt::format("{:<10} {:<16} {:<10} {}\n", plugin::kind_name(p->kind), p->name,
                             p->version, p->file.string());
    problems += report_schema_problems(*p);
  }
  if (!registry.skipped().empty()) {
    std::cout << "\nSKIPPED (an error only for a pipeline that uses a plugin of theirs)\n";
    for (const auto& s : registry.skipped()) std::cout << "  " << s.reason << "\n";
  }
  return problems == 0 ? 0 : 2;
}

int run_plugins_inspect(const std::string& target, const plugin::LoadOptions& options,
                        const RegistryLoader& load_registry) {
  if (!names_a_file(target)) {
    const auto registry = load_registry();
    return inspect(plugins_named(*registry, target));
  }
  const auto lib = plugin::PluginLibrary::load(target, options);
  if (lib->plugins().empty())
    std::cout << fmt::format("module {} {} ({})\nno plugins\n", lib->module_name(),
                             lib->module_version(), lib->file().string());
  std::vector<plugin::PluginInfo> infos = lib->plugins();
  std::vector<const plugin::PluginInfo*> plugins;
  for (const auto& info : infos) plugins.push_back(&info);
  return inspect(plugins);
}

}  // namespace sluice::cli
