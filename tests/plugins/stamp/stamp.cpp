// Test modules stamp_v1 / stamp_v2 (STAMP_VERSION 1 or 2): transform `stamp` adds
// "version": STAMP_VERSION to JSON objects and counts the records it has seen; the count is
// carried across a hot reload by snapshot/restore, so reload tests can tell v1 from v2 and
// check that state survived.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <sluice/sdk.hpp>

#ifndef STAMP_VERSION
#error "define STAMP_VERSION"
#endif

#define STAMP_STR2(x) #x
#define STAMP_STR(x) STAMP_STR2(x)

namespace {

class Stamp final : public sluice::Transform {
 public:
  static sluice::ConfigSchema schema() { return {}; }
  Stamp(const sluice::Config& /*c*/, sluice::Host& host) : host_(host) {}

  void process(const sluice::Batch& in, sluice::Output& out) override {
    rapidjson::Document doc;
    rapidjson::StringBuffer sb;
    for (size_t i = 0; i < in.size(); ++i) {
      const auto r = in[i];
      if (r.has_value()) doc.Parse(r.value().data(), r.value().size());
      if (!r.has_value() || doc.HasParseError() || !doc.IsObject()) {
        out.forward(i, r);
        continue;
      }
      // When this record went through, so a reload test can measure the pause a swap causes.
      const int64_t at_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
      doc.AddMember("at_us", at_us, doc.GetAllocator());
      auto it = doc.FindMember("version");
      if (it != doc.MemberEnd())
        it->value.SetInt(STAMP_VERSION);
      else
        doc.AddMember("version", STAMP_VERSION, doc.GetAllocator());
      sb.Clear();
      rapidjson::Writer<rapidjson::StringBuffer> w(sb);
      doc.Accept(w);
      auto o = sluice::OutRecord::from(r);
      o.value = std::string_view(sb.GetString(), sb.GetSize());
      out.emit(i, o);
    }
    const uint64_t seen = seen_.fetch_add(in.size()) + in.size();
    host_.gauge_set("records_seen", static_cast<double>(seen));
  }

  std::string snapshot() override { return std::to_string(seen_.load()); }
  void restore(std::string_view state) override {
    uint64_t seen = 0;
    auto [p, ec] = std::from_chars(state.data(), state.data() + state.size(), seen);
    if (ec != std::errc()) throw std::runtime_error("stamp: bad snapshot");
    seen_ = seen;
    host_.gauge_set("records_seen", static_cast<double>(seen));
  }

 private:
  sluice::Host& host_;
  std::atomic<uint64_t> seen_{0};
};

}  // namespace

SLUICE_MODULE("stamp", STAMP_STR(STAMP_VERSION) ".0.0", SLUICE_TRANSFORM(Stamp, "stamp"))
