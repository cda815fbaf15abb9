// The `sluice` launcher: run, validate, plugins list/inspect, version.
#include <fmt/format.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

#include "admin/admin_server.hpp"
#include "cli/commands_admin.hpp"
#include "config/pipeline_spec.hpp"
#include "isolation/plugin_host.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/reloader.hpp"
#include "pipeline/supervisor.hpp"
#include "plugin/plugin_registry.hpp"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace {

using namespace sluice;

// Writes log lines to stderr as text or JSON, with every secret value masked.
class LogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LogSink(bool json) : json_(json) {}
  void set_secrets(std::vector<std::string> secrets) {
    std::lock_guard lock(mutex_);
    secrets_ = std::move(secrets);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string text =
        config::redact(std::string(msg.payload.data(), msg.payload.size()), secrets_);
    auto level = spdlog::level::to_string_view(msg.level);
    auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch());
    std::string line;
    if (json_) {
      rapidjson::StringBuffer sb;
      rapidjson::Writer<rapidjson::StringBuffer> w(sb);
      w.StartObject();
      w.Key("ts_ms");
      w.Int64(secs.count());
      w.Key("level");
      w.String(level.data(), static_cast<rapidjson::SizeType>(level.size()));
      w.Key("msg");
      w.String(text.c_str(), static_cast<rapidjson::SizeType>(text.size()));
      w.EndObject();
      line = std::string(sb.GetString()) + "\n";
    } else {
      line = fmt::format("[{}] {}\n", std::string_view(level.data(), level.size()), text);
    }
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  bool json_;
  std::vector<std::string> secrets_;
};

std::shared_ptr<LogSink> g_log_sink;

