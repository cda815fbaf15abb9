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

# Names this run's topics and group ($in, $out, $group), creates both topics with $partitions
# partitions and produces $count records over $keys keys into $in.
make_passthrough_topics() {
  in="$run_id-in"
  out="$run_id-out"
  group="$run_id-group"
  create_topic "$in" "$partitions"
  create_topic "$out" "$partitions"
  produce_keyed "$in" "$count" "$keys"
}
