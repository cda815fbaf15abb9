// Unit tests of the file source (resume after commit, follow, file identity, offset checks,
// locks) and file sink (lines, fsync modes, a deleted or replaced output file).
#include <fcntl.h>
#include <rapidjson/document.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <memory>
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

std::string numbered_lines(int from, int to, const std::string& field = "n") {
  std::string text;
  for (int i = from; i < to; ++i) text += "{\"" + field + "\":" + std::to_string(i) + "}\n";
  return text;
}

// Replaces `path` by a new file (a new inode) holding `text`, as `mv new path` does.
void replace_file(const std::string& path, const std::string& text) {
  write_file(path + ".new", text);
  REQUIRE(std::rename((path + ".new").c_str(), path.c_str()) == 0);
}

bool any_log_contains(FakeHost& host, const std::string& part) {
  for (const auto& line : host.logs())
    if (line.find(part) != std::string::npos) return true;
  return false;
}

// A scratch folder with an input file of numbered lines, and the file source plugin.
struct SourceFixture {
  explicit SourceFixture(int lines) { write_file(path, numbered_lines(0, lines)); }
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  Library lib{plugin_path("file")};
  const sluice_plugin& plugin = lib.plugin(SLUICE_KIND_SOURCE, "file");
  FakeHost host;
};

// A file sink writing envelope lines to a scratch folder.
struct EnvelopeSink {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  Library lib{plugin_path("file")};
  FakeHost host;
  Instance sink{lib.plugin(SLUICE_KIND_SINK, "file"), host,
                R"({"path":")" + path + R"(","format":"envelope"})"};
};

// Polls a source to the end of its input.
std::vector<TestRecord> poll_all(Instance& source) {
  FakeWriter out;
  REQUIRE(source.poll(out, 100000, 0).ok());
  return std::move(out.records);
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

TEST_CASE("file source reads a last line read without its newline again if it grew since") {
  SourceFixture f(2);
  write_file(f.path, "{\"n\":", /*append=*/true);  // a line still being written
  auto run = [&] {
    Instance source(f.plugin, f.host, source_config(f.path));
    std::vector<TestRecord> records = poll_all(source);
    if (!records.empty()) REQUIRE(source.commit(0, records.back().offset).ok());
    return values(records);
  };
  CHECK(run() == std::vector<std::string>{"{\"n\":0}", "{\"n\":1}", "{\"n\":"});
  SUBCASE("the writer finishes the line and writes another: the line is read again whole") {
    write_file(f.path, "2}\n{\"n\":3}\n", true);
    CHECK(run() == std::vector<std::string>{"{\"n\":2}", "{\"n\":3}"});
    CHECK(any_log_contains(f.host, "was read without its newline, as 5 bytes, and has grown"));
    CHECK(run().empty());  // and it is committed whole: not read a third time
  }
  SUBCASE("only its newline came: the same line, not read again") {
    write_file(f.path, "\n{\"n\":3}\n", true);
    CHECK(run() == std::vector<std::string>{"{\"n\":3}"});
  }
  SUBCASE("nothing came: nothing is read") { CHECK(run().empty()); }
}

TEST_CASE("file source keeps a last line read without its newline across a hot reload") {
  SourceFixture f(2);
  write_file(f.path, "{\"n\":", /*append=*/true);
  std::string state;
  int64_t last = 0;
  {
    Instance before(f.plugin, f.host, source_config(f.path));
    const std::vector<TestRecord> records = poll_all(before);
    REQUIRE(records.size() == 3);
    last = records.back().offset;
    state = before.snapshot();
  }
  {
    Instance after(f.plugin, f.host, source_config(f.path));
    REQUIRE(after.restore(state).ok());
    REQUIRE(after.commit(0, last).ok());  // the reloaded instance commits the line
  }
  write_file(f.path, "2}\n{\"n\":3}\n", true);
  Instance next_run(f.plugin, f.host, source_config(f.path));
  CHECK(values(poll_all(next_run)) == std::vector<std::string>{"{\"n\":2}", "{\"n\":3}"});
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

// Not validated (validate_json: false), a line whose other bytes are not UTF-8 still has its key;
// validated, it is flagged with the reason.
TEST_CASE("file source reads key_field from a line whose other bytes are not UTF-8") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, "{\"id\":\"a\",\"v\":\"bad\xff\xfe\"}\n");
  Library lib(plugin_path("file"));
  for (const bool validate : {false, true}) {
    CAPTURE(validate);
    FakeHost host;
    Instance source(
        lib.plugin(SLUICE_KIND_SOURCE, "file"), host,
        source_config(path, std::string(R"("key_field":"id","offset_file":")") +
                                dir.file(validate ? "v.off" : "n.off") + R"(","validate_json":)" +
                                (validate ? "true" : "false")));
    auto records = poll_all(source);
    REQUIRE(records.size() == 1);
    if (validate) {
      REQUIRE(records[0].header("sluice.error").has_value());
      CHECK(records[0].header("sluice.error")->find("Invalid encoding") != std::string::npos);
    } else {
      CHECK(records[0].key == "a");
      CHECK_FALSE(records[0].header("sluice.error").has_value());
    }
  }
}