void setup_logging(const std::string& level, const std::string& format) {
  g_log_sink = std::make_shared<LogSink>(format == "json");
  auto logger = std::make_shared<spdlog::logger>("sluice", g_log_sink);
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

struct CommonOptions {
  std::vector<std::string> plugin_paths;
  bool allow_insecure = false;
};

std::unique_ptr<plugin::PluginRegistry> load_registry(const CommonOptions& o) {
  auto reg = std::make_unique<plugin::PluginRegistry>(plugin::LoadOptions{o.allow_insecure});
  reg->load_search_path(plugin::plugin_search_path(o.plugin_paths));
  return reg;
}

// Parses and checks a pipeline file; throws config::ConfigError or plugin::PluginLoadError.
std::vector<std::unique_ptr<pipeline::Pipeline>> prepare(const std::string& file,
                                                         const plugin::PluginRegistry& reg,
                                                         core::AdminSettings* admin = nullptr,
                                                         bool* admin_configured = nullptr) {
  config::PipelineFile pf = config::load_pipelines(file);
  if (admin) *admin = pf.admin;
  if (admin_configured) *admin_configured = pf.admin_location.line != 0;
  std::vector<std::unique_ptr<pipeline::Pipeline>> out;
  for (auto& spec : pf.pipelines) out.push_back(std::make_unique<pipeline::Pipeline>(spec, reg));
  return out;
}

void print_summary(const pipeline::Summary& s, const std::vector<middleware::StageStats>& stats) {
  double rate = s.seconds > 0 ? static_cast<double>(s.records_in) / s.seconds : 0;
  std::cout << fmt::format(
      "pipeline {}: {} records in, {} delivered, {} dead-lettered, {} filtered, {} rejected; "
      "{} written by the sink; {:.2f} s, {:.0f} records/s",
      s.pipeline, s.records_in, s.delivered, s.dead_lettered, s.filtered, s.rejected,
      s.sink_records, s.seconds, rate);
  for (const auto& st : stats)
    if (st.pipeline == s.pipeline)
      std::cout << fmt::format("; batch size {}, concurrency {}, peak memory {:.0f} MB",
                               st.batch_size.current, st.concurrency.current, st.memory.peak_mb);
  std::cout << (s.failed ? "; FAILED: " + s.failure : "") << std::endl;
}

struct RunOptions {
  std::string stats_file;
  std::string admin;   // --admin HOST:PORT | off; empty: the file's `admin:` section
  bool watch = false;  // reload a changed pipeline file
  bool plugin_watch = true;
};

std::filesystem::file_time_type newest_change(const std::string& file_or_dir) {
  std::error_code ec;
  auto newest = std::filesystem::last_write_time(file_or_dir, ec);
  if (std::filesystem::is_directory(file_or_dir, ec))
    for (const auto& e : std::filesystem::directory_iterator(file_or_dir, ec))
      newest = std::max(newest, e.last_write_time(ec));
  return newest;
}

int cmd_run(const std::string& file, const CommonOptions& common, const RunOptions& options) {
  // Signals are taken by one thread with sigwait, so no handler runs inside the runtime.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto reg = load_registry(common);
  core::AdminSettings admin_settings;
  bool admin_configured = false;
  auto pipelines = prepare(file, *reg, &admin_settings, &admin_configured);
  if (!options.admin.empty()) {
    admin_settings = admin::apply_admin_flag(admin_settings, options.admin);
    admin_configured = true;
  }
  std::vector<std::string> secrets;
  for (const auto& p : pipelines)
    secrets.insert(secrets.end(), p->secrets().begin(), p->secrets().end());
  if (!admin_settings.token.empty()) secrets.push_back(admin_settings.token);
  g_log_sink->set_secrets(secrets);

  pipeline::Supervisor supervisor(std::move(pipelines), {options.stats_file, 1000});
  pipeline::Reloader reloader(*reg, supervisor);
  admin::AdminServer server(admin_settings, supervisor,
                            [&](const std::string& stage) { return reloader.reload(stage); });
  try {
    server.start();
  } catch (const admin::AdminError& e) {
    // An address the user asked for must work; the default one is a convenience, and a second
    // sluice on the same machine simply runs without it.
    if (admin_configured) throw;
    spdlog::warn("admin API not started on the default address: {}", e.what());
  }
  if (server.running()) spdlog::info("admin API on {}", server.url());

  std::atomic<bool> done{false};
  std::thread signals([&] {
    int stops = 0;
    while (!done.load()) {
      timespec timeout{0, 100'000'000};
      int sig = sigtimedwait(&set, nullptr, &timeout);
      if (sig < 0) continue;
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP: reloading every stage");
        reloader.reload();
        continue;
      }
      if (++stops > 1) {
        std::fprintf(stderr, "second signal: exiting without draining\n");
        std::_Exit(130);
      }
      spdlog::info("signal {} received", sig);
      supervisor.request_stop();
    }
  });
  std::thread file_watch;
  if (options.watch)
    file_watch = std::thread([&] {
      auto seen = newest_change(file);
      while (!done.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        auto now = newest_change(file);
        if (now == seen) continue;
        seen = now;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the editor finish
        spdlog::info("{} changed: checking it", file);
        try {
          reloader.apply_pipeline_file(config::load_pipelines(file));
        } catch (const std::exception& e) {
          spdlog::error("pipeline file change refused, the running pipelines go on: {}", e.what());
        }
      }
    });

  int code = 1;
  auto finish = [&] {
    done.store(true);
    signals.join();
    if (file_watch.joinable()) file_watch.join();
    reloader.stop();
    server.stop();
  };
  try {
    // The watcher starts once the stages exist, so it knows their folders.
    std::thread starter([&] {
      while (!done.load() && supervisor.pipelines().front()->stage_files().empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (options.plugin_watch && !done.load()) reloader.start_watching();
    });
    try {
      code = supervisor.run();
    } catch (...) {
      done.store(true);
      starter.join();
      throw;
    }
    starter.join();
  } catch (...) {
    finish();
    throw;
  }
  finish();
  auto stats = supervisor.stats();
  for (const auto& s : supervisor.summaries()) print_summary(s, stats);
  return code;
}

int cmd_reload(const std::string& url, const std::string& stage) {
  httplib::Client client(url);
  client.set_connection_timeout(5);
  client.set_read_timeout(120);
  httplib::Headers headers;
  if (const char* token = std::getenv("SLUICE_ADMIN_TOKEN"))
    headers.emplace("Authorization", std::string("Bearer ") + token);
  std::string path = stage.empty() ? "/reload" : "/reload?stage=" + stage;
  auto res = client.Post(path.c_str(), headers, "", "application/json");
  if (!res) {
    std::cerr << "cannot reach the admin API at " << url << ": " << httplib::to_string(res.error())
              << std::endl;
    return 1;
  }
  (res->status == 200 ? std::cout : std::cerr) << res->body << std::endl;
  return res->status == 200 ? 0 : 1;
}

int cmd_validate(const std::string& file, const CommonOptions& common) {
  auto reg = load_registry(common);
  auto pipelines = prepare(file, *reg);
  for (const auto& p : pipelines) std::cout << "pipeline " << p->name() << ": ok\n";
  return 0;
}

int cmd_plugins_list(const CommonOptions& common) {
  auto reg = load_registry(common);
  std::cout << fmt::format("{:<10} {:<16} {:<10} {}\n", "KIND", "NAME", "VERSION", "FILE");
  for (const auto* p : reg->all())
    std::cout << fmt::format("{:<10} {:<16} {:<10} {}\n", plugin::kind_name(p->kind), p->name,
                             p->version, p->file.string());
  return 0;
}

int cmd_plugins_inspect(const std::string& file, const CommonOptions& common) {
  auto lib = plugin::PluginLibrary::load(file, plugin::LoadOptions{common.allow_insecure});
  std::cout << fmt::format("module {} {} ({})\nABI {}.{}\n", lib->module_name(),
                           lib->module_version(), lib->file().string(), SLUICE_ABI_MAJOR,
                           SLUICE_ABI_MINOR);
  for (const auto& p : lib->plugins()) {
    std::cout << fmt::format("\n{} {} {}\n", plugin::kind_name(p.kind), p.name, p.version);
    if (!p.description.empty()) std::cout << "  " << p.description << "\n";
    rapidjson::Document d;
    d.Parse(p.schema_json.c_str());
    if (d.HasParseError() || !d.HasMember("fields")) continue;
    for (const auto& f : d["fields"].GetArray()) {
      std::string def;
      if (f.HasMember("default")) {
        rapidjson::StringBuffer sb;
        rapidjson::Writer<rapidjson::StringBuffer> w(sb);
        f["default"].Accept(w);
        def = std::string(" = ") + sb.GetString();
      }
      std::cout << fmt::format(
          "  {:<20} {:<7}{}{}{}{}\n", f["name"].GetString(), f["type"].GetString(),
          f.HasMember("required") && f["required"].GetBool() ? " required" : "",
          f.HasMember("secret") && f["secret"].GetBool() ? " secret" : "", def,
          f.HasMember("doc") ? std::string("  ") + f["doc"].GetString() : "");
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "plugin-host")  // hidden: an isolated stage's child
    return isolation::plugin_host_main(argc, argv);
  CLI::App app{"sluice: a pipeline runtime with plugins and an adaptive middleware"};
  app.require_subcommand(1);
  std::string log_level = "info", log_format = "text";
  CommonOptions common;
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-format", log_format, "text|json")->check(CLI::IsMember({"text", "json"}));
  app.add_option("--plugin-path", common.plugin_paths,
                 "folder (or .so) searched for plugins before SLUICE_PLUGIN_PATH and the built-in "
                 "one; repeatable")
      ->allow_extra_args(false);
  app.add_flag("--allow-insecure-plugins", common.allow_insecure,
               "load plugin files or folders writable by group or others");

  std::string file;
  RunOptions run_options;
  auto* run = app.add_subcommand("run", "run the pipelines of a YAML file or folder");
  run->add_option("file", file, "pipeline YAML file or folder")->required();
  run->add_option("--stats-file", run_options.stats_file,
                  "rewrite this file with the stats JSON every second");
  run->add_option("--admin", run_options.admin,
                  "admin API address HOST:PORT, or off (default: the file's admin: section, "
                  "else 127.0.0.1:8088)");
  run->add_flag("--watch", run_options.watch, "reload the pipeline file when it changes");
  bool no_plugin_watch = false;
  run->add_flag("--no-plugin-watch", no_plugin_watch,
                "do not reload plugins when their files change");
  std::string admin_url = cli::kDefaultAdminUrl, stage;
  bool stats_json = false, top_once = false;
  auto* stats = app.add_subcommand("stats", "print the running pipelines' stats as a table");
  stats->add_option("--url", admin_url, "admin API address")->capture_default_str();
  stats->add_flag("--json", stats_json, "print the raw /stats JSON");
  auto* top = app.add_subcommand("top", "live view of the running pipelines (q or Ctrl-C quits)");
  top->add_option("--url", admin_url, "admin API address")->capture_default_str();
  top->add_flag("--once", top_once, "print one frame and exit");
  auto* reload = app.add_subcommand("reload", "reload plugins of a running sluice");
  reload->add_option("--url", admin_url, "admin API address")->capture_default_str();
  reload->add_option("--stage", stage, "only this stage (its instance name)");
  auto* validate = app.add_subcommand("validate", "check a pipeline file without running it");
  validate->add_option("file", file, "pipeline YAML file or folder")->required();
  auto* plugins = app.add_subcommand("plugins", "list or inspect plugins");
  plugins->require_subcommand(1);
  auto* list = plugins->add_subcommand("list", "every plugin on the search path");
  auto* inspect =
      plugins->add_subcommand("inspect", "a plugin library's metadata and config schema");
  inspect->add_option("file", file, "plugin .so")->required();
  auto* version = app.add_subcommand("version", "print the version");
  // Options given after the subcommand apply too.
  for (auto* sub : {run, validate, list, inspect}) {
    sub->fallthrough();
  }
  plugins->fallthrough();

  CLI11_PARSE(app, argc, argv);
  setup_logging(log_level, log_format);
  try {
    if (version->parsed()) {
      std::cout << "sluice " << SLUICE_VERSION << " (plugin ABI " << SLUICE_ABI_MAJOR << "."
                << SLUICE_ABI_MINOR << ")\n";
      return 0;
    }
    if (run->parsed()) {
      run_options.plugin_watch = !no_plugin_watch;
      return cmd_run(file, common, run_options);
    }
    if (stats->parsed()) return cli::run_stats_command(admin_url, stats_json);
    if (top->parsed()) return cli::run_top_command(admin_url, top_once);
    if (reload->parsed()) return cmd_reload(admin_url, stage);
    if (validate->parsed()) return cmd_validate(file, common);
    if (list->parsed()) return cmd_plugins_list(common);
    if (inspect->parsed()) return cmd_plugins_inspect(file, common);
  } catch (const config::ConfigError& e) {
    std::cerr << e.what() << std::endl;
    return 2;
  } catch (const admin::AdminError& e) {
    std::cerr << e.what() << std::endl;
    return 2;
  } catch (const plugin::PluginLoadError& e) {
    std::cerr << e.what() << std::endl;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
