// Parses the stats JSON into rows and draws them as an aligned table and a `top` frame.
#include "admin/stats_view.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

#include "core/log_line.hpp"

namespace sluice::admin {
namespace {

using Value = rapidjson::Value;

const Value* member(const Value& object, const char* name) {
  if (!object.IsObject()) return nullptr;
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

// Numbers may be null (non-finite) or missing in an older server's output: read them as 0.
double number(const Value& object, const char* section, const char* name) {
  const Value* s = member(object, section);
  const Value* v = s ? member(*s, name) : nullptr;
  return v && v->IsNumber() ? v->GetDouble() : 0.0;
}

uint64_t count(const Value& object, const char* section, const char* name) {
  const Value* s = member(object, section);
  const Value* v = s ? member(*s, name) : nullptr;
  if (v && v->IsUint64()) return v->GetUint64();
  return v && v->IsNumber() && v->GetDouble() > 0 ? static_cast<uint64_t>(v->GetDouble()) : 0;
}

std::string state_of(const StageRow& r) {
  if (r.paused && (r.state.empty() || r.state == "running")) return "paused";
  return r.state.empty() ? "-" : r.state;
}

// Columns are padded to their widest cell; `right` marks the numeric ones. The last column is not
// padded, so lines carry no trailing blanks.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<bool>& right) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) out += "  ";
      const bool last = c + 1 == cells.size();
      const size_t pad = width[c] - std::min(width[c], cells[c].size());
      if (right[c]) out.append(pad, ' ');
      out += cells[c];
      if (!right[c] && !last) out.append(pad, ' ');
    }
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& row : rows) out += line(row);
  return out;
}

std::string percent(double fraction_or_percent, bool is_fraction) {
  const double p = is_fraction ? fraction_or_percent * 100.0 : fraction_or_percent;
  return std::isfinite(p) ? fmt::format("{:.1f}%", p) : "-";
}

constexpr size_t kDecisionsShown = 4;

std::string rate(double v) { return std::isfinite(v) ? fmt::format("{:.0f}", v) : "-"; }

std::string millis(double v) { return std::isfinite(v) ? fmt::format("{:.3g}", v) : "-"; }

double field(const Value& object, const char* name) {
  const Value* v = member(object, name);
  return v && v->IsNumber() ? v->GetDouble() : 0.0;
}

// Every text of the stats is the server's (a stage or pipeline name, a controller's reason a
// plugin's figures shaped, whatever answers on the admin address) and goes to a terminal: as one
// line of visible text (core::one_line), so no ESC sequence or newline of it reaches the screen.
std::string visible(const Value& v) { return core::one_line({v.GetString(), v.GetStringLength()}); }

std::string label(const Value& object, const char* name) {
  const Value* v = member(object, name);
  return v && v->IsString() ? visible(*v) : "";
}

// The "stages" list of one stage object (absent from an older server's output: none).
std::vector<PositionRow> parse_positions(const Value& stage) {
  std::vector<PositionRow> out;
  const Value* list = member(stage, "stages");
  if (list == nullptr || !list->IsArray()) return out;
  for (const auto& v : list->GetArray()) {
    PositionRow p;
    p.name = label(v, "name");
    p.role = label(v, "role");
    p.plugin = label(v, "plugin");
    p.calls = static_cast<uint64_t>(field(v, "calls"));
    p.records_in = static_cast<uint64_t>(field(v, "records_in"));
    p.records_out = static_cast<uint64_t>(field(v, "records_out"));
    p.elapsed_ms = field(v, "elapsed_ms");
    p.busy_ms = field(v, "busy_ms");
    p.p50_ms = field(v, "p50_ms");
    p.p99_ms = field(v, "p99_ms");
    p.wait_input_ms = field(v, "wait_input_ms");
    p.wait_downstream_ms = field(v, "wait_downstream_ms");
    p.wait_breaker_ms = field(v, "wait_breaker_ms");
    out.push_back(std::move(p));
  }
  return out;
}

// The "controller" object's decisions (absent from an older server's output: none).
std::vector<std::string> parse_decisions(const Value& stage) {
  std::vector<std::string> out;
  const Value* controller = member(stage, "controller");
  const Value* list = controller ? member(*controller, "decisions") : nullptr;
  if (list == nullptr || !list->IsArray()) return out;
  for (const auto& d : list->GetArray())
    out.push_back(fmt::format("{:.1f} s  {}", field(d, "at_s"), label(d, "reason")));
  return out;
}

}  // namespace

