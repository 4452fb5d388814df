#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer, coverage on the project's code) and runs each
# target for the given time. Exits non-zero when any target crashes, leaks,
# times out or breaks one of its properties; the input that did it is left
# in build-fuzz/fuzz-artifacts/<target>/ and printed.
#
# Usage: tests/fuzz/run.sh [seconds-per-target (30)] [target ...]
#
# Each run starts from the seed corpus tests/fuzz/corpus/<target>/ (read
# only: new inputs go to build-fuzz/fuzz-corpus/<target>/, kept between runs)
# after replaying tests/fuzz/regressions/<target>/. Keep a crash as a
# regression: copy the artifact into tests/fuzz/regressions/<target>/
# (tests/unit/test_fuzz_regressions.c replays it in every build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-30}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_config fuzz_agent)
case "$SECONDS_PER_TARGET" in ''|*[!0-9]*) echo "run.sh: seconds must be a whole number" >&2; exit 2 ;; esac
CC_FUZZ=${CC_FUZZ:-$(command -v clang || command -v clang-14 || true)}
[ -n "$CC_FUZZ" ] || { echo "run.sh: clang not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
B=$ROOT/build-fuzz
MAX_LEN=${FUZZ_MAX_LEN:-4096}

echo "== build ($B, $CC_FUZZ)"
CC=$CC_FUZZ cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEADS_SCHED_SANITIZE=ON \
  -DBEADS_SCHED_FUZZ=ON -DBEADS_SCHED_TEST_HOOKS=OFF -DBS_TEST_MYSQL_PORT=33969 >/dev/null
cmake --build "$B" -j2 --target "${TARGETS[@]}" >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
summary=()
for t in "${TARGETS[@]}"; do
  seeds=$ROOT/tests/fuzz/corpus/$t
  regs=$ROOT/tests/fuzz/regressions/$t
  work=$B/fuzz-corpus/$t
  art=$B/fuzz-artifacts/$t
  mkdir -p "$work" "$art"
  dict=()
  [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
  log=$B/fuzz-$t.log

  # Known crashers first: each must pass now.
  regfiles=()
  if [ -d "$regs" ]; then
    while IFS= read -r -d '' f; do regfiles+=("$f"); done < <(find "$regs" -type f -print0)
  fi
  if [ ${#regfiles[@]} -gt 0 ]; then
    echo "== $t: replaying ${#regfiles[@]} regression input(s)"
    if ! "$B/$t" -runs=1 "${regfiles[@]}" >"$B/fuzz-$t-regressions.log" 2>&1; then
      echo "run.sh: $t fails on a regression input:" >&2
      tail -n 40 "$B/fuzz-$t-regressions.log" >&2
      status=1
      summary+=("$t regressions FAILED")
      continue
    fi
  fi

  echo "== $t: fuzzing ${SECONDS_PER_TARGET}s (max_len $MAX_LEN)"
  rc=0
  "$B/$t" "$work" "$seeds" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
    -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  corpus=$(find "$work" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "run.sh: $t FAILED (exit $rc); artifacts in $art:" >&2
    ls -l "$art" >&2 || true
    grep -E 'ERROR|SUMMARY|property broken|#[0-9]+ 0x' "$log" | head -n 40 >&2 || true
    summary+=("$t FAILED exit=$rc execs=${execs:-?} log=$log")
  else
    summary+=("$t ok execs=${execs:-?} cov=${cov:-?} corpus=$corpus seconds=$SECONDS_PER_TARGET")
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
exit $status
