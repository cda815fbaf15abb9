// The generator source: deterministic synthetic JSON records at a steady rate, for tests and
// benchmarks.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <sluice/sdk.hpp>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

// splitmix64: tiny, fast and identical on every platform, unlike std:: distributions.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// A `template` option split once into literal text and placeholders, so rendering a record is
// a few appends.
class ValueTemplate {
 public:
  enum class Slot { literal, seq, key, ts, rand };
  struct Part {
    Slot slot;
    std::string text;
  };

  static ValueTemplate parse(std::string_view text) {
    ValueTemplate t;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t open = text.find("{{", pos);
      if (open == std::string_view::npos) {
        t.add_literal(text.substr(pos));
        break;
      }
      t.add_literal(text.substr(pos, open - pos));
      size_t close = text.find("}}", open + 2);
      if (close == std::string_view::npos)
        throw sluice::ConfigError("template", "template has an unclosed '{{'");
      std::string_view name = text.substr(open + 2, close - open - 2);
      if (name == "seq") {
        t.parts_.push_back({Slot::seq, {}});
      } else if (name == "key") {
        t.parts_.push_back({Slot::key, {}});
      } else if (name == "ts") {
        t.parts_.push_back({Slot::ts, {}});
      } else if (name == "rand") {
        t.parts_.push_back({Slot::rand, {}});
      } else {
        throw sluice::ConfigError("template", "unknown template placeholder '{{" +
                                                  std::string(name) +
                                                  "}}' (known: seq, key, ts, rand)");
      }
      pos = close + 2;
    }
    return t;
  }

  bool empty() const { return parts_.empty(); }

  void render(std::string& out, int64_t seq, std::string_view key, int64_t ts,
              uint32_t rand) const {
    for (const auto& p : parts_) {
      switch (p.slot) {
        case Slot::literal:
          out += p.text;
          break;
        case Slot::seq:
          append_int(out, seq);
          break;
        case Slot::key:
          out += key;
          break;
        case Slot::ts:
          append_int(out, ts);
          break;
        case Slot::rand:
          append_int(out, rand);
          break;
      }
    }
  }

 private:
  void add_literal(std::string_view s) {
    if (!s.empty()) parts_.push_back({Slot::literal, std::string(s)});
  }
  std::vector<Part> parts_;
};

