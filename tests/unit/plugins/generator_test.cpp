// Unit tests of the generator source, driven through its C table.
#include <rapidjson/document.h>

#include <memory>
#include <set>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

std::vector<TestRecord> poll_all(Instance& source, uint32_t max_records, int max_polls = 1000) {
  FakeWriter out;
  bool eos = false;
  for (int i = 0; i < max_polls && !eos; ++i) REQUIRE(source.poll(out, max_records, 0, &eos).ok());
  REQUIRE(eos);
  return std::move(out.records);
}

}  // namespace

TEST_CASE("generator with the same seed produces the same records") {
  Library lib(plugin_path("generator"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "generator");
  FakeHost host;
  const std::string config =
      R"({"count":50,"seed":7,"key_cardinality":5,"key_order":"random","payload_size":16,)"
      R"("start_timestamp_ms":1000})";
  Instance a(p, host, config);
  Instance b(p, host, config);
  auto ra = poll_all(a, 7);
  auto rb = poll_all(b, 13);
  REQUIRE(ra.size() == 50);
  REQUIRE(rb.size() == 50);
  std::set<std::string> keys;
  for (size_t i = 0; i < ra.size(); ++i) {
    CHECK(ra[i].key == rb[i].key);
    CHECK(ra[i].value == rb[i].value);
    CHECK(ra[i].offset == static_cast<int64_t>(i));
    CHECK(ra[i].partition == 0);
    CHECK(ra[i].topic == "generator");
    CHECK(ra[i].timestamp_ms == 1000 + static_cast<int64_t>(i));
    rapidjson::Document d;
    d.Parse(ra[i].value->c_str());
    REQUIRE(d.IsObject());
    CHECK(d["seq"].GetInt64() == static_cast<int64_t>(i));
    CHECK(std::string(d["key"].GetString()) == *ra[i].key);
    CHECK(d["payload"].GetStringLength() == 16);
    keys.insert(*ra[i].key);
  }
  // Random keys stay inside the cardinality but are not all the same.
  CHECK(keys.size() > 1);
  for (const auto& k : keys)
    CHECK(std::set<std::string>{"key-0", "key-1", "key-2", "key-3", "key-4"}.count(k));

  Instance other(p, host, R"({"count":50,"seed":8,"key_cardinality":5,"key_order":"random"})");
  auto rc = poll_all(other, 50);
  bool any_key_differs = false;
  for (size_t i = 0; i < rc.size(); ++i) any_key_differs |= rc[i].key != ra[i].key;
  CHECK(any_key_differs);
}

TEST_CASE("generator ends the stream after count records and never emits more") {
  Library lib(plugin_path("generator"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "generator");
  FakeHost host;
  Instance g(p, host, R"({"count":25})");
  FakeWriter out;
  bool eos = true;
  REQUIRE(g.poll(out, 10, 0, &eos).ok());
  CHECK(out.records.size() == 10);
  CHECK_FALSE(eos);
  REQUIRE(g.poll(out, 10, 0, &eos).ok());
  CHECK_FALSE(eos);
  REQUIRE(g.poll(out, 10, 0, &eos).ok());
  CHECK(out.records.size() == 25);
  CHECK(eos);
  REQUIRE(g.poll(out, 10, 0, &eos).ok());
  CHECK(out.records.size() == 25);
  CHECK(eos);
}

TEST_CASE("generator emits nothing while the host applies backpressure") {
  Library lib(plugin_path("generator"));
  FakeHost host;
  Instance g(lib.plugin(SLUICE_KIND_SOURCE, "generator"), host, R"({"count":5})");
  FakeWriter out;
  bool eos = true;
  REQUIRE(g.poll(out, 0, 0, &eos).ok());
  CHECK(out.records.empty());
  CHECK_FALSE(eos);
}

TEST_CASE("generator round robin keys cycle through key_cardinality") {
  Library lib(plugin_path("generator"));
  FakeHost host;
  Instance g(lib.plugin(SLUICE_KIND_SOURCE, "generator"), host,
             R"({"count":7,"key_cardinality":3})");
  auto records = poll_all(g, 100);
  std::vector<std::string> keys;
  for (const auto& r : records) keys.push_back(*r.key);
  CHECK(keys ==
        std::vector<std::string>{"key-0", "key-1", "key-2", "key-0", "key-1", "key-2", "key-0"});
}

TEST_CASE("generator template fills seq, key, ts and rand per record") {
  Library lib(plugin_path("generator"));
  FakeHost host;
  Instance g(
      lib.plugin(SLUICE_KIND_SOURCE, "generator"), host,
      R"({"count":3,"key_cardinality":2,"start_timestamp_ms":500,"topic":"orders",)"
      R"("template":"{\"id\":{{seq}},\"customer\":\"{{key}}\",\"at\":{{ts}},\"r\":{{rand}}}"})");
  auto records = poll_all(g, 100);
  REQUIRE(records.size() == 3);
  for (size_t i = 0; i < records.size(); ++i) {
    rapidjson::Document d;
    d.Parse(records[i].value->c_str());
    REQUIRE(d.IsObject());
    CHECK(d["id"].GetInt64() == static_cast<int64_t>(i));
    CHECK(std::string(d["customer"].GetString()) == "key-" + std::to_string(i % 2));
    CHECK(d["at"].GetInt64() == 500 + static_cast<int64_t>(i));
    CHECK(d["r"].IsUint());
    CHECK(records[i].topic == "orders");
  }
}

TEST_CASE("generator refuses a template that does not render to JSON, naming the field") {
  Library lib(plugin_path("generator"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "generator");
  auto bad_json = Instance::validate(p, R"({"template":"{\"id\":{{seq}}"})");
  CHECK(bad_json.status == SLUICE_ERROR);
  CHECK(bad_json.field == "template");
  auto unknown = Instance::validate(p, R"({"template":"{\"id\":{{nope}}}"})");
  CHECK(unknown.status == SLUICE_ERROR);
  CHECK(unknown.message.find("nope") != std::string::npos);
  CHECK(Instance::validate(p, R"({"template":"{\"id\":{{seq}}}"})").ok());
}

TEST_CASE("rate-limited generator never bursts more than 10 ms worth of records into one poll") {
  Library lib(plugin_path("generator"));
  FakeHost host;
  // At 100 records/s, 10 ms is one record, however late the poll comes.
  Instance g(lib.plugin(SLUICE_KIND_SOURCE, "generator"), host, R"({"rate":100})");
  for (int i = 0; i < 3; ++i) {
    FakeWriter out;
    REQUIRE(g.poll(out, 1000, 0).ok());
    CHECK(out.records.size() <= 1);
  }
}

TEST_CASE("generator continues its sequence after snapshot and restore") {
  Library lib(plugin_path("generator"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "generator");
  FakeHost host;
  Instance old_instance(p, host, R"({"count":10})");
  FakeWriter first;
  REQUIRE(old_instance.poll(first, 4, 0).ok());
  Instance new_instance(p, host, R"({"count":10})");
  REQUIRE(new_instance.restore(old_instance.snapshot()).ok());
  auto rest = poll_all(new_instance, 100);
  REQUIRE(rest.size() == 6);
  CHECK(rest.front().offset == 4);
  CHECK(rest.back().offset == 9);
}

namespace {

// The generator plugin with a fake host, for the byte-budget cases.
struct GeneratorPlugin {
  Library lib{plugin_path("generator")};
  const sluice_plugin& table = lib.plugin(SLUICE_KIND_SOURCE, "generator");
  FakeHost host;
  std::unique_ptr<Instance> make(const std::string& config) {
    return std::make_unique<Instance>(table, host, config);
  }
};

size_t payload_bytes(const std::vector<TestRecord>& records) {
  size_t n = 0;
  for (const auto& r : records) n += r.key.value_or("").size() + r.value.value_or("").size();
  return n;
}

// A poll through the raw table with poll args as an older host (ABI 1.0) lays them out: the
// struct ends before max_bytes, and whatever lies there must not be read.
size_t poll_as_abi_1_0(const sluice_plugin& p, void* instance, uint32_t max_records) {
  sluice_poll_args args{};
  args.struct_size = offsetof(sluice_poll_args, max_bytes);
  args.max_records = max_records;
  args.max_bytes = 1;  // not the host's: beyond struct_size
  FakeWriter out;
  ErrorBuffer e;
  REQUIRE(p.poll(instance, &args, out.raw(), e.raw()) == SLUICE_OK);
  return out.records.size();
}

}  // namespace

TEST_CASE("generator stops a poll once its records reach max_bytes, going over by one at most") {
  GeneratorPlugin gen;
  auto g = gen.make(R"({"payload_size":65536})");
  FakeWriter out;
  REQUIRE(g->poll(out, 1000, 0, nullptr, 200 * 1024).ok());
  // 64 KB payloads (plus a short JSON frame): three reach 192 KB + framing, the fourth crosses.
  REQUIRE(out.records.size() == 4);
  CHECK(payload_bytes(out.records) >= 200 * 1024);
  const size_t one = out.records.back().key->size() + out.records.back().value->size();
  CHECK(payload_bytes(out.records) - one < 200 * 1024);

  FakeWriter next;
  REQUIRE(g->poll(next, 1000, 0, nullptr, 1).ok());
  REQUIRE(next.records.size() == 1);  // any room at all takes one record
  CHECK(next.records[0].offset == 4);
}

TEST_CASE("generator emits nothing when a poll has no byte room, whatever max_records says") {
  GeneratorPlugin gen;
  auto g = gen.make(R"({"count":10})");
  bool eos = true;
  FakeWriter out;
  REQUIRE(g->poll(out, 100, 0, &eos, 0).ok());
  CHECK(out.records.empty());
  CHECK_FALSE(eos);
}

TEST_CASE("generator polled by an older host without max_bytes takes max_records as before") {
  GeneratorPlugin gen;
  const sluice_plugin& p = gen.table;
  void* instance = nullptr;
  REQUIRE(Instance::try_create(p, gen.host, R"({"payload_size":1024})", &instance).ok());
  CHECK(poll_as_abi_1_0(p, instance, 50) == 50);
  p.destroy(instance);
}
