// The `sluice` launcher: run, validate, test, plugins list/inspect, stats, top, reload, import,
// version.
#include <fmt/format.h>
#include <httplib.h>
#include <malloc.h>
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
#include <optional>
#include <sluice/safe_files.hpp>
#include <thread>

#include "admin/admin_server.hpp"
#include "cli/commands_admin.hpp"
#include "cli/commands_plugins.hpp"
#include "cli/import_kafka_connect.hpp"
#include "cli/pipeline_tests.hpp"
#include "cli/process_hardening.hpp"
#include "config/did_you_mean.hpp"
#include "config/path_checks.hpp"
#include "config/pipeline_spec.hpp"
#include "core/crash_line.hpp"
#include "core/log_line.hpp"
#include "isolation/plugin_host.hpp"
#include "pipeline/call_guard.hpp"
#include "pipeline/pipeline.hpp"
#include "pipeline/reloader.hpp"
#include "pipeline/supervisor.hpp"
#include "plugin/plugin_registry.hpp"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "0.0.0"
#endif

namespace {

using namespace sluice;

// Writes log lines to stderr as text or JSON (core::json_log_line), every secret value masked.
class LogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LogSink(bool json) : json_(json) {}
  bool json() const { return json_; }
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
    const std::string line =
        json_ ? core::json_log_line(secs.count(), {level.data(), level.size()}, text)
              : fmt::format("[{}] {}\n", std::string_view(level.data(), level.size()),
                            core::one_line(text));
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  bool json_;
  std::vector<std::string> secrets_;
};

std::shared_ptr<LogSink> g_log_sink;

// A message sluice ends on, outside the logger's levels: as it is in text format, and a JSON log
// line of level error in JSON format, so that every line of stderr parses.
void say_error(const std::string& text) {
  if (g_log_sink && g_log_sink->json()) {
    spdlog::error("{}", text);
    spdlog::default_logger()->flush();
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
  }
}