TEST_CASE(
    "file source emits invalid lines unchanged and oversized ones cut, flagged with sluice.error") {
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
    CHECK(out.records[3].value == "{\"long\":\"xxxxxxxxxxx");
    CHECK(
        out.records[3].header("sluice.error")->find("line of 35 bytes is over max_record_bytes") !=
        std::string::npos);
  }
  Instance unchecked(p, host,
                     source_config(path, R"("validate_json":false,"offset_file":")" +
                                             dir.file("b.offset") + R"(")"));
  FakeWriter out;
  REQUIRE(unchecked.poll(out, 100, 0).ok());
  REQUIRE(out.records.size() == 4);
  for (const auto& r : out.records) CHECK_FALSE(r.header("sluice.error").has_value());
}

// A 3 MB line in a 1 KB limit: the source holds no more of it than the limit plus one read,
// emits its prefix flagged with its true length and offset, and every position around it stays
// right: the next line, a resume past it, a line still being written in follow mode, and a
// snapshot taken inside it (which restores to the line's start).
TEST_CASE("file source never holds a line past max_record_bytes, and loses no line around it") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  const std::string huge = "{\"pad\":\"" + std::string(3 << 20, 'x') + "\"}";
  write_file(path, "{\"n\":1}\n" + huge + "\n{\"n\":3}\n");
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  FakeHost host;
  const std::string config =
      source_config(path, R"("max_record_bytes":1024,"follow":true,"poll_interval_ms":1)");
  {
    Instance source(p, host, config);
    FakeWriter out;
    REQUIRE(source.poll(out, 100, 0).ok());
    REQUIRE(out.records.size() == 3);
    CHECK(out.records[1].offset == 8);
    CHECK(out.records[1].value == huge.substr(0, 1024));
    const auto error = out.records[1].header("sluice.error");
    REQUIRE(error.has_value());
    CHECK(error->find("line of " + std::to_string(huge.size()) + " bytes") != std::string::npos);
    CHECK(error->find("at offset 8 of " + path) != std::string::npos);
    CHECK(out.records[2].value == "{\"n\":3}");
    CHECK(out.records[2].offset == static_cast<int64_t>(8 + huge.size() + 1));
    REQUIRE(source.commit(0, out.records[1].offset).ok());

    // Follow mode: a long line still being written is not emitted, and a snapshot inside it
    // points at its start.
    write_file(path, std::string(2 << 20, 'y'), true);
    FakeWriter more;
    REQUIRE(source.poll(more, 100, 0).ok());
    CHECK(more.records.empty());
    const std::string state = source.snapshot();
    CHECK(state.rfind(std::to_string(out.records[2].offset + 8) + " ", 0) == 0);
    write_file(path, "z\n{\"n\":5}\n", true);
    REQUIRE(source.poll(more, 100, 0).ok());
    REQUIRE(more.records.size() == 2);
    CHECK(more.records[0].value == std::string(1024, 'y'));
    CHECK(more.records[0].header("sluice.error")->find("line of 2097153 bytes") !=
          std::string::npos);
    CHECK(more.records[1].value == "{\"n\":5}");
  }
  // Resumed after the committed long line: the next line comes whole.
  Instance again(p, host, config);
  FakeWriter out;
  REQUIRE(again.poll(out, 1, 0).ok());
  REQUIRE(out.records.size() == 1);
  CHECK(out.records[0].value == "{\"n\":3}");
}

