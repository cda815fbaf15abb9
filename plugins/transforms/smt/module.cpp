// The kafka_smt module: Kafka Connect's single message transforms (docs/transforms.md).
#include <sluice/sdk.hpp>

#include "plugins.hpp"

using namespace sluice::smt;

SLUICE_MODULE("kafka_smt", "0.1.0", insert_field(), replace_field(), mask_field(), extract_field(),
              hoist_field(), value_to_key(), flatten(), regex_router(), timestamp_router(),
              insert_header(), drop_headers(), header_from(), filter(), cast(),
              set_schema_metadata(), timestamp_converter(), chain())
