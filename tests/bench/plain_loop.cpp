// The plain-loop arm of the pipeline and overhead benchmarks: the plugins of a pipeline YAML
// called through their C tables in one thread, with no runtime between them, so the runtime's
// figures have a floor to be compared with.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/pipeline_spec.hpp"
#include "config/stage_config.hpp"
#include "pipeline/writers.hpp"
#include "plugin/plugin_instance.hpp"
#include "plugin/plugin_registry.hpp"

namespace {

using sluice::pipeline::CollectingWriter;

struct Options {
  std::filesystem::path pipeline_file;
  std::vector<std::string> plugin_paths;
  double max_seconds = 0;  // 0: until the source ends
};

// The same config check and defaults the runtime applies, so both arms run the same plugins
// with the same settings.
std::unique_ptr<sluice::plugin::PluginInstance> create(const sluice::config::StageSpec& stage,
                                                       sluice_kind kind,
                                                       const sluice::plugin::PluginRegistry& reg) {
  const auto* info = reg.find(kind, stage.type);
  if (info == nullptr) throw std::runtime_error("no plugin named " + stage.type);
  auto checked = sluice::config::check_stage(stage, info->schema_json);
  return std::make_unique<sluice::plugin::PluginInstance>(*info, stage.instance_name, checked.json);
}

void check(sluice_status status, const sluice::plugin::CallError& error, const char* what) {
  if (status != SLUICE_OK)
    throw std::runtime_error(std::string(what) + " failed (status " + std::to_string(status) +
                             "): " + error.message);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

int run(const Options& options) {
  auto file = sluice::config::load_pipelines(options.pipeline_file);
  if (file.pipelines.size() != 1) throw std::runtime_error("want exactly one pipeline");
  const auto& spec = file.pipelines.front();

  sluice::plugin::PluginRegistry registry;
  registry.load_search_path(sluice::plugin::plugin_search_path(options.plugin_paths));
  auto source = create(spec.source, SLUICE_KIND_SOURCE, registry);
  std::vector<std::unique_ptr<sluice::plugin::PluginInstance>> transforms;
  for (const auto& t : spec.transforms)
    transforms.push_back(create(t, SLUICE_KIND_TRANSFORM, registry));
  auto sink = create(spec.sink, SLUICE_KIND_SINK, registry);

  // The runtime's stage grows its batches toward max_batch_size under a fast sink; the loop
  // uses the size the runtime would settle at, so batch size is not what the two arms compare.
  const uint32_t batch_size = spec.performance.adaptive_batching ? spec.performance.max_batch_size
                                                                 : spec.performance.batch_size;
  sluice::plugin::CallError error;
  uint64_t records = 0;
  uint64_t batches = 0;
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  for (;;) {
    sluice_poll_args args{sizeof(sluice_poll_args), batch_size, 100, 0, UINT64_MAX};
    CollectingWriter polled(SIZE_MAX);
    check(source->table().poll(source->handle(), &args, polled.get(), error.get()), error, "poll");
    // Each stage's output is the next one's input; the writers own the bytes in between.
    std::vector<std::unique_ptr<CollectingWriter>> outputs;
    CollectingWriter* current = &polled;
    for (auto& t : transforms) {
      const auto in = current->records().records();
      sluice_batch batch{sizeof(sluice_batch), in.data(), in.size()};
      outputs.push_back(std::make_unique<CollectingWriter>(in.size()));
      check(t->table().process(t->handle(), &batch, outputs.back()->get(), error.get()), error,
            "process");
      current = outputs.back().get();
    }
    const auto in = current->records().records();
    if (!in.empty()) {
      sluice_batch batch{sizeof(sluice_batch), in.data(), in.size()};
      CollectingWriter rejects(in.size());
      check(sink->table().put(sink->handle(), &batch, rejects.get(), error.get()), error, "put");
      records += polled.records().size();
      ++batches;
    }
    if (args.end_of_stream != 0) break;
    if (options.max_seconds > 0 && elapsed() >= options.max_seconds) break;
  }
  const double seconds = elapsed();
  std::printf(
      "{\"records\": %llu, \"batches\": %llu, \"batch_size\": %u, \"seconds\": %.6f, "
      "\"records_per_s\": %.1f, \"peak_rss_mb\": %.2f}\n",
      static_cast<unsigned long long>(records), static_cast<unsigned long long>(batches),
      batch_size, seconds, seconds > 0 ? static_cast<double>(records) / seconds : 0.0,
      peak_rss_mb());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--plugin-path" && i + 1 < argc) {
      options.plugin_paths.emplace_back(argv[++i]);
    } else if (arg == "--seconds" && i + 1 < argc) {
      options.max_seconds = std::stod(argv[++i]);
    } else if (options.pipeline_file.empty() && !arg.starts_with("-")) {
      options.pipeline_file = arg;
    } else {
      std::fprintf(stderr,
                   "usage: sluice-plain-loop PIPELINE.yaml [--plugin-path DIR] [--seconds S]\n");
      return 2;
    }
  }
  if (options.pipeline_file.empty()) {
    std::fprintf(stderr,
                 "usage: sluice-plain-loop PIPELINE.yaml [--plugin-path DIR] [--seconds S]\n");
    return 2;
  }
  try {
    return run(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice-plain-loop: %s\n", e.what());
    return 1;
  }
}
