#!/usr/bin/env bash
# Prints the module dependency graph of common/, store/ and sched/ and fails
# when it has a cycle or a layer reaches upwards.
#
#   ops/dev/include_graph.sh          text: one line per module
#   ops/dev/include_graph.sh --dot    the same graph for Graphviz (dot -Tsvg)
#   ops/dev/include_graph.sh [--dot] ROOT   another tree than this checkout's
#                                     (tests/unit/include_graph_selftest.sh)
#
# A module is a .c file, its own .h and its own private _internal.h
# (store/store = store.c + store.h + store_internal.h); any other header
# with no .c of its own is a module of its own. Module A
# depends on module B when a file of A includes a header of B, or when it
# calls a function that a header it includes declares and B defines (so a
# shared header such as sched_internal.h, declaring functions of several .c
# files, does not hide who calls whom). System headers (<...>) are ignored.
#
# Exit status: 0 when the graph has no cycle and every layer only depends on
# itself and the layers below it (common/ on nothing, store/ on common/,
# sched/ on both); 1 otherwise, with each cycle and each layer break printed
# together with the lines that make it. 2 on bad usage.
set -euo pipefail
fmt=
if [ "${1:-}" = --dot ]; then fmt=--dot; shift; fi
case $#:${1:-} in
  0:) cd "$(dirname "$0")/../.." ;;
  1:-*) echo "usage: ops/dev/include_graph.sh [--dot] [ROOT]" >&2; exit 2 ;;
  1:*) cd "$1" ;;
  *) echo "usage: ops/dev/include_graph.sh [--dot] [ROOT]" >&2; exit 2 ;;
esac
for d in common store sched; do
  [ -d "$d" ] || { echo "include_graph.sh: no $d/ in $(pwd)" >&2; exit 2; }
done
exec python3 - "$fmt" <<'PY'
import os
import re
import sys

DIRS = ["common", "store", "sched"]      # lowest layer first
LAYER = {d: i for i, d in enumerate(DIRS)}
dot = sys.argv[1] == "--dot"

