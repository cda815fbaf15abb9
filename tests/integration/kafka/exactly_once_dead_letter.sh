#!/usr/bin/env bash
# Exactly once with a Kafka dead-letter topic: records the `fields` transform rejects (values
# that are not JSON) go to the dead-letter topic inside the pipeline's transaction. sluice is
# SIGKILLed at random points and started again; then a final run finishes. Read with
# isolation.level=read_committed, the output holds every good record exactly once and the
# dead-letter topic every bad record exactly once, though the killed runs wrote some of each in
# transactions that were aborted. Transactions are sized adaptively (transaction_target_ms).
# Usage: exactly_once_dead_letter.sh SERVICE_DIR [KILLS]
SERVICE_DIR=$1
kills=${2:-${SLUICE_EOS_DLQ_KILLS:-5}}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=40000
keys=400
partitions=4
in="$run_id-in"
out="$run_id-out"
dlq="$run_id-dlq"
group="$run_id-group"
for topic in "$in" "$out" "$dlq"; do create_topic "$topic" "$partitions"; done
# One record in 101 is not JSON: the dead letters. 101 is prime to the number of keys, so they
# fall on every key, hence every partition, and an open transaction at a kill likely holds some.
is_bad='i % 101 == 37'
awk -v n="$count" -v keys="$keys" 'BEGIN {
  for (i = 0; i < n; i++) {
    k = i % keys; s = int(i / keys)
    if ('"$is_bad"') printf "k%d:bad k%d %d\n", k, k, s
    else printf "k%d:{\"k\":\"k%d\",\"n\":%d}\n", k, k, s
  } }' | kcat -P -b "$bootstrap" -t "$in" -K: -X acks=all -X linger.ms=20
bad="$(awk -v n="$count" 'BEGIN { for (i = 0; i < n; i++) if ('"$is_bad"') b++; print b }')"
good=$((count - bad))
log "produced $count records into $in, $bad of them not JSON"

write_exactly_once_yaml "$work/pipeline.yaml" "$run_id" "transaction_target_ms: 300" \
  ", group.instance.id: $run_id-member" "" "    transforms: [{type: fields, drop: [unused]}]
    dead_letter: {type: kafka, bootstrap_servers: $bootstrap, topic: $dlq}
    errors: {tolerance: all}"
final_yaml "$work/pipeline.yaml" "$work/final.yaml"

RANDOM=$$
for ((k = 1; k <= kills; k++)); do kill_mid_flow "$work/pipeline.yaml" "run$k" "$out" "$partitions"; done
dead_at_kill="$(end_offsets_sum "$dlq" "$partitions")"
committed="$(committed_distinct_count "$out")"
log "at the last kill: $committed of $good good records committed; $dead_at_kill entries in $dlq"
((committed < good)) || fail "the input was through before the last kill; the test proves nothing"

start_sluice "$work/final.yaml" final
wait_for_count committed_distinct_count "$out" "$good" 120
wait_for_count committed_distinct_count "$dlq" "$bad" 30
stop_sluice "$last_pid" final
grep -q "dead letters go into the transaction" "$work/final.log" ||
  fail "the dead-letter sink did not join the transaction"

# Every line once: as many lines as distinct lines as expected records.
exactly_once() {
  local topic=$1 want=$2 total distinct
  dump_committed "$topic" >"$work/$topic.txt"
  total="$(wc -l <"$work/$topic.txt")"
  distinct="$(sort -u "$work/$topic.txt" | wc -l)"
  log "$topic read_committed: $total records, $distinct distinct, $want expected"
  ((total == want && distinct == want)) || fail "$topic does not hold its $want records exactly once"
}
exactly_once "$out" "$good"
exactly_once "$dlq" "$bad"
# Read uncommitted (librdkafka reads committed by default), the dead-letter topic also holds what the killed runs' open transactions
# wrote: dead letters that were aborted and written again.
all_dead="$(timeout 60 kcat -C -b "$bootstrap" -t "$dlq" -o beginning -e -q -f 'x\n' \
  -X isolation.level=read_uncommitted | wc -l)"
log "$dlq read_uncommitted: $all_dead records"
((all_dead > bad)) || fail "no dead letter was in an aborted transaction; the test proves nothing"
# The dead letters are the bad records, with the stage that rejected them in their headers.
if grep -qv '^k[0-9]* bad k[0-9]* [0-9]*$' "$work/$dlq.txt"; then
  fail "$dlq holds records that are not the bad ones: $(grep -v ' bad ' "$work/$dlq.txt" | head -3)"
fi
headers="$(timeout 60 kcat -C -b "$bootstrap" -t "$dlq" -o beginning -e -q -c 1 -f '%h\n' \
  -X isolation.level=read_committed)"
[[ "$headers" == *sluice.error.stage=* ]] || fail "a dead letter has no sluice.error.stage: $headers"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