std::vector<StageRow> parse_stats(std::string_view json) {
  rapidjson::Document doc;
  // Iterative: the text comes from whatever answers on the admin address, and a recursive parse
  // of JSON nested 100,000 deep runs out of stack. The rows read a fixed depth of it.
  doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
  if (doc.HasParseError())
    throw std::runtime_error(fmt::format("stats are not JSON: {} at offset {}",
                                         rapidjson::GetParseError_En(doc.GetParseError()),
                                         doc.GetErrorOffset()));
  const Value* pipelines = member(doc, "pipelines");
  if (pipelines == nullptr || !pipelines->IsObject())
    throw std::runtime_error("stats JSON has no \"pipelines\" object");

  std::vector<StageRow> rows;
  for (const auto& p : pipelines->GetObject()) {
    const Value* state = member(p.value, "state");
    const Value* stages = member(p.value, "stages");
    if (stages == nullptr || !stages->IsObject() || stages->MemberCount() == 0) {
      // A pipeline that has not started yet still gets a line.
      StageRow r;
      r.pipeline = visible(p.name);
      r.stage = "-";
      r.state = state && state->IsString() ? visible(*state) : "";
      rows.push_back(std::move(r));
      continue;
    }
    for (const auto& s : stages->GetObject()) {
      StageRow r;
      r.pipeline = visible(p.name);
      r.stage = visible(s.name);
      r.state = state && state->IsString() ? visible(*state) : "";
      const Value& v = s.value;
      r.records_in = count(v, "performance", "records_in");
      r.records_out = count(v, "performance", "records_out");
      r.records_done = r.records_out + count(v, "performance", "records_rejected") +
                       count(v, "performance", "records_filtered");
      r.rate = number(v, "performance", "avg_throughput_per_sec");
      r.error_rate_percent = number(v, "performance", "avg_error_rate_percent");
      r.batch_size = static_cast<uint32_t>(count(v, "batch_size", "current"));
      r.concurrency = static_cast<uint32_t>(count(v, "concurrency", "current"));
      r.in_flight = static_cast<uint32_t>(count(v, "concurrency", "in_flight"));
      r.memory_pressure = number(v, "memory", "pressure");
      r.queue_depth = count(v, "backpressure", "queue_depth");
      const Value* bp = member(v, "backpressure");
      const Value* active = bp ? member(*bp, "active") : nullptr;
      r.paused = active && active->IsBool() && active->GetBool();
      r.positions = parse_positions(v);
      r.decisions = parse_decisions(v);
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::string render_stats_table(const std::vector<StageRow>& rows) {
  if (rows.empty()) return "no pipelines\n";
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    cells.push_back({r.pipeline, r.stage, state_of(r), std::to_string(r.records_in),
                     std::to_string(r.records_out), rate(r.rate), std::to_string(r.batch_size),
                     fmt::format("{}/{}", r.in_flight, r.concurrency),
                     std::to_string(r.queue_depth), percent(r.memory_pressure, true),
                     percent(r.error_rate_percent, false)});
  }
  return render_table(
      {"PIPELINE", "STAGE", "STATE", "IN", "OUT", "REC/S", "BATCH", "CONC", "QUEUE", "MEM", "ERR"},
      cells, {false, false, false, true, true, true, true, true, true, true, true});
}

std::string sparkline(std::span<const double> samples) {
  static constexpr std::array<std::string_view, 8> kBars = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  double top = 0;
  for (double v : samples)
    if (std::isfinite(v)) top = std::max(top, v);
  std::string out;
  for (double v : samples) {
    size_t level = 0;
    if (top > 0 && std::isfinite(v) && v > 0)
      level = std::min<size_t>(7, static_cast<size_t>(std::lround(v / top * 7.0)));
    out += kBars[level];
  }
  return out;
}

std::optional<size_t> bottleneck(std::span<const double> busy_fractions) {
  std::optional<size_t> best;
  for (size_t i = 0; i < busy_fractions.size(); ++i)
    if (busy_fractions[i] > 0 && (!best || busy_fractions[i] > busy_fractions[*best])) best = i;
  return best;
}

// Since the previous refresh when there is one with the same positions and no restart, else
// since each position was created.
std::vector<double> TopView::busy_fractions(const StageRow& now, const StageRow* before) {
  std::vector<double> out;
  const bool same = before && before->positions.size() == now.positions.size();
  for (size_t i = 0; i < now.positions.size(); ++i) {
    const PositionRow& p = now.positions[i];
    double busy = p.busy_ms;
    double elapsed = p.elapsed_ms;
    if (same && p.elapsed_ms > before->positions[i].elapsed_ms &&
        p.busy_ms >= before->positions[i].busy_ms) {
      busy -= before->positions[i].busy_ms;
      elapsed -= before->positions[i].elapsed_ms;
    }
    out.push_back(elapsed > 0 ? busy / elapsed : 0.0);
  }
  return out;
}

std::string TopView::render_positions(const Track& t) {
  const auto slowest = bottleneck(t.busy);
  std::vector<std::vector<std::string>> cells;
  for (size_t i = 0; i < t.last.positions.size(); ++i) {
    const PositionRow& p = t.last.positions[i];
    cells.push_back({slowest == i ? "*" : " ", p.name, p.role, std::to_string(p.calls),
                     std::to_string(p.records_in), std::to_string(p.records_out),
                     percent(t.busy[i], true), millis(p.p50_ms), millis(p.p99_ms),
                     millis(p.wait_input_ms), millis(p.wait_downstream_ms),
                     millis(p.wait_breaker_ms)});
  }
  std::string out = render_table(
      {" ", "POSITION", "ROLE", "CALLS", "IN", "OUT", "BUSY", "P50 MS", "P99 MS", "WAIT IN MS",
       "WAIT DOWN MS", "WAIT BRK MS"},
      cells, {false, false, false, true, true, true, true, true, true, true, true, true});
  if (slowest)
    out += fmt::format("bottleneck: {} (busy {})\n", t.last.positions[*slowest].name,
                       percent(t.busy[*slowest], true));
  return out;
}

void TopView::add(const std::vector<StageRow>& rows, double elapsed_s) {
  for (auto& [name, track] : tracks_) track.present = false;
  for (const auto& r : rows) {
    const std::string id = r.pipeline + "\x1f" + r.stage;
    auto it =
        std::find_if(tracks_.begin(), tracks_.end(), [&](const auto& t) { return t.first == id; });
    if (it == tracks_.end()) {
      tracks_.push_back({id, Track{}});
      it = tracks_.end() - 1;
      it->second.throughput = r.rate;
    } else if (elapsed_s > 0 && r.records_done >= it->second.last.records_done) {
      it->second.throughput =
          static_cast<double>(r.records_done - it->second.last.records_done) / elapsed_s;
    } else {
      // The counters went back (a restarted process): start over from the profiler's figure.
      it->second.throughput = r.rate;
    }
    Track& t = it->second;
    t.busy = busy_fractions(r, t.present || !t.history.empty() ? &t.last : nullptr);
    t.last = r;
    t.present = true;
    t.history.push_back(t.throughput);
    while (t.history.size() > history_) t.history.pop_front();
  }
}

std::string TopView::render(std::string_view title, std::string_view status) const {
  std::string out(title);
  out += "\n";
  if (!status.empty()) out += fmt::format("{}\n", status);
  out += "\n";
  std::vector<std::vector<std::string>> cells;
  for (const auto& [id, t] : tracks_) {
    if (!t.present) continue;
    const StageRow& r = t.last;
    const std::vector<double> samples(t.history.begin(), t.history.end());
    cells.push_back({r.pipeline, r.stage, state_of(r), rate(t.throughput),
                     std::to_string(r.batch_size), fmt::format("{}/{}", r.in_flight, r.concurrency),
                     std::to_string(r.queue_depth), percent(r.memory_pressure, true),
                     percent(r.error_rate_percent, false), sparkline(samples)});
  }
  if (cells.empty()) return out + "no pipelines\n";
  out += render_table({"PIPELINE", "STAGE", "STATE", "REC/S", "BATCH", "CONC", "QUEUE", "MEM",
                       "ERR", fmt::format("THROUGHPUT (last {})", history_)},
                      cells, {false, false, false, true, true, true, true, true, true, false});
  for (const auto& [id, t] : tracks_) {
    if (!t.present || t.last.positions.empty()) continue;
    out += fmt::format("\n{} / {}\n", t.last.pipeline, t.last.stage);
    out += render_positions(t);
  }
  for (const auto& [id, t] : tracks_) {
    if (!t.present || t.last.decisions.empty()) continue;
    out += fmt::format("\n{} / {}: controller's last decisions\n", t.last.pipeline, t.last.stage);
    const auto& d = t.last.decisions;
    for (size_t i = d.size() > kDecisionsShown ? d.size() - kDecisionsShown : 0; i < d.size(); ++i)
      out += fmt::format("  {}\n", d[i]);
  }
  return out;
}

}  // namespace sluice::admin
