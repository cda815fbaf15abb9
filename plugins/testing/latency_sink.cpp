// The latency sink: a configurable cost model standing in for a real sink in benchmarks and
// tests (fixed and per-record cost, a concurrency knee, a throughput cap, seeded failures).
//
// Cost of one put of n records, in milliseconds:
//
//   cost = batch_cost_ms + n * record_cost_us / 1000
//   if knee > 0 and active > knee:  cost *= (active / knee)^2
//   with jitter j > 0:              cost *= 1 + j * u, u uniform in [-1, 1) (seeded, per call)
//
// where `active` is the number of puts running at once, this one included, counted when the
// put starts. The square models a backend that degrades faster than linearly once it is
// saturated (lock contention, queueing), so more concurrency past the knee makes every call
// slower and total throughput drops: an adaptive concurrency controller should settle near the
// knee. With capacity_rps > 0, calls also wait for a shared token bucket (records per second
// across all calls) before paying their cost. With measure_latency, the end-to-end latency of
// delivered records (record timestamp to the end of the put) is published as the gauges
// latency_p50_ms / latency_p99_ms / latency_samples (the stats file's "extra").
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sluice/sdk.hpp>
#include <thread>
#include <vector>

#include "capacity_bucket.hpp"
#include "latency_histogram.hpp"

namespace {

using Clock = std::chrono::steady_clock;

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The figures that phases may change over time.
struct CostModel {
  int64_t after_ms = 0;
  double batch_cost_ms = 0;
  double record_cost_us = 0;
  int64_t knee = 0;
  double capacity_rps = 0;
  double failure_rate = 0;
  double jitter = 0;

  double cost_ms(size_t records, int64_t active) const {
    double cost = batch_cost_ms + static_cast<double>(records) * record_cost_us / 1000.0;
    if (knee > 0 && active > knee) {
      const double over = static_cast<double>(active) / static_cast<double>(knee);
      cost *= over * over;
    }
    return cost;
  }
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

class LatencySink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.number("batch_cost_ms").default_value(0.0).min(0).doc("Fixed cost of every put.");
    s.number("record_cost_us").default_value(0.0).min(0).doc("Cost per record of a put.");
    s.integer("knee").default_value(0).min(0).doc(
        "Concurrency knee: with more than `knee` puts at once, each costs (active/knee)^2 "
        "times more; 0 = no knee.");
    s.number("capacity_rps")
        .default_value(0.0)
        .min(0)
        .doc("Cap on records per second across all puts (token bucket; calls wait); 0 = no cap.");
    s.number("failure_rate")
        .default_value(0.0)
        .min(0)
        .max(1)
        .doc("Probability that a put throws sluice::Retriable (after paying its cost).");
    s.number("jitter").default_value(0.0).min(0).max(1).doc(
        "Each put's cost is scaled by 1 + jitter * u, u uniform in [-1, 1) (seeded).");
    s.integer("seed").default_value(0).doc("Seed of the failure sequence.");
    s.string("mode")
        .default_value("sleep")
        .one_of({"sleep", "spin"})
        .doc(
            "sleep: the call sleeps its cost (an I/O-bound sink); spin: it burns CPU (CPU-bound).");
    s.list("phases").doc(
        "Cost phases over wall time since create: [{after_ms, batch_cost_ms, record_cost_us, "
        "knee, capacity_rps, failure_rate, jitter}, ...]; a phase inherits unset fields from the "
        "top-level options.");
    s.integer("phase_cycle_ms")
        .default_value(0)
        .min(0)
        .doc("If > 0, phases repeat with this period; otherwise the last phase stays.");
    s.boolean("measure_latency")
        .default_value(false)
        .doc("Publish end-to-end record latency percentiles as gauges (latency_p50_ms, ...).");
    s.string("record_file")
        .path()
        .default_value("")
        .doc("If set, every delivered record value is appended to this file as a line.");
    s.validator([](const sluice::Config& c) { parse_phases(c); });
    return s;
  }
  static std::string description() { return "A cost model for benchmarks; writes nothing."; }

