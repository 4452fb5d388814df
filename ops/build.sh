#!/usr/bin/env bash
# The one build script. CI (ops/dev/test.sh), the demo (ops/dev/demo.sh) and
# the container image (ops/Dockerfile) all build through it, so a binary is
# built the same way wherever it comes from.
#
#   ops/build.sh BUILD_DIR [BUILD_TYPE] [-DNAME=VALUE...] [--target T]... [--install PREFIX]
#
# Configures BUILD_DIR with the project's CMake (BUILD_TYPE defaults to
# RelWithDebInfo; -D flags go to the configure step), builds every target,
# or only the --target ones, with BUILD_JOBS parallel jobs (default: nproc),
# then with --install PREFIX runs `cmake --install` into PREFIX, stripped.
# The configure output is kept in BUILD_DIR/configure.log and shown only
# when configuring fails; compiler output is shown as it comes.
set -euo pipefail

die() { echo "build.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: ops/build.sh BUILD_DIR [BUILD_TYPE] [-DNAME=VALUE...] [--target T]... [--install PREFIX]"
SRC=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
type=RelWithDebInfo
if [ $# -gt 0 ] && [[ $1 != -* ]]; then type=$1; shift; fi
flags=() targets=() prefix=
while [ $# -gt 0 ]; do
  case $1 in
    -D*) flags+=("$1") ;;
    --target) [ $# -ge 2 ] || die "--target needs a name"; targets+=(--target "$2"); shift ;;
    --install) [ $# -ge 2 ] || die "--install needs a prefix"; prefix=$2; shift ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift
done
jobs=${BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

mkdir -p "$dir"
if ! cmake -S "$SRC" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "${flags[@]}" >"$dir/configure.log" 2>&1; then
  cat "$dir/configure.log" >&2
  die "configuring $dir failed"
fi
echo "build.sh: $dir ($type${flags[*]:+ ${flags[*]}})"
cmake --build "$dir" -j"$jobs" "${targets[@]}"
if [ -n "$prefix" ]; then
  cmake --install "$dir" --prefix "$prefix" --strip
fi
