// ABI growth: plugins built against an older, shorter ABI (their own copy of the 1.0 header)
// and one that claims a newer minor with longer tables, loaded by this host; and the entry
// point of SLUICE_MODULE, which must run none of the plugin's code (abi.h).
#include <dlfcn.h>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>

#include "loader_test_support.hpp"
#include "pipeline/writers.hpp"
#include "plugin/plugin_instance.hpp"

using namespace sluice;
using namespace sluice::plugin;
using namespace sluice::plugin::testing;

namespace {

const PluginInfo& find(const PluginLibrary& lib, const std::string& name) {
  for (const auto& p : lib.plugins())
    if (p.name == name) return p;
  throw std::runtime_error("no plugin " + name);
}

std::string text(sluice_bytes b) { return {reinterpret_cast<const char*>(b.ptr), b.len}; }

// Polls an instance of the old source once, the way the source thread does (ABI 1.1 args).
core::RecordBuffer poll_once(PluginInstance& source, uint32_t max_records, uint64_t max_bytes,
                             bool& end) {
  pipeline::CollectingWriter out(SIZE_MAX);
  sluice_poll_args args{sizeof(sluice_poll_args), max_records, 0, 0, max_bytes};
  CallError err;
  REQUIRE(source.table().poll(source.handle(), &args, out.get(), err.get()) == SLUICE_OK);
  end = args.end_of_stream != 0;
  return std::move(out.records());
}

}  // namespace

TEST_CASE("a plugin built against ABI 1.0, with shorter tables, loads and runs records") {
  auto lib = PluginLibrary::load(test_plugins() / "abi_old" / "sluice-abi_old.so");
  REQUIRE(lib->plugins().size() == 2);
  PluginInstance source(find(*lib, "old_counter"), "old.source", "{}");
  PluginInstance upper(find(*lib, "old_upper"), "old.transform0", "{}");
  CHECK(find(*lib, "old_counter").schema_json == R"({"fields":[]})");  // a NULL schema

  // 1.0 has no byte bound: a poll with one byte of room still gets max_records records (as
  // abi.h documents; the host pauses such a source until its queues drain).
  bool end = false;
  auto polled = poll_once(source, 4, 1, end);
  CHECK(polled.size() == 4);
  CHECK_FALSE(end);
  auto rest = poll_once(source, 100, 1 << 20, end);
  CHECK(rest.size() == 6);
  CHECK(end);

  // The host's batch, indexed by the plugin with its own 1.0 sizeof(sluice_record).
  const auto in = rest.records();
  sluice_batch batch{sizeof(sluice_batch), in.data(), in.size()};
  pipeline::CollectingWriter out(in.size());
  CallError err;
  REQUIRE(upper.table().process(upper.handle(), &batch, out.get(), err.get()) == SLUICE_OK);
  REQUIRE(out.records().size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    const sluice_record& r = out.records()[i];
    CHECK(text(r.value) == fmt::format("R{}", i + 4));
    CHECK(text(r.topic) == "old");
    CHECK(r.offset == static_cast<int64_t>(i + 4));
    CHECK(r.timestamp_ms == static_cast<int64_t>(1004 + i));
    REQUIRE(r.header_count == 1);
    CHECK(text(r.headers[0].key) == "abi");
    CHECK(out.origins()[i] == i);
  }

  // Hooks past a table's struct_size are not there, though the memory holds pointers.
  CHECK_FALSE(upper.has(&sluice_plugin::on_memory_pressure));
  CHECK_FALSE(upper.has(&sluice_plugin::snapshot));
  // (Had the host called the module's init, past its struct_size, the stray would have aborted.)
}

TEST_CASE("a table that ends before its required hook is refused, though memory holds one") {
  auto f = test_plugins() / "abi_short" / "sluice-abi_short.so";
  CHECK(load_error(f) == f.string() + ": sink plugin 'short_sink' lacks its required hooks");
}

TEST_CASE("a plugin of a newer minor, with longer tables, is refused as abi.h says") {
  auto f = test_plugins() / "abi_newer" / "sluice-abi_newer.so";
  CHECK(load_error(f) == newer_minor_error(f));
}

TEST_CASE("SLUICE_MODULE's entry point runs no plugin code; init builds the schema") {
  const auto f = test_plugins() / "lazy_schema" / "sluice-lazy_schema.so";
  void* handle = ::dlopen(f.c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE(handle != nullptr);
  auto get = reinterpret_cast<sluice_module_get_fn>(::dlsym(handle, SLUICE_MODULE_ENTRY));
  auto builds = reinterpret_cast<int (*)()>(::dlsym(handle, "lazy_schema_builds"));
  REQUIRE((get != nullptr));
  REQUIRE((builds != nullptr));

  const sluice_module* m = get(SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR);
  REQUIRE(m != nullptr);
  CHECK(builds() == 0);
  REQUIRE(m->plugin_count == 1);
  CHECK(std::string(m->plugins[0]->name) == "lazy");
  CHECK(m->plugins[0]->config_schema_json == nullptr);
  REQUIRE((m->init != nullptr));

  char message[256] = {};
  sluice_error error{sizeof error, message, sizeof message, nullptr, 0};
  CHECK(m->init(nullptr, &error) == SLUICE_OK);
  CHECK(builds() == 1);
  REQUIRE(m->plugins[0]->config_schema_json != nullptr);
  CHECK(std::string(m->plugins[0]->config_schema_json).find("greeting") != std::string::npos);
  ::dlclose(handle);

  // The host reads the schema and description after init.
  auto lib = PluginLibrary::load(f);
  CHECK(find(*lib, "lazy").schema_json.find("greeting") != std::string::npos);
  CHECK(find(*lib, "lazy").description == "Counts how often its schema is built.");
}

TEST_CASE("a schema that throws fails the load, with the exception's message") {
  auto f = test_plugins() / "lazy_schema_throws" / "sluice-lazy_schema_throws.so";
  CHECK(load_error(f) == f.string() + ": plugin init failed: schema cannot be built");
}
