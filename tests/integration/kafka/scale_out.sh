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
in="$run_id-in"
out="$run_id-out"
group="$run_id-group"

create_topic "$in" "$partitions"
create_topic "$out" "$partitions"
# Small fixed batches at concurrency 1 keep each sluice slow enough (~10k records/s) that the
# kill lands mid-run, however fast the machine.
write_passthrough_yaml "$work/pipeline.yaml" "$group" "$in" "$out" \
  "{adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 1}"

declare -A pid
for name in a b c; do
  start_sluice "$work/pipeline.yaml" "$name"
  pid[$name]=$last_pid
done
# The group is formed before any input exists, so every member gets work.
for name in a b c; do wait_for_log "$work/$name.log" "kafka source: assigned" 60; done

# The partitions NAME holds now, from its log: every assigned minus every revoked, one per line.
held_partitions() {
  { grep -o 'kafka source: \(assigned\|revoked\) .*' "$work/$1.log" || true; } |
    awk '{ sign = ($3 == "assigned") ? 1 : -1
           for (i = 4; i <= NF; i++) { p = $i; sub(/,$/, "", p); held[p] += sign } }
         END { for (p in held) if (held[p] > 0) print p }' | sort
}
# Wait until the three members split the 12 partitions between them.
deadline=$((SECONDS + 60))
until [[ "$( (held_partitions a; held_partitions b; held_partitions c) | sort -u | wc -l)" == "$partitions" &&
  -n "$(held_partitions a)" && -n "$(held_partitions b)" && -n "$(held_partitions c)" ]]; do
  ((SECONDS < deadline)) || fail "the group did not spread its partitions over 3 members"
  sleep 0.5
done
for name in a b c; do log "$name holds $(held_partitions "$name" | tr '\n' ' ')"; done

produce_keyed "$in" "$count" "$keys"
log "produced $count records over $keys keys into $in"
wait_for_end_offsets "$out" "$partitions" $((count / 10)) 60
victim_partitions="$(held_partitions b)"
lines_before_a="$(wc -l <"$work/a.log")"
lines_before_c="$(wc -l <"$work/c.log")"
kill -KILL "${pid[b]}"
wait "${pid[b]}" 2>/dev/null || true
at_kill="$(end_offsets_sum "$out" "$partitions")"
log "SIGKILLed b with $at_kill of $count records in $out; b held $(echo $victim_partitions)"
((at_kill < count)) || fail "the input was through before b was killed; the test proves nothing"

wait_for_count distinct_count "$out" "$count" 120

# a and c were assigned every partition of b in a rebalance after the kill.
taken="$( (tail -n +"$((lines_before_a + 1))" "$work/a.log"
  tail -n +"$((lines_before_c + 1))" "$work/c.log") |
  grep -o 'kafka source: assigned .*' | sed 's/kafka source: assigned //; s/, /\n/g' | sort -u ||
  true)"
for p in $victim_partitions; do
  grep -qxF "$p" <<<"$taken" || fail "no survivor logged taking over $p after b was killed"
done
for name in a c; do log "$name holds after the kill $(held_partitions "$name" | tr '\n' ' ')"; done

stop_sluice "${pid[a]}" a
stop_sluice "${pid[c]}" c
dump_topic "$out" >"$work/out.txt"
result="$(check_records "$work/out.txt" "$count" "$keys" 0)" || fail "records missing: $result"
log "$result"
check_committed_at_end "$group" "$in" "$partitions" "$count"
log "PASS"