// A line is held whole and copied on its way (a 50 MB line cost 250 MB of RSS with a 64 MB
// limit): under a memory limit the source holds a line up to an eighth of it, and a longer one
// goes on as its flagged prefix, whatever max_record_bytes says.
TEST_CASE("file source holds a line up to an eighth of the memory limit, with a warning") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  const std::string big = "{\"pad\":\"" + std::string(300000, 'x') + "\"}";
  write_file(path, big + "\n{\"n\":2}\n");
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  const std::string config = source_config(path, R"("max_record_bytes":100000000)");
  {
    FakeHost host(1 << 20);  // a 1 MiB limit: lines up to 128 KiB
    Instance source(p, host, config);
    CHECK(any_log_contains(host, "max_record_bytes 100000000 is over an eighth of the memory"));
    auto records = poll_all(source);
    REQUIRE(records.size() == 2);
    CHECK(records[0].value->size() == 131072);
    const auto error = records[0].header("sluice.error");
    REQUIRE(error.has_value());
    CHECK(error->find("line of " + std::to_string(big.size()) + " bytes is over max_record_bytes " +
                      "(131072, an eighth of the memory limit)") != std::string::npos);
    CHECK(records[1].value == "{\"n\":2}");
  }
  FakeHost roomy(64 << 20);  // 8 MiB a line: it comes whole
  Instance source(p, roomy, config);
  auto records = poll_all(source);
  REQUIRE(records.size() == 2);
  CHECK(records[0].value == big);
  CHECK_FALSE(records[0].header("sluice.error").has_value());
  CHECK(any_log_contains(roomy, "lines are held up to 8388608 bytes"));
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
  EnvelopeSink f;
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
  REQUIRE(f.sink.put({r, plain}, rejects).ok());
  std::istringstream lines(read_file(f.path));
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

