// The plugin tables of the kafka_smt module, one function per SMT (module.cpp lists them).
#pragma once

#include <sluice/abi.h>

namespace sluice::smt {

// field_smts.cpp
const sluice_plugin* insert_field();
const sluice_plugin* replace_field();
const sluice_plugin* mask_field();
const sluice_plugin* extract_field();
const sluice_plugin* hoist_field();
// record_smts.cpp
const sluice_plugin* value_to_key();
const sluice_plugin* flatten();
const sluice_plugin* regex_router();
const sluice_plugin* timestamp_router();
const sluice_plugin* insert_header();
const sluice_plugin* drop_headers();
const sluice_plugin* header_from();
const sluice_plugin* filter();
// cast_smts.cpp
const sluice_plugin* cast();
const sluice_plugin* set_schema_metadata();
const sluice_plugin* timestamp_converter();

}  // namespace sluice::smt
