// The plugin tables of the debezium_smt module, one function per transform (module.cpp).
#pragma once

#include <sluice/abi.h>

namespace sluice::dbz {

const sluice_plugin* unwrap();        // unwrap.cpp
const sluice_plugin* outbox();        // outbox.cpp
const sluice_plugin* table_router();  // table_router.cpp

}  // namespace sluice::dbz
