// check_stage and friends: plugin configs checked against the SDK's schema JSON.
#include "config/stage_config.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config_test_support.hpp"
#include "sluice/sdk.hpp"

using namespace sluice::config;
using namespace sluice::config::testing;

namespace {

// The schema a plugin built with the SDK would publish.
std::string test_schema() {
  sluice::ConfigSchema s;
  s.string("path").required().doc("file to write");
  s.string("format").default_value("jsonl").one_of({"jsonl", "csv", "raw"});
  s.integer("buffer_kb").default_value(64).min(1).max(1024);
  s.number("ratio").default_value(0.5).min(0).max(1);
  s.boolean("append").default_value(false);
  s.list("brokers");
  s.object("headers");
  s.string("password").secret();
  return s.to_json();
}

// The sink stage of a pipeline whose sink mapping is `sink_yaml`.
StageSpec sink_stage(const std::string& sink_yaml, const std::string& file_name = "p.yaml") {
  const auto file =
      parse_pipelines("name: orders\nsource: {type: g}\nsink:\n" + sink_yaml, file_name);
  return file.pipelines.at(0).sink;
}

rapidjson::Document parse_json(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string check_error(const std::string& sink_yaml) {
  return error_of([&] { check_stage(sink_stage(sink_yaml), test_schema()); });
}

// A scratch folder that is removed again.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("sluice-config-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
};

}  // namespace

TEST_CASE("a valid stage config becomes JSON with defaults filled and types converted") {
  const auto checked = check_stage(sink_stage("  type: file\n"
                                              "  name: out\n"
                                              "  path: out.jsonl\n"
                                              "  buffer_kb: 0x10\n"
                                              "  ratio: 1\n"
                                              "  brokers: [a:9092, b:9092]\n"
                                              "  headers: {n: 3, f: 1.5, b: true, s: '3', z: ~}\n"),
                                   test_schema());
  const auto json = parse_json(checked.json);
  CHECK(std::string(json["path"].GetString()) == "out.jsonl");
  CHECK(std::string(json["format"].GetString()) == "jsonl");
  CHECK(json["buffer_kb"].GetInt64() == 16);
  CHECK(json["ratio"].IsDouble());
  CHECK(json["ratio"].GetDouble() == 1.0);
  CHECK(json["append"].IsFalse());
  CHECK(json["brokers"].IsArray());
  CHECK(std::string(json["brokers"][1].GetString()) == "b:9092");
  CHECK(json["headers"]["n"].GetInt64() == 3);
  CHECK(json["headers"]["f"].GetDouble() == 1.5);
  CHECK(json["headers"]["b"].IsTrue());
  CHECK(json["headers"]["s"].IsString());
  CHECK(json["headers"]["z"].IsNull());
  CHECK_FALSE(json.HasMember("type"));
  CHECK_FALSE(json.HasMember("name"));
  CHECK_FALSE(json.HasMember("password"));
  CHECK(checked.secret_values.empty());
}

TEST_CASE("an unknown plugin field is an error at the key with a suggestion") {
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  bufer_kb: 3\n"), "p.yaml:6:3: ",
                     "orders.sink: unknown field 'bufer_kb' for sink plugin 'file'; did you mean "
                     "'buffer_kb'?");
}

TEST_CASE("an unknown plugin field with nothing close lists the plugin's fields") {
  CHECK_CONFIG_ERROR(
      check_error("  type: file\n  path: x\n  qqqqqqq: 3\n"), "p.yaml:6:3: ",
      "(fields: path, format, buffer_kb, ratio, append, brokers, headers, password)");
}

TEST_CASE("a missing required field is an error at the stage mapping") {
  CHECK_CONFIG_ERROR(check_error("  type: file\n  format: csv\n"),
                     "p.yaml:4:3: ", "orders.sink: sink plugin 'file' needs field 'path'");
}

TEST_CASE("values of the wrong type are errors at the value") {
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  buffer_kb: lots\n"),
                     "p.yaml:6:14: ", "orders.sink: field 'buffer_kb' must be an int, got 'lots'");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  buffer_kb: 1.5\n"),
                     "p.yaml:6:14: ", "field 'buffer_kb' must be an int, got '1.5'");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  ratio: half\n"),
                     "p.yaml:6:10: ", "field 'ratio' must be a number, got 'half'");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  append: yes\n"),
                     "p.yaml:6:11: ", "field 'append' must be true or false, got 'yes'");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  brokers: a:9092\n"),
                     "p.yaml:6:12: ", "field 'brokers' must be a list, got a scalar");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  headers: [a]\n"),
                     "p.yaml:6:12: ", "field 'headers' must be a mapping, got a list");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: {a: 1}\n"),
                     "p.yaml:5:9: ", "field 'path' must be a string, got a mapping");
}

