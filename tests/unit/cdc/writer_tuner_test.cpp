// Unit tests of the projection's writer tuner (`writers: auto`), fed with synthetic rate curves.
#include "writer_tuner.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

using sluice_projection::WriterTuner;

namespace {

constexpr size_t kEvents = 5000;

// Events per second a sink reaches with `writers` connections at batch number `batch`.
using RateCurve = std::function<double(size_t writers, size_t batch)>;

// A curve given as a table; settings past its end keep falling.
RateCurve table(std::vector<double> rates) {
  return [rates](size_t n, size_t) {
    if (n <= rates.size()) return rates[n - 1];
    return rates.back() * std::pow(0.9, static_cast<double>(n - rates.size()));
  };
}

// The curve measured on 2 cores in the issue: best at 2, worse past it.
const std::vector<double> kPeakAt2 = {25'000, 33'000, 30'000, 27'000,
                                      25'000, 23'000, 21'000, 19'000};
const std::vector<double> kPeakAt4 = {20'000, 25'000, 30'000, 35'000,
                                      31'000, 28'000, 25'000, 22'000};

struct Run {
  std::vector<size_t> writers;  // the setting each batch was written with
  size_t settled_after = 0;     // batches fed until settled() first held; 0 if never
};

// Feeds `batches` batches starting at batch number `first`; the tuner is left as they leave it.
Run feed(WriterTuner& tuner, const RateCurve& rate, size_t batches, size_t first = 0) {
  Run run;
  for (size_t i = 0; i < batches; ++i) {
    const size_t n = tuner.writers();
    run.writers.push_back(n);
    tuner.sample(kEvents, kEvents / rate(n, first + i));
    if (run.settled_after == 0 && tuner.settled()) run.settled_after = i + 1;
  }
  return run;
}

// The lengths of the runs of batches not written with `home`.
std::vector<size_t> excursions(const std::vector<size_t>& writers, size_t home) {
  std::vector<size_t> lengths;
  size_t length = 0;
  for (size_t n : writers) {
    if (n != home) {
      ++length;
    } else if (length > 0) {
      lengths.push_back(length);
      length = 0;
    }
  }
  if (length > 0) lengths.push_back(length);
  return lengths;
}

size_t count_at(const std::vector<size_t>& writers, size_t n) {
  return static_cast<size_t>(std::count(writers.begin(), writers.end(), n));
}

}  // namespace

TEST_CASE("writer tuner: settles at the peak of 2 writers and only leaves it for single probes") {
  WriterTuner::Options o;
  WriterTuner tuner(o);
  CHECK(tuner.writers() == 1);
  CHECK_FALSE(tuner.settled());

  // One epoch each at 1, 2 and 3.
  const Run start = feed(tuner, table(kPeakAt2), 4 * o.epoch_batches);
  MESSAGE("peak at 2: settled after " << start.settled_after << " batches");
  REQUIRE(start.settled_after > 0);
  CHECK(start.settled_after <= 4 * o.epoch_batches);
  CHECK(tuner.settled());

  const Run later = feed(tuner, table(kPeakAt2), 300, start.writers.size());
  const auto away = excursions(later.writers, 2);
  // A probe every reprobe_epochs epochs at 2, each one epoch long and followed by a return to 2.
  CHECK(away.size() >= 300 / ((o.reprobe_epochs + 1) * o.epoch_batches) - 1);
  CHECK(away.size() <= 300 / ((o.reprobe_epochs + 1) * o.epoch_batches) + 1);
  for (size_t length : away) CHECK(length <= o.epoch_batches);
  CHECK(later.writers.back() == 2);
  CHECK(count_at(later.writers, 2) >= 300 - 10 * o.epoch_batches);
  for (size_t n : later.writers) CHECK((n >= 1 && n <= 3));
}

