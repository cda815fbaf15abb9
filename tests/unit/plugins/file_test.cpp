// Unit tests of the file source (resume after commit, follow) and file sink (lines, fsync modes).
#include <rapidjson/document.h>

#include <fstream>
#include <sstream>

#include "plugin_harness.hpp"

using namespace plugin_test;

namespace {

void write_file(const std::string& path, const std::string& text, bool append = false) {
  std::ofstream f(path, append ? std::ios::app | std::ios::binary : std::ios::binary);
  f << text;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string source_config(const std::string& path, const std::string& extra = "") {
  return R"({"path":")" + path + R"(")" + (extra.empty() ? "" : "," + extra) + "}";
}

std::vector<std::string> values(const std::vector<TestRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.value.value_or("<tombstone>"));
  return out;
}

}  // namespace

TEST_CASE("file source resumes after the committed line, so a restart re-reads nothing committed") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n");
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  FakeHost host;

  int64_t committed_offset = 0;
  {
    Instance source(p, host, source_config(path));
    FakeWriter out;
    bool eos = true;
    REQUIRE(source.poll(out, 3, 0, &eos).ok());
    REQUIRE(out.records.size() == 3);
    CHECK_FALSE(eos);
    // Only the first two are done end to end; the third is still in flight at the "crash".
    committed_offset = out.records[1].offset;
    REQUIRE(source.commit(0, committed_offset).ok());
  }
  rapidjson::Document offsets;
  offsets.Parse(read_file(path + ".sluice-offset").c_str());
  REQUIRE(offsets.IsObject());
  CHECK(offsets["line_offset"].GetInt64() == committed_offset);

  Instance again(p, host, source_config(path));
  FakeWriter out;
  bool eos = false;
  REQUIRE(again.poll(out, 100, 0, &eos).ok());
  CHECK(eos);
  CHECK(values(out.records) == std::vector<std::string>{"{\"n\":3}", "{\"n\":4}", "{\"n\":5}"});
}

TEST_CASE("file source commits go to offset_file when it is given, never backwards") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  const std::string offsets = dir.file("custom.offset");
  write_file(path, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  FakeHost host;
  const std::string config = source_config(path, R"("offset_file":")" + offsets + R"(")");
  {
    Instance source(p, host, config);
    FakeWriter out;
    REQUIRE(source.poll(out, 100, 0).ok());
    REQUIRE(out.records.size() == 3);
    REQUIRE(source.commit(0, out.records[2].offset).ok());
    REQUIRE(source.commit(0, out.records[0].offset).ok());  // a stale commit changes nothing
  }
  CHECK_FALSE(std::filesystem::exists(path + ".sluice-offset"));
  Instance again(p, host, config);
  FakeWriter out;
  bool eos = false;
  REQUIRE(again.poll(out, 100, 0, &eos).ok());
  CHECK(eos);
  CHECK(out.records.empty());
}

TEST_CASE(
    "file source offsets are line start bytes, blank lines are skipped, keys come from key_field") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, "{\"id\":\"a\"}\n\n   \n{\"id\":\"b\"}\r\n{\"id\":3}");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance source(lib.plugin(SLUICE_KIND_SOURCE, "file"), host,
                  source_config(path, R"("key_field":"id","topic":"people")"));
  FakeWriter out;
  bool eos = false;
  REQUIRE(source.poll(out, 100, 0, &eos).ok());
  CHECK(eos);
  REQUIRE(out.records.size() == 3);
  CHECK(out.records[0].offset == 0);
  CHECK(out.records[1].offset == 16);
  CHECK(out.records[2].offset == 28);
  CHECK(out.records[1].value == "{\"id\":\"b\"}");  // the \r of a CRLF line is not data
  CHECK(out.records[2].value == "{\"id\":3}");      // a last line without '\n' still counts
  CHECK(out.records[0].key == "a");
  CHECK(out.records[1].key == "b");
  CHECK_FALSE(out.records[2].key.has_value());  // not a string: no key
  CHECK(out.records[0].topic == "people");
  CHECK(out.records[0].partition == 0);
}

TEST_CASE("file source emits invalid or oversized lines unchanged, flagged with sluice.error") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, "{\"ok\":1}\nnot json\n\xff\xfe\n{\"long\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}\n");
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  FakeHost host;
  {
    Instance source(p, host,
                    source_config(path, R"("max_record_bytes":20,"offset_file":")" +
                                            dir.file("a.offset") + R"(")"));
    FakeWriter out;
    REQUIRE(source.poll(out, 100, 0).ok());
    REQUIRE(out.records.size() == 4);
    CHECK_FALSE(out.records[0].header("sluice.error").has_value());
    CHECK(out.records[1].value == "not json");
    CHECK(out.records[1].header("sluice.error").has_value());
    CHECK(out.records[2].value == "\xff\xfe");
    CHECK(out.records[2].header("sluice.error").has_value());
    CHECK(out.records[3].header("sluice.error")->find("max_record_bytes") != std::string::npos);
  }
  Instance unchecked(p, host,
                     source_config(path, R"("validate_json":false,"offset_file":")" +
                                             dir.file("b.offset") + R"(")"));
  FakeWriter out;
  REQUIRE(unchecked.poll(out, 100, 0).ok());
  REQUIRE(out.records.size() == 4);
  for (const auto& r : out.records) CHECK_FALSE(r.header("sluice.error").has_value());
}

