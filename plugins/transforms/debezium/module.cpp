// The debezium_smt module: Debezium's unwrap, outbox and table_router (docs/transforms.md).
#include <sluice/sdk.hpp>

#include "plugins.hpp"

using namespace sluice::dbz;

SLUICE_MODULE("debezium_smt", "0.1.0", unwrap(), outbox(), table_router())
