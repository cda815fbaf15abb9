// `sluice stats`, `top` and `reload`: clients of a running process's admin API.
#pragma once

#include <optional>
#include <string>

namespace sluice::cli {

// The admin API's default address, as `--url` takes it.
inline constexpr const char* kDefaultAdminUrl = "http://127.0.0.1:8088";

// The admin API a client subcommand talks to, and where that address came from, so an error
// can say which address was tried and how to choose another.
struct AdminTarget {
  std::string url;
  std::string origin;  // "--url", "the admin: section of FILE" or "the default address"
  std::string token;   // bearer token: the file's admin.token, else SLUICE_ADMIN_TOKEN
};

// `--url` wins; else the `admin:` section of the pipeline file or folder (as `sluice run FILE`
// would serve it; a wildcard host is reached on loopback); else 127.0.0.1:8088. Throws
// config::ConfigError for a file that does not load or whose admin API is off.
AdminTarget resolve_admin_target(const std::optional<std::string>& url_flag,
                                 const std::string& pipeline_file);

// Fetches /stats and prints one row per pipeline stage (or the raw JSON with `json`).
// Returns 0, or 1 when the API cannot be reached or answers with an error (said on stderr).
int run_stats_command(const AdminTarget& target, bool json);

// A live view of /stats redrawn every second until q, Ctrl-C or SIGTERM; `once` prints a
// single frame without escape codes and returns (1 if the fetch failed).
int run_top_command(const AdminTarget& target, bool once);

// The same at an address given as --url.
int run_stats_command(const std::string& url, bool json);
int run_top_command(const std::string& url, bool once);

// POST /reload (of one stage, or all when `stage` is empty); 0 when the API says it worked.
int run_reload_command(const AdminTarget& target, const std::string& stage);

}  // namespace sluice::cli
