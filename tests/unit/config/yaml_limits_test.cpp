// Hostile or broken YAML: syntax errors, binary files, deep nesting, huge values, alias bombs.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/pipeline_spec.hpp"
#include "config/yaml_reader.hpp"
#include "config_test_support.hpp"

using namespace sluice::config;
using namespace sluice::config::testing;

TEST_CASE("a YAML syntax error points at yaml-cpp's position, made 1-based") {
  CHECK_CONFIG_ERROR(parse_error("name: p\nsource: {type: g\nsink: {type: f}\n"),
                     "p.yaml:3:5: ", "YAML syntax error: ");
  CHECK_CONFIG_ERROR(parse_error("name: p\n  source: x\n"),
                     "p.yaml:2:9: ", "YAML syntax error: illegal map value");
}

TEST_CASE("content after a mis-indented first line is an error, not silently dropped") {
  CHECK_CONFIG_ERROR(parse_error("  name: p\nsource: {type: g}\n"),
                     "p.yaml:2:1: ", "unexpected content after the first YAML document");
}

TEST_CASE("a second YAML document is an error at its start") {
  CHECK_CONFIG_ERROR(parse_error(with_pipeline("---\nname: other\n")),
                     "p.yaml:4:1: ", "a pipeline file holds one document");
}

TEST_CASE("a file with a NUL byte is rejected as binary at the byte") {
  const std::string text = std::string("name: p\nso") + '\0' + "urce: x\n";
  CHECK(parse_error(text) ==
        "p.yaml:2:3: not a text file (contains a NUL byte); expected UTF-8 YAML");
}

TEST_CASE("a file that is not UTF-8 is rejected at the first bad byte") {
  CHECK_CONFIG_ERROR(parse_error("name: caf\xe9\n"),
                     "p.yaml:1:10: ", "not valid UTF-8 (byte 0xe9)");
  // An overlong encoding of '/' is not valid UTF-8 either.
  CHECK_CONFIG_ERROR(parse_error("a: \xc0\xaf\n"), "p.yaml:1:4: ", "not valid UTF-8");
  // Valid multi-byte text is fine.
  const auto file = parse_pipelines(
      "name: p\nsource: {type: g, path: caf\xc3\xa9.txt}\nsink: {type: f}\n", "p.yaml");
  CHECK(file.pipelines.at(0).source.node["path"].as<std::string>() == "caf\xc3\xa9.txt");
}

TEST_CASE("valid UTF-8 in a value that is not a valid name still names the value") {
  CHECK_CONFIG_ERROR(parse_error("name: caf\xc3\xa9\nsource: {type: g}\nsink: {type: f}\n"),
                     "p.yaml:1:7: ", "is not a valid pipeline name");
}

TEST_CASE("flow nesting deeper than 64 levels is an error, not a crash") {
  const std::string deep = "name: p\nsource: {type: g, x: " + std::string(70, '[') +
                           std::string(70, ']') + "}\nsink: {type: f}\n";
  CHECK_CONFIG_ERROR(parse_error(deep), "p.yaml:2:", "nesting deeper than 64 levels");
}

TEST_CASE("block nesting deeper than 64 levels is an error") {
  std::string deep = "name: p\nsource:\n";
  for (int i = 1; i <= 70; ++i) deep += std::string(static_cast<size_t>(i) * 2, ' ') + "a:\n";
  CHECK_CONFIG_ERROR(parse_error(deep), "p.yaml:", "nesting deeper than 64 levels");
}

TEST_CASE("a hundred thousand open brackets are an error, not a stack overflow") {
  CHECK_CONFIG_ERROR(parse_error("x: " + std::string(100000, '[')),
                     "p.yaml:", "nesting deeper than 64 levels");
}

TEST_CASE("nesting of exactly 64 levels is accepted") {
  // Top-level mapping (1) -> source (2) -> 62 lists (3..64).
  const std::string text = "name: p\nsource: {type: g, x: " + std::string(62, '[') +
                           std::string(62, ']') + "}\nsink: {type: f}\n";
  CHECK(parse_pipelines(text, "p.yaml").pipelines.size() == 1);
  const std::string one_more = "name: p\nsource: {type: g, x: " + std::string(63, '[') +
                               std::string(63, ']') + "}\nsink: {type: f}\n";
  CHECK_CONFIG_ERROR(parse_error(one_more), "p.yaml:2:", "nesting deeper than 64 levels");
}

