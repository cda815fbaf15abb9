// The `kafka` plugin module: registers the Kafka source and sink with the host.
#include "kafka_sink.hpp"
#include "kafka_source.hpp"
#include "sluice/sdk.hpp"

SLUICE_MODULE("kafka", "0.1.0", SLUICE_SOURCE(sluice::kafka::KafkaSource, "kafka"),
              SLUICE_SINK(sluice::kafka::KafkaSink, "kafka"))