// A JSON string must be UTF-8: bytes that are not (a dead letter of a record the source refused
// for its encoding, say) go in base64, so every line is JSON a strict parser reads, and the bytes
// come back exactly.
TEST_CASE("file sink envelope lines stay JSON when a record's bytes are not UTF-8") {
  EnvelopeSink f;
  TestRecord r;
  r.key = std::string("k\xc3");                         // a lead byte without its tail
  r.value = std::string("{\"v\":\"bad\xff\xfeutf\"}");  // JSON around bytes that are not UTF-8
  r.topic = "t";
  r.headers = {{"ok", "fine"}, {"h", std::string("h\xed\xa0\x80")}};  // a surrogate
  TestRecord overlong;
  overlong.value = std::string("\xc0\xaf");
  TestRecord unicode;  // valid UTF-8 of 2, 3 and 4 bytes stays as it is
  unicode.value = "{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}";
  FakeWriter rejects;
  REQUIRE(f.sink.put({r, overlong, unicode}, rejects).ok());
  std::istringstream lines(read_file(f.path));
  std::string line;
  std::vector<rapidjson::Document> docs;
  while (std::getline(lines, line)) {
    docs.emplace_back();
    docs.back().Parse<rapidjson::kParseValidateEncodingFlag>(line.c_str(), line.size());
    REQUIRE_FALSE(docs.back().HasParseError());
  }
  REQUIRE(docs.size() == 3);
  CHECK_FALSE(docs[0].HasMember("key"));
  CHECK(std::string(docs[0]["key_base64"].GetString()) == "a8M=");
  CHECK_FALSE(docs[0].HasMember("value"));
  CHECK(std::string(docs[0]["value_base64"].GetString()) ==
        "eyJ2IjoiYmFk//51dGYifQ==");  // base64 of the value's bytes, as Python's base64 gives it
  CHECK(std::string(docs[0]["topic"].GetString()) == "t");
  CHECK(std::string(docs[0]["headers"]["ok"].GetString()) == "fine");
  CHECK_FALSE(docs[0]["headers"].HasMember("h"));
  REQUIRE(docs[0]["headers_base64"].Size() == 1);
  CHECK(std::string(docs[0]["headers_base64"][0]["key"].GetString()) == "aA==");
  CHECK(std::string(docs[0]["headers_base64"][0]["value"].GetString()) == "aO2ggA==");
  CHECK(std::string(docs[1]["value_base64"].GetString()) == "wK8=");
  CHECK(std::string(docs[2]["value"]["u"].GetString()) == "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  CHECK_FALSE(docs[2].HasMember("headers_base64"));
}

TEST_CASE("file sink value format keeps one record per line when a value holds a line break") {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "file"), host, R"({"path":")" + path + R"("})");
  std::vector<TestRecord> records(4);
  records[0].value = "{\"a\":1}";
  records[1].value = "two\nlines";
  records[2].value = "carriage\rreturn";
  records[3].value = "{\n\"b\": 2}";
  FakeWriter rejects;
  REQUIRE(sink.put({records[0], records[1], records[2], records[3]}, rejects).ok());
  // Plain values go out as they are; one with \n or \r becomes a JSON string or compact JSON.
  CHECK(read_file(path) == "{\"a\":1}\n\"two\\nlines\"\n\"carriage\\rreturn\"\n{\"b\":2}\n");
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

TEST_CASE("file sink writes a batch again to a new file when its file was deleted or replaced") {
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SINK, "file");
  for (const char* mode : {"none", "batch", "always"}) {
    for (const bool replaced : {false, true}) {
      CAPTURE(mode);
      CAPTURE(replaced);
      TempDir dir;
      const std::string path = dir.file("out.jsonl");
      FakeHost host;
      Instance sink(p, host, R"({"path":")" + path + R"(","fsync":")" + mode + R"("})");
      TestRecord a, b, c;
      a.value = "{\"a\":1}";
      b.value = "{\"b\":2}";
      c.value = "{\"c\":3}";
      FakeWriter rejects;
      REQUIRE(sink.put({a}, rejects).ok());
      // The operator deletes the file (or moves another one over it) while sluice runs.
      if (replaced)
        replace_file(path, "{\"other\":0}\n");
      else
        REQUIRE(std::remove(path.c_str()) == 0);
      REQUIRE(sink.put({b, c}, rejects).ok());
      // The acknowledged batch is in the file that `path` names, not only in an unlinked one.
      CHECK(read_file(path) ==
            std::string(replaced ? "{\"other\":0}\n" : "") + "{\"b\":2}\n{\"c\":3}\n");
      CHECK(any_log_contains(host, path));
      CHECK(any_log_contains(host, "deleted or replaced"));
      REQUIRE(sink.put({a}, rejects).ok());  // and later batches follow it there
      REQUIRE(sink.flush().ok());
      CHECK(read_file(path) ==
            std::string(replaced ? "{\"other\":0}\n" : "") + "{\"b\":2}\n{\"c\":3}\n{\"a\":1}\n");
    }
  }
}

