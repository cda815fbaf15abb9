#!/usr/bin/env bash
# Exactly once, Kafka -> Kafka (`delivery: exactly_once`): sluice is SIGKILLed at random points
# of a topic -> topic run and started again each time with the same group; then a final run
# finishes. The output topic read with isolation.level=read_committed holds every input record
# exactly once (0 missing, 0 duplicates), in order per key, and the group's committed offsets
# are the input's end offsets.
# Usage: exactly_once_crash.sh SERVICE_DIR [KILLS]
SERVICE_DIR=$1
kills=${2:-${SLUICE_EOS_KILLS:-20}}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=200000
keys=1000
partitions=8

make_passthrough_topics
# Static membership (group.instance.id) lets each restart take its partitions at once.
write_exactly_once_yaml "$work/pipeline.yaml" "$run_id" "transaction_interval_ms: 200" \
  ", group.instance.id: $run_id-member" ""
final_yaml "$work/pipeline.yaml" "$work/final.yaml"

RANDOM=$$
history=""
for ((k = 1; k <= kills; k++)); do
  kill_mid_flow "$work/pipeline.yaml" "run$k" "$out" "$partitions"
  history+="${history:+, }$(end_offsets_sum "$out" "$partitions")"
done
log "output end offsets (committed, aborted and markers) at each of the $kills kills: $history"
committed="$(committed_distinct_count "$out")"
log "distinct committed records at the last kill: $committed of $count"
((committed < count)) || fail "the input was through before the last kill; the test proves nothing"

start_sluice "$work/final.yaml" final
wait_for_count committed_distinct_count "$out" "$count" 120
stop_sluice "$last_pid" final
dump_committed "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 1)" || fail "not exactly once: $result"
log "$result"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