TEST_CASE("enum and min/max violations are errors at the value") {
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  format: jsonn\n"), "p.yaml:6:11: ",
                     "field 'format' must be one of jsonl, csv, raw, got 'jsonn'; did you mean "
                     "'jsonl'?");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  buffer_kb: 0\n"),
                     "p.yaml:6:14: ", "field 'buffer_kb' must be at least 1, got 0");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x\n  ratio: 1.5\n"),
                     "p.yaml:6:10: ", "field 'ratio' must be at most 1, got 1.5");
}

// The schema is the plugin's word: one that lies with a schema nested 200,000 deep gets a
// config error naming the stage, not a crash of the host.
TEST_CASE("a plugin schema nested past the depth limit is a config error, not a crash") {
  const std::string abyss = std::string(200000, '[') + std::string(200000, ']');
  const std::string error = error_of([&] {
    check_stage(sink_stage("  type: file\n  path: x\n"),
                R"({"fields":[{"name":"path","type":"string","default":)" + abyss + "}]}");
  });
  CHECK(error.find("p.yaml:4:") == 0);
  CHECK(error.find("plugin 'file' has an invalid config schema: nested deeper than 64 levels") !=
        std::string::npos);
}

TEST_CASE("an empty value counts as not given") {
  const auto checked =
      check_stage(sink_stage("  type: file\n  path: x\n  buffer_kb:\n"), test_schema());
  CHECK(parse_json(checked.json)["buffer_kb"].GetInt64() == 64);
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path:\n"), "p.yaml:5:3: ", "needs field 'path'");
}

TEST_CASE("env references are replaced inside strings, and $${ stays a literal") {
  setenv("SLUICE_CONFIG_TEST_DIR", "/data", 1);
  const auto checked = check_stage(
      sink_stage("  type: file\n  path: '${env:SLUICE_CONFIG_TEST_DIR}/out-$${x}.jsonl'\n"),
      test_schema());
  CHECK(std::string(parse_json(checked.json)["path"].GetString()) == "/data/out-${x}.jsonl");
}

TEST_CASE("an int field may come from the environment") {
  setenv("SLUICE_CONFIG_TEST_KB", "128", 1);
  const auto checked = check_stage(
      sink_stage("  type: file\n  path: x\n  buffer_kb: ${env:SLUICE_CONFIG_TEST_KB}\n"),
      test_schema());
  CHECK(parse_json(checked.json)["buffer_kb"].GetInt64() == 128);
}

TEST_CASE("a missing env variable or a bad reference is an error at the value") {
  unsetenv("SLUICE_CONFIG_TEST_UNSET");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: ${env:SLUICE_CONFIG_TEST_UNSET}\n"),
                     "p.yaml:5:9: ", "environment variable 'SLUICE_CONFIG_TEST_UNSET' is not set");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: x-${env:OOPS\n"),
                     "p.yaml:5:9: ", "unterminated '${env:' reference");
  CHECK_CONFIG_ERROR(check_error("  type: file\n  path: ${env:bad-name}\n"),
                     "p.yaml:5:9: ", "not a valid environment variable name");
}

TEST_CASE("file references read the file relative to the YAML file and trim one newline") {
  TempDir dir;
  dir.write("password.txt", "hunter2\n\n");
  dir.write("path.txt", "out.jsonl\r\n");
  const auto stage =
      sink_stage("  type: file\n  path: ${file:path.txt}\n  password: ${file:password.txt}\n",
                 (dir.path / "p.yaml").string());
  const auto checked = check_stage(stage, test_schema());
  const auto json = parse_json(checked.json);
  CHECK(std::string(json["path"].GetString()) == "out.jsonl");
  CHECK(std::string(json["password"].GetString()) == "hunter2\n");
  // The value, and the value as JSON writes it (its newline escaped).
  REQUIRE(checked.secret_values.size() == 2);
  CHECK(checked.secret_values[0] == "hunter2\n");
  CHECK(checked.secret_values[1] == "hunter2\\n");
}

