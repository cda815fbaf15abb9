#!/usr/bin/env bash
# The CDC-on-PostgreSQL benchmark's entry for scripts/bench: run_postgres.sh BUILD_DIR OUT_JSON
# (SLUICE_BENCH_QUICK=1: 50,000 events instead of 1,000,000; SLUICE_CDC_EVENTS overrides both).
set -euo pipefail
build_dir=$1
out=$2
events=1000000
if [ "${SLUICE_BENCH_QUICK:-0}" = 1 ]; then events=50000; fi
events=${SLUICE_CDC_EVENTS:-$events}
exec python3 "$(dirname "${BASH_SOURCE[0]}")/cdc_postgres_bench.py" "$build_dir" --events "$events" --out "$out"
