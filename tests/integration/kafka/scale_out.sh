#!/usr/bin/env bash
# Test 3: three sluice processes in one group share a 12-partition topic; one is SIGKILLed
# mid-run; the other two take over its partitions and every record reaches the output.
# Usage: scale_out.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=120000
keys=1200
partitions=12

create_passthrough_topics
# Small fixed batches at concurrency 1 and a slow producer keep each sluice slow enough (a few
# thousand records/s) that the kill lands mid-run, however fast the machine.
write_passthrough_yaml "$work/a.yaml" "$group" "$in" "$out" \
  "{adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 1}"
slow_passthrough_producer "$work/a.yaml"
cp "$work/a.yaml" "$work/b.yaml"
cp "$work/a.yaml" "$work/c.yaml"

start_three_kill_one
at_kill="$(end_offsets_sum "$out" "$partitions")"
log "SIGKILLed b with $at_kill of $count records in $out; b held" $victim_partitions
((at_kill < count)) || fail "the input was through before b was killed; the test proves nothing"

wait_for_count distinct_count "$out" "$count" 120
survivors_took_over

stop_sluice "${pid[a]}" a
stop_sluice "${pid[c]}" c
dump_topic "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 0)" || fail "records missing: $result"
log "$result"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