TEST_CASE("an unreadable file reference is an error at the value") {
  TempDir dir;
  const std::string file = (dir.path / "p.yaml").string();
  const auto message = error_of([&] {
    check_stage(sink_stage("  type: file\n  path: ${file:missing.txt}\n", file), test_schema());
  });
  CHECK_CONFIG_ERROR(message, file + ":5:9: ",
                     "cannot read '" + (dir.path / "missing.txt").string() +
                         "' for ${file:missing.txt}: No such file");
}

TEST_CASE("a secret value is collected and never appears in an error") {
  const auto checked =
      check_stage(sink_stage("  type: file\n  path: x\n  password: hunter2\n"), test_schema());
  CHECK(checked.secret_values == std::vector<std::string>{"hunter2"});

  sluice::ConfigSchema s;
  s.string("password").secret().one_of({"a", "b"});
  s.integer("pin").secret();
  const std::string schema = s.to_json();
  const auto enum_error =
      error_of([&] { check_stage(sink_stage("  type: f\n  password: hunter2\n"), schema); });
  CHECK_CONFIG_ERROR(enum_error, "p.yaml:5:13: ",
                     "orders.sink: value of secret field 'password' must be one of a, b");
  CHECK(enum_error.find("hunter2") == std::string::npos);
  const auto type_error =
      error_of([&] { check_stage(sink_stage("  type: f\n  pin: hunter2\n"), schema); });
  CHECK_CONFIG_ERROR(type_error, "p.yaml:5:8: ", "value of secret field 'pin' must be an int");
  CHECK(type_error.find("hunter2") == std::string::npos);
}

TEST_CASE("a value from a reference is not shown in an error, even in a field not secret") {
  // A `${file:}` or `${env:}` put where it does not belong (the wrong field, a typo) still holds
  // what the pipeline file keeps out of itself: the error names the reference, not its value.
  TempDir dir;
  const std::string file = (dir.path / "p.yaml").string();
  std::ofstream(dir.path / "pw.txt") << "jsonFileSecret9\n";
  ::setenv("SLUICE_TEST_WRONG_FIELD", "EnvSecret77", 1);
  sluice::ConfigSchema s;
  s.string("format").one_of({"json", "jsonl"});
  s.integer("batch").min(1);
  s.number("rate").max(10);
  s.boolean("follow");
  const std::string schema = s.to_json();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  format: ${file:pw.txt}\n", "field 'format' must be one of json, jsonl, got the value of"},
      {"  batch: ${env:SLUICE_TEST_WRONG_FIELD}\n", "field 'batch' must be an int, got the value"},
      {"  rate: ${env:SLUICE_TEST_WRONG_FIELD}\n", "field 'rate' must be a number, got the value"},
      {"  follow: x${file:pw.txt}\n", "field 'follow' must be true or false, got the value"}};
  for (const auto& [yaml, expected] : cases) {
    const auto message =
        error_of([&] { check_stage(sink_stage("  type: f\n" + yaml, file), schema); });
    INFO(message);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find("(not shown: it comes from a reference)") != std::string::npos);
    CHECK(message.find("Secret") == std::string::npos);
    CHECK(message.find("did you mean") == std::string::npos);
  }
  // A number over its bound from the environment: the bound is named, the value is not.
  ::setenv("SLUICE_TEST_WRONG_FIELD", "99", 1);
  const auto range = error_of([&] {
    check_stage(sink_stage("  type: f\n  rate: ${env:SLUICE_TEST_WRONG_FIELD}\n", file), schema);
  });
  CHECK(range.find("must be at most 10, got the value of '${env:SLUICE_TEST_WRONG_FIELD}'") !=
        std::string::npos);
  // The file's path holds the test's pid, which may contain "99": look past it.
  std::string without_path = range;
  for (size_t at; (at = without_path.find(file)) != std::string::npos;)
    without_path.erase(at, file.size());
  CHECK(without_path.find("99") == std::string::npos);
  ::unsetenv("SLUICE_TEST_WRONG_FIELD");
  // Written in the file, a wrong value is shown as before.
  const auto plain =
      error_of([&] { check_stage(sink_stage("  type: f\n  format: jsn\n", file), schema); });
  CHECK(plain.find("got 'jsn'") != std::string::npos);
}

