// Chooses how many connections the projection writes a batch through (`writers: auto`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace sluice_projection {

// A hill climb over the number of writers, fed with measured batches instead of reading a clock,
// so that its tests can replay any rate curve deterministically.
//
// It starts at 1 and steps up while each step gains at least min_gain over the one before; then
// it settles. A settled tuner keeps measuring its own setting, and every reprobe_epochs epochs
// spends one epoch on a neighbour (up and down in turn), because the best setting moves with
// the load and the machine. A probe is compared with the epoch measured just before it, never
// with an old rate: a database whose tables grow gets slower over hours, and comparing against
// a rate from when it was faster would make every setting look worse than the one it replaced.
//
// Not thread-safe: one projection transform owns it and calls it between batches.
class WriterTuner {
 public:
  struct Options {
    size_t max_writers = 8;      // explores 1..max_writers (>= 1)
    size_t epoch_batches = 3;    // batches measured per setting; the epoch's rate is their median
    double min_gain = 1.08;      // a move must beat the current setting's rate by this factor
    size_t reprobe_epochs = 10;  // settled: probe a neighbour once every this many epochs
  };

  explicit WriterTuner(Options o) : options_(o) {
    if (options_.max_writers < 1) throw std::invalid_argument("max_writers must be at least 1");
    if (options_.epoch_batches < 1) throw std::invalid_argument("epoch_batches must be at least 1");
    if (!(options_.min_gain >= 1.0)) throw std::invalid_argument("min_gain must be at least 1");
    if (options_.reprobe_epochs < 1)
      throw std::invalid_argument("reprobe_epochs must be at least 1");
    batch_rates_.reserve(options_.epoch_batches);
  }

  // Writers for the next batch.
  size_t writers() const { return writers_; }

  // A batch written with writers(): its events and the seconds its write phase took. Returns a
  // line for the log when the setting changes or a probe ends, else "".
  std::string sample(size_t events, double seconds) {
    // An empty batch or a clock that did not move says nothing about the speed of a setting.
    if (events == 0 || !(seconds > 0)) return "";
    const double rate = static_cast<double>(events) / seconds;
    if (!std::isfinite(rate)) return "";
    batch_rates_.push_back(rate);
    if (batch_rates_.size() < options_.epoch_batches) return "";
    // The median, not the mean: one batch that waited on a checkpoint or a lock must not decide.
    const double epoch_rate = median_of_epoch();
    switch (phase_) {
      case Phase::climbing:
        return end_climb_epoch(epoch_rate);
      case Phase::settled:
        return end_home_epoch(epoch_rate);
      case Phase::probing:
        return end_probe_epoch(epoch_rate);
    }
    return "";
  }

  // True once the climb has ended, including during the single-epoch probes of a settled tuner;
  // false again while it climbs after a probe upwards paid off.
  bool settled() const { return phase_ != Phase::climbing; }

 private:
  enum class Phase { climbing, settled, probing };

  double median_of_epoch() {
    auto& r = batch_rates_;
    const size_t mid = r.size() / 2;
    std::nth_element(r.begin(), r.begin() + mid, r.end());
    double median = r[mid];
    if (r.size() % 2 == 0) median = (median + *std::max_element(r.begin(), r.begin() + mid)) / 2;
    r.clear();
    return median;
  }

  // The epoch at writers_ while climbing; previous_rate_ is that of writers_ - 1.
  std::string end_climb_epoch(double rate) {
    const size_t n = writers_;
    const bool gained = n == 1 || rate > previous_rate_ * options_.min_gain;
    if (gained && n < options_.max_writers) {
      writers_ = n + 1;
      const std::string from =
          n == 1 ? "" : " against " + format_rate(previous_rate_) + " at " + std::to_string(n - 1);
      previous_rate_ = rate;
      return "writers " + std::to_string(n) + " -> " + std::to_string(n + 1) + ": probing (" +
             std::to_string(n) + ": " + format_rate(rate) + " events/s" + from + ")";
    }
    if (gained) {
      settle_at(n);
      if (n == 1) return "";  // max_writers is 1: there was never a choice to report
      return "writers " + std::to_string(n) + ": settled at the maximum, " +
             gave(n, rate, n - 1, previous_rate_);
    }
    // The step up did not pay for its connections: fewer writers for about the same speed.
    writers_ = n - 1;
    settle_at(n - 1);
    return "writers " + std::to_string(n) + " -> " + std::to_string(n - 1) + ": " +
           gave(n, rate, n - 1, previous_rate_) + ", settled at " + std::to_string(n - 1);
  }

