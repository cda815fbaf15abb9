#!/usr/bin/env bash
# Exactly once when a delivery fails after the sink's put returned: the output topic first
# refuses one record (larger than its max.message.bytes; the producer's own limit lets it
# through, so put hands it to librdkafka and returns, and the broker refuses it later). The
# transaction holding it must abort (its delivery report marks it failed, or its commit fails),
# the source rewinds, and what that transaction had already written stays invisible to a
# read_committed reader.
# Once the topic accepts the record, the output read with isolation.level=read_committed holds
# every input record exactly once, in order per key; read_uncommitted it holds more (the
# aborted writes), so the test did exercise an abort that had written records.
# Usage: exactly_once_failed_delivery.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/passthrough_yaml.sh"

count=8000
keys=80
partitions=4
big_at=2000  # the record the output topic refuses at first

create_passthrough_topics
# Batches of at most 4,000 bytes fit the 10,000-byte limit; the 20,000-byte record does not.
"$kafka_script" topic alter "$out" max.message.bytes=10000 --dir "$SERVICE_DIR"
# As produce_keyed, one record padded after its "key sequence" (check_records reads 3 fields).
awk -v n="$count" -v keys="$keys" -v big="$big_at" 'BEGIN {
  pad = "x"; while (length(pad) < 20000) pad = pad pad
  for (i = 0; i < n; i++) {
    k = i % keys
    printf "k%d:k%d %d%s\n", k, k, int(i / keys), (i == big) ? " " pad : ""
  } }' | kcat -P -b "$bootstrap" -t "$in" -K: -X acks=all -X linger.ms=20
log "produced $count records into $in, record $big_at of 20 KB"

write_exactly_once_yaml "$work/slow.yaml" "$run_id" "transaction_interval_ms: 200" "" \
  ", batch.size: 4000"
final_yaml "$work/slow.yaml" "$work/pipeline.yaml"
# Default (adaptive) performance settings: several batches in flight, as in production.
sed -i 's/^    performance: .*/    performance: {}/' "$work/pipeline.yaml"

start_sluice "$work/pipeline.yaml" run
wait_for_log "$work/run.log" "aborting the transaction" 60
# The abort names the broker's refusal: seen by the delivery report, or, when the transaction
# ended before that report came (the input ran dry), by the commit.
grep -q "aborting the transaction: .*Message size too large" "$work/run.log" ||
  fail "the transaction did not abort on the refused record: $(grep aborting "$work/run.log" | head -1)"
log "aborted: $(grep -m1 -o 'aborting the transaction: .*' "$work/run.log")"
"$kafka_script" topic alter "$out" max.message.bytes=1048588 --dir "$SERVICE_DIR"
log "raised max.message.bytes of $out"

wait_for_count committed_distinct_count "$out" "$count" 120
stop_sluice "$last_pid" run
grep -q "rewound" "$work/run.log" || fail "the source did not rewind after the abort"
dump_committed "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 1)" || fail "not exactly once: $result"
log "read_committed: $result"
all="$(timeout 60 kcat -C -b "$bootstrap" -t "$out" -o beginning -e -q -f 'x\n' \
  -X isolation.level=read_uncommitted | wc -l)"
log "read_uncommitted: $all records"
((all > count)) || fail "no aborted transaction had written records; the test proves nothing"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