TEST_CASE("file sink flush notices a deleted file, so later batches land in a new one") {
  TempDir dir;
  const std::string path = dir.file("out.jsonl");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "file"), host, R"({"path":")" + path + R"("})");
  TestRecord a;
  a.value = "{\"a\":1}";
  FakeWriter rejects;
  REQUIRE(sink.put({a}, rejects).ok());
  REQUIRE(std::remove(path.c_str()) == 0);
  REQUIRE(sink.flush().ok());
  CHECK(any_log_contains(host, path));
  CHECK(std::filesystem::exists(path));
}

TEST_CASE("file source reads a replaced input file from its start, even one that starts alike") {
  Library lib(plugin_path("file"));
  const auto& p = lib.plugin(SLUICE_KIND_SOURCE, "file");
  struct Case {
    const char* what;
    std::function<void(const std::string&)> replace;
    bool before_commit = false;
  };
  // The new file begins with the same bytes (only the inode tells), or is the same inode
  // rewritten with other bytes (only the fingerprint tells); both are longer than the offset.
  // The identity committed is the one of the bytes read, not of what the path holds when the
  // commit runs: a file rewritten after it was read, its batch still on its way to the sink, is
  // new data too.
  const std::vector<Case> cases = {
      {"renamed over (same first bytes)",
       [](const std::string& path) { replace_file(path, numbered_lines(0, 40)); }},
      {"rewritten in place (other first bytes)",
       [](const std::string& path) { write_file(path, numbered_lines(0, 40, "m")); }},
      {"rewritten in place after it was read, before the commit",
       [](const std::string& path) { write_file(path, numbered_lines(0, 40, "m")); }, true},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    TempDir dir;
    const std::string path = dir.file("in.jsonl");
    write_file(path, numbered_lines(0, 10));
    FakeHost host;
    {
      Instance source(p, host, source_config(path));
      auto records = poll_all(source);
      REQUIRE(records.size() == 10);
      if (c.before_commit) c.replace(path);
      REQUIRE(source.commit(0, records[7].offset).ok());
    }
    if (!c.before_commit) c.replace(path);
    Instance again(p, host, source_config(path));
    auto records = poll_all(again);
    REQUIRE(records.size() == 40);  // nothing of the new file skipped
    CHECK(records.front().offset == 0);
    CHECK(any_log_contains(host, "reading it from the start"));
  }
}

// A file truncated and written again while it is read, to at least the length read: no
// truncation shows at the end, its first bytes tell, and the next run reads it from its start.
TEST_CASE("file source says so when its file is rewritten in place mid-read, and reads it again") {
  SourceFixture f(20000);  // more than one read
  {
    Instance source(f.plugin, f.host, source_config(f.path));
    FakeWriter out;
    REQUIRE(source.poll(out, 10, 0).ok());
    write_file(f.path, numbered_lines(0, 20000, "z"));  // as long as before: only the bytes tell
    bool eos = false;
    for (int i = 0; i < 10 && !eos; ++i) REQUIRE(source.poll(out, 100000, 0, &eos).ok());
    CHECK(eos);
    CHECK(any_log_contains(f.host, "was rewritten while it was read"));
    REQUIRE(source.commit(0, out.records.back().offset).ok());
  }
  Instance again(f.plugin, f.host, source_config(f.path));
  auto records = poll_all(again);
  REQUIRE(records.size() == 20000);  // the new bytes, from their start
  CHECK(values(records).front() == "{\"z\":0}");
}

TEST_CASE("file source resumes an offset file written before identities were kept") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, numbered_lines(0, 5));  // each line is 8 bytes
  write_file(path + ".sluice-offset", R"({"path":")" + path +
                                          R"(","line_offset":16})"
                                          "\n");
  Library lib(plugin_path("file"));
  FakeHost host;
  Instance source(lib.plugin(SLUICE_KIND_SOURCE, "file"), host, source_config(path));
  CHECK(values(poll_all(source)) == std::vector<std::string>{"{\"n\":3}", "{\"n\":4}"});
}

