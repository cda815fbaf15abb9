// Parses the stats JSON into rows and draws them as an aligned table and a `top` frame.
#include "admin/stats_view.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

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

std::string rate(double v) { return std::isfinite(v) ? fmt::format("{:.0f}", v) : "-"; }

}  // namespace

std::vector<StageRow> parse_stats(std::string_view json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
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
      r.pipeline = p.name.GetString();
      r.stage = "-";
      r.state = state && state->IsString() ? state->GetString() : "";
      rows.push_back(std::move(r));
      continue;
    }
    for (const auto& s : stages->GetObject()) {
      StageRow r;
      r.pipeline = p.name.GetString();
      r.stage = s.name.GetString();
      r.state = state && state->IsString() ? state->GetString() : "";
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
  return out;
}

}  // namespace sluice::admin
