// Pipeline::create_and_destroy_stages: `sluice validate --create` builds every stage once.
#include "pipeline/pipeline.hpp"

namespace sluice::pipeline {

void Pipeline::create_and_destroy_stages() {
  // Created in start()'s order, destroyed in reverse (a vector's own order is unspecified).
  std::vector<std::shared_ptr<plugin::PluginInstance>> created;
  created.push_back(create(source_plan_));
  for (const auto& t : transform_plans_) created.push_back(create(t));
  created.push_back(create(sink_plan_));
  if (dead_letter_plan_) created.push_back(create(*dead_letter_plan_));
  while (!created.empty()) created.pop_back();
}

}  // namespace sluice::pipeline
