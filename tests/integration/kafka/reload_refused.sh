#!/usr/bin/env bash
# A hot reload of a kafka source, or of a kafka stage of an exactly-once pipeline, is refused
# with its reason and the old instance runs on: every record arrives (once, exactly-once), and a
# SIGTERM ends the run with 0. Probed before: reloading the source crashed sluice in 6 of 10 runs
# (librdkafka aborted in its sticky assignor, or SIGSEGV); reloading an exactly-once sink fenced
# the running producer and the pipeline failed.
# Usage: reload_refused.sh SERVICE_DIR
SERVICE_DIR=$1
source "$(dirname "$0")/lib.sh"
passthrough_test
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
with_admin() { sed -i "s/^  enabled: false\$/  host: 127.0.0.1\n  port: $port/" "$1"; }

# reload_and_finish YAML STAGE EXPECTED_REASON NAME
reload_and_finish() {
  local yaml=$1 stage=$2 reason=$3 name=$4
  start_sluice "$yaml" "$name"
  wait_for_count topic_count "$out" 1 60
  local answer
  answer=$(curl -s -m 30 -X POST "http://127.0.0.1:$port/reload?stage=$stage")
  log "reload of $stage: $answer"
  grep -q "$reason" <<<"$answer" || fail "the reload of $stage was not refused: $answer"
  kill -0 "$last_pid" || fail "sluice $name died after the reload"
  wait_for_count topic_count "$out" "$count" 90
  stop_sluice "$last_pid" "$name"
}

make_passthrough_topics
write_passthrough_yaml "$work/alo.yaml" "$group" "$in" "$out"
with_admin "$work/alo.yaml"
reload_and_finish "$work/alo.yaml" passthrough.source "a hot reload of a kafka source is refused" alo
dump_topic "$out" >"$work/out.txt"
check_records "$work/out.txt" "$count" "$keys" 1 || fail "the output topic is not the input"

run_id="$run_id-eos"
make_passthrough_topics
write_exactly_once_yaml "$work/eos.yaml" "$run_id-tx" "transaction_interval_ms: 200" "" ""
final_yaml "$work/eos.yaml" "$work/eos-fast.yaml"
with_admin "$work/eos-fast.yaml"
reload_and_finish "$work/eos-fast.yaml" exactly-once.sink \
  "a hot reload of a kafka stage of an exactly-once pipeline is refused" eos
timeout 120 kcat -C -b "$bootstrap" -t "$out" -o beginning -e -q -X isolation.level=read_committed \
  -f '%k %s\n' >"$work/eos.txt"
check_records "$work/eos.txt" "$count" "$keys" 1 || fail "the exactly-once output is not the input"
log "PASS"