TEST_CASE("file source refuses to start at an offset that is not a line start") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  const std::string offsets = path + ".sluice-offset";
  write_file(path, numbered_lines(0, 5));
  write_file(offsets, R"({"path":")" + path +
                          R"(","line_offset":19})"
                          "\n");
  Library lib(plugin_path("file"));
  FakeHost host;
  void* instance = nullptr;
  const CallResult r = Instance::try_create(lib.plugin(SLUICE_KIND_SOURCE, "file"), host,
                                            source_config(path), &instance);
  CHECK_FALSE(r.ok());
  CHECK(instance == nullptr);
  CHECK(r.field == "offset_file");
  CHECK(r.message.find(offsets) != std::string::npos);
  CHECK(r.message.find("line_offset 19") != std::string::npos);
  CHECK(r.message.find("not the start of a line") != std::string::npos);
}

TEST_CASE("file source refuses an offset file that is a FIFO, without waiting for a writer") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  const std::string offsets = path + ".sluice-offset";
  write_file(path, numbered_lines(0, 5));
  REQUIRE(::mkfifo(offsets.c_str(), 0644) == 0);
  Library lib(plugin_path("file"));
  FakeHost host;
  void* instance = nullptr;
  // It hung here (open waits for a FIFO's writer), and the first SIGTERM did not stop it.
  auto created = std::async(std::launch::async, [&] {
    return Instance::try_create(lib.plugin(SLUICE_KIND_SOURCE, "file"), host, source_config(path),
                                &instance);
  });
  if (created.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    FAIL_CHECK("the file source waits on a FIFO at its offset file");
    ::close(::open(offsets.c_str(), O_WRONLY));  // lets the open return, and the read end
    created.wait();
    return;
  }
  const CallResult r = created.get();
  CHECK_FALSE(r.ok());
  CHECK(instance == nullptr);
  CHECK(r.field == "offset_file");
  CHECK(r.message.find(offsets + " is not a regular file") != std::string::npos);
}

TEST_CASE("file source in follow mode reads a rotated file to its end, then the new one") {
  SourceFixture f(3);
  const std::string config = source_config(f.path, R"("follow":true,"poll_interval_ms":1)");
  {
    Instance source(f.plugin, f.host, config);
    FakeWriter out;
    REQUIRE(source.poll(out, 100, 0).ok());
    REQUIRE(out.records.size() == 3);
    REQUIRE(source.commit(0, out.records[2].offset).ok());
    // The writer ends its file with a last line without '\n', then the file is rotated.
    write_file(f.path, "{\"n\":3}", /*append=*/true);
    REQUIRE(std::rename(f.path.c_str(), (f.path + ".1").c_str()) == 0);
    write_file(f.path, numbered_lines(0, 4, "new"));
    for (int i = 0; i < 50 && out.records.size() < 8; ++i) REQUIRE(source.poll(out, 100, 5).ok());
    CHECK(values(out.records) == std::vector<std::string>{"{\"n\":0}", "{\"n\":1}", "{\"n\":2}",
                                                          "{\"n\":3}", "{\"new\":0}", "{\"new\":1}",
                                                          "{\"new\":2}", "{\"new\":3}"});
    CHECK(any_log_contains(f.host, "rotated"));
    // Offsets start over in the new file, and its commits are kept.
    REQUIRE(source.commit(0, out.records[5].offset).ok());
  }
  Instance again(f.plugin, f.host, config);
  FakeWriter out;
  REQUIRE(again.poll(out, 100, 0).ok());
  CHECK(values(out.records) == std::vector<std::string>{"{\"new\":2}", "{\"new\":3}"});
}