def strip_code(text):
    """Text with comments, string and char literals blanked (newlines kept),
    so that line numbers stay right and braces in strings do not count."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * (j - i - 2) + c if j - i >= 2 else c); i = j
        else:
            out.append(c); i += 1
    return "".join(out)

files = {}                                # "sched/dispatch.c" -> raw text
for d in DIRS:
    for name in sorted(os.listdir(d)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                files[f"{d}/{name}"] = f.read()

def module(path):
    """sched/dispatch.c -> sched/dispatch; store/store_internal.h (the
    private header of store.c) -> store/store."""
    m = path[:-2]
    if m.endswith("_internal") and f"{m[:-len('_internal')]}.c" in files:
        return m[:-len("_internal")]
    return m

# Headers by the name an #include uses; the include path is each file's own
# directory, then common/, store/, sched/ (as CMake sets it).
def resolve(includer, name):
    for d in [os.path.dirname(includer)] + DIRS:
        if f"{d}/{name}" in files:
            return f"{d}/{name}"
    return None                           # not ours (generated, system)

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
includes = {}                             # file -> [(header path, line)]
for path, text in files.items():
    includes[path] = []
    for m in INCLUDE.finditer(text):
        h = resolve(path, m.group(1))
        if h and h != path:
            includes[path].append((h, text.count("\n", 0, m.start()) + 1))

# Functions each .c defines at file scope: name( ... ) followed by "{" at
# brace depth 0.
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "defined",
            "__attribute__", "typedef", "void", "int", "char", "struct"}
IDENT_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")

def top_level_definitions(code):
    names, depth, i = set(), 0, 0
    for m in re.finditer(r"[{}]|\b([A-Za-z_]\w*)\s*\(", code):
        if m.group(0) == "{":
            depth += 1
        elif m.group(0) == "}":
            depth = max(0, depth - 1)
        elif depth == 0 and m.start() >= i and m.group(1) not in KEYWORDS:
            # find the matching ")" and look at what follows it
            j, par = m.end(), 1
            while j < len(code) and par:
                par += {"(": 1, ")": -1}.get(code[j], 0)
                j += 1
            rest = code[j:j + 200].lstrip()
            if rest.startswith("{"):
                names.add(m.group(1))
            i = j
    return names

# Functions each header declares: the first identifier followed by "(" in
# each top-level statement that ends with ";" (not typedefs, not macros).
def declarations(code):
    code = re.sub(r"^\s*#.*?(?<!\\)$", "", code, flags=re.M | re.S)
    names, depth, stmt = set(), 0, []
    for c in code:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            stmt = []
        elif depth == 0:
            if c == ";":
                s = "".join(stmt).strip()
                stmt = []
                if s and not s.startswith(("typedef", "extern")):
                    m = IDENT_CALL.search(s)
                    if m and m.group(1) not in KEYWORDS:
                        names.add(m.group(1))
            else:
                stmt.append(c)
    return names

code = {p: strip_code(t) for p, t in files.items()}
defined_in = {}                           # function name -> module
for p in files:
    if p.endswith(".c"):
        for name in top_level_definitions(code[p]):
            defined_in.setdefault(name, module(p))
declared = {p: declarations(code[p]) for p in files if p.endswith(".h")}

# Edges with the evidence for each: (from, to) -> [reason, ...]
edges = {}
def add(a, b, why):
    if a != b:
        edges.setdefault((a, b), []).append(why)

for path in files:
    src = module(path)
    used = set(IDENT_CALL.findall(code[path])) | set(re.findall(r"\b\w+\b", code[path]))
    for h, line in includes[path]:
        add(src, module(h), f"{path}:{line} includes {h}")
        for name in sorted(declared.get(h, ())):
            owner = defined_in.get(name)
            if owner and owner != module(h) and name in used and owner != src:
                add(src, owner, f"{path} uses {name}() declared in {h}, defined in {owner}.c")

modules = sorted({module(p) for p in files})
out = {m: sorted({b for (a, b) in edges if a == m}) for m in modules}

# Strongly connected components (Tarjan); any with two or more modules is a cycle.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in out[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in modules:
    if v not in index:
        strong(v)

def layer(m):
    return LAYER[m.split("/")[0]]
breaks = sorted((a, b) for (a, b) in edges if layer(b) > layer(a))

if dot:
    print("digraph modules {\n  rankdir=LR;\n  node [shape=box, fontsize=10];")
    for d in DIRS:
        print(f'  subgraph "cluster_{d}" {{ label="{d}/";')
        for m in modules:
            if m.startswith(d + "/"):
                print(f'    "{m}" [label="{m.split("/")[1]}"];')
        print("  }")
    bad = {(a, b) for comp in sccs for a in comp for b in comp} | set(breaks)
    for (a, b) in sorted(edges):
        print(f'  "{a}" -> "{b}"' + (" [color=red];" if (a, b) in bad else ";"))
    print("}")
else:
    print("# module -> modules it depends on (ops/dev/include_graph.sh)")
    for m in modules:
        print(f"{m} -> {', '.join(out[m]) if out[m] else '(nothing)'}")

status = 0
for comp in sccs:
    status = 1
    print(f"CYCLE between {', '.join(comp)}:", file=sys.stderr)
    for (a, b), why in sorted(edges.items()):
        if a in comp and b in comp:
            print(f"  {a} -> {b}: {why[0]}" + (f" (+{len(why) - 1} more)" if len(why) > 1 else ""),
                  file=sys.stderr)
for (a, b) in breaks:
    status = 1
    print(f"LAYER: {a} depends on {b} (common/ may use only common/; store/ only "
          f"store/ and common/): {edges[(a, b)][0]}", file=sys.stderr)
if status == 0 and not dot:
    print(f"# {len(modules)} modules, {len(edges)} dependencies, no cycle, layers respected")
sys.exit(status)
PY
