#!/usr/bin/env bash
# An exactly-once run fenced by a second run with the same transactional_id fails promptly with
# exit 1 and a message naming the fencing; the second run delivers everything, and the output
# read with isolation.level=read_committed holds every input record exactly once, in order per
# key. Probed before (probe19b eos_fence.sh): the fenced run's source sat in its drain (the
# kafka source's 30 s drain_timeout_ms, waiting for records the failed pipeline would never
# finish) past the 10 s stop grace, and sluice exited 71, "stuck", instead of 1. Its summary
# counted the records of its never committed transaction as delivered.
# Usage: exactly_once_fenced_exit.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
passthrough_test

make_passthrough_topics
# Both runs slow (a producer queue of 100 records): the first is mid-flow, a transaction open
# with batches in flight, when the second one's producer fences it.
write_exactly_once_yaml "$work/pipeline.yaml" "$run_id-tx" "transaction_interval_ms: 300" "" ""

start_sluice "$work/pipeline.yaml" first
first=$last_pid
wait_for_end_offsets "$out" "$partitions" 500 60
start_sluice "$work/pipeline.yaml" second
second=$last_pid
second_started=$SECONDS

# Bounded, but far above what a prompt failure needs: the old code took 10-30 s to exit 71.
wait_for_exit "$first" first 90 "of the second start"
log "the first run exited with $rc, $((SECONDS - second_started)) s after the second started: $(grep -m1 -o 'pipeline exactly-once: .*' "$work/first.log" | cut -c1-240)"
((rc == 1)) || fail "the fenced run exited with $rc, expected 1 (a pipeline failed at run time)"
grep -qi "fenced" "$work/first.log" || fail "the fenced run's log does not name the fencing"
! grep -q "stuck" "$work/first.log" || fail "the fenced run reported a stuck call: $(grep -m1 stuck "$work/first.log")"
grep -q "FAILED" "$work/first.out" || fail "the fenced run's summary does not say it failed"
# The summary claims delivery only for records whose transaction committed: those put into the
# transaction the fencing left open are counted apart (before, they counted as delivered).
check_not_committed "$work/first.out"

wait_for_count committed_distinct_count "$out" "$count" 120
stop_sluice "$second" second
dump_committed "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 1)" || fail "not exactly once: $result"
log "read_committed: $result"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
