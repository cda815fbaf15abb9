# Writes a topic -> sluice -> topic pipeline file and makes its topics; sourced after lib.sh.
# write_passthrough_yaml FILE GROUP IN OUT [performance section as a YAML flow mapping]
write_passthrough_yaml() {
  local file=$1 group=$2 in=$3 out=$4 performance=${5:-"{}"}
  cat >"$file" <<YAML
pipelines:
  - name: passthrough
    source:
      type: kafka
      bootstrap_servers: $bootstrap
      group_id: $group
      topics: [$in]
      properties:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 1000
    sink:
      type: kafka
      bootstrap_servers: $bootstrap
      topic: $out
    performance: $performance
admin:
  enabled: false
YAML
}

# Caps the sink's producer at a local queue of 200 records with linger.ms 20 in FILE (written by
# write_passthrough_yaml): a few thousand records/s, so a kill lands mid-run. The kafka sink's
# put returns once librdkafka has the records, so only the full queue holds it back, and records
# are always in flight unconfirmed (their offsets held back by the source) when the kill comes.
slow_passthrough_producer() {
  local file=$1
  sed -i "s/^      topic: $out\$/      topic: $out\n      properties: {queue.buffering.max.messages: 200, linger.ms: 20}/" \
    "$file"
  grep -q "queue.buffering.max.messages" "$file" || fail "could not slow the producer in $file"
}

# Names this run's topics and group ($in, $out, $group) and creates both topics with
# $partitions partitions.
create_passthrough_topics() {
  in="$run_id-in"
  out="$run_id-out"
  group="$run_id-group"
  create_topic "$in" "$partitions"
  create_topic "$out" "$partitions"
}

# create_passthrough_topics, then produces $count records over $keys keys into $in.
make_passthrough_topics() {
  create_passthrough_topics
  produce_keyed "$in" "$count" "$keys"
}

# Writes the exactly-once $in -> sluice -> $out pipeline of the exactly_once_* tests.
# write_exactly_once_yaml FILE TRANSACTIONAL_ID SIZING SOURCE_PROPS SINK_PROPS [EXTRA]
# SIZING is the source's transaction setting ("transaction_interval_ms: 200"); SOURCE_PROPS and
# SINK_PROPS are more librdkafka properties (", name: value, ..."); EXTRA is YAML lines put
# after the sink's properties, already indented (6: sink settings; 4: transforms, dead_letter). A producer queue of 100 records with linger.ms 40
# keeps sluice slow (a few thousand records/s; an exactly-once put does not wait for
# acknowledgements) so that kills land mid-flow; final_yaml lifts that. Concurrency 4 keeps
# several batches in flight inside each transaction.
write_exactly_once_yaml() {
  local file=$1 transactional_id=$2 sizing=$3 source_props=$4 sink_props=$5 extra=${6:-}
  cat >"$file" <<YAML
pipelines:
  - name: exactly-once
    delivery: exactly_once
    source:
      type: kafka
      bootstrap_servers: $bootstrap
      group_id: $group
      topics: [$in]
      $sizing
      properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 1000$source_props}
    sink:
      type: kafka
      bootstrap_servers: $bootstrap
      topic: $out
      transactional_id: $transactional_id
      properties: {queue.buffering.max.messages: 100, linger.ms: 40$sink_props}
$extra
    performance: {adaptive_batching: false, batch_size: 100, adaptive_concurrency: false, concurrency: 4}
admin:
  enabled: false
YAML
}

# FROM with the producer at full speed (see write_exactly_once_yaml) into TO.
final_yaml() {
  sed -e 's/queue.buffering.max.messages: 100, //' -e 's/linger.ms: 40/linger.ms: 5/' "$1" >"$2"
  ! grep -q 'queue.buffering' "$2" || fail "could not lift the producer limits in $2"
}