TEST_CASE("a scalar over 1 MiB is an error at the scalar") {
  const std::string text =
      "name: p\nsource: {type: g, x: " + std::string(kMaxScalarBytes + 1, 'a') +
      "}\nsink: {type: f}\n";
  CHECK(parse_error(text) ==
        "p.yaml:2:22: value of 1048577 bytes is longer than the limit of 1 MiB");
  const std::string fits =
      "name: p\nsource: {type: g, x: " + std::string(kMaxScalarBytes, 'a') + "}\nsink: {type: f}\n";
  CHECK(parse_pipelines(fits, "p.yaml").pipelines.size() == 1);
}

TEST_CASE("a file over 16 MiB is rejected before parsing") {
  CHECK_CONFIG_ERROR(parse_error(std::string(kMaxFileBytes + 1, '#')),
                     "p.yaml:1:1: ", "larger than the limit of 16 MiB");
}

TEST_CASE("an alias bomb is an error instead of an endless expansion") {
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  // 10^7 nodes of one byte each: past kMaxNodes while still under kMaxExpandedBytes.
  for (int i = 1; i < 7; ++i)
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + std::string("*a") +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + ", *a" +
            std::to_string(i - 1) + ", *a" + std::to_string(i - 1) + "]\n";
  CHECK_CONFIG_ERROR(parse_error(bomb), "p.yaml:", "document expands to more than 1000000 nodes");
}

// A value of about 1 MB under an anchor, then `uses:` with `count` aliases of it, one a line.
std::string big_value_reused(int count) {
  std::string text = "big: &big " + std::string(1'000'000, 'x') + "\nuses:\n";
  for (int i = 0; i < count; ++i) text += "- *big\n";
  return text;
}

TEST_CASE("a big value reused through aliases is an error at the alias that passes 64 MiB") {
  // Each alias counts the 1,000,001 bytes of its value again: the 67th passes 64 MiB (67,108,864).
  const int crossing = 67;
  CHECK_CONFIG_ERROR(parse_error(big_value_reused(1000)),
                     "p.yaml:" + std::to_string(2 + crossing) + ":3: ",
                     "document expands to more than 64 MiB through aliases");
}

TEST_CASE("aliases that stay under the expansion limit are accepted") {
  const YAML::Node doc = parse_document(big_value_reused(60), "p.yaml");
  CHECK(doc["uses"].size() == 60);
  CHECK(doc["uses"][59].Scalar().size() == 1'000'000);
}

