#!/usr/bin/env bash
# Test 4: a slow sink stalls the pipeline for longer than max.poll.interval.ms; the paused source
# keeps polling, so the consumer keeps its group membership (same member id, no revoke, no
# reassignment) and the run completes with every offset committed.
# Usage: slow_sink_keeps_membership.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"

count=400
partitions=4
max_poll_ms=6000
batch_cost_ms=7000
in="$run_id-in"
group="$run_id-group"

create_topic "$in" "$partitions"
produce_keyed "$in" "$count" 40

# Fixed batches of 200 at concurrency 1 behind a sink that takes 7 s per batch: each put alone
# outlasts max.poll.interval.ms, and the intake bound of 200 records pauses the source.
cat >"$work/pipeline.yaml" <<YAML
pipelines:
  - name: slow
    source:
      type: kafka
      bootstrap_servers: $bootstrap
      group_id: $group
      topics: [$in]
      properties:
        session.timeout.ms: $max_poll_ms
        heartbeat.interval.ms: 1000
        max.poll.interval.ms: $max_poll_ms
    sink:
      type: latency
      batch_cost_ms: $batch_cost_ms
      record_file: $work/delivered.txt
    performance:
      adaptive_batching: false
      batch_size: 200
      linger_ms: 500
      adaptive_concurrency: false
      concurrency: 1
      backpressure_threshold: 200
admin:
  enabled: false
YAML

started=$SECONDS
start_sluice "$work/pipeline.yaml" sluice
wait_for_log "$work/sluice.log" "kafka source: assigned" 60
member_before="$("$kafka_script" groups members "$group" --dir "$SERVICE_DIR")"
log "member while the first batch stalls: $member_before"
[[ -n "$member_before" ]] || fail "the group has no member while sluice runs"

deadline=$((SECONDS + 90))
until [[ -f "$work/delivered.txt" ]] && (($(wc -l <"$work/delivered.txt") >= count)); do
  ((SECONDS < deadline)) || fail "the slow sink got $(wc -l <"$work/delivered.txt" 2>/dev/null || echo 0) of $count records in 90s"
  sleep 0.5
done
stalled=$((SECONDS - started))
# Still the same member after stalls beyond max.poll.interval.ms: the group never evicted it.
member_after="$("$kafka_script" groups members "$group" --dir "$SERVICE_DIR")"
log "member after $stalled s of slow puts: $member_after"
[[ "$member_after" == "$member_before" ]] || fail "the group's member changed: before '$member_before', after '$member_after'"
((stalled * 1000 > 2 * max_poll_ms)) || fail "the run took ${stalled}s: the sink never stalled beyond max.poll.interval.ms"
# Give the last batch's commit its cycle before the stop, so the check below sees the run's own commits.
sleep 1
stop_sluice "$last_pid" sluice

# Before the stop signal: one assignment, no revoke, no eviction.
before_stop="$(sed '/signal 15 received/,$d' "$work/sluice.log")"
(($(grep -c 'kafka source: assigned' <<<"$before_stop") == 1)) || fail "the consumer was assigned more than once (a rebalance)"
! grep -q 'kafka source: revoked' <<<"$before_stop" || fail "partitions were revoked before the stop"
! grep -qi 'maximum poll interval' "$work/sluice.log" || fail "librdkafka reports max.poll.interval.ms exceeded"

delivered="$(sort -u "$work/delivered.txt" | wc -l)"
((delivered == count)) || fail "the sink got $delivered distinct records, expected $count"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
