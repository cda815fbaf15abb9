// The `sluice stats` and `sluice top` subcommands: clients of a running process's admin API.
#pragma once

#include <string>

namespace sluice::cli {

// The admin API's default address, as `--url` takes it.
inline constexpr const char* kDefaultAdminUrl = "http://127.0.0.1:8088";

// Fetches URL/stats and prints one row per pipeline stage (or the raw JSON with `json`).
// Returns 0, or 1 when the API cannot be reached or answers with an error (said on stderr).
int run_stats_command(const std::string& url, bool json);

// A live view of URL/stats redrawn every second until q, Ctrl-C or SIGTERM; `once` prints a
// single frame without escape codes and returns (1 if the fetch failed).
int run_top_command(const std::string& url, bool once);

}  // namespace sluice::cli
