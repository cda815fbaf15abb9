// Host-owned record copies stay valid and keep null versus empty apart.
#include "core/record_buffer.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using sluice::core::RecordBuffer;

namespace {
sluice_bytes bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
sluice_bytes lit(const char* s) { return {reinterpret_cast<const uint8_t*>(s), std::strlen(s)}; }
std::string str(sluice_bytes b) { return {reinterpret_cast<const char*>(b.ptr), b.len}; }
}  // namespace

TEST_CASE("a deep copy survives the source buffers and keeps headers") {
  RecordBuffer buf;
  {
    std::string key = "k1", value = R"({"a":1})", topic = "t", hk = "h", hv = "v";
    sluice_header h{bytes(hk), bytes(hv)};
    sluice_record r{sizeof(sluice_record), bytes(key), bytes(value), bytes(topic), &h, 1, 3, 42, 7};
    for (int i = 0; i < 1000; ++i) buf.append_copy(r);
    key.assign(100, 'x');
    value.assign(100, 'y');
  }
  REQUIRE(buf.size() == 1000);
  const auto& r = buf[999];
  CHECK(str(r.key) == "k1");
  CHECK(str(r.value) == R"({"a":1})");
  CHECK(r.header_count == 1);
  CHECK(str(r.headers[0].key) == "h");
  CHECK(r.partition == 3);
  CHECK(r.offset == 42);
  CHECK(buf.bytes() > 1000 * 10);
}

TEST_CASE("a null value (tombstone) stays null and an empty value stays present") {
  RecordBuffer buf;
  sluice_record tomb{
      sizeof(sluice_record), lit("k"), {nullptr, 0}, {nullptr, 0}, nullptr, 0, 0, 0, 0};
  sluice_record blank{sizeof(sluice_record),
                      lit("k"),
                      {reinterpret_cast<const uint8_t*>(""), 0},
                      {nullptr, 0},
                      nullptr,
                      0,
                      0,
                      0,
                      0};
  buf.append_copy(tomb);
  buf.append_copy(blank);
  CHECK(buf[0].value.ptr == nullptr);
  CHECK(buf[1].value.ptr != nullptr);
  CHECK(buf[1].value.len == 0);
}

TEST_CASE("zero-copy records are released when the buffer dies") {
  int released = 0;
  static std::string data = "payload";
  {
    RecordBuffer buf;
    sluice_record r{
        sizeof(sluice_record), {nullptr, 0}, bytes(data), {nullptr, 0}, nullptr, 0, 0, 0, 0};
    buf.append_owned(
        r, [](void* ctx) { ++*static_cast<int*>(ctx); }, &released);
    CHECK(buf[0].value.ptr == reinterpret_cast<const uint8_t*>(data.data()));
    CHECK(released == 0);
  }
  CHECK(released == 1);
}
