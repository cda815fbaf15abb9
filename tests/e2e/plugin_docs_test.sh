#!/usr/bin/env bash
# Runs the commands of docs/plugins.md for one language verbatim, each block in an empty folder,
# and checks that the output ends with the records the docs say it prints. First the `sdk` blocks
# (install the SDK alone into a prefix), then the language's own blocks.
# Usage: plugin_docs_test.sh LANG SOURCE_DIR WORK_DIR
# (SLUICE_BIN: the launcher; SLUICE_CARGO: cargo if not on PATH; CARGO_TARGET_DIR: optional)
set -euo pipefail
source "$(dirname "$0")/kit_test_lib.sh"
lang=$1
src=$2
work=$3
docs="$src/docs/plugins.md"

# The fenced block after each `<!-- MARK -->` line (MARK: test:LANG or expect:LANG).
blocks() {
  awk -v mark="<!-- $1 -->" '
    $0 == mark { armed = 1; next }
    armed && /^```/ { if (inside) { armed = 0; inside = 0 } else inside = 1; next }
    inside { print }' "$docs"
}

commands=$(blocks "test:$lang")
expected=$(blocks "expect:$lang")
[ -n "$commands" ] || { echo "docs/plugins.md has no <!-- test:$lang --> block"; exit 1; }
[ -n "$expected" ] || { echo "docs/plugins.md has no <!-- expect:$lang --> block"; exit 1; }

rm -rf "$work"
mkdir -p "$work/sdk" "$work/$lang"
export SLUICE_SRC="$src" SLUICE_SDK="$work/prefix"
PATH="$(dirname "$SLUICE_BIN"):$PATH"
if [ "$lang" = rust ]; then require_cargo; fi

(cd "$work/sdk" && bash -euo pipefail -c "$(blocks test:sdk)") > "$work/sdk.log" 2>&1 ||
  { cat "$work/sdk.log"; echo "the SDK install commands of docs/plugins.md failed"; exit 1; }

start=$SECONDS
if ! (cd "$work/$lang" && bash -euo pipefail -c "$commands") > "$work/$lang.log" 2>&1; then
  cat "$work/$lang.log"
  echo "the $lang commands of docs/plugins.md failed"
  exit 1
fi
lines=$(printf '%s\n' "$expected" | wc -l)
actual=$(tail -n "$lines" "$work/$lang.log")
if [ "$actual" != "$expected" ]; then
  echo "--- expected (docs/plugins.md)"; printf '%s\n' "$expected"
  echo "--- got"; cat "$work/$lang.log"
  exit 1
fi
echo "docs/plugins.md $lang: from an empty folder to a running plugin in $((SECONDS - start)) s"
