#!/usr/bin/env bash
# Exactly once with three workers: three sluice processes with `delivery: exactly_once` in one
# group share a 12-partition topic; one is SIGKILLed mid-run with a transaction open. The other
# two take over its partitions from the offsets its last committed transaction recorded; its
# open transaction is aborted by the broker (transaction.timeout.ms). The output read with
# isolation.level=read_committed holds every input record exactly once, in order per key.
# Usage: exactly_once_scale_out.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=60000
keys=600
partitions=12
create_passthrough_topics

# One pipeline file per worker: each needs its own transactional_id (two producers with one id
# fence each other). transaction.timeout.ms 10 s makes the broker abort the killed worker's open
# transaction soon (it holds back read_committed readers until then); librdkafka wants
# message.timeout.ms (flush_timeout_ms) no longer than that.
for name in a b c; do
  write_exactly_once_yaml "$work/$name.yaml" "$run_id-$name" "transaction_interval_ms: 200" "" \
    ", transaction.timeout.ms: 10000" "      flush_timeout_ms: 10000"
done

start_three_kill_one
committed="$(committed_distinct_count "$out")"
log "SIGKILLed b with $committed of $count records committed in $out; b held" $victim_partitions
((committed < count)) || fail "the input was through before b was killed; the test proves nothing"

wait_for_count committed_distinct_count "$out" "$count" 90
survivors_took_over

stop_sluice "${pid[a]}" a
stop_sluice "${pid[c]}" c
dump_committed "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 1)" || fail "not exactly once: $result"
log "$result"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
