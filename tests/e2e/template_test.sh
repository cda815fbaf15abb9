#!/usr/bin/env bash
# Installs the SDK to a temporary prefix, builds sdk/template against it out of tree, and runs the
# built plugin in a pipeline: what a third-party plugin author does.
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build/sdk" --prefix "$work/prefix" >/dev/null
cmake -S "$src/sdk/template" -B "$work/build" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
plugin=$(find "$work/build" -name 'sluice-uppercase.so' | head -n 1)
[ -n "$plugin" ] || { echo "template build made no sluice-uppercase.so"; exit 1; }
# No undefined symbols but the C and C++ runtimes, and only the entry point exported.
exported=$(nm -D --defined-only "$plugin" | awk '$2 == "T" {print $3}')
[ "$exported" = "sluice_module_get" ] || { echo "unexpected exports: $exported"; exit 1; }

mkdir -p "$work/plugins"
cp "$plugin" "$work/plugins/"
chmod 755 "$work/plugins"
cat > "$work/p.yaml" <<YAML
name: template
source: {type: generator, count: 5, template: '{"name":"ada {{seq}}"}'}
transforms:
  - {type: uppercase, field: name}
sink: {type: file, path: $work/out.jsonl}
YAML
"$SLUICE_BIN" run --plugin-path "$work/plugins" "$work/p.yaml"
expected='{"name":"ADA 0"}'
first=$(head -n 1 "$work/out.jsonl")
if [ "$(wc -l < "$work/out.jsonl")" -ne 5 ] || ! grep -qx "$expected" "$work/out.jsonl"; then
  echo "unexpected output:"; cat "$work/out.jsonl"; exit 1
fi
echo "template plugin built out of tree and ran: $first"
