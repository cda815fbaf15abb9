// Checks that each test module in tests/plugins carries exactly the defect it is named for, so
// loader tests that use them test what they claim.
#include <rapidjson/document.h>

#include "plugin_harness.hpp"

using namespace plugin_test;

TEST_CASE("test modules report the ABI versions they are named for") {
  Library major(test_plugin_path("bad_major", "bad_major"));
  CHECK(major.module().abi_major == SLUICE_ABI_MAJOR + 1);
  CHECK(major.module().abi_minor == SLUICE_ABI_MINOR);
  Library minor(test_plugin_path("bad_minor", "bad_minor"));
  CHECK(minor.module().abi_major == SLUICE_ABI_MAJOR);
  CHECK(minor.module().abi_minor == SLUICE_ABI_MINOR + 1);
}

TEST_CASE("the C test module's transform passes records through") {
  Library lib(test_plugin_path("bad_minor", "bad_minor"));
  FakeHost host;
  Instance t(lib.plugin(SLUICE_KIND_TRANSFORM, "bad_minor"), host, "{}");
  std::vector<TestRecord> in(2);
  in[0].value = "a";
  in[1].value = "b";
  FakeWriter out;
  REQUIRE(t.process(in, out).ok());
  REQUIRE(out.records.size() == 2);
  CHECK(out.records[1].value == "b");
  CHECK(out.records[1].input_index == 1);
}

TEST_CASE("init_fails refuses init with a message") {
  Library lib(test_plugin_path("init_fails", "init_fails"));
  const auto& m = lib.module();
  REQUIRE((m.init != nullptr));
  FakeHost host;
  char message[64] = {};
  sluice_error e{};
  e.struct_size = sizeof(e);
  e.message = message;
  e.message_capacity = sizeof message;
  CHECK(m.init(host.api(), &e) == SLUICE_ERROR);
  CHECK(std::string(message) == "init refused");
}

TEST_CASE("no_entry has no entry point and notso is not a shared object") {
  Library lib(test_plugin_path("no_entry", "no_entry"));
  CHECK((lib.symbol(SLUICE_MODULE_ENTRY) == nullptr));
  CHECK_THROWS(Library(test_plugin_path("notso", "notso")));
}

TEST_CASE("throws_create fails create with the constructor's message") {
  Library lib(test_plugin_path("throws_create", "throws_create"));
  FakeHost host;
  void* instance = nullptr;
  auto r = Instance::try_create(lib.plugin(SLUICE_KIND_TRANSFORM, "throws_create"), host, "{}",
                                &instance);
  CHECK(r.status == SLUICE_ERROR);
  CHECK(r.message == "boom in create");
  CHECK(instance == nullptr);
}

TEST_CASE("dup_a and dup_b are different modules in one folder providing transform dup") {
  Library a(test_plugin_path("dup", "dup_a"));
  Library b(test_plugin_path("dup", "dup_b"));
  CHECK(std::string(a.module().name) == "dup_a");
  CHECK(std::string(b.module().name) == "dup_b");
  CHECK(std::string(a.plugin(SLUICE_KIND_TRANSFORM, "dup").name) == "dup");
  CHECK(std::string(b.plugin(SLUICE_KIND_TRANSFORM, "dup").name) == "dup");
}

TEST_CASE("stamp v1 and v2 stamp their version and carry the seen count across restore") {
  Library v1(test_plugin_path("stamp_v1", "stamp"));
  Library v2(test_plugin_path("stamp_v2", "stamp"));
  CHECK(std::string(v1.module().version) == "1.0.0");
  CHECK(std::string(v2.module().version) == "2.0.0");
  FakeHost host;
  Instance old_stamp(v1.plugin(SLUICE_KIND_TRANSFORM, "stamp"), host, "{}");
  std::vector<TestRecord> in(3);
  in[0].value = R"({"a":1})";
  in[1].value = "not an object";
  in[2].value = R"({"version":0})";
  FakeWriter out;
  REQUIRE(old_stamp.process(in, out).ok());
  REQUIRE(out.records.size() == 3);
  // Each object gets the version and the time it went through (at_us, for reload gap tests).
  CHECK(out.records[0].value->rfind(R"({"a":1,"at_us":)", 0) == 0);
  CHECK(out.records[0].value->find(R"("version":1})") != std::string::npos);
  CHECK(*out.records[1].value == "not an object");
  CHECK(out.records[2].value->rfind(R"({"version":1,"at_us":)", 0) == 0);

  Instance new_stamp(v2.plugin(SLUICE_KIND_TRANSFORM, "stamp"), host, "{}");
  REQUIRE(new_stamp.restore(old_stamp.snapshot()).ok());
  FakeWriter out2;
  REQUIRE(new_stamp.process({in[0]}, out2).ok());
  CHECK(out2.records[0].value->find(R"("version":2})") != std::string::npos);
  CHECK(host.gauge_values("records_seen").back() == 4);
}