class Generator final : public sluice::Source {
 public:
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.integer("count").default_value(0).min(0).doc("Records to produce; 0 = unbounded.");
    s.number("rate").default_value(0.0).min(0).doc(
        "Records per second, spread evenly over time; 0 = as fast as polled.");
    s.integer("key_cardinality")
        .default_value(100)
        .min(1)
        .doc("Number of distinct keys: key-0 .. key-(N-1).");
    s.string("key_order")
        .default_value("round_robin")
        .one_of({"round_robin", "random"})
        .doc("round_robin: key = seq mod N; random: seeded uniform choice.");
    s.integer("payload_size")
        .default_value(0)
        .min(0)
        .doc("Bytes of filler in a `payload` field (ignored when `template` is set).");
    s.string("template")
        .default_value("")
        .doc(
            "A JSON text with {{seq}}, {{key}}, {{ts}}, {{rand}} placeholders; replaces the "
            "default "
            "value shape.");
    s.integer("seed").default_value(0).doc("Seed of every random choice (keys, {{rand}}).");
    s.string("topic").default_value("generator").doc("Topic of every record.");
    s.integer("start_timestamp_ms")
        .default_value(0)
        .min(0)
        .doc("If > 0, record N gets timestamp start + N (reproducible output); 0 = wall clock.");
    s.validator([](const sluice::Config& c) {
      std::string text = c.get_string("template");
      if (text.empty()) return;
      ValueTemplate t = ValueTemplate::parse(text);
      std::string sample;
      t.render(sample, 0, "key-0", 0, 0);
      rapidjson::Document d;
      d.Parse(sample.data(), sample.size());
      if (d.HasParseError())
        throw sluice::ConfigError("template", std::string("template does not render to JSON: ") +
                                                  rapidjson::GetParseError_En(d.GetParseError()));
    });
    return s;
  }
  static std::string description() { return "Synthetic JSON records, deterministic by seed."; }

  Generator(const sluice::Config& c, sluice::Host& /*host*/)
      : count_(c.get_int("count", 0)),
        rate_(c.get_double("rate", 0)),
        cardinality_(std::max<int64_t>(1, c.get_int("key_cardinality", 100))),
        random_keys_(c.get_string("key_order", "round_robin") == "random"),
        seed_(static_cast<uint64_t>(c.get_int("seed", 0))),
        topic_(c.get_string("topic", "generator")),
        start_ts_(c.get_int("start_timestamp_ms", 0)),
        template_(ValueTemplate::parse(c.get_string("template"))) {
    int64_t payload_size = c.get_int("payload_size", 0);
    if (payload_size > 0) {
      // Filler must not need JSON escaping, so it is built from letters and digits only.
      static constexpr char kAlphabet[] =
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
      filler_.resize(static_cast<size_t>(payload_size));
      for (size_t i = 0; i < filler_.size(); ++i)
        filler_[i] = kAlphabet[mix(seed_ ^ (i * 0x100000001b3ull)) % (sizeof kAlphabet - 1)];
    }
    value_.reserve(64 + filler_.size());
    pace_start_ = Clock::now();
  }

  bool poll(sluice::Output& out, size_t max_records, uint32_t timeout_ms) override {
    if (done()) return true;
    if (max_records == 0) {
      // Backpressure: nothing to keep alive, but do not make the host spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<uint32_t>(timeout_ms, 10)));
      return false;
    }
    size_t n = max_records;
    if (count_ > 0) n = static_cast<size_t>(std::min<int64_t>(n, count_ - seq_));
    if (rate_ > 0) n = std::min<size_t>(n, wait_for_due(timeout_ms));

    sluice::OutRecord rec;
    rec.topic = topic_;
    rec.partition = 0;
    // Large payloads: the poll's byte budget, not max_records, is what bounds the host's memory.
    for (size_t i = 0; i < n && !out.full(); ++i) {
      build(seq_);
      rec.key = std::string_view(key_);
      rec.value = std::string_view(value_);
      rec.offset = seq_;
      rec.timestamp_ms = ts_;
      out.emit(rec);
      ++seq_;
    }
    return done();
  }

  // The next sequence number survives a hot reload, so a reloaded generator does not repeat.
  std::string snapshot() override { return std::to_string(seq_); }
  void restore(std::string_view state) override {
    int64_t seq = 0;
    auto [ptr, ec] = std::from_chars(state.data(), state.data() + state.size(), seq);
    if (ec != std::errc() || seq < 0) throw std::runtime_error("generator: bad snapshot");
    seq_ = seq;
    paced_ = seq_;
    pace_start_ = Clock::now();
  }

 private:
  bool done() const { return count_ > 0 && seq_ >= count_; }

  // How many records are due now under `rate`; waits (at most timeout_ms) for the next one.
  // Pacing is by a schedule (record k due at start + k / rate), so output is smooth rather
  // than a burst at the start of each second; after a stall the schedule is re-anchored
  // instead of catching up with a burst.
  size_t wait_for_due(uint32_t timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    const double max_backlog = std::max(1.0, rate_ * 0.01);  // 10 ms worth of records
    for (;;) {
      const auto now = Clock::now();
      const double elapsed = std::chrono::duration<double>(now - pace_start_).count();
      double due = std::floor(elapsed * rate_) - static_cast<double>(seq_ - paced_);
      if (due > max_backlog) {
        paced_ = seq_;
        pace_start_ = now - std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(max_backlog / rate_));
        due = max_backlog;
      }
      if (due >= 1) return static_cast<size_t>(due);
      const double next_s = static_cast<double>(seq_ - paced_ + 1) / rate_;
      const auto next = pace_start_ + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(next_s));
      if (next > deadline) {
        std::this_thread::sleep_until(deadline);
        return 0;
      }
      std::this_thread::sleep_until(next);
    }
  }

  // Fills key_, value_ and ts_ for record `seq`, reusing their buffers.
  void build(int64_t seq) {
    const uint64_t r = mix(seed_ ^ mix(static_cast<uint64_t>(seq)));
    const int64_t key_index = random_keys_
                                  ? static_cast<int64_t>(r % static_cast<uint64_t>(cardinality_))
                                  : seq % cardinality_;
    key_.assign("key-");
    append_int(key_, key_index);
    ts_ = start_ts_ > 0 ? start_ts_ + seq
                        : std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    const auto rand = static_cast<uint32_t>(r >> 32);
    value_.clear();
    if (!template_.empty()) {
      template_.render(value_, seq, key_, ts_, rand);
      return;
    }
    value_ += "{\"seq\":";
    append_int(value_, seq);
    value_ += ",\"key\":\"";
    value_ += key_;
    value_ += "\",\"ts\":";
    append_int(value_, ts_);
    if (!filler_.empty()) {
      value_ += ",\"payload\":\"";
      value_ += filler_;
      value_ += '"';
    }
    value_ += '}';
  }

  const int64_t count_;
  const double rate_;
  const int64_t cardinality_;
  const bool random_keys_;
  const uint64_t seed_;
  const std::string topic_;
  const int64_t start_ts_;
  const ValueTemplate template_;
  std::string filler_;

  int64_t seq_ = 0;
  // Pacing anchor: record `paced_` was due at `pace_start_`.
  int64_t paced_ = 0;
  Clock::time_point pace_start_;

  std::string key_;
  std::string value_;
  int64_t ts_ = 0;
};

}  // namespace

SLUICE_MODULE("generator", "0.1.0", SLUICE_SOURCE(Generator, "generator"))