TEST_CASE("file source without follow says so when its file is truncated or replaced mid-read") {
  SUBCASE("truncated") {
    SourceFixture f(20000);  // about 200 KB: more than one read of the source
    Instance source(f.plugin, f.host, source_config(f.path));
    FakeWriter out;
    REQUIRE(source.poll(out, 10, 0).ok());
    REQUIRE(::truncate(f.path.c_str(), 100) == 0);
    bool eos = false;
    for (int i = 0; i < 10 && !eos; ++i) REQUIRE(source.poll(out, 100000, 0, &eos).ok());
    CHECK(eos);
    // The whole lines the first read held come out as they are; the line it cut is flagged.
    REQUIRE(out.records.size() > 10);
    CHECK(out.records.size() < 20000);
    for (size_t i = 0; i + 1 < out.records.size(); ++i) CHECK(out.records[i].value->back() == '}');
    REQUIRE(out.records.back().header("sluice.error").has_value());
    CHECK(out.records.back().header("sluice.error")->find("line cut short") != std::string::npos);
    CHECK(any_log_contains(f.host, "was truncated while it was read: it is 100 bytes long"));
  }
  SUBCASE("replaced") {
    SourceFixture f(20000);
    Instance source(f.plugin, f.host, source_config(f.path));
    FakeWriter out;
    REQUIRE(source.poll(out, 10, 0).ok());
    REQUIRE(std::rename(f.path.c_str(), (f.path + ".1").c_str()) == 0);
    write_file(f.path, numbered_lines(0, 4, "new"));
    bool eos = false;
    for (int i = 0; i < 10 && !eos; ++i) REQUIRE(source.poll(out, 100000, 0, &eos).ok());
    CHECK(out.records.size() == 20000);  // the file it opened, to its end
    CHECK(any_log_contains(f.host, "was replaced while it was read"));
  }
  SUBCASE("untouched: no warning") {
    SourceFixture f(20000);
    Instance source(f.plugin, f.host, source_config(f.path));
    FakeWriter out;
    bool eos = false;
    for (int i = 0; i < 10 && !eos; ++i) REQUIRE(source.poll(out, 100000, 0, &eos).ok());
    CHECK(out.records.size() == 20000);
    CHECK_FALSE(any_log_contains(f.host, "while it was read"));
  }
}

TEST_CASE("file source and sink refuse a file another sluice holds, naming its pid") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, numbered_lines(0, 3));
  Library lib(plugin_path("file"));
  struct Case {
    const char* what;
    sluice_kind kind;
    std::string lock_file, config, field;
  };
  for (const Case& c : {Case{"source", SLUICE_KIND_SOURCE, path + ".sluice-offset.lock",
                             source_config(path), "offset_file"},
                        Case{"sink", SLUICE_KIND_SINK, dir.file("out.jsonl.lock"),
                             source_config(dir.file("out.jsonl")), "path"}}) {
    CAPTURE(c.what);
    // Another process's lock: a separate open file description holding flock.
    const int fd = ::open(c.lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    const std::string holder = "pid 4242 stage other\n";
    REQUIRE(::write(fd, holder.data(), holder.size()) == static_cast<ssize_t>(holder.size()));
    FakeHost host;
    void* instance = nullptr;
    const CallResult r =
        Instance::try_create(lib.plugin(c.kind, "file"), host, c.config, &instance);
    CHECK_FALSE(r.ok());
    CHECK(r.field == c.field);
    CHECK(r.message.find("in use by another sluice (pid 4242)") != std::string::npos);
    ::close(fd);  // released: now it starts
    Instance ok(lib.plugin(c.kind, "file"), host, c.config);
  }
}

