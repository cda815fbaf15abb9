// The plugin tables of the debezium_smt module, one function per transform (module.cpp).
#pragma once

#include <sluice/sdk.hpp>

namespace sluice::dbz {

detail::PluginEntry unwrap();        // unwrap.cpp
detail::PluginEntry outbox();        // outbox.cpp
detail::PluginEntry table_router();  // table_router.cpp

}  // namespace sluice::dbz
