#!/bin/sh
# Runs `sluice test` on every ```yaml example of a docs page that declares `tests:`, so the
# examples cannot go stale. Usage: docs_examples_test.sh SLUICE_BIN PAGE.md SCRATCH_DIR MIN_EXAMPLES
set -eu
bin=$1 page=$2 dir=$3 min=$4
rm -rf "$dir" && mkdir -p "$dir"
awk -v dir="$dir" '
  /^```yaml$/ { n++; file = sprintf("%s/example%02d.yaml", dir, n); inside = 1; next }
  /^```$/ { inside = 0; next }
  inside { print > file }
' "$page"
set --
for f in "$dir"/example*.yaml; do
  [ -e "$f" ] || continue
  if grep -q '^tests:' "$f"; then set -- "$@" "$f"; fi
done
if [ "$#" -lt "$min" ]; then
  echo "$page: $# examples with tests:, expected at least $min" >&2
  exit 1
fi
exec "$bin" test "$@"