  // An epoch at the settled setting: keeps its rate fresh and, now and then, starts a probe.
  std::string end_home_epoch(double rate) {
    home_rate_ = rate;
    if (++home_epochs_ < options_.reprobe_epochs) return "";
    home_epochs_ = 0;
    const bool can_go_up = home_ < options_.max_writers;
    const bool can_go_down = home_ > 1;
    if (!can_go_up && !can_go_down) return "";
    const bool up = probe_up_next_ ? can_go_up : !can_go_down;
    probe_up_next_ = !up;
    writers_ = up ? home_ + 1 : home_ - 1;
    phase_ = Phase::probing;
    return "writers " + std::to_string(home_) + " -> " + std::to_string(writers_) + ": probing (" +
           std::to_string(home_) + ": " + format_rate(rate) + " events/s)";
  }

  std::string end_probe_epoch(double rate) {
    const size_t probe = writers_;
    const std::string verdict = gave(probe, rate, home_, home_rate_);
    if (probe > home_ && rate > home_rate_ * options_.min_gain) {
      // The best setting has moved up: climb from here as from the start.
      if (probe < options_.max_writers) {
        writers_ = probe + 1;
        previous_rate_ = rate;
        phase_ = Phase::climbing;
        return "writers " + std::to_string(probe) + " -> " + std::to_string(probe + 1) +
               ": probing (" + std::to_string(probe) + ": " + format_rate(rate) +
               " events/s against " + format_rate(home_rate_) + " at " + std::to_string(home_) +
               ")";
      }
      settle_at(probe);
      return "writers " + std::to_string(probe) + ": settled at the maximum, " + verdict;
    }
    if (probe < home_ && rate >= home_rate_ / options_.min_gain) {
      // Keeps the up/down alternation, so the next probe checks the setting just left.
      const bool up_next = probe_up_next_;
      settle_at(probe);
      probe_up_next_ = up_next;
      return "writers " + std::to_string(probe) + ": settled, " + verdict +
             " (fewer writers for about the same speed)";
    }
    writers_ = home_;
    phase_ = Phase::settled;
    return "writers " + std::to_string(probe) + " -> " + std::to_string(home_) + ": " + verdict;
  }

  void settle_at(size_t n) {
    phase_ = Phase::settled;
    home_ = n;
    home_epochs_ = 0;
    // The climb has just compared n with n + 1 (or could not go higher), so look down first.
    probe_up_next_ = false;
  }

  static std::string gave(size_t setting, double rate, size_t other, double other_rate) {
    return std::to_string(setting) + " gave " + format_rate(rate) + " events/s against " +
           format_rate(other_rate) + " at " + std::to_string(other);
  }

  // Rounded to whole events per second, digits grouped by thousands: "32,400".
  static std::string format_rate(double rate) {
    std::string digits = std::to_string(static_cast<long long>(std::llround(rate)));
    std::string out;
    for (size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return out;
  }

  Options options_;
  std::vector<double> batch_rates_;  // the current epoch's batch rates
  Phase phase_ = Phase::climbing;
  size_t writers_ = 1;
  double previous_rate_ = 0;  // climbing: the epoch rate at writers_ - 1
  size_t home_ = 1;           // settled or probing: the settled setting
  double home_rate_ = 0;      // its latest epoch rate
  size_t home_epochs_ = 0;    // epochs at home since the last probe
  bool probe_up_next_ = false;
};

}  // namespace sluice_projection
