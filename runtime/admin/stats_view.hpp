// Terminal views of the stats JSON: the `sluice stats` table and the `sluice top` frame.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::admin {

// One stage position's profile (the "stages" list of a stage in the stats JSON).
struct PositionRow {
  std::string name;  // "orders.transform[1].fields"
  std::string role;
  std::string plugin;
  uint64_t calls = 0;
  uint64_t records_in = 0;
  uint64_t records_out = 0;
  double elapsed_ms = 0;
  double busy_ms = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double wait_input_ms = 0;
  double wait_downstream_ms = 0;
  double wait_breaker_ms = 0;
};

// The bottleneck among positions with these busy fractions (time inside the plugin over wall
// time): the highest; none (nullopt) when no position was busy at all.
std::optional<size_t> bottleneck(std::span<const double> busy_fractions);

// The figures an operator watches for one pipeline stage.
struct StageRow {
  std::string pipeline;
  std::string stage;
  std::string state;  // the pipeline's state from /stats; "" in a stats file, which has none
  uint64_t records_in = 0;
  uint64_t records_out = 0;
  uint64_t records_done = 0;  // out + rejected + filtered: what the stage finished with
  double rate = 0;            // the profiler's mean records/s
  uint32_t batch_size = 0;
  uint32_t concurrency = 0;
  uint32_t in_flight = 0;
  uint64_t queue_depth = 0;
  double memory_pressure = 0;  // 0..1
  double error_rate_percent = 0;
  bool paused = false;                 // intake held back by backpressure
  std::vector<PositionRow> positions;  // source, transforms, sink, dead-letter sink
  // The concurrency controller's last decisions, oldest first: "12.3 s  cut 8 -> 4: ...".
  std::vector<std::string> decisions;
};

// Reads the /stats JSON (or the --stats-file one: the same shape without pipeline state).
// Throws std::runtime_error saying what is wrong with it. Every text in the rows (names, state,
// reasons) is one line of visible text, control characters escaped (core::one_line): the JSON
// is whatever answers on the admin address, and plugins chose some of its texts.
std::vector<StageRow> parse_stats(std::string_view json);

// One row per pipeline stage under a header; columns aligned.
std::string render_stats_table(const std::vector<StageRow>& rows);

// ▁▂▃▄▅▆▇█, one character per sample, scaled to the largest sample (all ▁ when that is 0).
std::string sparkline(std::span<const double> samples);

// `sluice top`: keeps each stage's recent throughput between refreshes and draws a frame.
class TopView {
 public:
  explicit TopView(size_t history = 30) : history_(history) {}

  // One refresh; `elapsed_s` since the previous one. A stage's throughput is the change of its
  // finished-record count over that time, or the profiler's mean on the first sample.
  void add(const std::vector<StageRow>& rows, double elapsed_s);

  // The frame as plain text (no escape codes): `title`, an optional `status` line (e.g. a
  // failed fetch), then one row per stage with its sparkline, then each stage's positions with
  // their busy fraction, call times and waits, the bottleneck marked, and the controller's last
  // decisions with their reasons.
  std::string render(std::string_view title, std::string_view status = {}) const;

 private:
  struct Track {
    StageRow last;
    double throughput = 0;
    std::deque<double> history;
    std::vector<double> busy;  // each position's busy fraction since the previous refresh
    bool present = false;      // in the latest refresh
  };
  static std::vector<double> busy_fractions(const StageRow& now, const StageRow* before);
  static std::string render_positions(const Track& track);
  size_t history_;
  std::vector<std::pair<std::string, Track>> tracks_;  // first-seen order
};

}  // namespace sluice::admin