// A lock file deleted under a running stage would let a second run lock a new one and write the
// same file. The holder notices at its next put or commit: it locks the path again if it can,
// and stops (FATAL, naming the other run) if another run got there first.
TEST_CASE(
    "a file source or sink whose lock file is deleted locks it again, or stops for the run that "
    "took it") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, numbered_lines(0, 3));
  Library lib(plugin_path("file"));
  const std::string out_path = dir.file("out.jsonl");
  FakeHost host;
  Instance source(lib.plugin(SLUICE_KIND_SOURCE, "file"), host, source_config(path));
  Instance sink(lib.plugin(SLUICE_KIND_SINK, "file"), host, R"({"path":")" + out_path + R"("})");
  FakeWriter polled;
  REQUIRE(source.poll(polled, 100, 0).ok());
  REQUIRE(polled.records.size() == 3);
  const auto put = [&] {
    TestRecord r;
    r.value = "{\"c\":3}";
    FakeWriter rejects;
    return sink.put({r}, rejects);
  };
  const std::string source_lock = path + ".sluice-offset.lock";
  const std::string sink_lock = out_path + ".lock";

  // Deleted, nobody else there: locked again, with a warning.
  REQUIRE(::unlink(source_lock.c_str()) == 0);
  REQUIRE(::unlink(sink_lock.c_str()) == 0);
  REQUIRE(source.commit(0, polled.records[0].offset).ok());
  REQUIRE(put().ok());
  for (const auto& lock : {source_lock, sink_lock}) {
    CAPTURE(lock);
    CHECK(read_file(lock).rfind("pid " + std::to_string(::getpid()) + " ", 0) == 0);
    const int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);  // held again
    ::close(fd);
  }
  CHECK(any_log_contains(host, "locked again"));

  // Deleted, and another run locked the new file first: the stage stops, naming it.
  std::vector<int> others;
  for (const auto& lock : {source_lock, sink_lock}) {
    REQUIRE(::unlink(lock.c_str()) == 0);
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    const std::string holder = "pid 4242 stage other\n";
    REQUIRE(::write(fd, holder.data(), holder.size()) == static_cast<ssize_t>(holder.size()));
    others.push_back(fd);
  }
  const auto committed = source.commit(0, polled.records[2].offset);
  const auto written = put();
  for (const auto& r : {committed, written}) {
    CHECK(r.status == SLUICE_FATAL);
    CHECK(r.message.find("in use by another sluice (pid 4242)") != std::string::npos);
  }
  CHECK(read_file(out_path) == "{\"c\":3}\n");  // the refused put wrote nothing
  for (const int fd : others) ::close(fd);
}

TEST_CASE("a reloaded file source or sink takes the lock over from the instance it replaces") {
  TempDir dir;
  const std::string path = dir.file("in.jsonl");
  write_file(path, numbered_lines(0, 3));
  Library lib(plugin_path("file"));
  FakeHost host;  // one stage name for both instances, as in a hot reload
  struct Case {
    const char* what;
    sluice_kind kind;
    std::string lock_file, config;
  };
  for (const Case& c :
       {Case{"source", SLUICE_KIND_SOURCE, path + ".sluice-offset.lock", source_config(path)},
        Case{"sink", SLUICE_KIND_SINK, dir.file("out.jsonl.lock"),
             source_config(dir.file("out.jsonl"))}}) {
    CAPTURE(c.what);
    auto old_instance = std::make_unique<Instance>(lib.plugin(c.kind, "file"), host, c.config);
    Instance reloaded(lib.plugin(c.kind, "file"), host, c.config);
    old_instance.reset();
    // The lock outlives the old instance: another taker is still refused.
    const int fd = ::open(c.lock_file.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);
    ::close(fd);
  }
}

TEST_CASE("a reloaded file source reads a file replaced meanwhile from its start") {
  SourceFixture f(10);
  auto old_instance = std::make_unique<Instance>(f.plugin, f.host, source_config(f.path));
  FakeWriter out;
  REQUIRE(old_instance->poll(out, 6, 0).ok());
  REQUIRE(old_instance->commit(0, out.records[5].offset).ok());
  // The reload creates the new instance while the old one runs; the file is replaced before the
  // old one's state is handed over.
  Instance reloaded(f.plugin, f.host, source_config(f.path));
  replace_file(f.path, numbered_lines(0, 20, "m"));
  const std::string state = old_instance->snapshot();
  old_instance.reset();
  REQUIRE(reloaded.restore(state).ok());
  auto records = poll_all(reloaded);
  REQUIRE(records.size() == 20);
  CHECK(records.front().value == "{\"m\":0}");
}
