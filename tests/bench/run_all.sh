#!/usr/bin/env bash
# Runs every benchmark script in tests/bench/ (bench_*.sh), one after the
# other on one private MariaDB port, and prints one table of their results
# (the rows each prints after its "benchmark result" header). Full output of
# each script goes to build/bench-<UTC timestamp>/<script>.log.
#
# Usage: tests/bench/run_all.sh [--quick]
#   --quick   idle for 1 minute instead of 10 (the other scripts take their
#             defaults either way)
# Needs build/beads-sched and build/fake-agent (cmake --build build).
# Benchmarks print figures; a script that fails is reported, never a speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
IDLE_MIN=10
[ "${1:-}" = --quick ] && IDLE_MIN=1
export BENCH_MYSQL_PORT=${BENCH_MYSQL_PORT:-33971}
[ -x build/beads-sched ] && [ -x build/fake-agent ] || { echo "run_all.sh: build first (cmake --build build)" >&2; exit 2; }
OUT=$ROOT/build/bench-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

args_for() {
  case "$1" in
    bench_idle.sh) echo "$IDLE_MIN" ;;
    *) echo "" ;;
  esac
}

status=0
rows=()
for script in tests/bench/bench_*.sh; do
  name=$(basename "$script")
  # shellcheck disable=SC2046
  set -- $(args_for "$name")
  echo "== $name $* (log: $OUT/${name%.sh}.log)" >&2
  t0=$SECONDS
  if bash "$script" "$@" >"$OUT/${name%.sh}.log" 2>&1; then
    while IFS= read -r line; do rows+=("$line"); done < <(
      awk '/^benchmark +result$/ { keep = 1; n = 0; next } keep && NF { print }' "$OUT/${name%.sh}.log")
  else
    status=1
    rows+=("$(printf '%-46s %s' "$name" "FAILED (see $OUT/${name%.sh}.log)")")
  fi
  echo "   $((SECONDS - t0)) s" >&2
done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(uname -m), $(nproc) vCPU, $(awk '/MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo) GiB RAM, $(. /etc/os-release && echo "$PRETTY_NAME")"
printf '\n%-46s %s\n' "benchmark" "result"
printf '%s\n' "${rows[@]}"
exit $status
