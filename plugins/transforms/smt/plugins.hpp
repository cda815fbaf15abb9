// The plugin tables of the kafka_smt module, one function per SMT (module.cpp lists them).
#pragma once

#include <sluice/sdk.hpp>
#include <vector>

#include "kafka_smt.hpp"

namespace sluice::smt {

// field_smts.cpp
detail::PluginEntry insert_field();
detail::PluginEntry replace_field();
detail::PluginEntry mask_field();
detail::PluginEntry extract_field();
detail::PluginEntry hoist_field();
std::vector<StepType> field_steps();
// record_smts.cpp
detail::PluginEntry value_to_key();
detail::PluginEntry flatten();
detail::PluginEntry regex_router();
detail::PluginEntry timestamp_router();
detail::PluginEntry insert_header();
detail::PluginEntry drop_headers();
detail::PluginEntry header_from();
detail::PluginEntry filter();
std::vector<StepType> record_steps();
// cast_smts.cpp
detail::PluginEntry cast();
detail::PluginEntry set_schema_metadata();
detail::PluginEntry timestamp_converter();
std::vector<StepType> cast_steps();
// chain.cpp
detail::PluginEntry chain();

}  // namespace sluice::smt