TEST_CASE("what ${env:} and ${file:} put into a list or mapping is masked") {
  TempDir dir;
  const std::string file = (dir.path / "p.yaml").string();
  std::ofstream(dir.path / "pw.txt") << "FileSecret9\n";
  ::setenv("SLUICE_TEST_KAFKA_PW", "EnvSecret77", 1);
  // A kafka `properties:` value is in no secret field; librdkafka quotes a value it refuses.
  const auto checked =
      check_stage(sink_stage("  type: file\n  path: out-${file:pw.txt}\n"
                             "  headers: {sasl.password: '${file:pw.txt}', note: plain}\n"
                             "  brokers: ['x-${env:SLUICE_TEST_KAFKA_PW}']\n",
                             file),
                  test_schema());
  ::unsetenv("SLUICE_TEST_KAFKA_PW");
  const auto& v = checked.secret_values;
  CHECK(std::find(v.begin(), v.end(), "EnvSecret77") != v.end());
  CHECK(std::find(v.begin(), v.end(), "FileSecret9") != v.end());
  CHECK(std::find(v.begin(), v.end(), "plain") == v.end());  // written in the file: not a secret
  CHECK(std::find(v.begin(), v.end(), "out-FileSecret9") == v.end());  // a plain string field
  CHECK(redact("Invalid value \"FileSecret9\" for configuration property", v) ==
        "Invalid value \"***\" for configuration property");
}

TEST_CASE("redact hides every occurrence of every secret, longer secrets first") {
  CHECK(redact("user=bob pass=hunter2 again hunter2", {"hunter2"}) ==
        "user=bob pass=*** again ***");
  CHECK(redact("key=abcdef", {"abc", "abcdef"}) == "key=***");
  CHECK(redact("nothing to hide", {"", "x1"}) == "nothing to hide");
}

TEST_CASE("a secret URL adds its password, decoded and encoded, to the secret values") {
  const auto checked = check_stage(
      sink_stage("  type: file\n  path: x\n  password: postgres://app:p%40ss%2Fw0rd@db:5432/o\n"),
      test_schema());
  const auto& v = checked.secret_values;
  CHECK(v.front() == "postgres://app:p%40ss%2Fw0rd@db:5432/o");
  CHECK(std::find(v.begin(), v.end(), "p%40ss%2Fw0rd") != v.end());
  CHECK(std::find(v.begin(), v.end(), "p@ss/w0rd") != v.end());
  // What a plugin prints after decoding, or rewriting the URL, is masked.
  CHECK(redact("auth failed for password p@ss/w0rd", v) == "auth failed for password ***");
  CHECK(redact("connecting to postgresql://app:p%40ss%2Fw0rd@db/other", v) ==
        "connecting to postgresql://app:***@db/other");
}

TEST_CASE("a secret conninfo adds its password, unquoted, to the secret values") {
  const auto values = secret_values_of("host=db port=5432 password='it\\'s s3cret' user=app");
  CHECK(values.front() == "host=db port=5432 password='it\\'s s3cret' user=app");
  CHECK(std::find(values.begin(), values.end(), "it's s3cret") != values.end());
  CHECK(std::find(values.begin(), values.end(), "it\\'s s3cret") != values.end());
  CHECK(redact("server said: bad password \"it's s3cret\"", values) ==
        "server said: bad password \"***\"");
  const auto plain = secret_values_of("host=db password=hunter22 dbname=o");
  CHECK(std::find(plain.begin(), plain.end(), "hunter22") != plain.end());
  const auto query = secret_values_of("postgresql://db/o?user=app&password=s%3Dcret&ssl=1");
  CHECK(std::find(query.begin(), query.end(), "s=cret") != query.end());
}

TEST_CASE("a secret is masked as JSON writes it too") {
  // A plugin that reports its config as JSON escapes the quote and the backslash, and perhaps
  // every non-ASCII character: the plain value is not in its message, the escaped one is.
  const auto values = secret_values_of("pa\"ss\\wörd\n");
  CHECK(redact(R"(bad config {"password":"pa\"ss\\wörd\n"})", values) ==
        R"(bad config {"password":"***"})");
  CHECK(redact(R"(bad config {"password":"pa\"ss\\w\u00f6rd\n"})", values) ==
        R"(bad config {"password":"***"})");
  CHECK(redact(R"(bad config {"password":"pa\"ss\\w\u00F6rd\n"})", values) ==
        R"(bad config {"password":"***"})");
  const auto emoji = secret_values_of("key-\xF0\x9F\x94\x91-1");  // U+1F511, a surrogate pair
  CHECK(redact(R"({"token":"key-\ud83d\udd11-1"})", emoji) == R"({"token":"***"})");
  // A plain secret adds nothing.
  CHECK(secret_values_of("hunter22") == std::vector<std::string>{"hunter22"});
}

