#!/usr/bin/env bash
# Test 2: sluice is SIGKILLed mid-run and started again with the same group: every record reaches
# the output at least once, none is missing; the duplicates (at-least-once) are counted.
# Usage: kill_and_restart.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=100000
keys=1000
partitions=8
make_passthrough_topics
# Small fixed batches at concurrency 1 and a slow producer keep sluice slow enough (a few
# thousand records/s) that the kill lands mid-run with records in flight, however fast the
# machine.
write_passthrough_yaml "$work/pipeline.yaml" "$group" "$in" "$out" \
  "{adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 1}"
slow_passthrough_producer "$work/pipeline.yaml"

start_sluice "$work/pipeline.yaml" first
first=$last_pid
# Kill as soon as a part of the input is through, while records are in flight.
wait_for_end_offsets "$out" "$partitions" $((count / 10)) 60
kill -KILL "$first"
wait "$first" 2>/dev/null || true
at_kill="$(end_offsets_sum "$out" "$partitions")"
log "SIGKILLed the first sluice with $at_kill of $count records in $out"
((at_kill < count)) || fail "the first sluice finished before it was killed; the test proves nothing"

restart_until_complete "$work/pipeline.yaml" second 90
log "duplicates after SIGKILL and restart: $(echo "$result" | sed -n 's/.*duplicates \([0-9]*\).*/\1/p')"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
