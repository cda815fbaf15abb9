# Shared steps of the Kafka end-to-end tests: sluice runs as the real launcher against the real
# broker, and every check reads Kafka with independent tools (kcat, Kafka's group command).
# Sourced by the test scripts; expects SERVICE_DIR (the fixture's scripts/kafka --dir) set.
set -euo pipefail

source_dir="${SLUICE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}"
binary_dir="${SLUICE_BINARY_DIR:?SLUICE_BINARY_DIR is not set (run through ctest)}"
plugin_dir="${SLUICE_BUILD_PLUGIN_DIR:-$binary_dir/plugins-out}"
sluice_bin="$binary_dir/bin/sluice"
kafka_script="$source_dir/scripts/kafka"
bootstrap="$(cat "$SERVICE_DIR/bootstrap")"
test_name="$(basename "$0" .sh)"
# Unique names per run: a rerun against the same broker starts from nothing.
run_id="$test_name-$$-$RANDOM"
work="$binary_dir/test-work/$run_id"
mkdir -p "$work"

# Every sluice process this test started; killed on any exit so none outlives the test.
sluice_pids=()
cleanup() {
  local pid
  for pid in "${sluice_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

log() { echo "[$test_name] $*"; }
fail() {
  echo "[$test_name] FAIL: $*" >&2
  local f
  for f in "$work"/*.log; do
    [[ -f "$f" ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
  exit 1
}

create_topic() { "$kafka_script" topic create "$1" "$2" --dir "$SERVICE_DIR"; }

# For the topic -> sluice -> topic tests: brings in passthrough_yaml.sh and sets $count records
# over $keys keys on $partitions partitions (20000, 100 and 4 unless given).
# passthrough_test [COUNT] [KEYS] [PARTITIONS]
passthrough_test() {
  source "$(dirname "${BASH_SOURCE[0]}")/passthrough_yaml.sh"
  count=${1:-20000}
  keys=${2:-100}
  partitions=${3:-4}
}

# Produces COUNT records "k<i mod KEYS>" -> "k<key> <sequence number within the key>", so the
# consumer side can check per-key order and find every missing or duplicated record.
produce_keyed() {
  local topic=$1 count=$2 keys=$3
  awk -v n="$count" -v keys="$keys" \
    'BEGIN { for (i = 0; i < n; i++) { k = i % keys; printf "k%d:k%d %d\n", k, k, int(i / keys) } }' |
    kcat -P -b "$bootstrap" -t "$topic" -K: -X acks=all -X linger.ms=20
}

# Every record of TOPIC as "key value", partition by partition in log order.
dump_topic() {
  timeout 120 kcat -C -b "$bootstrap" -t "$1" -o beginning -e -q -f '%k %s\n'
}

# The sum of TOPIC's end offsets (a cheap progress figure: no record is read).
end_offsets_sum() {
  local topic=$1 partitions=$2 p args=()
  for ((p = 0; p < partitions; p++)); do args+=(-t "$topic:$p:-1"); done
  timeout 30 kcat -Q -b "$bootstrap" "${args[@]}" | awk '{ s += $NF } END { print s + 0 }'
}

# Waits until TOPIC (PARTITIONS partitions) has at least WANT records in total.
wait_for_end_offsets() {
  local topic=$1 partitions=$2 want=$3 timeout=$4 got=0
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    got="$(end_offsets_sum "$topic" "$partitions")"
    ((got >= want)) && return 0
    sleep 0.1
  done
  fail "$topic has $got records after ${timeout}s, expected at least $want"
}

# dump_topic, reading only committed transactions (what an exactly-once consumer sees).
dump_committed() {
  timeout 120 kcat -C -b "$bootstrap" -t "$1" -o beginning -e -q -f '%k %s\n' \
    -X isolation.level=read_committed
}
committed_distinct_count() { dump_committed "$1" | sort -u | wc -l; }

topic_count() { timeout 120 kcat -C -b "$bootstrap" -t "$1" -o beginning -e -q -f 'x\n' | wc -l; }
distinct_count() { dump_topic "$1" | sort -u | wc -l; }

# Waits until COUNTER TOPIC reaches WANT; fails after TIMEOUT seconds.
wait_for_count() {
  local counter=$1 topic=$2 want=$3 timeout=$4 got=0
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    got="$($counter "$topic")"
    ((got >= want)) && return 0
    sleep 1
  done
  fail "$topic has $got records after ${timeout}s, expected $want"
}

# Starts `sluice run YAML` in the background with its log in NAME.log; sets $last_pid.
start_sluice() {
  local yaml=$1 name=$2
  "$sluice_bin" --plugin-path "$plugin_dir" run "$yaml" >"$work/$name.out" 2>"$work/$name.log" &
  last_pid=$!
  sluice_pids+=("$last_pid")
  log "started sluice $name (pid $last_pid)"
}

# Waits up to TIMEOUT s for sluice PID (NAME) to end, else fails (WHY: what it waits after);
# sets $rc to its exit status.
wait_for_exit() {
  local pid=$1 name=$2 timeout=$3 why=$4
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "sluice $name did not end within ${timeout}s $why"
    sleep 0.2
  done
  rc=0
  wait "$pid" || rc=$?
}

# Stops a sluice cleanly (SIGTERM: drain, commit) and fails if it does not exit 0 in time.
stop_sluice() {
  local pid=$1 name=$2 rc=0
  kill -TERM "$pid"
  wait_for_exit "$pid" "$name" 60 "of SIGTERM"
  ((rc == 0)) || fail "sluice $name exited with $rc after SIGTERM"
  log "sluice $name: $(cat "$work/$name.out")"
}

# Waits until LOG has a line matching PATTERN.
wait_for_log() {
  local file=$1 pattern=$2 timeout=$3
  local deadline=$((SECONDS + timeout))
  until grep -q -- "$pattern" "$file" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "no '$pattern' in $file within ${timeout}s"
    sleep 0.2
  done
}

# The group's committed offset equals the end offset on every partition of TOPIC, and the
# committed offsets add up to EXPECTED. Read with Kafka's own ConsumerGroupCommand.
check_committed_at_end() {
  local group=$1 topic=$2 partitions=$3 expected=$4
  local rows
  rows="$("$kafka_script" groups describe "$group" --dir "$SERVICE_DIR" | awk -v t="$topic" '$1 == t')"
  echo "$rows" | awk '{ printf "  %s[%s] committed %s end %s lag %s\n", $1, $2, $3, $4, $5 }'
  local n behind sum
  n="$(echo "$rows" | grep -c . || true)"
  ((n == partitions)) || fail "group $group committed on $n of $partitions partitions of $topic"
  behind="$(echo "$rows" | awk '$3 != $4' | wc -l)"
  ((behind == 0)) || fail "group $group: committed offset != end offset on $behind partitions"
  sum="$(echo "$rows" | awk '{ s += $3 } END { print s + 0 }')"
  ((sum == expected)) || fail "group $group committed $sum records of $topic, expected $expected"
  log "group $group: committed == end offset on all $partitions partitions ($sum records)"
}

# Checks a dump of "key value" lines against COUNT records over KEYS keys: none missing; with
# STRICT=1 also none duplicated and each key's values in order. Prints the duplicate count.
check_records() {
  local dump=$1 count=$2 keys=$3 strict=$4
  awk -v n="$count" -v keys="$keys" -v strict="$strict" '
    {
      key = $1; seq = $3 + 0
      if ($2 != key) { printf "record with key %s has value %s %s\n", key, $2, $3; bad = 1 }
      if ((key, seq) in seen) dups++
      else { seen[key, seq] = 1; distinct++ }
      if (strict && (key in last) && seq != last[key] + 1) {
        if (misordered++ < 5) printf "key %s: %d after %d\n", key, seq, last[key]
      }
      if (strict && !(key in last) && seq != 0) {
        if (misordered++ < 5) printf "key %s: starts at %d\n", key, seq
      }
      last[key] = seq
    }
    END {
      missing = 0
      for (i = 0; i < n; i++) {
        k = "k" (i % keys); s = int(i / keys)
        if (!((k, s) in seen)) { if (missing++ < 5) printf "missing %s %d\n", k, s }
      }
      printf "records %d, distinct %d, missing %d, duplicates %d", NR, distinct, missing, dups + 0
      if (strict) printf ", out of order %d", misordered + 0
      printf "\n"
      exit (missing > 0 || bad || (strict && (dups > 0 || misordered > 0))) ? 1 : 0
    }' "$dump"
}

# Starts sluice NAME on YAML, waits (up to TIMEOUT s) until every one of $count records is in
# $out, stops it cleanly and checks the dump: none missing. Sets $result (check_records' line).
restart_until_complete() {
  local yaml=$1 name=$2 timeout=$3
  start_sluice "$yaml" "$name"
  wait_for_count distinct_count "$out" "$count" "$timeout"
  stop_sluice "$last_pid" "$name"
  dump_topic "$out" >"$work/out.txt"
  result="$(check_records "$work/out.txt" "$count" "$keys" 0)" || fail "records missing: $result"
  log "$result"
}

# The partitions sluice NAME holds now, from its log: every assigned minus every revoked, one
# per line.
held_partitions() {
  { grep -o 'kafka source: \(assigned\|revoked\) .*' "$work/$1.log" || true; } |
    awk '{ sign = ($3 == "assigned") ? 1 : -1
           for (i = 4; i <= NF; i++) { p = $i; sub(/,$/, "", p); held[p] += sign } }
         END { for (p in held) if (held[p] > 0) print p }' | sort
}

# Waits until the sluice processes NAMES... (logs in $work) split PARTITIONS partitions between
# them, each holding some.
wait_for_spread() {
  local partitions=$1 name all
  shift
  local deadline=$((SECONDS + 60))
  while :; do
    all="$(for name in "$@"; do held_partitions "$name"; done | sort -u | wc -l)"
    if [[ "$all" == "$partitions" ]]; then
      for name in "$@"; do [[ -n "$(held_partitions "$name")" ]] || continue 2; done
      return 0
    fi
    ((SECONDS < deadline)) || fail "the group did not spread its partitions over $# members"
    sleep 0.5
  done
}

# The partitions a process took over in a rebalance: every "assigned" in the lines of the
# logs NAME:FIRST_LINE... after FIRST_LINE, one per line.
assigned_since() {
  local spec name first
  for spec in "$@"; do
    name=${spec%%:*}
    first=${spec#*:}
    tail -n +"$((first + 1))" "$work/$name.log"
  done | grep -o 'kafka source: assigned .*' | sed 's/kafka source: assigned //; s/, /\n/g' |
    sort -u || true
}

# Starts sluice on YAML as NAME and SIGKILLs it 0-2 s after TOPIC (PARTITIONS partitions) grew
# by 200 records: mid-flow, with batches (and a transaction) in flight. Seed RANDOM first.
kill_mid_flow() {
  local yaml=$1 name=$2 topic=$3 partitions=$4 before
  before="$(end_offsets_sum "$topic" "$partitions")"
  start_sluice "$yaml" "$name"
  wait_for_end_offsets "$topic" "$partitions" $((before + 200)) 60
  sleep "$((RANDOM % 2)).$((RANDOM % 10))"
  kill -KILL "$last_pid"
  wait "$last_pid" 2>/dev/null || true
}

# Three members a, b and c on $partitions partitions of $in, each on "$work/NAME.yaml": starts
# them, waits until they split the partitions, produces $count records over $keys keys, and
# SIGKILLs b once $out has a tenth of them. Sets pid (a and c), victim_partitions and
# survivor_lines (where a's and c's logs stood at the kill, for survivors_took_over).
start_three_kill_one() {
  local name
  declare -gA pid
  for name in a b c; do
    start_sluice "$work/$name.yaml" "$name"
    pid[$name]=$last_pid
  done
  # The group is formed before any input exists, so every member gets work.
  for name in a b c; do wait_for_log "$work/$name.log" "kafka source: assigned" 60; done
  wait_for_spread "$partitions" a b c
  for name in a b c; do log "$name holds $(held_partitions "$name" | tr '\n' ' ')"; done
  produce_keyed "$in" "$count" "$keys"
  log "produced $count records over $keys keys into $in"
  # End offsets count aborted records and transaction markers too: progress, not the result.
  wait_for_end_offsets "$out" "$partitions" $((count / 10)) 60
  victim_partitions="$(held_partitions b)"
  survivor_lines=("a:$(wc -l <"$work/a.log")" "c:$(wc -l <"$work/c.log")")
  kill -KILL "${pid[b]}"
  wait "${pid[b]}" 2>/dev/null || true
}

# a and c were assigned every partition of b in a rebalance after the kill.
survivors_took_over() {
  local taken p name
  taken="$(assigned_since "${survivor_lines[@]}")"
  for p in $victim_partitions; do
    grep -qxF "$p" <<<"$taken" || fail "no survivor logged taking over $p after b was killed"
  done
  for name in a c; do log "$name holds after the kill $(held_partitions "$name" | tr '\n' ' ')"; done
}

# The exactly-once summary line in OUT_FILE counts some records as not committed (their
# transaction aborted), and no more as delivered and not committed than came in.
check_not_committed() {
  local summary in delivered not_committed
  summary="$(grep -m1 'pipeline exactly-once: ' "$1" || true)"
  in="$(grep -o '[0-9]* records in' <<<"$summary" | cut -d' ' -f1)"
  delivered="$(grep -o '[0-9]* delivered' <<<"$summary" | cut -d' ' -f1)"
  not_committed="$(grep -o '[0-9]* not committed' <<<"$summary" | cut -d' ' -f1)"
  [[ -n "$not_committed" && -n "$delivered" && -n "$in" ]] ||
    fail "the summary counts no records as not committed: $summary"
  ((not_committed > 0 && delivered + not_committed <= in)) ||
    fail "the summary's counts do not add up: $summary"
  log "summary: $delivered delivered, $not_committed not committed of $in records in"
}
