// Reload orchestration and the inotify watcher on plugin folders.
#include "pipeline/reloader.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "config/stage_config.hpp"
#include "isolation/proxy.hpp"

namespace sluice::pipeline {

namespace {

// Loads the new `file` in a short-lived child for each stage it serves, with the stage's config
// (checked against the schema loaded now); throws std::runtime_error if a child died or hung.
void trial_load_stages(const plugin::PluginRegistry& registry, const std::filesystem::path& file,
                       const std::vector<std::pair<Pipeline*, std::string>>& stages) {
  for (const auto& [p, name] : stages) {
    const auto& spec = p->spec();
    std::vector<const config::StageSpec*> all = {&spec.source, &spec.sink};
    for (const auto& t : spec.transforms) all.push_back(&t);
    if (spec.dead_letter) all.push_back(&*spec.dead_letter);
    for (const auto* stage : all) {
      if (stage->instance_name != name) continue;
      const sluice_kind kind = stage->role == "source"      ? SLUICE_KIND_SOURCE
                               : stage->role == "transform" ? SLUICE_KIND_TRANSFORM
                                                            : SLUICE_KIND_SINK;
      const plugin::PluginInfo* info = registry.find(kind, stage->type);
      if (!info) continue;
      const std::string config_json = config::check_stage(*stage, info->schema_json).json;
      const std::string why = isolation::trial_load(file, kind, stage->type, config_json);
      if (!why.empty()) throw std::runtime_error(why);
    }
  }
}

}  // namespace

std::string Reloader::reload(const std::string& stage) {
  std::set<std::filesystem::path> files;
  bool found = stage.empty();
  for (const auto& p : supervisor_.pipelines())
    for (const auto& s : p->stage_files())
      if (stage.empty() || s.instance_name == stage) {
        files.insert(s.file);
        found = true;
      }
  if (!found) return fmt::format("no stage named '{}'", stage);
  return reload_files({files.begin(), files.end()}, stage);
}

std::string Reloader::reload_file(const std::filesystem::path& file) {
  return reload_files({file}, "");
}

std::string Reloader::reload_files(const std::vector<std::filesystem::path>& files,
                                   const std::string& only_stage) {
  std::lock_guard lock(mu_);
  std::string errors;
  for (const auto& file : files) {
    // The private copies mapped now, to check that they are gone afterwards.
    std::set<std::filesystem::path> old_copies;
    for (const auto* info : registry_.all())
      if (info->file == file && info->library) old_copies.insert(info->library->loaded_from());

    std::vector<std::pair<Pipeline*, std::string>> stages;
    for (const auto& p : supervisor_.pipelines())
      for (const auto& s : p->stage_files())
        if (s.file == file && (only_stage.empty() || s.instance_name == only_stage))
          stages.emplace_back(p.get(), s.instance_name);
    if (stages.empty()) continue;

    std::shared_ptr<plugin::PluginLibrary> lib;
    try {
      trial_load_stages(registry_, file, stages);  // a library that crashes never reaches us
      lib = registry_.reload_file(file);
    } catch (const std::exception& e) {
      for (auto& [p, name] : stages) {
        p->set_stage_error(name, e.what());
        errors += fmt::format("{}: {}\n", name, e.what());
      }
      spdlog::error("reload of {} refused, old version keeps running: {}", file.string(), e.what());
      continue;
    }
    for (auto& [p, name] : stages) {
      if (auto error = reload_from(*p, name, *lib)) {
        errors += fmt::format("{}: {}\n", name, error->message);
        spdlog::error("reload of stage {} failed, old instance keeps running: {}", name,
                      error->message);
        continue;
      }
      ++reloads_;
    }
    lib.reset();
    // The old copy must be gone from the process now: its last user was just destroyed.
    std::set<std::filesystem::path> current;
    for (const auto* info : registry_.all())
      if (info->file == file && info->library) current.insert(info->library->loaded_from());
    for (const auto& old : old_copies)
      if (!current.count(old) && plugin::is_mapped(old))
        spdlog::warn("the old copy {} is still mapped: something keeps it loaded", old.string());
  }
  if (!errors.empty() && errors.back() == '\n') errors.pop_back();
  return errors;
}

StageResult Reloader::reload_from(Pipeline& pipeline, const std::string& stage,
                                  const plugin::PluginLibrary& library) {
  // The new file must still provide the stage's plugin, or the stage would silently keep the
  // old code.
  const std::string type = pipeline.stage_type(stage);
  for (const auto& info : library.plugins())
    if (info.name == type) return pipeline.reload_stage(stage, registry_);
  StageError error{
      stage, type,
      fmt::format("the new {} does not provide plugin '{}'", library.file().string(), type)};
  pipeline.set_stage_error(stage, error.message);
  return error;
}

namespace {
std::string emitted(const YAML::Node& node) {
  YAML::Emitter e;
  e << node;
  return e.c_str();
}
}  // namespace

std::string Reloader::apply_pipeline_file(const config::PipelineFile& next) {
  std::lock_guard lock(mu_);
  // Check everything before touching anything: a Pipeline checks all its stages when built.
  try {
    for (const auto& spec : next.pipelines) Pipeline check(spec, registry_);
  } catch (const std::exception& e) {
    spdlog::error("pipeline file change refused, the running pipelines go on: {}", e.what());
    return e.what();
  }
  std::string notes;
  for (const auto& spec : next.pipelines) {
    Pipeline* running = nullptr;
    for (const auto& p : supervisor_.pipelines())
      if (p->name() == spec.name) running = p.get();
    if (running == nullptr) {
      notes += fmt::format("pipeline {} is new: it starts on the next restart\n", spec.name);
      continue;
    }
    const auto& old = running->spec();
    if (old.transforms.size() != spec.transforms.size() ||
        old.dead_letter.has_value() != spec.dead_letter.has_value()) {
      notes +=
          fmt::format("pipeline {}: stages added or removed: takes effect on restart\n", spec.name);
      continue;
    }
    std::vector<std::pair<const config::StageSpec*, const config::StageSpec*>> pairs = {
        {&old.source, &spec.source}, {&old.sink, &spec.sink}};
    for (size_t i = 0; i < spec.transforms.size(); ++i)
      pairs.emplace_back(&old.transforms[i], &spec.transforms[i]);
    if (spec.dead_letter) pairs.emplace_back(&*old.dead_letter, &*spec.dead_letter);
    for (auto [before, after] : pairs) {
      if (emitted(before->node) == emitted(after->node)) continue;
      if (before->instance_name != after->instance_name) {
        notes += fmt::format("stage {} renamed: takes effect on restart\n", before->instance_name);
        continue;
      }
      if (auto error = running->reload_stage(before->instance_name, registry_, after))
        notes += fmt::format("{}: {}\n", before->instance_name, error->message);
      else
        ++reloads_;
    }
  }
  if (!notes.empty() && notes.back() == '\n') notes.pop_back();
  if (!notes.empty()) spdlog::warn("pipeline file change: {}", notes);
  return notes;
}

void Reloader::start_watching(std::filesystem::file_time_type loaded_since, uint32_t debounce_ms) {
  if (watcher_.joinable()) return;
  stopping_ = false;
  watcher_ =
      std::thread([this, loaded_since, debounce_ms] { watch_loop(loaded_since, debounce_ms); });
}

void Reloader::stop() {
  stopping_ = true;
  if (watcher_.joinable()) watcher_.join();
}

void Reloader::watch_loop(std::filesystem::file_time_type loaded_since, uint32_t debounce_ms) {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    spdlog::warn("cannot watch plugin folders (inotify): {}", std::strerror(errno));
    return;
  }
  std::map<int, std::filesystem::path> dirs;
  std::set<std::filesystem::path> watched;
  std::map<std::filesystem::path, std::chrono::steady_clock::time_point> pending;
  for (const auto& p : supervisor_.pipelines())
    for (const auto& s : p->stage_files()) {
      // Written since the launcher began reading plugins: perhaps after this stage's copy was
      // read, before the watch below could see it. Reloading it is right either way.
      std::error_code ec;
      const auto written = std::filesystem::last_write_time(s.file, ec);
      if (!ec && written > loaded_since) pending[s.file] = std::chrono::steady_clock::now();
      auto dir = s.file.parent_path();
      if (!watched.insert(dir).second) continue;
      int wd = inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
      if (wd >= 0) dirs[wd] = dir;
    }
  spdlog::info("watching {} plugin folder(s) for changes", dirs.size());
  alignas(inotify_event) char buf[8192];
  while (!stopping_) {
    pollfd pfd{fd, POLLIN, 0};
    ::poll(&pfd, 1, 100);
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        if (ev->len > 0 && dirs.count(ev->wd)) {
          auto file = dirs[ev->wd] / ev->name;
          if (file.extension() == ".so") pending[file] = std::chrono::steady_clock::now();
        }
        p += sizeof(inotify_event) + ev->len;
      }
    }
    auto now = std::chrono::steady_clock::now();
    for (auto it = pending.begin(); it != pending.end();) {
      if (now - it->second < std::chrono::milliseconds(debounce_ms)) {
        ++it;
        continue;
      }
      spdlog::info("plugin file {} changed: reloading", it->first.string());
      reload_file(it->first);
      it = pending.erase(it);
    }
  }
  ::close(fd);
}

}  // namespace sluice::pipeline
