// `sluice validate`'s filesystem checks of a stage's path fields, by the schema's path_kind.
#include "config/path_checks.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "config/stage_config.hpp"

namespace sluice::config {
namespace {

namespace fs = std::filesystem;

// Why `path` cannot be used as `kind`, or nothing when it can.
std::optional<std::string> path_problem(const fs::path& path, std::string_view kind) {
  std::error_code ec;
  if (kind == "input") {
    if (!fs::exists(path, ec)) return "no such file";
    if (fs::is_directory(path, ec)) return "a folder, not a file";
    if (::access(path.c_str(), R_OK) != 0)
      return fmt::format("not readable: {}", std::strerror(errno));
    return std::nullopt;
  }
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (!fs::is_directory(folder, ec))
    return fmt::format("the folder '{}' does not exist", folder.string());
  if (kind != "output") return std::nullopt;
  if (fs::is_directory(path, ec)) return "a folder, not a file";
  if (fs::exists(path, ec) && ::access(path.c_str(), W_OK) != 0)
    return fmt::format("not writable: {}", std::strerror(errno));
  if (!fs::exists(path, ec) && ::access(folder.c_str(), W_OK | X_OK) != 0)
    return fmt::format("the folder '{}' is not writable: {}", folder.string(),
                       std::strerror(errno));
  return std::nullopt;
}

std::string_view string_member(const rapidjson::Value& object, const char* key,
                               std::string_view fallback) {
  const auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return fallback;
  return {it->value.GetString(), it->value.GetStringLength()};
}

}  // namespace

void check_stage_paths(const StageSpec& stage, std::string_view schema_json) {
  // check_stage has substituted, resolved relative paths and filled defaults.
  const CheckedConfig checked = check_stage(stage, schema_json);
  rapidjson::Document config, schema;
  config.Parse(checked.json.c_str(), checked.json.size());
  schema.Parse(schema_json.data(), schema_json.size());
  if (!config.IsObject() || !schema.IsObject() || !schema.HasMember("fields") ||
      !schema["fields"].IsArray())
    return;
  for (const auto& field : schema["fields"].GetArray()) {
    if (!field.IsObject() || !field.HasMember("path") || !field["path"].IsTrue()) continue;
    const std::string name(string_member(field, "name", ""));
    const std::string_view value = string_member(config, name.c_str(), "");
    if (value.empty()) continue;
    const std::string_view kind = string_member(field, "path_kind", "any");
    if (const auto problem = path_problem(fs::path(value), kind))
      throw ConfigError(field_location(stage, name),
                        fmt::format("{} '{}': field '{}': '{}': {}", stage.role, stage.type, name,
                                    value, *problem));
  }
}

}  // namespace sluice::config
