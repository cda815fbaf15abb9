// Shared pieces of the fault tests: running `sluice run` on a pipeline YAML, reading its summary
// line, and reading the JSON-lines files a run leaves behind.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "process.hpp"

namespace sluice::faults {

namespace fs = std::filesystem;

inline std::string sluice_bin() { return std::getenv("SLUICE_BIN"); }
inline fs::path plugin_dir() { return std::getenv("SLUICE_BUILD_PLUGIN_DIR"); }

// A fresh scratch folder per test case.
inline fs::path scratch(const std::string& name) {
  fs::path dir = fs::path(std::getenv("SLUICE_BINARY_DIR")) / "faults-scratch" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The run's summary line: pipeline NAME: N records in, N delivered, N dead-lettered, N filtered,
// N rejected; N written by the sink; ...
struct Summary {
  uint64_t in = 0, delivered = 0, dead_lettered = 0, filtered = 0, rejected = 0, written = 0;
};

inline std::optional<Summary> parse_summary(const std::string& out) {
  static const std::regex re(
      R"(pipeline \S+: (\d+) records in, (\d+) delivered, (\d+) dead-lettered, (\d+) filtered, )"
      R"((\d+) rejected; (\d+) written by the sink)");
  std::smatch m;
  if (!std::regex_search(out, m, re)) return std::nullopt;
  auto n = [&](int i) { return std::stoull(m[i].str()); };
  return Summary{n(1), n(2), n(3), n(4), n(5), n(6)};
}

// Runs `sluice run FILE` with the build's plugins; `yaml` is written to DIR/pipeline.yaml.
inline sluice::test::ProcessResult run_pipeline(const fs::path& dir, const std::string& yaml,
                                                std::vector<std::string> extra = {}) {
  const fs::path file = dir / "pipeline.yaml";
  sluice::test::write_file(file.string(), yaml);
  std::vector<std::string> argv = {
      sluice_bin(),          "run",         file.string(), "--plugin-path",
      plugin_dir().string(), "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return sluice::test::run_process(argv);
}

inline std::vector<std::string> read_lines(const fs::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

// Parses each line of a JSON-lines file; a line that is not JSON (a torn write) is skipped and
// counted in `torn` when given.
inline std::vector<rapidjson::Document> read_json_lines(const fs::path& path,
                                                        size_t* torn = nullptr) {
  std::vector<rapidjson::Document> out;
  for (const auto& line : read_lines(path)) {
    rapidjson::Document d;
    d.Parse(line.data(), line.size());
    if (d.HasParseError()) {
      if (torn) ++*torn;
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

inline std::string header_of(const rapidjson::Value& envelope, const char* name) {
  if (!envelope.IsObject() || !envelope.HasMember("headers")) return {};
  const auto& h = envelope["headers"];
  if (!h.IsObject() || !h.HasMember(name) || !h[name].IsString()) return {};
  return {h[name].GetString(), h[name].GetStringLength()};
}

// The `id` field of a value {"id":K,...}, or -1.
inline int64_t id_of(const rapidjson::Value& v) {
  if (v.IsObject() && v.HasMember("id") && v["id"].IsInt64()) return v["id"].GetInt64();
  return -1;
}

}  // namespace sluice::faults
