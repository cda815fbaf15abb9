#!/usr/bin/env bash
# The Rust SDK: `cargo test` of the workspace (sluice-sdk-sys checked against abi.h by compiling
# a C layout probe, the safe layer's tests), the example's tests on the SDK's fake host, the
# example plugin built with cargo, run in a
# pipeline, a panic in its `process` that rejects one record while the pipeline goes on, and a
# hot reload of the library under load.
# Usage: rust_sdk_test.sh SOURCE_DIR WORK_DIR
# (SLUICE_BIN: the launcher; SLUICE_CARGO: cargo if not on PATH; CARGO_TARGET_DIR: in the build dir)
set -euo pipefail
source "$(dirname "$0")/kit_test_lib.sh"
src=$1
work=$2
require_cargo
rm -rf "$work"
mkdir -p "$work/plugins"
cd "$work"

# Offline when the dependencies are already fetched, else from the crate registry (nothing vendored).
cargo_build() { cargo "$@" --offline 2> /dev/null || cargo "$@"; }

(cd "$src/sdk/rust" && cargo_build test --release)
# The example's own unit tests run it through the SDK's fake host (sluice_sdk::testing).
(cd "$src/sdk/rust/examples/uppercase" && cargo_build test --release)
(cd "$src/sdk/rust/examples/uppercase" && cargo_build build --release)
# The SDK refuses to compile into a plugin built with panic = "abort" (a panic would kill the host).
if (cd "$src/sdk/rust/examples/uppercase" &&
  cargo_build check --release --config 'profile.release.panic="abort"') > abort.log 2>&1; then
  echo "a plugin built with panic = abort compiled"; exit 1
fi
grep -q 'sluice-sdk needs panic = "unwind"' abort.log || { cat abort.log; exit 1; }
cp "${CARGO_TARGET_DIR:-$src/sdk/rust/examples/uppercase/target}/release/libuppercase.so" \
  "$work/plugins/sluice-uppercase.so"
exported=$(nm -D --defined-only plugins/sluice-uppercase.so | awk '$2 == "T" {print $3}')
[ "$exported" = "sluice_module_get" ] || { echo "unexpected exports: $exported"; exit 1; }

# Record 2 makes the plugin panic: that record alone is dead-lettered with the panic's message,
# the others are delivered, and the run ends normally (exit 0 with tolerance: all).
cat > p.yaml <<'YAML'
name: rusty
source: {type: generator, count: 5, template: '{"id":{{seq}},"name":"ada {{seq}}"}'}
transforms:
  - {type: uppercase, field: name, panic_on: "ada 2"}
sink: {type: file, path: out.jsonl}
errors: {tolerance: all}
dead_letter: {type: file, path: dlq.jsonl, format: envelope}
YAML
status=0
RUST_BACKTRACE=0 "$SLUICE_BIN" run --admin off --plugin-path plugins p.yaml > run.log 2>&1 || status=$?
[ "$status" -eq 0 ] || { cat run.log; echo "sluice run exited with $status, expected 0"; exit 1; }
printf '%s\n' '{"id":0,"name":"ADA 0"}' '{"id":1,"name":"ADA 1"}' '{"id":3,"name":"ADA 3"}' \
  '{"id":4,"name":"ADA 4"}' > expected.jsonl
sort out.jsonl | diff expected.jsonl - || { echo "unexpected sink output"; exit 1; }
[ "$(wc -l < dlq.jsonl)" -eq 1 ] || { cat dlq.jsonl; echo "expected 1 dead letter"; exit 1; }
grep -q '"value":{"id":2,"name":"ada 2"}' dlq.jsonl || { cat dlq.jsonl; exit 1; }
grep -q 'panic: uppercase: told to panic on \\"ada 2\\"' dlq.jsonl || { cat dlq.jsonl; exit 1; }
grep -q "5 records in, 4 delivered, 1 dead-lettered" run.log || { cat run.log; exit 1; }

# Hot reload: a second build of the plugin (another version) replaces the file while records
# flow; the old Rust library is unloaded, and every record arrives exactly once, upper-cased.
cp -r "$src/sdk/rust/examples/uppercase" v2
sed -i 's|path = "../../sluice-sdk"|path = "'"$src"'/sdk/rust/sluice-sdk"|' v2/Cargo.toml
sed -i 's|c"0.1.0"|c"0.2.0"|' v2/src/lib.rs
(cd v2 && cargo_build build --release)
cp "${CARGO_TARGET_DIR:-v2/target}/release/libuppercase.so" v2.so
uppercase_pipeline reload.yaml reload \
  "{type: generator, rate: 500, template: '{\"id\":{{seq}},\"name\":\"ada {{seq}}\"}'}" \
  "{type: file, path: reload.jsonl}"
"$SLUICE_BIN" run --admin off --plugin-path plugins reload.yaml > reload.log 2>&1 &
pid=$!
wait_for() { # wait_for COMMAND...: up to 60 s for it to succeed
  for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done
  kill "$pid"; cat reload.log; echo "timed out waiting for: $*"; exit 1
}
wait_for test -s reload.jsonl
cp v2.so plugins/.v2.tmp && mv plugins/.v2.tmp plugins/sluice-uppercase.so
wait_for grep -q "stage reload.transform0 reloaded" reload.log
before=$(wc -l < reload.jsonl)
grown_past() { [ "$(wc -l < reload.jsonl)" -gt "$1" ]; }
wait_for grown_past "$((before + 100))"
kill -TERM "$pid"
wait "$pid" || { cat reload.log; echo "sluice run failed after the reload"; exit 1; }
grep -c '"name":"ADA ' reload.jsonl | grep -qx "$(wc -l < reload.jsonl)" ||
  { echo "a record was not upper-cased"; exit 1; }
grep -o '"id":[0-9]*' reload.jsonl | cut -d: -f2 | sort -n |
  awk '$1 != NR - 1 { print "record " NR - 1 " lost or duplicated"; bad = 1; exit } END { exit bad }'

# A config error from the plugin's validate names the field's FILE:LINE:COL.
expect_field_error "$work"
echo "Rust SDK: built with cargo, ran, a panic rejected one record and the pipeline went on"
