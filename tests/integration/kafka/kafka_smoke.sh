#!/usr/bin/env bash
# Smoke test of the real broker fixture: a topic takes 1000 messages and gives all of them back.
# Usage: kafka_smoke.sh SERVICE_DIR (the --dir given to scripts/kafka start)
set -euo pipefail
service_dir=$1
source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
bootstrap="$(cat "$service_dir/bootstrap")"
topic="smoke-$$-$RANDOM"
count=1000

"$source_dir/scripts/kafka" topic create "$topic" 3 --dir "$service_dir"
seq 1 "$count" | kcat -P -b "$bootstrap" -t "$topic" -X acks=all
# -e: stop at the end of every partition; bounded by timeout in case the broker stalls.
got="$(timeout 60 kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -q -f '%s\n' | sort -n | uniq | wc -l)"
if [[ "$got" -ne "$count" ]]; then
  echo "kafka_smoke: produced $count distinct messages, consumed $got back" >&2
  exit 1
fi
echo "kafka_smoke: $got of $count messages came back"
