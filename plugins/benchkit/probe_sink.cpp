// The probe sink: a latency-sink-like cost model that also measures, at the sink, what the
// benchmarks report: end-to-end latency (record timestamp to put completion), loss and
// duplicates (by source offset), written to a JSON report file when the instance goes away.
//
// plugins/testing's latency sink models cost only; a benchmark that must show p99 latency or
// "no record lost or duplicated" needs the figures taken where the record is acknowledged.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <sluice/sdk.hpp>
#include <string>
#include <thread>
#include <vector>

#include "capacity_bucket.hpp"
#include "latency_histogram.hpp"

namespace {

using SteadyClock = std::chrono::steady_clock;

// Which offsets of each partition were seen, so a redelivered record counts as a duplicate.
class OffsetSet {
 public:
  // True if (partition, offset) had not been seen before.
  bool insert(int32_t partition, int64_t offset) {
    if (offset < 0) return true;
    auto& bits = seen_[partition];
    const auto i = static_cast<size_t>(offset);
    if (i >= bits.size()) bits.resize(std::max(i + 1, bits.size() * 2), false);
    if (bits[i]) return false;
    bits[i] = true;
    return true;
  }

 private:
  std::map<int32_t, std::vector<bool>> seen_;
};

class ProbeSink final : public sluice::Sink {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.number("batch_cost_ms").default_value(0.0).min(0).doc("Fixed cost of every put (sleeps).");
    s.number("record_cost_us").default_value(0.0).min(0).doc("Cost per record of a put.");
    s.integer("knee").default_value(0).min(0).doc(
        "With more than `knee` puts at once each costs (active/knee)^2 times more; 0 = none.");
    s.number("capacity_rps")
        .default_value(0.0)
        .min(0)
        .doc("Cap on records per second across all puts (calls wait); 0 = no cap.");
    s.boolean("track_offsets")
        .default_value(true)
        .doc("Count duplicates by (partition, offset); costs one bit per offset.");
    s.string("report_file")
        .default_value("")
        .doc("If set, a JSON report of the figures is written here on flush and on destroy.");
    return s;
  }
  static std::string description() {
    return "Benchmark sink: cost model plus end-to-end latency, loss and duplicate accounting.";
  }

  ProbeSink(const sluice::Config& c, sluice::Host& host)
      : host_(host),
        batch_cost_ms_(c.get_double("batch_cost_ms", 0)),
        record_cost_us_(c.get_double("record_cost_us", 0)),
        knee_(c.get_int("knee", 0)),
        capacity_rps_(c.get_double("capacity_rps", 0)),
        track_offsets_(c.get_bool("track_offsets", true)),
        report_file_(c.get_string("report_file")) {}

  ~ProbeSink() override { write_report(); }

  void put(const sluice::Batch& in, sluice::Output& /*rejects*/) override {
    const int64_t active = active_.fetch_add(1) + 1;
    struct Leave {
      std::atomic<int64_t>& n;
      ~Leave() { n.fetch_sub(1); }
    } leave{active_};

    if (capacity_rps_ > 0) bucket_.wait(in.size(), capacity_rps_);
    double cost = batch_cost_ms_ + static_cast<double>(in.size()) * record_cost_us_ / 1000.0;
    if (knee_ > 0 && active > knee_) {
      const double over = static_cast<double>(active) / static_cast<double>(knee_);
      cost *= over * over;
    }
    if (cost > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(cost));

    // The put is complete here: this is the moment the record counts as acknowledged.
    const double now_ms = std::chrono::duration<double, std::milli>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    std::lock_guard lock(mutex_);
    for (const auto& r : in) {
      ++records_;
      if (track_offsets_ && !offsets_.insert(r.partition(), r.offset())) ++duplicates_;
      if (r.timestamp_ms() > 0) latency_.add(now_ms - static_cast<double>(r.timestamp_ms()));
    }
    ++puts_;
    if (first_put_ms_ == 0) first_put_ms_ = now_ms;
    last_put_ms_ = now_ms;
    // Percentiles scan the histogram, so gauges are refreshed a few times a second only.
    const auto now = SteadyClock::now();
    if (now - last_gauges_ >= std::chrono::milliseconds(250)) {
      last_gauges_ = now;
      publish_gauges();
    }
  }

  void flush() override {
    std::lock_guard lock(mutex_);
    publish_gauges();
    write_report_locked();
  }

 private:
  void publish_gauges() {
    host_.gauge_set("probe_records", static_cast<double>(records_));
    host_.gauge_set("probe_duplicates", static_cast<double>(duplicates_));
    host_.gauge_set("probe_latency_p50_ms", latency_.quantile(0.50));
    host_.gauge_set("probe_latency_p99_ms", latency_.quantile(0.99));
  }

  void write_report() {
    std::lock_guard lock(mutex_);
    write_report_locked();
  }

  void write_report_locked() {
    if (report_file_.empty()) return;
    const std::string tmp = report_file_ + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return;  // a destructor cannot report; the harness sees a missing file
    const double active_s = (last_put_ms_ - first_put_ms_) / 1000.0;
    std::fprintf(
        f,
        "{\"records\": %llu, \"duplicates\": %llu, \"puts\": %llu, "
        "\"latency_samples\": %llu, \"latency_p50_ms\": %.3f, \"latency_p90_ms\": %.3f, "
        "\"latency_p99_ms\": %.3f, \"latency_max_ms\": %.3f, \"latency_mean_ms\": %.3f, "
        "\"first_to_last_put_s\": %.3f}\n",
        static_cast<unsigned long long>(records_), static_cast<unsigned long long>(duplicates_),
        static_cast<unsigned long long>(puts_), static_cast<unsigned long long>(latency_.total()),
        latency_.quantile(0.50), latency_.quantile(0.90), latency_.quantile(0.99), latency_.max(),
        latency_.mean(), active_s);
    std::fclose(f);
    std::rename(tmp.c_str(), report_file_.c_str());
  }

  sluice::Host& host_;
  const double batch_cost_ms_;
  const double record_cost_us_;
  const int64_t knee_;
  const double capacity_rps_;
  const bool track_offsets_;
  const std::string report_file_;

  std::atomic<int64_t> active_{0};
  sluice_testing::CapacityBucket bucket_;

  std::mutex mutex_;  // guards everything below
  sluice_testing::LatencyHistogram latency_;
  OffsetSet offsets_;
  uint64_t records_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t puts_ = 0;
  double first_put_ms_ = 0;
  double last_put_ms_ = 0;
  SteadyClock::time_point last_gauges_{};
};

}  // namespace

SLUICE_MODULE("benchkit", "0.1.0", SLUICE_SINK(ProbeSink, "probe"))