TEST_CASE("aliases of collections count their whole content") {
  // 100 aliases of a list of 100 aliases of a 10 kB value: 100 MB once expanded.
  std::string text = "v: &v " + std::string(10'000, 'y') + "\nl: &l [";
  for (int i = 0; i < 100; ++i) text += i ? ", *v" : "*v";
  text += "]\nuses:\n";
  for (int i = 0; i < 100; ++i) text += "- *l\n";
  CHECK_CONFIG_ERROR(parse_error(text), "p.yaml:", "through aliases");
}

TEST_CASE("more than 256 pipelines in one file are refused before anything starts") {
  std::string text = "pipelines:\n";
  for (int i = 0; i < 10'000; ++i)
    text += "- {name: p" + std::to_string(i) + ", source: {type: g}, sink: {type: f}}\n";
  CHECK(parse_error(text) ==
        "p.yaml:2:1: 10000 pipelines, more than the limit of 256 per process (each runs 2 "
        "threads plus up to max_concurrency workers); split them over several sluice processes");
}

TEST_CASE("256 pipelines are accepted, and the limit counts across the files of a folder") {
  auto pipelines = [](int from, int count) {
    std::string text = "pipelines:\n";
    for (int i = from; i < from + count; ++i)
      text += "- {name: p" + std::to_string(i) + ", source: {type: g}, sink: {type: f}}\n";
    return text;
  };
  CHECK(parse_pipelines(pipelines(0, 256), "p.yaml").pipelines.size() == 256);
  const auto dir = std::filesystem::temp_directory_path() / "sluice-pipeline-limit-test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "a.yaml") << pipelines(0, 200);
  std::ofstream(dir / "b.yaml") << pipelines(200, 100);
  const std::string error = error_of([&] { load_pipelines(dir); });
  std::filesystem::remove_all(dir);
  // The 257th pipeline is the 57th of b.yaml, on its line 58.
  CHECK_CONFIG_ERROR(error, (dir / "b.yaml").string() + ":58:3: ",
                     "257 pipelines, more than the limit of 256 per process");
}

TEST_CASE("an alias that refers to its own anchor is an error, not a loop") {
  CHECK_CONFIG_ERROR(parse_error("a: &x [*x]\n"), "p.yaml:", "nesting deeper than 64 levels");
}

TEST_CASE("a duplicate key is an error at the second key") {
  CHECK(parse_error("name: p\nsource: {type: g}\nname: q\n") ==
        "p.yaml:3:1: duplicate key 'name' (first at line 1)");
}

TEST_CASE("a mapping key that is not a scalar is an error at the key") {
  CHECK_CONFIG_ERROR(parse_error("? [a, b]\n: 1\n"),
                     "p.yaml:1:3: ", "mapping keys must be plain scalars, got a list");
}

TEST_CASE("every truncation of a valid file either parses or gives a ConfigError") {
  const std::string text = R"(pipelines:
  - name: orders   # comment
    source: {type: file, path: "in.jsonl"}
    transforms:
      - type: fields
        add: {env: prod, list: [1, 2.5, 'x']}
    sink: {type: file, path: out.jsonl}
    performance: {min_batch_size: 10, ordering: none}
    errors:
      retry: {max_attempts: 3}
      dead_letter: {type: file, path: dlq.jsonl}
admin: {port: 9000, token: abc}
)";
  for (size_t n = 0; n <= text.size(); ++n) {
    try {
      parse_pipelines(text.substr(0, n), "p.yaml");
    } catch (const ConfigError& e) {
      INFO(std::string(e.what()));
      CHECK(std::string(e.what()).starts_with("p.yaml:"));
    }
  }
}

TEST_CASE("a ',' outside a flow collection is an error, not a parser hang") {
  // yaml-cpp 0.7's LoadAll loops forever on these (found by fuzzing the config loader).
  for (const char* text :
       {", d\n", "  s: t\n, p\n", "  - s\n, p\n", "---\n, x\n", "'a', b\n", "\"a\", b\n",
        "&x 'a',\n", "''''''&'''''''''''''''''''''','''ink:xt}&.}\n", "!2, cooldown_mon.\n",
        "&a, x\n", "  \"ng.tx\n\n\",\n", "a: [1] ,\n"}) {
    INFO("text: " << std::string(text));
    try {
      sluice::config::parse_pipelines(text, "p.yaml");
      FAIL("expected a ConfigError");
    } catch (const sluice::config::ConfigError& e) {
      CHECK(std::string(e.what()).starts_with("p.yaml:"));
    }
  }
  // The error points at the ',' and says what it is.
  for (auto [text, where] : {std::pair{", d\n", "p.yaml:1:1:"},
                             {"  s: t\n, p\n", "p.yaml:2:1:"},
                             {"'a', b\n", "p.yaml:1:4:"}}) {
    CAPTURE(text);
    try {
      sluice::config::parse_pipelines(text, "p.yaml");
      FAIL("expected a ConfigError");
    } catch (const sluice::config::ConfigError& e) {
      CHECK(std::string(e.what()).starts_with(where));
      CHECK(std::string(e.what()).find("',' outside a flow collection") != std::string::npos);
    }
  }
  // A leading ',' inside a flow collection or a block scalar is valid YAML and still parses.
  auto file = sluice::config::parse_pipelines(
      "name: p\nsource: {type: g,\n  x: [1\n  , 2]}\nsink:\n  type: s\n  note: |\n    , text\n",
      "p.yaml");
  CHECK(file.pipelines.at(0).sink.node["note"].as<std::string>() == ", text\n");
}

TEST_CASE("a pipeline file another user could have written is refused, naming why") {
  // A pipeline file decides what sluice reads, writes and runs (as root, often).
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("sluice-yaml-trust-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "shared");
  const std::string pipeline = "name: p\nsource: {type: g}\nsink: {type: f}\n";
  const fs::path own = dir / "own.yaml";
  std::ofstream(own) << pipeline;
  fs::permissions(own, fs::perms(0644));
  CHECK(load_pipelines(own).pipelines.size() == 1);

  fs::permissions(own, fs::perms(0666));
  try {
    load_pipelines(own);
    FAIL("a file every user can write was loaded");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()).find("every user can write this file") != std::string::npos);
  }

  if (::geteuid() == 0) {
    // Planted by uid 65534 in a folder like /tmp.
    fs::permissions(dir / "shared", fs::perms(01777));
    const fs::path planted = dir / "shared" / "p.yaml";
    std::ofstream(planted) << pipeline;
    fs::permissions(planted, fs::perms(0644));
    REQUIRE(::chown(planted.c_str(), 65534, 65534) == 0);
    try {
      load_pipelines(planted);
      FAIL("another user's pipeline file in a shared folder was loaded");
    } catch (const ConfigError& e) {
      INFO(std::string(e.what()));
      CHECK(std::string(e.what()).find("is owned by nobody (uid 65534)") != std::string::npos);
    }
  }
  fs::remove_all(dir);
}
