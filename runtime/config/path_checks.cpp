// `sluice validate`'s filesystem checks of a stage's path fields, by the schema's path_kind.
#include "config/path_checks.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

std::vector<PathField> path_fields(const StageSpec& stage, std::string_view schema_json) {
  // check_stage has substituted, resolved relative paths and filled defaults.
  const CheckedConfig checked = check_stage(stage, schema_json);
  rapidjson::Document config, schema;
  config.Parse(checked.json.c_str(), checked.json.size());
  schema.Parse(schema_json.data(), schema_json.size());
  std::vector<PathField> out;
  if (!config.IsObject() || !schema.IsObject() || !schema.HasMember("fields") ||
      !schema["fields"].IsArray())
    return out;
  for (const auto& field : schema["fields"].GetArray()) {
    if (!field.IsObject() || !field.HasMember("path") || !field["path"].IsTrue()) continue;
    PathField f{&stage, std::string(string_member(field, "name", "")), {}, {}};
    f.value = string_member(config, f.name.c_str(), "");
    f.kind = string_member(field, "path_kind", "any");
    if (!f.value.empty()) out.push_back(std::move(f));
  }
  return out;
}

void check_stage_paths(const StageSpec& stage, std::string_view schema_json) {
  for (const PathField& f : path_fields(stage, schema_json))
    if (const auto problem = path_problem(fs::path(f.value), f.kind))
      throw ConfigError(field_location(stage, f.name),
                        fmt::format("{} '{}': field '{}': '{}': {}", stage.role, stage.type, f.name,
                                    f.value, *problem));
}

namespace {

// The absolute, normalised path of the file a path that names nothing yet will create: through
// symbolic links that lead nowhere yet (`link.jsonl -> in.jsonl`, in.jsonl to come), which
// weakly_canonical leaves as they are in the last part.
fs::path future_file(const std::string& value) {
  std::error_code ec;
  fs::path p = fs::absolute(value, ec);
  for (int hops = 0; hops < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hops) {
    const fs::path target = fs::read_symlink(p, ec);
    if (ec) break;
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
  return fs::weakly_canonical(p, ec);
}

// Whether two path values name one regular file: the same device and inode when both exist,
// else the same absolute, normalised path (a file one stage is about to create).
bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {};
  struct stat sb {};
  const bool has_a = ::stat(a.c_str(), &sa) == 0;
  const bool has_b = ::stat(b.c_str(), &sb) == 0;
  if (has_a && has_b)
    return S_ISREG(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (has_a || has_b) return false;
  return future_file(a) == future_file(b);
}

}  // namespace

void check_not_own_output(const std::vector<PathField>& fields) {
  for (const PathField& out : fields) {
    if (out.kind != "output") continue;
    for (const PathField& in : fields)
      if (in.kind == "input" && same_file(in.value, out.value))
        throw ConfigError(
            field_location(*out.stage, out.name),
            fmt::format("{} '{}': field '{}': '{}' is the file {} '{}' reads (field '{}'): the "
                        "pipeline would read its own output without end",
                        out.stage->role, out.stage->type, out.name, out.value, in.stage->role,
                        in.stage->type, in.name));
  }
}

namespace {

// An output of one pipeline that names the file an input of another reads: an edge of the graph
// of pipelines feeding each other through files.
struct Feed {
  size_t to;
  const PathField* out;
};

// Depth-first from `at`: true with `path` holding the feeds of a cycle back to a pipeline on the
// current walk. `state`: 0 not seen, 1 on the walk, 2 done.
bool find_cycle(size_t at, const std::vector<std::vector<Feed>>& feeds, std::vector<int>& state,
                std::vector<std::pair<size_t, const PathField*>>& path) {
  state[at] = 1;
  for (const Feed& f : feeds[at]) {
    path.emplace_back(at, f.out);
    if (state[f.to] == 1) {
      path.erase(path.begin(), std::find_if(path.begin(), path.end(),
                                            [&](const auto& step) { return step.first == f.to; }));
      return true;
    }
    if (state[f.to] == 0 && find_cycle(f.to, feeds, state, path)) return true;
    path.pop_back();
  }
  state[at] = 2;
  return false;
}

}  // namespace

void check_no_file_cycle(const std::vector<std::pair<std::string, std::vector<PathField>>>& runs) {
  std::vector<std::vector<Feed>> feeds(runs.size());
  for (size_t a = 0; a < runs.size(); ++a)
    for (const PathField& out : runs[a].second)
      for (size_t b = 0; b < runs.size(); ++b)
        for (const PathField& in : runs[b].second)
          if (a != b && out.kind == "output" && in.kind == "input" &&
              same_file(in.value, out.value))
            feeds[a].push_back({b, &out});
  std::vector<int> state(runs.size(), 0);
  for (size_t start = 0; start < runs.size(); ++start) {
    std::vector<std::pair<size_t, const PathField*>> path;
    if (state[start] != 0 || !find_cycle(start, feeds, state, path)) continue;
    std::vector<std::string> names;
    for (const auto& step : path) names.push_back(runs[step.first].first);
    names.push_back(names.front());
    const PathField& closing = *path.back().second;
    throw ConfigError(
        field_location(*closing.stage, closing.name),
        fmt::format("{} '{}': field '{}': '{}' closes a cycle of pipelines feeding each other "
                    "through files ({}): they would read their own output without end",
                    closing.stage->role, closing.stage->type, closing.name, closing.value,
                    fmt::join(names, " -> ")));
  }
}

}  // namespace sluice::config
