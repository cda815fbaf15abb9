#!/usr/bin/env bash
# Test 1: topic -> sluice -> topic, 100,000 keyed records over 8 partitions: every record arrives
# once, each key's records keep their order, and the group's committed offsets reach the end.
# Usage: passthrough_all_records.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=100000
keys=1000
partitions=8
make_passthrough_topics
log "produced $count records over $keys keys into $in"

write_passthrough_yaml "$work/pipeline.yaml" "$group" "$in" "$out"
start_sluice "$work/pipeline.yaml" sluice
wait_for_count topic_count "$out" "$count" 90
stop_sluice "$last_pid" sluice

dump_topic "$out" >"$work/out.txt"
check_records "$work/out.txt" "$count" "$keys" 1 || fail "the output topic is not the input"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
