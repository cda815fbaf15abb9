#!/usr/bin/env bash
# The kafka_file benchmark: topic -> sluice -> file (fsync none) against a raw librdkafka loop
# that consumes and writes the same lines; run.sh with the kafka_file suite.
# Usage: run_file.sh BUILD_DIR OUT_JSON (environment as for run.sh)
SLUICE_KAFKA_BENCH_SUITE=kafka_file exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