TEST_CASE("redact masks URL and conninfo passwords in any text, declared or not") {
  CHECK(redact("cannot reach postgres://app:hunter2@db:5432/o (timeout)", {}) ==
        "cannot reach postgres://app:***@db:5432/o (timeout)");
  CHECK(redact("conninfo host=db password=hunter2 user=app failed", {}) ==
        "conninfo host=db password=*** user=app failed");
  CHECK(redact("PASSWORD = 'a b\\' c' port=1", {}) == "PASSWORD = '***' port=1");
  CHECK(redact("https://example.org/a:b@c and user@host and a=b", {}) ==
        "https://example.org/a:b@c and user@host and a=b");
  CHECK(redact("the password is wrong; passwords=", {}) == "the password is wrong; passwords=");
}

TEST_CASE("redact leaves no fragment of overlapping or adjacent secrets") {
  // "cdef12" overlaps the end of "abcdef": masked one after the other, "12" would be left.
  CHECK(redact("x abcdef12 y", {"abcdef", "cdef12"}) == "x *** y");
  CHECK(redact("x abcdef12 y", {"cdef12", "abcdef"}) == "x *** y");
  CHECK(redact("tokentoken", {"token"}) == "***");
  std::vector<std::string> many;
  for (int i = 0; i < 500; ++i) many.push_back("secret-" + std::to_string(i * 7919));
  CHECK(redact("ok secret-79190 and secret-7919 end", many) == "ok *** and *** end");
}

TEST_CASE("a secret shorter than 4 characters is masked only as a whole word") {
  CHECK(redact("pin 42 failed at 142", {"42"}) == "pin *** failed at 142");
  CHECK(redact("a bad pw: pw", {"pw"}) == "a bad ***: ***");
  CHECK(redact("about a cat", {"a"}) == "about *** cat");
  CHECK(redact("key4 = key", {"key4"}) == "*** = key");
}

TEST_CASE("an unknown plugin type is an error at the type with a suggestion and the known names") {
  const auto stage = parse_pipelines("name: p\nsource: {type: fiel}\nsink: {type: f}\n", "p.yaml")
                         .pipelines.at(0)
                         .source;
  CHECK(error_of([&] {
          throw_unknown_plugin(stage, {"generator", "file"});
        }) ==
        "p.yaml:2:16: unknown source plugin 'fiel'; did you mean 'file'? known: file, generator");
  CHECK(error_of([&] { throw_unknown_plugin(stage, {"kafka"}); }) ==
        "p.yaml:2:16: unknown source plugin 'fiel'; known: kafka");
}

TEST_CASE("field_location points at a field's value, nested values, or else the stage") {
  const auto stage = sink_stage(
      "  type: file\n  path: x\n  tls:\n    ca: /etc/ca.pem\n"
      "  brokers: [a, b]\n");
  CHECK(field_location(stage, "path").str() == "p.yaml:5:9");
  CHECK(field_location(stage, "tls.ca").str() == "p.yaml:7:9");
  CHECK(field_location(stage, "brokers.1").str() == "p.yaml:8:16");
  CHECK(field_location(stage, "nope").str() == "p.yaml:4:3");
  CHECK(field_location(stage, "").str() == "p.yaml:4:3");
}

TEST_CASE("a plugin schema that is not valid JSON is an error at the stage's type") {
  CHECK_CONFIG_ERROR(error_of([] { check_stage(sink_stage("  type: file\n"), "{nope"); }),
                     "p.yaml:4:9: ", "plugin 'file' has an invalid config schema");
  CHECK_CONFIG_ERROR(
      error_of([] { check_stage(sink_stage("  type: file\n"), R"({"fields":[{"name":"a"}]})"); }),
      "p.yaml:4:9: ", "a field has no string \"type\"");
}
