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
# In the killed runs a producer queue of 100 records with linger.ms 40 keeps sluice slow enough
# (a few thousand records/s; an exactly-once put does not wait for acknowledgements) for the
# kills to land mid-flow; the final run goes at full speed. Concurrency 4 keeps several batches
# in flight inside each transaction. Static membership (group.instance.id) lets each restart
# take its partitions at once.
cat >"$work/pipeline.yaml" <<YAML
pipelines:
  - name: exactly-once
    delivery: exactly_once
    source:
      type: kafka
      bootstrap_servers: $bootstrap
      group_id: $group
      topics: [$in]
      transaction_interval_ms: 200
      properties:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 1000
        group.instance.id: $run_id-member
    sink:
      type: kafka
      bootstrap_servers: $bootstrap
      topic: $out
      transactional_id: $run_id
      properties:
        queue.buffering.max.messages: 100
        linger.ms: 40
    performance: {adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 4}
admin:
  enabled: false
YAML

sed -e '/queue.buffering.max.messages/d' -e 's/linger.ms: 40/linger.ms: 5/' \
  "$work/pipeline.yaml" >"$work/final.yaml"

RANDOM=$$
history=""
for ((k = 1; k <= kills; k++)); do
  before="$(end_offsets_sum "$out" "$partitions")"
  start_sluice "$work/pipeline.yaml" "run$k"
  pid=$last_pid
  # Killed 0-2 s after this run's output started to grow: mid-flow, with a transaction open
  # and batches in flight.
  wait_for_end_offsets "$out" "$partitions" $((before + 200)) 60
  sleep "$((RANDOM % 2)).$((RANDOM % 10))"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
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
