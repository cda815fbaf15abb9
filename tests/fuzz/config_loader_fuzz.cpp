// Fuzz target: pipeline YAML text -> config::parse_pipelines, then check_stage of every stage
// against a fixed schema that uses every field type. Only config::ConfigError may come out.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "config/location.hpp"
#include "config/pipeline_spec.hpp"
#include "config/stage_config.hpp"

namespace {

constexpr std::string_view kSchema = R"({"fields":[
  {"name":"path","type":"string","required":false,"secret":false,"path":true},
  {"name":"count","type":"int","required":false,"secret":false,"default":10,"min":0,"max":1000000},
  {"name":"ratio","type":"double","required":false,"secret":false,"default":0.5,"min":0,"max":1},
  {"name":"follow","type":"bool","required":false,"secret":false,"default":false},
  {"name":"mode","type":"string","required":false,"secret":false,"default":"a","enum":["a","b"]},
  {"name":"brokers","type":"list","required":false,"secret":false},
  {"name":"tls","type":"object","required":false,"secret":false},
  {"name":"password","type":"string","required":false,"secret":true},
  {"name":"topic","type":"string","required":true,"secret":false}]})";

// A private folder for the pipeline file's name, so relative ${file:PATH} resolve inside it.
const std::string& pipeline_file_name() {
  static const std::string name = [] {
    std::string dir =
        (std::filesystem::temp_directory_path() / "sluice-fuzz-config-XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) dir = std::filesystem::temp_directory_path().string();
    std::ofstream(dir + "/secret.txt") << "s3cret\n";
    ::setenv("SLUICE_FUZZ_ENV", "from-env", 1);
    return dir + "/fuzz.yaml";
  }();
  return name;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Keep ${file:...} inside the private folder: no absolute paths, no way out of it.
  if (text.find("${file:/") != std::string_view::npos || text.find("..") != std::string_view::npos)
    return -1;
  using sluice::config::ConfigError;
  sluice::config::PipelineFile file;
  try {
    file = sluice::config::parse_pipelines(text, pipeline_file_name());
  } catch (const ConfigError&) {
    return 0;
  }
  for (const auto& p : file.pipelines) {
    std::vector<const sluice::config::StageSpec*> stages = {&p.source, &p.sink};
    for (const auto& t : p.transforms) stages.push_back(&t);
    if (p.dead_letter) stages.push_back(&*p.dead_letter);
    for (const auto* s : stages) {
      try {
        auto checked = sluice::config::check_stage(*s, kSchema);
        (void)sluice::config::redact(checked.json, checked.secret_values);
      } catch (const ConfigError& e) {
        (void)sluice::config::field_location(*s, "tls.ca");
      }
    }
  }
  return 0;
}