TEST_CASE("writer tuner: a flat rate settles at 1 and never moves up") {
  WriterTuner::Options o;
  WriterTuner tuner(o);
  const RateCurve flat = [](size_t, size_t) { return 30'000.0; };
  const Run run = feed(tuner, flat, 600);
  MESSAGE("flat: settled after " << run.settled_after << " batches");
  CHECK(run.settled_after == 2 * o.epoch_batches);
  CHECK(tuner.settled());
  // After the climb, 2 is only ever a one-epoch probe, and nothing above 2 is tried.
  const std::vector<size_t> after(run.writers.begin() + run.settled_after, run.writers.end());
  for (size_t length : excursions(after, 1)) CHECK(length == o.epoch_batches);
  for (size_t n : after) CHECK(n <= 2);
  CHECK(count_at(after, 1) >= after.size() * 9 / 10);
}

TEST_CASE("writer tuner: a rate that peaks at 4 writers settles at 4") {
  WriterTuner::Options o;
  WriterTuner tuner(o);
  const Run run = feed(tuner, table(kPeakAt4), 300);
  MESSAGE("peak at 4: settled after " << run.settled_after << " batches");
  CHECK(run.settled_after == 5 * o.epoch_batches);  // 1, 2, 3, 4, then 5 did not pay
  const std::vector<size_t> after(run.writers.begin() + run.settled_after, run.writers.end());
  for (size_t length : excursions(after, 4)) CHECK(length == o.epoch_batches);
  CHECK(count_at(after, 4) >= after.size() * 85 / 100);
}

TEST_CASE("writer tuner: max_writers is never exceeded") {
  WriterTuner::Options o;
  o.max_writers = 3;
  WriterTuner tuner(o);
  const RateCurve rising = [](size_t n, size_t) { return 10'000.0 * static_cast<double>(n); };
  const Run run = feed(tuner, rising, 300);
  MESSAGE("max 3: settled after " << run.settled_after << " batches");
  CHECK(run.settled_after == 3 * o.epoch_batches);
  for (size_t n : run.writers) CHECK(n <= 3);
  const std::vector<size_t> after(run.writers.begin() + run.settled_after, run.writers.end());
  for (size_t length : excursions(after, 3)) CHECK(length == o.epoch_batches);
  CHECK(tuner.writers() == 3);

  WriterTuner::Options one;
  one.max_writers = 1;
  WriterTuner single(one);
  for (size_t n : feed(single, rising, 100).writers) CHECK(n == 1);
  CHECK(single.settled());
}

TEST_CASE("writer tuner: ±10% noise on the peak-at-2 curve still spends most batches at 2") {
  WriterTuner::Options o;
  size_t worst = std::numeric_limits<size_t>::max();
  for (unsigned seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> jitter(0.9, 1.1);
    const RateCurve noisy = [&](size_t n, size_t b) { return table(kPeakAt2)(n, b) * jitter(rng); };
    WriterTuner tuner(o);
    const Run run = feed(tuner, noisy, 600);
    const size_t at_2 = count_at(run.writers, 2);
    worst = std::min(worst, at_2);
    CHECK(at_2 >= 600 * 80 / 100);
    CHECK(run.settled_after > 0);
    CHECK(run.settled_after <= 4 * o.epoch_batches);
  }
  MESSAGE("noise: fewest batches at 2 over 50 seeds: " << worst << " of 600");
}

TEST_CASE("writer tuner: re-probing finds the new best after the load changes") {
  WriterTuner::Options o;
  WriterTuner tuner(o);
  constexpr size_t kChange = 200;
  const auto before = table({30'000, 26'000, 24'000, 22'000});
  const auto after = table({20'000, 26'000, 32'000, 28'000});
  const RateCurve changing = [&](size_t n, size_t b) {
    return b < kChange ? before(n, b) : after(n, b);
  };

  const Run first = feed(tuner, changing, kChange);
  CHECK(count_at(first.writers, 1) >= kChange * 85 / 100);
  for (size_t n : first.writers) CHECK(n <= 2);

  // The worst case: one home epoch that straddles the change still looks like the old load, so
  // its probe fails; then reprobe_epochs more epochs at 1, the probe at 2, and the climb to 3
  // and 4. Epochs are counted from the change, which may fall anywhere in one.
  const size_t bound = (1 + 1 + o.reprobe_epochs + 1 + 2) * o.epoch_batches;
  size_t found = 0;
  for (size_t i = 0; i < 200; ++i) {
    const size_t n = tuner.writers();
    tuner.sample(kEvents, kEvents / changing(n, kChange + i));
    if (tuner.settled() && tuner.writers() == 3) {
      found = i + 1;
      break;
    }
  }
  MESSAGE("load change: settled at 3 after " << found << " batches");
  REQUIRE(found > 0);
  CHECK(found <= bound);

  const Run later = feed(tuner, changing, 300, kChange + found);
  for (size_t length : excursions(later.writers, 3)) CHECK(length == o.epoch_batches);
}

TEST_CASE("writer tuner: a database that slows down steadily does not walk it down to 1") {
  WriterTuner::Options o;
  WriterTuner tuner(o);
  // 0.2% slower every batch: after 900 batches a sixth of the start. Any comparison with a rate
  // measured long ago would make 1 (measured first, when all was fast) look better than 2.
  const RateCurve drifting = [](size_t n, size_t b) {
    return table(kPeakAt2)(n, b) * std::pow(0.998, static_cast<double>(b));
  };
  const Run run = feed(tuner, drifting, 900);
  MESSAGE("drift: settled after " << run.settled_after << " batches");
  CHECK(run.settled_after <= 4 * o.epoch_batches);
  const std::vector<size_t> after(run.writers.begin() + run.settled_after, run.writers.end());
  for (size_t length : excursions(after, 2)) CHECK(length == o.epoch_batches);
  CHECK(count_at(after, 2) >= after.size() * 85 / 100);
  CHECK(tuner.writers() == 2);
}

TEST_CASE("writer tuner: ignored samples and decision texts") {
  WriterTuner::Options o;

  SUBCASE("empty batches and unmoved clocks change nothing") {
    WriterTuner plain(o), noisy(o);
    const auto rate = table(kPeakAt2);
    for (size_t b = 0; b < 120; ++b) {
      CHECK(noisy.sample(0, 1.0).empty());
      CHECK(noisy.sample(kEvents, 0.0).empty());
      CHECK(noisy.sample(kEvents, -1.0).empty());
      CHECK(noisy.sample(kEvents, std::numeric_limits<double>::quiet_NaN()).empty());
      CHECK(noisy.writers() == plain.writers());
      CHECK(noisy.settled() == plain.settled());
      const double seconds = kEvents / rate(plain.writers(), b);
      CHECK(noisy.sample(kEvents, seconds) == plain.sample(kEvents, seconds));
    }
  }

  SUBCASE("a text exactly when the setting changes or a probe ends") {
    WriterTuner tuner(o);
    const auto rate = table(kPeakAt2);
    std::vector<std::string> texts;
    for (size_t b = 0; b < 300; ++b) {
      const size_t before = tuner.writers();
      const std::string text = tuner.sample(kEvents, kEvents / rate(before, b));
      // On this curve every probe ends with a return to 2, so each end is also a change.
      CHECK(text.empty() == (tuner.writers() == before));
      if (!text.empty()) texts.push_back(text);
    }
    REQUIRE(texts.size() >= 5);
    CHECK(texts[0] == "writers 1 -> 2: probing (1: 25,000 events/s)");
    CHECK(texts[1] == "writers 2 -> 3: probing (2: 33,000 events/s against 25,000 at 1)");
    CHECK(texts[2] == "writers 3 -> 2: 3 gave 30,000 events/s against 33,000 at 2, settled at 2");
    CHECK(texts[3] == "writers 2 -> 1: probing (2: 33,000 events/s)");
    CHECK(texts[4] == "writers 1 -> 2: 1 gave 25,000 events/s against 33,000 at 2");
  }

  SUBCASE("a probe that ends without a change still says why") {
    o.max_writers = 3;
    WriterTuner tuner(o);
    const RateCurve rising = [](size_t n, size_t) { return 10'000.0 * static_cast<double>(n); };
    std::vector<std::string> texts;
    for (size_t b = 0; b < 3 * o.epoch_batches; ++b) {
      const std::string text = tuner.sample(kEvents, kEvents / rising(tuner.writers(), b));
      if (!text.empty()) texts.push_back(text);
    }
    REQUIRE(texts.size() == 3);
    CHECK(texts[2] ==
          "writers 3: settled at the maximum, 3 gave 30,000 events/s against 20,000 at 2");
    CHECK(tuner.writers() == 3);

    // A down-probe that is about as fast keeps the smaller setting.
    WriterTuner near(o);
    const RateCurve close = [](size_t n, size_t) { return n == 1 ? 30'000.0 : 40'000.0; };
    feed(near, close, 2 * o.epoch_batches);  // 1, then 2 gained: climbing to 3
    CHECK(near.writers() == 3);
    std::string text;
    // 3 does not beat 2 by min_gain: settled at 2; its first probe goes down to 1.
    for (size_t b = 0; b < (1 + o.reprobe_epochs) * o.epoch_batches; ++b)
      text = near.sample(kEvents, kEvents / close(near.writers(), b));
    CHECK(near.writers() == 1);
    const RateCurve now_close = [](size_t n, size_t) { return n == 1 ? 38'000.0 : 40'000.0; };
    for (size_t b = 0; b < o.epoch_batches; ++b)
      text = near.sample(kEvents, kEvents / now_close(near.writers(), b));
    CHECK(near.writers() == 1);
    CHECK(text ==
          "writers 1: settled, 1 gave 38,000 events/s against 40,000 at 2 (fewer writers for "
          "about the same speed)");
  }
}
