#!/usr/bin/env bash
# Crash safety, Kafka -> Kafka: sluice is SIGKILLed at 20 random points of a topic -> topic run
# and started again each time with the same group; at the end every input record is in the
# output topic at least once (read with kcat), the group's committed offsets are the end offsets,
# and the duplicates are counted and bounded by the uncommitted window of each kill.
# Usage: crash_safety.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=300000
keys=1000
partitions=8
kills=20

make_passthrough_topics
# Small fixed batches at concurrency 1 and a slow producer keep sluice slow enough (a few
# thousand records/s) that 20 kills land mid-run. Static membership (group.instance.id) lets
# each restart take over its partitions at once instead of waiting out the killed member's
# session.
write_passthrough_yaml "$work/pipeline.yaml" "$group" "$in" "$out" \
  "{adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 1}"
slow_passthrough_producer "$work/pipeline.yaml"
sed -i "s/        session.timeout.ms: 6000/        session.timeout.ms: 6000\n        group.instance.id: $run_id-member/" \
  "$work/pipeline.yaml"
grep -q "group.instance.id" "$work/pipeline.yaml" || fail "could not set group.instance.id"

RANDOM=$$
history=""
for ((k = 1; k <= kills; k++)); do
  before="$(end_offsets_sum "$out" "$partitions")"
  # Killed once this run has written a random 4,000-10,000 records (0.4-1 s of flow, so most
  # runs commit some before they die): somewhere mid-flow, with batches in flight and commits
  # behind.
  grow=$((4000 + RANDOM % 6001))
  start_sluice "$work/pipeline.yaml" "run$k"
  pid=$last_pid
  wait_for_end_offsets "$out" "$partitions" $((before + grow)) 90
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  history+="${history:+, }$(end_offsets_sum "$out" "$partitions")"
done
log "output records at each of the $kills kills: $history"
at_last_kill="$(end_offsets_sum "$out" "$partitions")"
# Duplicates count too, so fewer distinct records than this were through at the last kill.
((at_last_kill < count)) || fail "the input was through before the last kill; the test proves nothing"

restart_until_complete "$work/pipeline.yaml" final 360
duplicates="$(echo "$result" | sed -n 's/.*duplicates \([0-9]*\).*/\1/p')"
log "duplicates after $kills SIGKILLs: $duplicates ($((duplicates / kills)) per kill on average)"
# Each kill re-delivers what was written but not yet committed: commits follow the acks every
# 200 ms, so about a second of flow (10,000 records here) is a generous bound per kill.
((duplicates <= kills * 10000)) || fail "$duplicates duplicates: more than the uncommitted windows"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