TEST_CASE("file source in follow mode waits at end of file and picks up appended lines") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, "{\"n\":1}\n");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance source(lib.plugin(SLUICE_KIND_SOURCE, "file"), host,
                  source_config(path, R"("follow":true,"poll_interval_ms":1)"));
  FakeWriter out;
  bool eos = true;
  REQUIRE(source.poll(out, 100, 0, &eos).ok());
  CHECK(out.records.size() == 1);
  CHECK_FALSE(eos);
  REQUIRE(source.poll(out, 100, 0, &eos).ok());
  CHECK(out.records.size() == 1);
  CHECK_FALSE(eos);
  // A line still being written (no '\n' yet) is not emitted until it is complete.
  write_file(path, "{\"n\":", true);
  REQUIRE(source.poll(out, 100, 0, &eos).ok());
  CHECK(out.records.size() == 1);
  write_file(path, "2}\n", true);
  REQUIRE(source.poll(out, 100, 0, &eos).ok());
  CHECK_FALSE(eos);
  REQUIRE(out.records.size() == 2);
  CHECK(out.records[1].value == "{\"n\":2}");
  CHECK(out.records[1].offset == 8);
}

TEST_CASE(
    "file sink appends one value per line and writes tombstones as null, in every fsync mode") {
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SINK, "file");
  for (const char* mode : {"none", "batch", "always"}) {
    CAPTURE(mode);
    TempDir dir;
    const std::string path = dir.file("out.jsonl");
    write_file(path, "{\"existing\":true}\n");
    FakeHost host;
    Instance sink(p, host, R"({"path":")" + path + R"(","fsync":")" + mode + R"("})");
    std::vector<TestRecord> batch(3);
    batch[0].value = "{\"a\":1}";
    batch[1].value = std::nullopt;
    batch[2].value = "{\"b\":\n2}";  // a value spanning lines is re-encoded onto one
    FakeWriter rejects;
    REQUIRE(sink.put(batch, rejects).ok());
    REQUIRE(sink.put({batch[0]}, rejects).ok());
    REQUIRE(sink.flush().ok());
    CHECK(rejects.rejects.empty());
    CHECK(read_file(path) == "{\"existing\":true}\n{\"a\":1}\nnull\n{\"b\":2}\n{\"a\":1}\n");
    CHECK(host.counter("records") == 4);
  }
}

TEST_CASE("file sink envelope format carries key, value, position and headers") {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "file"), host,
                R"({"path":")" + path + R"(","format":"envelope"})");
  TestRecord r;
  r.key = "k1";
  r.value = "{\"x\":1}";
  r.topic = "orders";
  r.partition = 2;
  r.offset = 41;
  r.timestamp_ms = 1234;
  r.headers = {{"h", "v"}};
  TestRecord plain;
  plain.value = "not json";
  FakeWriter rejects;
  REQUIRE(sink.put({r, plain}, rejects).ok());
  std::istringstream lines(read_file(path));
  std::string line;
  REQUIRE(std::getline(lines, line));
  rapidjson::Document d;
  d.Parse(line.c_str());
  REQUIRE(d.IsObject());
  CHECK(std::string(d["key"].GetString()) == "k1");
  CHECK(d["value"]["x"].GetInt() == 1);
  CHECK(std::string(d["topic"].GetString()) == "orders");
  CHECK(d["partition"].GetInt() == 2);
  CHECK(d["offset"].GetInt64() == 41);
  CHECK(d["timestamp"].GetInt64() == 1234);
  CHECK(std::string(d["headers"]["h"].GetString()) == "v");
  REQUIRE(std::getline(lines, line));
  d.Parse(line.c_str());
  REQUIRE(d.IsObject());
  CHECK(d["key"].IsNull());
  CHECK(std::string(d["value"].GetString()) == "not json");
}

TEST_CASE("file sink cuts a torn last line left by a killed run before it appends") {
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SINK, "file");
  struct Case {
    const char* what;
    std::string before, after;
  };
  const std::string long_tail(10000, 'x');  // longer than one backwards read
  for (const Case& c : {Case{"short tail", "{\"a\":1}\n{\"b\":", "{\"a\":1}\n"},
                        Case{"long tail", "{\"a\":1}\n{\"" + long_tail, "{\"a\":1}\n"},
                        Case{"no newline at all", "{\"" + long_tail, ""},
                        Case{"whole lines", "{\"a\":1}\n{\"b\":2}\n", "{\"a\":1}\n{\"b\":2}\n"}}) {
    CAPTURE(c.what);
    TempDir dir;
    const std::string path = dir.file("out.jsonl");
    write_file(path, c.before);
    FakeHost host;
    Instance sink(p, host, R"({"path":")" + path + R"("})");
    TestRecord r;
    r.value = "{\"c\":3}";
    FakeWriter rejects;
    REQUIRE(sink.put({r}, rejects).ok());
    CHECK(read_file(path) == c.after + "{\"c\":3}\n");
    const bool warned =
        !host.logs().empty() && host.logs().front().find("torn") != std::string::npos;
    CHECK(warned == (c.before != c.after));
  }
}
