#!/usr/bin/env bash
# Checks ops/dev/include_graph.sh on small trees made here: it passes a
# layered tree without cycles and fails, naming the culprit, on an include
# cycle, on a cycle of calls through a shared header, and on a layer that
# reaches upwards. Run by ctest (test include_graph.selftest).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/bs-graph.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0

# tree NAME: an empty tree with the three layers and a clean base:
# common/log, store/store (+ store_internal.h), sched/a -> sched/b.
tree() {
  local r=$T/$1
  mkdir -p "$r/common" "$r/store" "$r/sched"
  printf '#include "log.h"\nvoid log_line(const char *m) { (void)m; }\n' >"$r/common/log.c"
  printf 'void log_line(const char *m);\n' >"$r/common/log.h"
  printf '#include "store_internal.h"\n#include "log.h"\nint store_open(void) { return store_step(); }\nint store_step(void) { return 0; }\n' >"$r/store/store.c"
  printf 'int store_open(void);\n' >"$r/store/store.h"
  printf '#include "store.h"\nint store_step(void);\n' >"$r/store/store_internal.h"
  printf '#include "a.h"\n#include "b.h"\nint a_run(void) { return b_run(); }\n' >"$r/sched/a.c"
  printf 'int a_run(void);\n' >"$r/sched/a.h"
  printf '#include "b.h"\n#include "store.h"\nint b_run(void) { return store_open(); }\n' >"$r/sched/b.c"
  printf 'int b_run(void);\n' >"$r/sched/b.h"
  echo "$r"
}

# expect NAME STATUS PATTERN: runs the graph on tree NAME, checks the exit
# status and that the output matches PATTERN.
expect() {
  local name=$1 want=$2 pattern=$3 out rc=0
  out=$(bash "$SRC/ops/dev/include_graph.sh" "$T/$name" 2>&1) || rc=$?
  if [ "$rc" -eq "$want" ] && grep -Eq -- "$pattern" <<<"$out"; then
    echo "ok - $name: exit $rc, matches /$pattern/"
  else
    echo "FAIL - $name: exit $rc (want $want), output:"; sed 's/^/    /' <<<"$out"
    fails=$((fails + 1))
  fi
}

r=$(tree clean)
expect clean 0 'no cycle, layers respected'
expect clean 0 '^sched/a -> sched/b$'
# store_internal.h is store.c's own private header: store/store is one node.
expect clean 0 '^store/store -> common/log$'

r=$(tree include_cycle)
printf '#include "a.h"\nint b_run(void);\n' >"$r/sched/b.h"
expect include_cycle 1 'CYCLE between sched/a, sched/b'
expect include_cycle 1 'sched/b -> sched/a: sched/b.h:1 includes sched/a.h'

# A shared header with no .c of its own, declaring functions of a.c and b.c
# (like a "sched_internal.h"): a calls b and b calls a through it.
r=$(tree shared_header)
printf '#include "shared.h"\nint a_run(void) { return b_run(); }\nint a_back(void) { return 0; }\n' >"$r/sched/a.c"
printf '#include "shared.h"\nint b_run(void) { return a_back(); }\n' >"$r/sched/b.c"
printf 'int a_back(void);\nint b_run(void);\n' >"$r/sched/shared.h"
expect shared_header 1 'CYCLE between sched/a, sched/b'
expect shared_header 1 'sched/b -> sched/a: sched/b.c uses a_back\(\) declared in sched/shared.h'

# Only b calls a through the shared header: no cycle.
r=$(tree shared_header_one_way)
printf '#include "shared.h"\nint a_back(void) { return 0; }\n' >"$r/sched/a.c"
printf '#include "shared.h"\nint b_run(void) { return a_back(); }\n' >"$r/sched/b.c"
printf 'int a_back(void);\nint b_run(void);\n' >"$r/sched/shared.h"
expect shared_header_one_way 0 '^sched/b -> sched/a, sched/shared$'

r=$(tree store_uses_sched)
printf '#include "store_internal.h"\n#include "b.h"\nint store_open(void) { return 0; }\nint store_step(void) { return 0; }\n' >"$r/store/store.c"
expect store_uses_sched 1 'LAYER: store/store depends on sched/b'

r=$(tree common_uses_store)
printf '#include "log.h"\n#include "store.h"\nvoid log_line(const char *m) { (void)m; }\n' >"$r/common/log.c"
expect common_uses_store 1 'LAYER: common/log depends on store/store'

# Braces and includes inside comments and strings do not count: a_run is
# still seen as defined in a.c, after a string full of braces, so b's call
# to it through a shared header is a dependency on a.
r=$(tree comments)
printf '#include "a.h"\n/* #include "b.h" { */\nconst char *a_text(void) { return "{ b_run( } \\" {"; }\nint a_run(void) { return 0; }\n' >"$r/sched/a.c"
printf '#include "shared.h"\nint b_run(void) { return a_run(); }\n' >"$r/sched/b.c"
printf 'int a_run(void);\n' >"$r/sched/shared.h"
expect comments 0 '^sched/a -> \(nothing\)$'
expect comments 0 '^sched/b -> sched/a, sched/shared$'

# A directory that is not a source tree: usage error.
expect . 2 'no common/'
[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all include graph checks passed"
