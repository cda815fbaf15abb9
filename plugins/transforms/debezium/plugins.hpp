// The plugin tables of the debezium_smt module, one function per transform (module.cpp).
#pragma once

#include <sluice/sdk.hpp>

#include "../smt/kafka_smt.hpp"

namespace sluice::dbz {

detail::PluginEntry unwrap();        // unwrap.cpp
detail::PluginEntry outbox();        // outbox.cpp
detail::PluginEntry table_router();  // table_router.cpp

// The same transforms as steps of the kafka_smt module's `chain` transform.
smt::StepType unwrap_step();
smt::StepType outbox_step();
smt::StepType table_router_step();

}  // namespace sluice::dbz
