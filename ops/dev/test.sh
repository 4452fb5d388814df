#!/usr/bin/env bash
# Builds beads-sched and runs every test: unit and integration tests (real
# MariaDB started privately by ctest, fake agent service) in build/, then
# the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/. Usage: ops/dev/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEADS_SCHED_TEST_HOOKS=ON >/dev/null
cmake --build build -j"$jobs"

echo "== build under ASan + UBSan (build-asan/)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBEADS_SCHED_SANITIZE=ON \
  -DBS_TEST_MYSQL_PORT=33923 >/dev/null
cmake --build build-asan -j"$jobs"

status=0
echo "== unit tests under ASan + UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -L unit --output-on-failure -j"$jobs") || status=1

echo "== all tests"
(cd build && ctest --output-on-failure -j"$jobs" "$@") || status=1
exit $status