// A crash report, written from a signal handler, follows the format too (core::CrashLine), in a
// plugin-host child as well: it inherits the environment (and stderr).
void setup_logging(const std::string& level, const std::string& format) {
  const bool json = format == "json";
  core::set_json_crash_lines(json);
  ::setenv(core::kCrashLineFormatEnv, json ? "json" : "text", 1);  // before any thread starts
  g_log_sink = std::make_shared<LogSink>(json);
  auto logger = std::make_shared<spdlog::logger>("sluice", g_log_sink);
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

struct CommonOptions {
  std::vector<std::string> plugin_paths;
  bool allow_insecure = false;
};

std::unique_ptr<plugin::PluginRegistry> load_registry(const CommonOptions& o) {
  for (const auto& p : o.plugin_paths) plugin::check_plugin_path_option(p);
  auto reg = std::make_unique<plugin::PluginRegistry>(plugin::LoadOptions{o.allow_insecure, {}});
  reg->load_search_path(plugin::plugin_search_path(o.plugin_paths));
  return reg;
}

// The stages of `spec` with the schema of their plugin, in order (source, transforms, sink, dead
// letter); a stage whose plugin is not loaded is left out.
template <typename Fn>
void each_stage(const config::PipelineSpec& spec, const plugin::PluginRegistry& reg, Fn fn) {
  auto one = [&](const config::StageSpec& stage, sluice_kind kind) {
    if (const auto* plugin = reg.find(kind, stage.type)) fn(stage, plugin->schema_json);
  };
  one(spec.source, SLUICE_KIND_SOURCE);
  for (const auto& t : spec.transforms) one(t, SLUICE_KIND_TRANSFORM);
  one(spec.sink, SLUICE_KIND_SINK);
  if (spec.dead_letter) one(*spec.dead_letter, SLUICE_KIND_SINK);
}

// Refuses pipelines that would read their own output, each alone (config::check_not_own_output)
// or in a cycle through files (config::check_no_file_cycle): at start and for a changed pipeline
// file under --watch.
void check_not_own_output(const std::vector<config::PipelineSpec>& specs,
                          const plugin::PluginRegistry& reg) {
  std::vector<std::pair<std::string, std::vector<config::PathField>>> runs;
  for (const auto& spec : specs) {
    std::vector<config::PathField> fields;
    each_stage(spec, reg, [&](const config::StageSpec& stage, std::string_view schema) {
      auto more = config::path_fields(stage, schema);
      fields.insert(fields.end(), more.begin(), more.end());
    });
    config::check_not_own_output(fields);
    runs.emplace_back(spec.name, std::move(fields));
  }
  config::check_no_file_cycle(runs);
}

// Parses and checks a pipeline file; throws config::ConfigError or plugin::PluginLoadError.
std::vector<std::unique_ptr<pipeline::Pipeline>> prepare(const std::string& file,
                                                         const plugin::PluginRegistry& reg,
                                                         core::AdminSettings* admin = nullptr,
                                                         bool* admin_configured = nullptr) {
  config::PipelineFile pf = config::fuse_transforms(config::load_pipelines(file));
  if (admin) *admin = pf.admin;
  if (admin_configured) *admin_configured = pf.admin_location.line != 0;
  std::vector<std::unique_ptr<pipeline::Pipeline>> out;
  std::vector<config::PipelineSpec> specs;
  for (auto& spec : pf.pipelines) {
    out.push_back(std::make_unique<pipeline::Pipeline>(spec, reg));
    specs.push_back(out.back()->spec());
  }
  check_not_own_output(specs, reg);
  return out;
}

// One line per pipeline, whatever its name or a plugin's failure message holds (core::one_line).
void print_summary(const pipeline::Summary& s, const std::vector<middleware::StageStats>& stats) {
  double rate = s.seconds > 0 ? static_cast<double>(s.records_in) / s.seconds : 0;
  std::string line = fmt::format(
      "pipeline {}: {} records in, {} delivered, {} dead-lettered, {} filtered, {} rejected",
      s.pipeline, s.records_in, s.delivered, s.dead_lettered, s.filtered, s.rejected);
  if (s.not_committed > 0)  // exactly-once: not delivered, whatever the sink took
    line += fmt::format(
        ", {} not committed (their transaction was aborted: the next run reads them again)",
        s.not_committed);
  line += fmt::format("; {} written by the sink; {:.2f} s, {:.0f} records/s", s.sink_records,
                      s.seconds, rate);
  for (const auto& st : stats)
    if (st.pipeline == s.pipeline)
      line += fmt::format("; batch size {}, concurrency {}, peak memory {:.0f} MB",
                          st.batch_size.current, st.concurrency.current, st.memory.peak_mb);
  if (s.failed) line += "; FAILED: " + s.failure;
  std::cout << core::one_line(line) << std::endl;
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

// While sluice sets up (loads plugins, reads the pipeline file) or shuts down (destroys the
// plugin instances, after the last commit), a thread takes SIGINT and SIGTERM (blocked in every
// thread) and ends the process with `status`; end() stops it, and a signal after that stays
// pending for the run's own handling.
class StopsEndRun {
 public:
  StopsEndRun(int status, const char* doing)
      : thread_([this, status, doing] {
          sigset_t stops;
          sigemptyset(&stops);
          sigaddset(&stops, SIGINT);
          sigaddset(&stops, SIGTERM);
          while (!over_.load()) {
            timespec wait{0, 50'000'000};
            const int sig = sigtimedwait(&stops, nullptr, &wait);
            if (sig <= 0) continue;
            say_error(fmt::format("signal {} received while sluice was {}; exiting with status {}",
                                  sig, doing, status));
            sluice::pipeline::exit_now(status);
          }
        }) {}
  ~StopsEndRun() { end(); }
  StopsEndRun(const StopsEndRun&) = delete;
  StopsEndRun& operator=(const StopsEndRun&) = delete;
  void end() {
    over_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> over_{false};
  std::thread thread_;
};

int cmd_run(const std::string& file, const CommonOptions& common, const RunOptions& options) {
  // Signals are taken by one thread with sigwait, so no handler runs inside the runtime.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Until the pipelines are about to start, a SIGINT or SIGTERM ends the run at once: the setup
  // may never return (a pipeline file or `${file:}` that is a FIFO no one writes, a plugin
  // whose constructor hangs at load), and nothing has been started that a stop would drain.
  StopsEndRun setup_stops(0,
                          "setting up (loading plugins, reading the pipeline file): nothing was "
                          "started");
  // And once the run is over (drained, committed, summarised), while the plugin instances are
  // destroyed: a destroy that does not return must not keep a stop waiting (declared before the
  // supervisor, so it outlives the stages).
  std::optional<StopsEndRun> teardown_stops;

  // Plugin files written from now on may postdate the copies loaded: the watch checks them.
  const auto loaded_since = std::filesystem::file_time_type::clock::now();
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
  if (!admin_settings.token.empty()) {
    secrets.push_back(admin_settings.token);
    // A plugin that knows the token (a config value, a guess) could show it in a stats metric
    // name or a dead-letter header; each pipeline masks it as one of its own secrets.
    for (const auto& p : pipelines) p->add_secrets({admin_settings.token});
  }
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

  // A SIGINT or SIGTERM that came since the setup's watch ended is taken now, before any
  // pipeline starts: nothing is read, and the run ends at once (a SIGHUP then has nothing to
  // reload).
  setup_stops.end();
  int stops = 0;
  for (timespec now{0, 0};;) {
    const int sig = sigtimedwait(&set, nullptr, &now);
    if (sig < 0) break;
    if (sig == SIGHUP) continue;
    ++stops;
    spdlog::info("signal {} received before the pipelines started", sig);
    supervisor.request_stop();
  }
  std::atomic<bool> done{false};
  std::thread signals([&] {
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
        say_error("second signal: exiting without draining");
        sluice::pipeline::exit_now(130);
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
          config::PipelineFile changed = config::fuse_transforms(config::load_pipelines(file));
          check_not_own_output(changed.pipelines, *reg);
          reloader.apply_pipeline_file(changed);
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
    // A stop before the first pipeline started creates no stages: the starter ends with the run.
    std::atomic<bool> run_over{false};
    std::thread starter([&] {
      while (!run_over.load() && supervisor.pipelines().front()->stage_files().empty())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (options.plugin_watch && !run_over.load()) reloader.start_watching(loaded_since);
    });
    try {
      code = supervisor.run();
    } catch (...) {
      run_over.store(true);
      starter.join();
      throw;
    }
    run_over.store(true);
    starter.join();
  } catch (...) {
    finish();
    throw;
  }
  finish();
  auto stats = supervisor.stats();
  for (const auto& s : supervisor.summaries()) print_summary(s, stats);
  std::cout.flush();
  teardown_stops.emplace(code,
                         "shutting down (destroying the plugin instances; the run is over and "
                         "committed)");
  return code;
}

// Every path field of every stage, as its schema's path_kind says (config/path_checks.hpp).
void check_paths(const pipeline::Pipeline& p, const plugin::PluginRegistry& reg) {
  each_stage(p.spec(), reg, [](const config::StageSpec& stage, std::string_view schema) {
    config::check_stage_paths(stage, schema);
  });
}

int cmd_validate(const std::string& file, const CommonOptions& common, bool create) {
  auto reg = load_registry(common);
  auto pipelines = prepare(file, *reg);
  for (const auto& p : pipelines) {
    check_paths(*p, *reg);
    if (create) p->create_and_destroy_stages();
    std::cout << "pipeline " << p->name() << ": ok" << (create ? " (every stage created)" : "")
              << "\n";
  }
  return 0;
}

// Exit statuses, as `sluice --help` lists them.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // a pipeline failed at run time; the admin API not reachable
constexpr int kExitUsage = 2;   // bad command line, config or plugin: nothing was started
constexpr const char* kExitCodesHelp =
    "Exit status: 0 done (every pipeline ended or was stopped by a signal and drained); 1 a "
    "pipeline failed at run time, the admin API could not be reached or refused, or an "
    "unexpected error; 2 a usage, config or plugin error (nothing was started); 70 a plugin "
    "called exit() inside a call; 71 a stop could not drain a stuck plugin call; 130 a second "
    "SIGINT/SIGTERM exited without draining.\n"
    "Global options (--log-level, --log-format, --plugin-path, --allow-insecure-plugins) go "
    "before or after the command.";

// The option named `arg` ("--x" or "--x=v") of `app` or an app it falls through to.
const CLI::Option* find_option(const CLI::App* app, const std::string& arg) {
  const std::string name = arg.substr(0, arg.find('='));
  for (; app != nullptr; app = app->get_fallthrough() ? app->get_parent() : nullptr)
    if (const auto* opt = app->get_option_no_throw(name)) return opt;
  return nullptr;
}

// Where a command word is expected in `args`, one that names no command: "unknown command 'rnu';
// did you mean 'run'? ..." (CLI11 itself would only say the argument was not expected).
std::optional<std::string> unknown_command(const CLI::App* app,
                                           const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") return std::nullopt;
    if (arg.starts_with("-")) {
      const auto* opt = find_option(app, arg);
      if (opt && opt->get_type_size_max() > 0 && arg.find('=') == std::string::npos) ++i;
      continue;
    }
    const auto subs = app->get_subcommands([](const CLI::App*) { return true; });
    if (subs.empty()) return std::nullopt;  // a positional argument, not a command
    std::vector<std::string> names;
    for (const auto* sub : subs) {
      if (sub->check_name(arg))
        return unknown_command(sub, std::vector<std::string>(args.begin() + i + 1, args.end()));
      names.push_back(sub->get_name());
    }
    const auto suggestion = config::closest_name(arg, names);
    return fmt::format("unknown command '{}'; {}commands: {}", arg,
                       suggestion ? fmt::format("did you mean '{}'? ", *suggestion) : "",
                       config::join_names(names));
  }
  return std::nullopt;
}

// Parses the command line; a usage error is said on stderr with the way to --help, and exit 2.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (const auto unknown = unknown_command(&app, args)) {
    std::cerr << *unknown << "\nRun with --help for more information." << std::endl;
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and the --help hint
    return kExitUsage;
  }
  return std::nullopt;
}

// Everything the command line sets, and the subcommands to tell which one was given.
struct CommandLine {
  std::string log_level = "info", log_format = "text";
  CommonOptions common;
  std::string file;
  RunOptions run_options;
  bool no_plugin_watch = false;
  bool allow_core_dumps = false;
  bool validate_create = false;
  std::string admin_url, admin_file, stage;
  std::vector<CLI::Option*> url_options;  // one --url per admin client subcommand
  bool stats_json = false, top_once = false;
  std::string import_output;
  std::vector<std::string> test_files;
  CLI::App* test = nullptr;
  CLI::App *run, *stats, *top, *reload, *validate, *list, *inspect, *version, *import_connect;
};

void define_global_options(CLI::App& app, CommandLine& c) {
  app.add_option("--log-level", c.log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-format", c.log_format, "text|json")->check(CLI::IsMember({"text", "json"}));
  app.add_option("--plugin-path", c.common.plugin_paths,
                 "folder (or .so) searched for plugins before SLUICE_PLUGIN_PATH and the built-in "
                 "one; repeatable")
      ->allow_extra_args(false);
  app.add_flag("--allow-insecure-plugins", c.common.allow_insecure,
               "load plugins that other users could change (see README)");
}

// `stats`, `top` and `reload` find the admin API the same way.
void define_admin_client_options(CLI::App* sub, CommandLine& c) {
  sub->add_option("file,--config", c.admin_file,
                  "pipeline file or folder whose admin: section gives the address");
  auto* url =
      sub->add_option("--url", c.admin_url,
                      fmt::format("admin API address (wins over FILE; default: the file's admin: "
                                  "section, else {})",
                                  cli::kDefaultAdminUrl));
  c.url_options.push_back(url);
}

// A file path a run will write: refused on the command line (exit 2) if it names a folder or its
// folder does not exist, rather than warned about every second of the run. The file is replaced
// by a rename, so anything there but a regular file (or a link to one) is refused too: the run
// would put a regular file in place of /dev/null, a FIFO or /dev/stdout.
std::string writable_file_path(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path file(path);
  if (std::filesystem::is_directory(file, ec)) return "'" + path + "' is a folder, not a file";
  const auto target = std::filesystem::status(file, ec).type();
  if (target != std::filesystem::file_type::not_found &&
      target != std::filesystem::file_type::regular)
    return "'" + path +
           "' is not a regular file (a device, FIFO or socket): it would be replaced by one";
  const std::filesystem::path folder = file.has_parent_path() ? file.parent_path() : ".";
  if (!std::filesystem::is_directory(folder, ec))
    return "the folder '" + folder.string() + "' of '" + path + "' does not exist";
  // In a folder others can write (/tmp), what is there must be ours (README: another local user).
  return sluice::files::distrust_reason(path, sluice::files::Use::state);
}

void define_subcommands(CLI::App& app, CommandLine& c) {
  c.run = app.add_subcommand("run", "run the pipelines of a YAML file or folder");
  c.run->add_option("file", c.file, "pipeline YAML file or folder")->required();
  c.run
      ->add_option("--stats-file", c.run_options.stats_file,
                   "rewrite this file with the stats JSON every second")
      ->check(writable_file_path);
  c.run->add_option("--admin", c.run_options.admin,
                    "admin API address HOST:PORT, or off (default: the file's admin: section, "
                    "else 127.0.0.1:8088)");
  c.run->add_flag("--watch", c.run_options.watch, "reload the pipeline file when it changes");
  c.run->add_flag("--allow-core-dumps", c.allow_core_dumps, "let a crash write a core file");
  c.run->add_flag("--no-plugin-watch", c.no_plugin_watch,
                  "do not reload plugins when their files change");
  c.stats = app.add_subcommand("stats", "print the running pipelines' stats as a table");
  define_admin_client_options(c.stats, c);
  c.stats->add_flag("--json", c.stats_json, "print the raw /stats JSON");
  c.top = app.add_subcommand("top", "live view of the running pipelines (q or Ctrl-C quits)");
  define_admin_client_options(c.top, c);
  c.top->add_flag("--once", c.top_once, "print one frame and exit");
  c.reload = app.add_subcommand("reload", "reload plugins of a running sluice");
  define_admin_client_options(c.reload, c);
  c.reload->add_option("--stage", c.stage, "only this stage (its instance name)");
  c.validate = app.add_subcommand(
      "validate", "check a pipeline file without running it: config, plugins and paths");
  c.validate->add_option("file", c.file, "pipeline YAML file or folder")->required();
  c.validate->add_flag("--create", c.validate_create,
                       "also create every stage's plugin instance and destroy it again");
  auto* plugins = app.add_subcommand("plugins", "list or inspect plugins");
  plugins->require_subcommand(1);
  c.list = plugins->add_subcommand("list", "every plugin on the search path");
  c.inspect = plugins->add_subcommand(
      "inspect", "a plugin's metadata and config schema, every attribute, checked");
  c.inspect->add_option("plugin", c.file, "plugin name (searched on the plugin path) or .so file")
      ->required();
  c.version = app.add_subcommand("version", "print the version");
  auto* import = app.add_subcommand("import", "turn another runtime's config into a pipeline");
  import->require_subcommand(1);
  c.import_connect = import->add_subcommand(
      "kafka-connect", "a Kafka Connect connector config (.json or .properties) as pipeline YAML");
  c.import_connect->add_option("file", c.file, "connector config file")->required();
  c.import_connect->add_option("-o,--output", c.import_output, "write here instead of stdout");
  c.test = app.add_subcommand(
      "test",
      "run the tests declared beside pipelines (tests: or FILE.tests.yaml) through their "
      "transforms, without source and sink");
  c.test->add_option("files", c.test_files, "pipeline files (or FILE.tests.yaml)")->required();
  // Global options given after the subcommand apply too.
  for (auto* sub : {c.run, c.stats, c.top, c.reload, c.validate, plugins, c.list, c.inspect,
                    c.version, import, c.import_connect, c.test})
    sub->fallthrough();
}

// Where `stats`, `top` and `reload` find the admin API (see cli::resolve_admin_target).
cli::AdminTarget admin_target(const CommandLine& c) {
  const bool url_given = std::any_of(c.url_options.begin(), c.url_options.end(),
                                     [](const CLI::Option* o) { return o->count() > 0; });
  return cli::resolve_admin_target(url_given ? std::optional(c.admin_url) : std::nullopt,
                                   c.admin_file);
}

int dispatch(CommandLine& c) {
  if (c.version->parsed()) {
    std::cout << "sluice " << SLUICE_VERSION << " (plugin ABI " << SLUICE_ABI_MAJOR << "."
              << SLUICE_ABI_MINOR << ")\n";
    return kExitOk;
  }
  if (c.run->parsed()) {
    c.run_options.plugin_watch = !c.no_plugin_watch;
    return cmd_run(c.file, c.common, c.run_options);
  }
  if (c.stats->parsed()) return cli::run_stats_command(admin_target(c), c.stats_json);
  if (c.top->parsed()) return cli::run_top_command(admin_target(c), c.top_once);
  if (c.reload->parsed()) return cli::run_reload_command(admin_target(c), c.stage);
  if (c.validate->parsed()) return cmd_validate(c.file, c.common, c.validate_create);
  if (c.list->parsed()) return cli::run_plugins_list(*load_registry(c.common));
  if (c.test->parsed())
    return cli::run_pipeline_tests(c.test_files, *load_registry(c.common), std::cout);
  if (c.import_connect->parsed()) {
    const auto reg = load_registry(c.common);
    return cli::run_import_kafka_connect(
        c.file, c.import_output,
        [&reg](sluice_kind kind, const std::string& type) -> std::optional<std::string> {
          const auto* plugin = reg->find(kind, type);
          return plugin ? std::optional(plugin->schema_json) : std::nullopt;
        });
  }
  if (c.inspect->parsed())
    return cli::run_plugins_inspect(c.file, plugin::LoadOptions{c.common.allow_insecure, {}},
                                    [&c] { return load_registry(c.common); });
  return kExitUsage;
}

}  // namespace

// Large allocations (a big record's copies, a batch's arrays) get pages of their own, which go
// back to the kernel when freed. glibc otherwise raises its mmap threshold after the first such
// free (up to 32 MB) and serves later ones from per-thread heaps that keep their pages: with
// 900 KB records, RSS passed a 64 MB memory limit while the runtime held under 1 MB of records,
// and the run stopped as if a plugin leaked. A MALLOC_MMAP_THRESHOLD_ in the environment wins.
static void return_large_allocations() {
  constexpr int kMmapThreshold = 256 * 1024;
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
}

int main(int argc, char** argv) {
  return_large_allocations();
  if (argc > 1 &&
      std::string_view(argv[1]) == "plugin-host") {  // hidden: an isolated stage's child
    const char* format = std::getenv(core::kCrashLineFormatEnv);
    core::set_json_crash_lines(format != nullptr && std::string_view(format) == "json");
    return isolation::plugin_host_main(argc, argv);
  }
  CLI::App app{"sluice: a pipeline runtime with plugins and an adaptive middleware"};
  app.require_subcommand(1);
  app.footer(kExitCodesHelp);
  CommandLine c;
  define_global_options(app, c);
  define_subcommands(app, c);
  if (const auto code = parse_command_line(app, argc, argv)) return *code;
  setup_logging(c.log_level, c.log_format);
  cli::harden_process(c.allow_core_dumps);
  try {
    return dispatch(c);
  } catch (const config::ConfigError& e) {
    say_error(e.what());
    return kExitUsage;
  } catch (const admin::AdminError& e) {
    say_error(e.what());
    return kExitUsage;
  } catch (const plugin::PluginLoadError& e) {
    say_error(e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    say_error(std::string("error: ") + e.what());
    return kExitFailed;
  }
}
