#!/usr/bin/env bash
# Deployment files against the program they deploy: tests/deploy/check.py
# on the real binary (variables, paths, ports, entrypoint, YAML, kill
# switch, runtime libraries), then proof that the check catches a config
# table or an admin path that no longer matches, the install layout the
# image relies on, and the tools' own checks where the tools exist here.
source "$(dirname "$0")/lib.sh"
SRC=$BS_SOURCE_DIR
CHECK=$SRC/tests/deploy/check.py

if ! python3 -c 'import yaml' 2>/dev/null; then
  t_fail "python3 with PyYAML is needed (bash ops/dev/setup.sh installs python3-yaml)"
  t_done
fi

# 1. The real binary and sources.
if python3 "$CHECK" --source "$SRC" --bin "$BS_BIN" >"$T_TMP/check.out" 2>&1; then
  t_ok "check.py: $(tail -1 "$T_TMP/check.out")"
else
  cat "$T_TMP/check.out"
  t_fail "check.py: $(tail -1 "$T_TMP/check.out")"
fi

# 2. A config table in which a variable the manifests set was renamed: the
#    check must fail and name it (what a rename in sched/config.c does).
cat >"$T_TMP/renamed-bin" <<EOF
#!/bin/sh
if [ "\$1" = config ] && [ "\$2" = --markdown ]; then
  "$BS_BIN" config --markdown | sed 's/BEADS_SCHED_STALE_AFTER/BEADS_SCHED_STALE_TIMEOUT/'
else
  exec "$BS_BIN" "\$@"
fi
EOF
chmod +x "$T_TMP/renamed-bin"
status=0
python3 "$CHECK" --source "$SRC" --bin "$T_TMP/renamed-bin" >"$T_TMP/renamed.out" 2>&1 || status=$?
t_eq "a renamed config variable fails the check" 1 "$status"
t_eq "... in the manifests and in the module" 2 \
  "$(grep -c '^FAIL - .*config table.*BEADS_SCHED_STALE_AFTER' "$T_TMP/renamed.out")"

# 3. An admin path that moved: the probes no longer match.
sed 's|"/healthz"|"/livez"|' "$SRC/sched/admin.h" >"$T_TMP/admin.h"
status=0
python3 "$CHECK" --source "$SRC" --bin "$BS_BIN" --admin-h "$T_TMP/admin.h" >"$T_TMP/moved.out" 2>&1 || status=$?
t_eq "a moved health path fails the check" 1 "$status"
t_eq "... for the manifests and the module" 2 "$(grep -c '^FAIL - .*liveness.*HEALTHZ' "$T_TMP/moved.out")"

# 4. The install layout the image's ENTRYPOINT relies on.
cmake --install "$BS_BUILD_DIR" --prefix "$T_TMP/prefix" >/dev/null
t_match "cmake --install puts the daemon in PREFIX/bin" '^beads-sched ' \
  "$("$T_TMP/prefix/bin/beads-sched" version 2>&1)"
entry=$(sed -n 's/^ENTRYPOINT \["\(.*\)"\]$/\1/p' "$SRC/ops/Dockerfile")
t_eq "the ENTRYPOINT is that path under the image's prefix" "$T_TMP/prefix/bin/beads-sched" \
  "$T_TMP/prefix${entry#/usr/local}"

# 5. ops/build.sh refuses what it does not understand, before building.
status=0
bash "$SRC/ops/build.sh" "$T_TMP/b" RelWithDebInfo --bogus >/dev/null 2>&1 || status=$?
t_eq "ops/build.sh: unknown argument is a usage error" 2 "$status"

# 6. The tools' own checks, where the tools are installed.
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize "$SRC/ops/k8s" >"$T_TMP/rendered.yaml" 2>"$T_TMP/kustomize.err"; then
    t_ok "kubectl kustomize ops/k8s renders"
    t_eq "every rendered object is in namespace beads-server" "5 5" \
      "$(grep -c '^kind:' "$T_TMP/rendered.yaml") $(grep -c '^  namespace: beads-server$' "$T_TMP/rendered.yaml")"
    t_match "the image is pinned by the kustomization" 'image: beads-sched:[0-9]' "$(cat "$T_TMP/rendered.yaml")"
  else
    t_fail "kubectl kustomize ops/k8s: $(cat "$T_TMP/kustomize.err")"
  fi
else
  echo "ok - # SKIP kubectl not installed: kustomize rendering not checked"
fi
if command -v terraform >/dev/null 2>&1; then
  if out=$(terraform fmt -check -diff "$SRC/ops/terraform" 2>/dev/null); then
    t_ok "terraform fmt -check ops/terraform"
  else
    t_fail "terraform fmt -check ops/terraform: $out"
  fi
else
  echo "ok - # SKIP terraform not installed: fmt not checked"
fi

t_done
