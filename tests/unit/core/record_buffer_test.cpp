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

TEST_CASE("records larger than an arena block hold about their own size, not twice it") {
  // 64 KB values with their small keys and topics: each value needs a block of its own, and the
  // small fields must share blocks rather than open a fresh 64 KB block after every value.
  RecordBuffer buf;
  const std::string value(65 * 1024, 'v');
  const int records = 20;
  for (int i = 0; i < records; ++i) {
    const std::string key = "key-" + std::to_string(i);
    sluice_record r{};
    r.struct_size = sizeof r;
    r.key = bytes(key);
    r.value = bytes(value);
    r.topic = lit("generator");
    buf.append_copy(r);
  }
  CHECK(buf.reserved_bytes() < records * value.size() + 2 * 64 * 1024);
  for (size_t i = 0; i < buf.size(); ++i) CHECK(str(buf[i].value) == value);
  CHECK(str(buf[19].key) == "key-19");
}

TEST_CASE("records of one topic share one copy of it; another topic gets its own") {
  RecordBuffer buf;
  std::string topic = "orders";
  for (const char* name : {"orders", "orders", "refunds", "orders"}) {
    topic = name;  // the source rewrites one buffer: equal bytes, not equal pointers, decide
    sluice_record r{};
    r.struct_size = sizeof r;
    r.topic = bytes(topic);
    buf.append_copy(r);
  }
  CHECK(buf[0].topic.ptr == buf[1].topic.ptr);
  CHECK(buf[2].topic.ptr != buf[1].topic.ptr);
  CHECK(buf[3].topic.ptr != buf[2].topic.ptr);
  CHECK(str(buf[2].topic) == "refunds");
  CHECK(str(buf[3].topic) == "orders");
  CHECK(buf[0].topic.ptr != reinterpret_cast<const uint8_t*>(topic.data()));  // still a copy
}
