#!/usr/bin/env bash
# The SDK on its own: `cmake -S sdk`, build, its tests, install into a temporary prefix, without
# the runtime's dependencies; then the installed C examples and C++ template built against the
# installed package, and the C pair run in a pipeline.
# Usage: sdk_standalone_test.sh SOURCE_DIR WORK_DIR    (SLUICE_BIN: the launcher)
set -euo pipefail
source "$(dirname "$0")/kit_test_lib.sh"
src=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
cd "$work"
prefix=$work/prefix

cmake -S "$src/sdk" -B sdk-build -G Ninja > configure.log
cmake --build sdk-build > build.log
(cd sdk-build && ctest --output-on-failure > ctest.log) || { cat sdk-build/ctest.log; exit 1; }
cmake --install sdk-build --prefix "$prefix" > install.log
if grep -qiE '^(Boost|RDKAFKA|yaml-cpp|spdlog)' sdk-build/CMakeCache.txt; then
  echo "the standalone SDK looked for a runtime dependency:"
  grep -iE '^(Boost|RDKAFKA|yaml-cpp|spdlog)' sdk-build/CMakeCache.txt
  exit 1
fi
for f in include/sluice/abi.h include/sluice/c.h include/sluice/sdk.hpp \
  include/sluice/testing.hpp lib/cmake/Sluice/SluiceConfig.cmake \
  share/sluice/examples/c/uppercase.c share/sluice/template/uppercase.cpp \
  share/sluice/rust/sluice-sdk/src/lib.rs share/sluice/rust/sluice-sdk/src/testing.rs; do
  [ -f "$prefix/$f" ] || { echo "not installed: $f"; exit 1; }
done

cmake -S "$prefix/share/sluice/examples/c" -B c-build -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > c.log
cmake --build c-build >> c.log
cmake -S "$prefix/share/sluice/template" -B cpp-build -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > cpp.log
cmake --build cpp-build >> cpp.log
[ -f cpp-build/sluice-uppercase.so ] || { echo "the template made no sluice-uppercase.so"; exit 1; }

uppercase_pipeline p.yaml standalone \
  "{type: generator, count: 4, template: '{\"name\":\"bo {{seq}}\"}'}" "{type: lines, path: out.txt}"
"$SLUICE_BIN" run --admin off --plugin-path c-build/plugins p.yaml > run.log 2>&1 ||
  { cat run.log; exit 1; }
printf '{"name":"BO %s"}\n' 0 1 2 3 > expected.txt
sort out.txt | diff expected.txt - || { echo "unexpected output"; exit 1; }
echo "the SDK configured, built, tested and installed alone; C and C++ plugins built against it"