  LatencySink(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        seed_(static_cast<uint64_t>(c.get_int("seed", 0))),
        spin_(c.get_string("mode", "sleep") == "spin"),
        phases_(parse_phases(c)),
        cycle_ms_(c.get_int("phase_cycle_ms", 0)),
        measure_latency_(c.get_bool("measure_latency", false)),
        created_(Clock::now()) {
    const std::string record_file = c.get_string("record_file");
    if (!record_file.empty()) {
      record_file_.reset(std::fopen(record_file.c_str(), "a"));
      if (!record_file_)
        throw sluice::ConfigError("record_file", "cannot open " + record_file + " for append");
    }
  }

  void put(const sluice::Batch& in, sluice::Output& /*rejects*/) override {
    const int64_t active = active_.fetch_add(1) + 1;
    struct Leave {
      std::atomic<int64_t>& n;
      ~Leave() { n.fetch_sub(1); }
    } leave{active_};
    // Reported before the cost is computed, so a test can hold calls here to make them overlap.
    host_.gauge_set("active_puts", static_cast<double>(active));

    const CostModel& model = current_model();
    const uint64_t call = calls_.fetch_add(1);
    const double draw = static_cast<double>(mix(seed_ ^ mix(call)) >> 11) * 0x1.0p-53;
    const bool fail = draw < model.failure_rate;
    // A second draw from the same call number, so jitter and failures are independent.
    const double spread = static_cast<double>(mix(seed_ ^ mix(~call)) >> 11) * 0x1.0p-53;

    if (model.capacity_rps > 0) bucket_.wait(in.size(), model.capacity_rps);
    const double cost =
        model.cost_ms(in.size(), active) * (1.0 + model.jitter * (2.0 * spread - 1.0));
    host_.gauge_set("last_cost_ms", cost);
    pay(cost);
    if (fail) throw sluice::Retriable("latency sink: injected failure");

    if (record_file_) {
      std::lock_guard lock(record_mutex_);
      for (const auto& r : in) {
        std::fwrite(r.value().data(), 1, r.value().size(), record_file_.get());
        std::fputc('\n', record_file_.get());
      }
      std::fflush(record_file_.get());
    }
    host_.counter_add("records", static_cast<double>(in.size()));
    if (measure_latency_) record_latency(in);
  }

 private:
  static std::vector<CostModel> parse_phases(const sluice::Config& c) {
    CostModel base;
    base.batch_cost_ms = c.get_double("batch_cost_ms", 0);
    base.record_cost_us = c.get_double("record_cost_us", 0);
    base.knee = c.get_int("knee", 0);
    base.capacity_rps = c.get_double("capacity_rps", 0);
    base.failure_rate = c.get_double("failure_rate", 0);
    base.jitter = c.get_double("jitter", 0);
    std::vector<CostModel> out;
    const rapidjson::Value* phases = c.find("phases");
    if (phases && !phases->IsArray())
      throw sluice::ConfigError("phases", "phases must be a list of maps");
    if (!phases || phases->Empty()) {
      out.push_back(base);
      return out;
    }
    int64_t previous = -1;
    for (rapidjson::SizeType i = 0; i < phases->Size(); ++i) {
      const std::string where = "phases[" + std::to_string(i) + "]";
      const rapidjson::Value& p = (*phases)[i];
      if (!p.IsObject()) throw sluice::ConfigError("phases", where + " must be a map");
      auto number = [&](const char* name, double fallback) {
        auto it = p.FindMember(name);
        if (it == p.MemberEnd()) return fallback;
        if (!it->value.IsNumber() || it->value.GetDouble() < 0)
          throw sluice::ConfigError("phases", where + "." + name + " must be a number >= 0");
        return it->value.GetDouble();
      };
      CostModel m = base;
      m.after_ms = static_cast<int64_t>(number("after_ms", 0));
      m.batch_cost_ms = number("batch_cost_ms", base.batch_cost_ms);
      m.record_cost_us = number("record_cost_us", base.record_cost_us);
      m.knee = static_cast<int64_t>(number("knee", static_cast<double>(base.knee)));
      m.capacity_rps = number("capacity_rps", base.capacity_rps);
      m.failure_rate = number("failure_rate", base.failure_rate);
      m.jitter = number("jitter", base.jitter);
      if (m.failure_rate > 1)
        throw sluice::ConfigError("phases", where + ".failure_rate must be at most 1");
      if (m.jitter > 1) throw sluice::ConfigError("phases", where + ".jitter must be at most 1");
      if (m.after_ms <= previous)
        throw sluice::ConfigError("phases", where + ".after_ms must grow from phase to phase");
      previous = m.after_ms;
      out.push_back(m);
    }
    if (out.front().after_ms != 0)
      throw sluice::ConfigError("phases", "phases[0].after_ms must be 0");
    return out;
  }

  const CostModel& current_model() const {
    if (phases_.size() == 1) return phases_.front();
    int64_t t =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - created_).count();
    if (cycle_ms_ > 0) t %= cycle_ms_;
    const CostModel* current = &phases_.front();
    for (const auto& p : phases_)
      if (p.after_ms <= t) current = &p;
    return *current;
  }

  // The put is complete: each record's latency is now - its timestamp (both wall clock, ms).
  void record_latency(const sluice::Batch& in) {
    const double now_ms = std::chrono::duration<double, std::milli>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    std::lock_guard lock(latency_mutex_);
    for (const auto& r : in)
      if (r.timestamp_ms() > 0) latency_.add(now_ms - static_cast<double>(r.timestamp_ms()));
    // Percentiles scan the histogram: publish a few times a second only.
    const auto now = Clock::now();
    if (now - last_published_ < std::chrono::milliseconds(200)) return;
    last_published_ = now;
    host_.gauge_set("latency_p50_ms", latency_.quantile(0.50));
    host_.gauge_set("latency_p99_ms", latency_.quantile(0.99));
    host_.gauge_set("latency_samples", static_cast<double>(latency_.total()));
  }

  void pay(double cost_ms) const {
    if (cost_ms <= 0) return;
    const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double, std::milli>(cost_ms));
    if (!spin_) {
      std::this_thread::sleep_until(until);
      return;
    }
    while (Clock::now() < until) {
    }
  }

  sluice::Host& host_;
  const uint64_t seed_;
  const bool spin_;
  const std::vector<CostModel> phases_;
  const int64_t cycle_ms_;
  const Clock::time_point created_;
  const bool measure_latency_;

  std::atomic<int64_t> active_{0};
  std::atomic<uint64_t> calls_{0};
  sluice_testing::CapacityBucket bucket_;
  std::mutex latency_mutex_;
  sluice_testing::LatencyHistogram latency_;
  Clock::time_point last_published_{};
  std::mutex record_mutex_;
  std::unique_ptr<std::FILE, FileCloser> record_file_;
};

}  // namespace

SLUICE_MODULE("testing", "0.1.0", SLUICE_SINK(LatencySink, "latency"))
