#!/usr/bin/env bash
# Builds beads-sched and runs every test: unit and integration tests (real
# MariaDB started privately by ctest, fake agent service) in build/, then
# the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/. Both builds go through ops/build.sh, the script the container
# image uses. Then the container image itself (ops/image/build.sh; skipped,
# and said so, without podman or root), which the image test runs as the
# pod would. Usage: ops/dev/test.sh [extra ctest args]
# TEST_MYSQL_PORT and ASAN_MYSQL_PORT move the private test MariaDB of each
# build to another loopback port (defaults 33917 and 33923; a port given
# once stays in that build directory's CMake cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (build/)"
BUILD_JOBS=$jobs bash ops/build.sh build RelWithDebInfo -DBEADS_SCHED_TEST_HOOKS=ON \
  ${TEST_MYSQL_PORT:+-DBS_TEST_MYSQL_PORT=$TEST_MYSQL_PORT}

echo "== build under ASan + UBSan (build-asan/)"
BUILD_JOBS=$jobs bash ops/build.sh build-asan Debug -DBEADS_SCHED_SANITIZE=ON \
  -DBS_TEST_MYSQL_PORT="${ASAN_MYSQL_PORT:-33923}"

status=0
# The container image, built here so that its test (ctest label "image")
# finds it current and the heavy build does not run beside other tests.
echo "== container image (ops/image/build.sh)"
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: building the image needs root; the image test will be skipped too"
elif ! command -v podman >/dev/null 2>&1; then
  echo "SKIPPED: podman is not installed (bash ops/dev/setup.sh installs it); the image test will be skipped too"
else
  start=$SECONDS
  bash ops/image/build.sh || status=1
  echo "image build step: $((SECONDS - start)) s"
fi

echo "== unit tests under ASan + UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -L unit --output-on-failure -j"$jobs") || status=1

echo "== all tests"
(cd build && ctest --output-on-failure -j"$jobs" "$@") || status=1
exit $status
