#!/usr/bin/env bash
# Runs the Kafka benchmark (sluice pass-through vs the raw librdkafka floor) on a broker of its
# own and writes OUT_JSON in the shape of shared/DESIGN.md §9.
# Usage: run.sh BUILD_DIR OUT_JSON
# Environment: SLUICE_BENCH_QUICK=1 (100,000 records, 3 runs each, instead of 1,000,000 for
# kafka and 5,000,000 for kafka_file, whose 1M runs last 1-2 s and measure mostly start-up),
# SLUICE_KAFKA_BENCH_RECORDS / SLUICE_KAFKA_BENCH_REPS override the counts,
# SLUICE_KAFKA_BOOTSTRAP uses a running broker instead of starting one,
# SLUICE_KAFKA_BENCH_SUITE=kafka_file runs topic -> file instead (run_file.sh sets it).
set -euo pipefail
[[ $# -eq 2 ]] || { sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_dir="$(cd "$here/../../.." && pwd)"
build_dir="$(cd "$1" && pwd)"
out_json=$2

for f in "$build_dir/bin/sluice" "$build_dir/plugins-out/sluice-kafka.so"; do
  [[ -e "$f" ]] || { echo "kafka bench: $f is missing (build sluice and the kafka plugin)" >&2; exit 2; }
done

# The bench tool is a CMake target when tests/bench adds this folder; otherwise build it here.
tool="$build_dir/bin/sluice-kafka-bench"
if [[ ! -x "$tool" || "$here/kafka_bench_tool.cpp" -nt "$tool" ]]; then
  if ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q '^sluice-kafka-bench:'; then
    ninja -C "$build_dir" sluice-kafka-bench >&2
  else
    echo "kafka bench: compiling $tool" >&2
    g++ -std=c++20 -O2 "$here/kafka_bench_tool.cpp" -o "$tool" \
      $(pkg-config --cflags --libs rdkafka) -lfmt -pthread
  fi
fi

suite=${SLUICE_KAFKA_BENCH_SUITE:-kafka}
default_records=1000000
[[ "$suite" == kafka_file ]] && default_records=5000000
[[ "${SLUICE_BENCH_QUICK:-0}" == 1 ]] && default_records=100000
records=${SLUICE_KAFKA_BENCH_RECORDS:-$default_records}
records_from=default
[[ -n "${SLUICE_KAFKA_BENCH_RECORDS:-}" ]] && records_from=SLUICE_KAFKA_BENCH_RECORDS
reps=${SLUICE_KAFKA_BENCH_REPS:-3}

bootstrap=${SLUICE_KAFKA_BOOTSTRAP:-}
if [[ -z "$bootstrap" ]]; then
  service_dir="$build_dir/services/kafka-bench-$suite"
  bootstrap="$("$source_dir/scripts/kafka" start --dir "$service_dir")"
  trap '"$source_dir/scripts/kafka" stop --dir "$service_dir" >/dev/null 2>&1 || true' EXIT
fi

python3 "$here/kafka_bench.py" --build-dir "$build_dir" --out "$out_json" --tool "$tool" \
  --bootstrap "$bootstrap" --records "$records" --records-default "$default_records" \
  --records-from "$records_from" --reps "$reps" --suite "$suite"
