// Unit tests of the fields transform: add, rename, drop, keep, and rejecting non-objects.
#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

TestRecord with_value(std::string value, int64_t offset = 0) {
  TestRecord r;
  r.value = std::move(value);
  r.offset = offset;
  return r;
}

std::string transform_one(const std::string& config, const std::string& value) {
  Library lib(plugin_path("transforms"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "fields"), host, config);
  FakeWriter out;
  REQUIRE(t.process({with_value(value)}, out).ok());
  REQUIRE(out.rejects.empty());
  REQUIRE(out.records.size() == 1);
  return *out.records[0].value;
}

}  // namespace

TEST_CASE("fields renames, drops and keeps top-level fields, keeping field order") {
  CHECK(transform_one(R"({"rename":{"a":"alpha"}})", R"({"a":1,"b":2})") == R"({"b":2,"alpha":1})");
  CHECK(transform_one(R"({"rename":{"a":"b"}})", R"({"a":1,"b":2,"c":3})") == R"({"b":1,"c":3})");
  CHECK(transform_one(R"({"drop":["b","missing"]})", R"({"a":1,"b":2,"c":3})") ==
        R"({"a":1,"c":3})");
  CHECK(transform_one(R"({"keep":["c","a"]})", R"({"a":1,"b":{"x":2},"c":3})") ==
        R"({"a":1,"c":3})");
  // Order: rename, drop, keep, then add; added fields survive `keep`.
  CHECK(transform_one(R"({"rename":{"a":"z"},"keep":["z"],"add":{"n":true}})",
                      R"({"a":1,"b":2})") == R"({"z":1,"n":true})");
}

TEST_CASE("fields adds constants and values taken from the record") {
  Library lib(plugin_path("transforms"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "fields"), host,
             R"({"add":{"src":"${record.topic}/${record.partition}@${record.offset}",)"
             R"("offset":"${record.offset}","k":"key=${record.key}","v":2,"f":1.5,"b":false,)"
             R"("a":"replaced"}})");
  TestRecord r = with_value(R"({"a":"old"})", 17);
  r.topic = "orders";
  r.partition = 3;
  r.key = "c-9";
  FakeWriter out;
  REQUIRE(t.process({r}, out).ok());
  REQUIRE(out.records.size() == 1);
  CHECK(
      *out.records[0].value ==
      R"({"a":"replaced","src":"orders/3@17","offset":17,"k":"key=c-9","v":2,"f":1.5,"b":false})");
  // The record keeps everything but its value.
  CHECK(out.records[0].key == "c-9");
  CHECK(out.records[0].topic == "orders");
  CHECK(out.records[0].offset == 17);
  CHECK(out.records[0].input_index == 0);
}

TEST_CASE("fields rejects a value that is not a JSON object and goes on with the batch") {
  Library lib(plugin_path("transforms"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "fields"), host, R"({"add":{"x":1}})");
  TestRecord tombstone;
  tombstone.value = std::nullopt;
  FakeWriter out;
  auto status = t.process({with_value(R"({"a":1})"), with_value("[1,2]"), with_value("nope"),
                           tombstone, with_value(R"({"b":2})")},
                          out);
  REQUIRE(status.ok());
  REQUIRE(out.rejects.size() == 2);
  CHECK(out.rejects[0].index == 1);
  CHECK(out.rejects[0].status == SLUICE_ERROR);
  CHECK(out.rejects[0].message.find("not a JSON object") != std::string::npos);
  CHECK(out.rejects[1].index == 2);
  CHECK(out.rejects[1].message.find("not valid JSON") != std::string::npos);
  REQUIRE(out.records.size() == 3);
  CHECK(out.records[0].input_index == 0);
  CHECK(out.records[1].input_index == 3);  // a tombstone passes through untouched
  CHECK_FALSE(out.records[1].value.has_value());
  CHECK(out.records[2].input_index == 4);
  CHECK(*out.records[2].value == R"({"b":2,"x":1})");
}

TEST_CASE("fields refuses bad config with the offending field named") {
  Library lib(plugin_path("transforms"));
  const auto& p = lib.plugin(SLUICE_KIND_TRANSFORM, "fields");
  auto nested = Instance::validate(p, R"({"add":{"x":{"y":1}}})");
  CHECK(nested.status == SLUICE_ERROR);
  CHECK(nested.field == "add.x");
  auto unknown_ref = Instance::validate(p, R"({"add":{"x":"${record.nope}"}})");
  CHECK(unknown_ref.status == SLUICE_ERROR);
  CHECK(unknown_ref.field == "add.x");
  auto bad_rename = Instance::validate(p, R"({"rename":{"a":3}})");
  CHECK(bad_rename.status == SLUICE_ERROR);
  CHECK(bad_rename.field == "rename.a");
  CHECK(Instance::validate(p, R"({"add":{"x":"${record.key}"},"drop":["y"]})").ok());
}
