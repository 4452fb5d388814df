#!/usr/bin/env bash
# Builds beads-sched and runs every test: unit and integration tests (real
# MariaDB started privately by ctest, fake agent service) in build/, the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/, and the unit tests and the integration tests that exercise
# every thread under ThreadSanitizer in build-tsan/ (tests/CMakeLists.txt,
# label tsan). The three test trees are built with the fault seams
# (-DBEADS_SCHED_TEST_HOOKS=ON), all through ops/build.sh, the script the
# container image uses. Then the container image itself
# (ops/image/build.sh; skipped, and said so, without podman or root), which
# the image test runs as the pod would. Usage: ops/dev/test.sh [extra ctest
# args for build/]
# TEST_MYSQL_PORT, ASAN_MYSQL_PORT and TSAN_MYSQL_PORT move the private test
# MariaDB of each build to another loopback port (defaults 33917, 33923 and
# 33929; a port given once stays in that build directory's CMake cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc 2>/dev/null || echo 2)

# The container image (ops/image/build.sh) is built in the background while
# the three trees compile: most of its time goes to downloading and unpacking
# Debian packages, which leaves a core free. It must be done before ctest,
# whose image test (label "image") then finds it current, and so that the
# heavy build never runs beside the timed tests.
image_pid= image_log=build/image-build.log
if [ "$(id -u)" -ne 0 ]; then
  image_skip="building the image needs root"
elif ! command -v podman >/dev/null 2>&1; then
  image_skip="podman is not installed (bash ops/dev/setup.sh installs it)"
else
  image_skip=
  mkdir -p build
  echo "== container image: building in the background (log: $image_log)"
  # Its own process group, so that a failed build of the trees stops it.
  setsid bash -c 'start=$SECONDS; bash ops/image/build.sh; rc=$?
                  echo "image build step: $((SECONDS - start)) s"; exit $rc' >"$image_log" 2>&1 &
  image_pid=$!
  trap '[ -z "$image_pid" ] || kill -- -"$image_pid" 2>/dev/null || true' EXIT
fi

echo "== build (build/)"
BUILD_JOBS=$jobs bash ops/build.sh build RelWithDebInfo -DBEADS_SCHED_TEST_HOOKS=ON \
  ${TEST_MYSQL_PORT:+-DBS_TEST_MYSQL_PORT=$TEST_MYSQL_PORT}

echo "== build under ASan + UBSan (build-asan/)"
BUILD_JOBS=$jobs bash ops/build.sh build-asan Debug -DBEADS_SCHED_SANITIZE=ON \
  -DBEADS_SCHED_TEST_HOOKS=ON -DBS_TEST_MYSQL_PORT="${ASAN_MYSQL_PORT:-33923}"

echo "== build under ThreadSanitizer (build-tsan/)"
BUILD_JOBS=$jobs bash ops/build.sh build-tsan RelWithDebInfo -DBEADS_SCHED_TSAN=ON \
  -DBEADS_SCHED_TEST_HOOKS=ON -DBS_TEST_MYSQL_PORT="${TSAN_MYSQL_PORT:-33929}"

status=0
echo "== container image (ops/image/build.sh)"
if [ -n "$image_skip" ]; then
  echo "SKIPPED: $image_skip; the image test will be skipped too"
else
  waited=$SECONDS
  if wait "$image_pid"; then
    grep -E '^(image/build.sh|image build step)' "$image_log"
    echo "(waited $((SECONDS - waited)) s for it after the builds)"
  else
    tail -40 "$image_log"
    echo "FAILED: ops/image/build.sh (log: $image_log)"
    status=1
  fi
  image_pid=
fi

echo "== unit tests under ASan + UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest -L unit --output-on-failure -j"$jobs") || status=1

echo "== unit tests and threaded integration tests under ThreadSanitizer"
# Every instrumented process (daemon, CLI, test programs, fake agent)
# writes a report it finds to build-tsan/tsan/report.<pid> and exits 66
# (halt_on_error): a race fails the test that ran it, and any report, even
# from a process whose exit status a test ignores, fails this step.
# tests/tsan.supp silences uninstrumented third-party frames only.
tsan_dir=$PWD/build-tsan/tsan tsan_supp=$PWD/tests/tsan.supp
rm -rf "$tsan_dir" && mkdir -p "$tsan_dir"
# Kernels with many bits of mmap randomisation break older TSan runtimes
# ("unexpected memory mapping"): then run the step without ASLR.
tsan_wrap=()
if ! build-tsan/beads-sched version >/dev/null 2>"$tsan_dir/preflight.log" &&
   grep -q "unexpected memory mapping" "$tsan_dir/preflight.log"; then
  echo "(this kernel's ASLR trips TSan: running the step under setarch -R)"
  tsan_wrap=(setarch "$(uname -m)" -R)
fi
rm -f "$tsan_dir/preflight.log"
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$tsan_dir/report suppressions=$tsan_supp" \
  "${tsan_wrap[@]}" ctest -L 'unit|tsan' --output-on-failure -j"$jobs") || status=1
if compgen -G "$tsan_dir/report.*" >/dev/null; then
  cat "$tsan_dir"/report.*
  echo "FAILED: ThreadSanitizer reports above (build-tsan/tsan/)"
  status=1
fi

echo "== all tests"
(cd build && ctest --output-on-failure -j"$jobs" "$@") || status=1
exit $status
