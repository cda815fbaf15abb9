# Shared by the plugin-kit tests (sourced): checks on a finished `sluice run` and on config errors.

# expect_field_error PIPELINE_DIR: `sluice validate` of PIPELINE_DIR/p.yaml with the uppercase
# transform's `field` set to "" fails, naming bad.yaml:4:COL and the plugin's message.
expect_field_error() {
  local dir=$1
  sed -E 's/field: name(, panic_on: "[^"]*")?/field: ""/' "$dir/p.yaml" > "$dir/bad.yaml"
  if "$SLUICE_BIN" validate --plugin-path "$dir/plugins" "$dir/bad.yaml" > "$dir/bad.log" 2>&1; then
    echo "validate accepted an empty field"; exit 1
  fi
  grep -q "bad.yaml:4:[0-9]*:.*field must not be empty" "$dir/bad.log" || { cat "$dir/bad.log"; exit 1; }
}

# require_cargo: puts $SLUICE_CARGO's folder on PATH; fails (never skips) without cargo.
require_cargo() {
  if [ -x "${SLUICE_CARGO:-}" ]; then PATH="$(dirname "$SLUICE_CARGO"):$PATH"; fi
  command -v cargo > /dev/null || {
    echo "FAIL: cargo not found (install Rust with rustup, or put cargo on PATH): Rust plugins untested"
    exit 1
  }
}

# uppercase_pipeline FILE NAME SOURCE SINK: writes a pipeline SOURCE -> uppercase(field: name)
# -> SINK, where SOURCE and SINK are YAML flow maps.
uppercase_pipeline() {
  printf 'name: %s\nsource: %s\ntransforms:\n  - {type: uppercase, field: name}\nsink: %s\n' \
    "$2" "$3" "$4" > "$1"
}
