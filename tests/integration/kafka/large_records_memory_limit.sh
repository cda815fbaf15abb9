#!/usr/bin/env bash
# Large records from Kafka under a small memory limit, behind a slow sink: 300 records of 900 KB
# (1,000x the usual size) with `memory_limit_mb: 64`. librdkafka's prefetch is outside the records
# the runtime counts, and with its defaults (a 64 MB queue, 50 MB fetches) it alone took the
# process to 123 MB. The kafka source sizes it from the pipeline's limit, so the peak RSS stays
# under the limit plus the process baseline the README puts outside it (32 MB here, as
# memory_limit_test allows), and every record arrives.
# Usage: large_records_memory_limit.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"

# Under AddressSanitizer RSS is mostly the sanitizer's own (shadow memory, quarantine): the
# figure says nothing of sluice's, so the test is skipped there (exit 77, ctest's SKIP). grep
# reads all of ldd's output: `grep -q` stops at the match, ldd then dies of SIGPIPE, and under
# pipefail the test ran under ASan in about 1 run of 5 (and failed: RSS 432 MB).
if ldd "$sluice_bin" 2>/dev/null | grep libasan >/dev/null; then
  log "skipped: sluice is built with AddressSanitizer"
  exit 77
fi

count=300
limit_mb=64
allowance_mb=32
in="$run_id-in"
group="$run_id-group"

create_topic "$in" 1
"$kafka_script" topic alter "$in" max.message.bytes=2000000 --dir "$SERVICE_DIR"
python3 - "$count" >"$work/records.txt" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f'{{"id":{i},"pad":"{"x" * 900_000}"}}')
PY
kcat -P -b "$bootstrap" -t "$in" -X message.max.bytes=2000000 -X acks=all -l "$work/records.txt"

cat >"$work/pipeline.yaml" <<YAML
pipelines:
  - name: large
    source:
      type: kafka
      bootstrap_servers: $bootstrap
      group_id: $group
      topics: [$in]
    sink:
      type: latency
      batch_cost_ms: 400
      record_file: $work/delivered.txt
    performance:
      memory_limit_mb: $limit_mb
admin:
  enabled: false
YAML

start_sluice "$work/pipeline.yaml" sluice
pid=$last_pid
peak_kb=0
deadline=$((SECONDS + 120))
until [[ -f "$work/delivered.txt" ]] && (($(wc -l <"$work/delivered.txt") >= count)); do
  ((SECONDS < deadline)) || fail "the sink got $(wc -l <"$work/delivered.txt" 2>/dev/null || echo 0) of $count records in 120s"
  hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
  [[ -n "$hwm" ]] && ((hwm > peak_kb)) && peak_kb=$hwm
  sleep 0.2
done
hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")"
((hwm > peak_kb)) && peak_kb=$hwm
stop_sluice "$pid" sluice
log "peak RSS $((peak_kb / 1024)) MB with a ${limit_mb} MB limit"
grep -q "queued.max.messages.kbytes = 8192" "$work/sluice.log" ||
  fail "the kafka source did not size its prefetch queue from the 64 MB limit"
((peak_kb <= (limit_mb + allowance_mb) * 1024)) ||
  fail "peak RSS $((peak_kb / 1024)) MB is over the ${limit_mb} MB limit plus ${allowance_mb} MB"
distinct="$(sort -u "$work/delivered.txt" | wc -l)"
((distinct == count)) || fail "$distinct distinct records delivered, expected $count"
check_committed_at_end "$group" "$in" 1 "$count"
