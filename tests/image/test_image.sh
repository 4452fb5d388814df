#!/usr/bin/env bash
# The container image, built by ops/image/build.sh and run as the
# StatefulSet's pod runs it: uid 10001 from the image's USER, read-only root,
# the store on a volume at the image's VOLUME, ENTRYPOINT and CMD as the
# image declares them, the environment ops/k8s gives the pod, the token and
# the password as files where the Secrets are mounted, the host's loopback
# network (tests/image/podrun.py does the mounts, the chroot and the user
# switch; no container runtime is needed). Then the runbook's smoke test
# against the test MariaDB (with the Dolt emulation) and the fake agent;
# the health endpoints on the image's port; the image's sqlite3 reading the
# history views and making the runbook's backup (tar, as kubectl cp does);
# SIGTERM; restarts on the same volume after a stop and after a kill; the
# runbook's restore script in a helper pod. The manifests and the Terraform
# module against the image's metadata (tests/deploy/check.py
# --image-inspect). And what must not be in the image: a missing library,
# a compiler, test hooks, shell history, the build tree, secrets, set-uid
# files.
# Skipped (exit 77) where podman is not installed or not run as root.
set -euo pipefail
SKIP=77
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the image test needs root (podman image mount, mount namespaces, chroot)"; exit $SKIP; }
command -v podman >/dev/null 2>&1 || {
  echo "SKIP: podman is not installed, so the container image is neither built nor tested (bash ops/dev/setup.sh installs it)"
  exit $SKIP
}
source "$BS_SOURCE_DIR/tests/integration/lib.sh"
SRC=$BS_SOURCE_DIR
PODRUN=$SRC/tests/image/podrun.py
ISO='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z'
version=$("$BS_BIN" version | awk '{print $2}')
IMAGE=beads-sched:$version

# ---- the image, built by the script the README gives ----
if ! bash "$SRC/ops/image/build.sh" >"$T_TMP/build.log" 2>&1; then
  tail -40 "$T_TMP/build.log"
  t_fail "ops/image/build.sh failed"
  t_done
fi
t_ok "$(tail -1 "$T_TMP/build.log" | sed 's/^image\/build.sh: //')"

# ---- what the image declares (podman's metadata, not the Dockerfile) ----
meta=$(podman image inspect "$IMAGE" | jq '.[0].Config')
USER_SPEC=$(jq -r '.User' <<<"$meta")
WORKDIR=$(jq -r '.WorkingDir' <<<"$meta")
VOLUME=$(jq -r '.Volumes | keys | join(" ")' <<<"$meta")
PORT=$(jq -r '.ExposedPorts | keys | join(" ")' <<<"$meta")
PORT=${PORT%/tcp}
mapfile -t ENTRY < <(jq -r '(.Entrypoint // []) + (.Cmd // []) | .[]' <<<"$meta")
t_match "the image runs as a numeric non-root user" '^[1-9][0-9]*:[1-9][0-9]*$' "$USER_SPEC"
t_eq "one volume, the store's directory" "/var/lib/beads-sched" "$VOLUME"
t_match "one exposed port" '^[0-9]+$' "$PORT"
t_eq "ENTRYPOINT + CMD" "/usr/local/bin/beads-sched run" "${ENTRY[*]}"
t_eq "stop signal" "SIGTERM" "$(jq -r '.StopSignal' <<<"$meta")"
t_eq "no secret in the image's environment" "" \
  "$(jq -r '.Env[] | select(test("TOKEN|PASSWORD|SECRET"; "i"))' <<<"$meta")"

# The manifests and the Terraform module against that metadata
# (tests/deploy/check.py --image-inspect), and proof that the check sees
# an image that declares another user, port, volume or command.
podman image inspect "$IMAGE" >"$T_TMP/inspect.json"
if python3 "$SRC/tests/deploy/check.py" --source "$SRC" --bin "$BS_BIN" --image-inspect "$T_TMP/inspect.json" \
     >"$T_TMP/check.out" 2>&1; then
  t_ok "ops/k8s and ops/terraform agree with the image's metadata: $(grep -c '^ok - .*image' "$T_TMP/check.out") checks"
else
  grep -v '^ok' "$T_TMP/check.out"
  t_fail "ops/k8s or ops/terraform disagree with the image's metadata"
fi
jq '.[0].Config.User = "10002:10002" | .[0].Config.ExposedPorts = {"9465/tcp": {}}
    | .[0].Config.Volumes = {"/data": {}} | .[0].Config.Cmd = ["once"]' "$T_TMP/inspect.json" >"$T_TMP/other.json"
python3 "$SRC/tests/deploy/check.py" --source "$SRC" --bin "$BS_BIN" --image-inspect "$T_TMP/other.json" \
  >"$T_TMP/other.out" 2>&1 || true
for what in "user 10002:10002" "port 9465" "VOLUME /data" "CMD ['once']"; do
  t_eq "an image with another $what fails the check for ops/k8s and ops/terraform" "k8s terraform" \
    "$(grep -F "image's $what" "$T_TMP/other.out" | sed -n 's|^FAIL - ops/\([a-z0-9]*\) .*|\1|p' | xargs)"
done

ROOT=$(podman image mount "$IMAGE")
STAGE=$T_TMP/stage
DAEMON=
finish() {
  [ -z "$DAEMON" ] || kill -KILL "$DAEMON" 2>/dev/null || true
  podman image unmount "$IMAGE" >/dev/null 2>&1 || true
  t_cleanup
}
trap finish EXIT

# ---- what is in the image, and what is not ----
elfs=()
while IFS= read -r f; do
  [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && elfs+=("${f#"$ROOT"}")
done < <(find "$ROOT" -xdev -type f \( -perm -u+x -o -name '*.so*' \))
# The loader the daemon names as its interpreter (PT_INTERP).
loader=$(readelf -l "$ROOT/usr/local/bin/beads-sched" | sed -n 's/.*interpreter: \(.*\)]$/\1/p')
t_match "the daemon's loader is in the image" '^/' "$loader"
missing=""
for f in "${elfs[@]}"; do
  out=$(chroot "$ROOT" "$loader" --list "$f" 2>&1) || out+=" (status $?)"
  if grep -q 'not found' <<<"$out"; then missing+=" $f:$(grep 'not found' <<<"$out" | tr -s ' \n' ' ')"; fi
done
t_match "the image's loader lists ELF files" '[0-9]+' "${#elfs[@]}"
t_eq "the image's loader finds every library of its ${#elfs[@]} ELF files" "" "$missing"
t_eq "the daemon, sqlite3 and busybox are there" "3" \
  "$(ls "$ROOT/usr/local/bin/beads-sched" "$ROOT/usr/bin/sqlite3" "$ROOT/usr/bin/busybox" | wc -l)"
t_eq "no compiler, assembler, linker or headers" "" \
  "$(cd "$ROOT" && find . -xdev ! -type d \( -name cc -o -name 'c++' -o -name 'gcc*' -o -name 'g++*' -o -name 'cpp*' \
     -o -name '*-gcc*' -o -name 'clang*' -o -name tcc -o -name as -o -name ld -o -name 'ld.*' -o -name '*.h' \) -print
     ls -d usr/include usr/lib/gcc 2>/dev/null || true)"
t_eq "no package manager or interpreter" "" \
  "$(cd "$ROOT" && ls -d usr/bin/apt* usr/bin/dpkg* usr/bin/perl* usr/bin/python* var/lib/dpkg 2>/dev/null | xargs)"
t_eq "no test hooks compiled in" "0" \
  "$(grep -c -a -e 'crash point reached' -e 'BEADS_SCHED_CRASH_AT' "$ROOT/usr/local/bin/beads-sched" || true)"
t_eq "no shell history" "" "$(cd "$ROOT" && find . -xdev -name '.*history*' -print | xargs)"
t_eq "no build tree (sources, objects, CMake files)" "" \
  "$(cd "$ROOT" && find . -xdev \( -name '*.c' -o -name '*.o' -o -name '*.a' -o -name 'CMake*' \
     -o -name '*.cmake' -o -path ./src -o -path ./build \) -print | xargs)"
# (libmariadb's authentication plugins are named after passwords.)
t_eq "no secrets (private keys, shadow files, token or password files)" "" \
  "$(cd "$ROOT" && { grep -rlIs -e '-----BEGIN [A-Z ]*PRIVATE KEY-----' . ; find . -xdev \( -name 'shadow*' -o -name 'gshadow*' \
     -o -iname '*token*' -o -iname '*password*' -o -name '*.key' \) ! -name '*.so' -print; } | xargs)"
t_eq "no set-uid or set-gid files" "" "$(cd "$ROOT" && find . -xdev -perm /6000 -print | xargs)"
t_eq "the store's directory belongs to the image's user" "$USER_SPEC 750" \
  "$(stat -c '%u:%g %a' "$ROOT/var/lib/beads-sched")"
t_eq "nothing else belongs to a user but root" "" \
  "$(cd "$ROOT" && find . -xdev ! -path ./var/lib/beads-sched \( ! -user 0 -o ! -group 0 \) -print | xargs)"

# ---- the pod: environment, secrets, volume ----
t_new_db current dolt
t_agent --capacity 10
uid=${USER_SPEC%%:*} gid=${USER_SPEC##*:}
python3 "$PODRUN" env --image-env "$(jq -c '.Env' <<<"$meta")" --k8s "$SRC/ops/k8s" >"$T_TMP/pod.env.k8s"
get() { sed -n "s/^$1=//p" "$T_TMP/pod.env.k8s"; }
TOKEN_FILE=$(get BEADS_SCHED_AGENT_TOKEN_FILE)
PW_FILE=$(get BEADS_SCHED_DOLT_PASSWORD_FILE)
STORE=$(get BEADS_SCHED_STORE)
t_match "the pod's token and password are files" '^/run/.+ /run/.+$' "$TOKEN_FILE $PW_FILE"
t_eq "the pod's store is on the image's volume" "$VOLUME" "$(dirname "$STORE")"
t_eq "the pod listens on the image's port" "0.0.0.0:$PORT" "$(get BEADS_SCHED_LISTEN)"
# The cluster's addresses become the test's; everything else as ops/k8s
# sets it (production intervals, JSON logs). A crash point is set too: a
# release image must ignore it.
grep -v -e '^BEADS_SCHED_DOLT_URL=' -e '^BEADS_SCHED_AGENT_URL=' "$T_TMP/pod.env.k8s" >"$T_TMP/pod.env"
cat >>"$T_TMP/pod.env" <<EOF
BEADS_SCHED_DOLT_URL=mysql://beads@127.0.0.1:$BS_TEST_MYSQL_PORT/$T_DB
BEADS_SCHED_AGENT_URL=$T_AGENT_URL
BEADS_SCHED_CRASH_AT=after_claiming_commit
HOSTNAME=beads-sched-0
EOF
# Secret volumes: root-owned files, group fsGroup, mode 0440.
for s in "$TOKEN_FILE:test-token" "$PW_FILE:beads-test-pw"; do
  f=${s%%:*} d=$T_TMP/secrets$(dirname "${s%%:*}")
  mkdir -p "$d"
  printf '%s' "${s#*:}" >"$d/$(basename "$f")"
  chown 0:"$gid" "$d/$(basename "$f")"
  chmod 0440 "$d/$(basename "$f")"
done
VOL=$T_TMP/volume
install -d -o "$uid" -g "$gid" -m 0750 "$VOL"

LOG=$T_TMP/daemon.log
# start_pod [ARGV...]: the image's ENTRYPOINT + CMD, or ARGV as a pod's
# `command` would replace them.
start_pod() {
  rm -rf "$STAGE" && mkdir "$STAGE"
  python3 "$PODRUN" run --root "$ROOT" --stage "$STAGE" --user "$USER_SPEC" --workdir "$WORKDIR" \
    --volume "$VOL:$VOLUME" \
    --secret "$T_TMP/secrets$(dirname "$TOKEN_FILE"):$(dirname "$TOKEN_FILE")" \
    --secret "$T_TMP/secrets$(dirname "$PW_FILE"):$(dirname "$PW_FILE")" \
    --env-file "$T_TMP/pod.env" -- "${@:-${ENTRY[@]}}" 2>>"$LOG" &
  DAEMON=$!
}
# kubectl exec: the pod's mount namespace and root, the pod's user.
pod_exec() {
  nsenter --target "$DAEMON" --mount --root --wd --setuid "$uid" --setgid "$gid" -- \
    /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$WORKDIR" "$@"
}
logged() { grep -q "\"msg\":\"$1\"" "$LOG" 2>/dev/null; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT$1" || true; }
# stop_pod SIGNAL: sends it, waits at most 10 s (then a kill, as the
# kubelet does after the grace period); sets STOP_STATUS and STOP_TOOK.
# (No watchdog subshell: one killed right after its fork can still run this
# script's EXIT trap, which removes $T_TMP.)
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$DAEMON/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
stop_pod() {
  local start=$SECONDS
  STOP_STATUS=0
  kill -"$1" "$DAEMON"
  while alive && [ $((SECONDS - start)) -lt 10 ]; do sleep 0.1; done
  alive && kill -KILL "$DAEMON"
  wait "$DAEMON" 2>/dev/null || STOP_STATUS=$?
  DAEMON=
  STOP_TOOK=$((SECONDS - start))
}

if [ "$(http_code /healthz)" != 000 ]; then
  t_fail "port $PORT is already in use on this machine: the image's port cannot be tested"
  t_done
fi

# ---- start, as the pod does ----
start_pod
t_wait 20 logged "agent healthy" || { cat "$LOG" || true; ls -la "$T_TMP" || true; t_fail "the image's daemon did not start"; t_done; }
t_ok "started from the image: $(grep -o '"msg":"started"[^}]*' "$LOG" | head -1)"
t_eq "runs as the image's user" "$uid $gid" \
  "$(awk '/^Uid:/ {u=$2} /^Gid:/ {g=$2} END {print u, g}' "/proc/$DAEMON/status")"
t_eq "no capabilities, no new privileges" "0000000000000000 1" \
  "$(awk '/^CapEff:/ {c=$2} /^NoNewPrivs:/ {n=$2} END {print c, n}' "/proc/$DAEMON/status")"
t_eq "no secret in the log" "" "$(grep -e 'test-token' -e 'beads-test-pw' "$LOG" || true)"
t_wait 10 test "$(http_code /readyz)" = 200 || true
t_eq "/healthz on the image's port $PORT" 200 "$(http_code /healthz)"
t_eq "/readyz on the image's port $PORT (Dolt reached with the password file)" 200 "$(http_code /readyz)"
t_match "/metrics on the image's port" 'beads_sched_' "$(curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics")"

# ---- the runbook's smoke test ----
t_bead smoke-1 "assignee=NULL" "updated_at=UTC_TIMESTAMP()" \
  "title='auto-dispatch smoke test'" "description='Read /etc/hostname inside the agent sandbox and close.'" \
  "acceptance_criteria='A note includes hostname= and the bead is closed.'"
sleep 1
t_sql "UPDATE issues SET assignee='agent', updated_at=UTC_TIMESTAMP() WHERE id='smoke-1'"
start=$SECONDS
both_notes() {
  local n; n=$(t_sql "SELECT notes FROM issues WHERE id='$1'")
  [[ $n == *"auto-dispatcher claimed at"* && $n == *"dispatched: job="* ]]
}
if t_wait 2 both_notes smoke-1; then
  t_ok "both notes within 2 s of the assignment ($((SECONDS - start)) s)"
else
  t_fail "notes 2 s after the assignment: '$(t_sql "SELECT notes FROM issues WHERE id='smoke-1'")'"
fi
notes=$(t_sql "SELECT notes FROM issues WHERE id='smoke-1'")
job=$(t_stats | jq -r '.jobs[] | select(.bead_id=="smoke-1") | .job_id')
t_match "claim note" "auto-dispatcher claimed at $ISO" "$notes"
t_match "dispatched note names the agent's job" "dispatched: job=$job" "$notes"
t_eq "the crash point did nothing: still running" "yes" "$(kill -0 "$DAEMON" 2>/dev/null && echo yes || echo no)"
t_eq "the agent accepted the token from the Secret file" 1 "$(t_posts)"

# ---- kubectl exec: the image's own tools ----
DB=$STORE
t_eq "exec: uid and gid" "$uid $gid" "$(pod_exec sh -c 'echo $(id -u) $(id -g)')"
t_match "exec: the root file system is read-only" 'Read-only file system' \
  "$(pod_exec sh -c 'echo x >/probe' 2>&1 || true)"
t_eq "exec: /tmp is writable" ok "$(pod_exec sh -c 'echo x >/tmp/probe && rm /tmp/probe && echo ok')"
t_eq "exec: the image's sqlite3 reads the attempts view" "smoke-1|dispatched|$job" \
  "$(pod_exec sqlite3 "$DB" "SELECT bead_id, state, job_id FROM attempts WHERE bead_id = 'smoke-1'")"
t_match "exec: ... and the history view, in UTC" "$ISO" \
  "$(pod_exec sqlite3 "$DB" "SELECT * FROM history WHERE bead_id = 'smoke-1'")"
t_match "exec: sqlite3 -box as the runbook shows it" 'bead_id' \
  "$(pod_exec sqlite3 -box "$DB" 'SELECT * FROM attempts ORDER BY claimed_at DESC LIMIT 20')"
t_match "exec: beads-sched history" 'smoke-1' "$(pod_exec beads-sched history smoke-1 2>&1)"
# The runbook's backup: .backup onto the volume, kubectl cp (tar in the
# container), integrity check outside.
pod_exec sqlite3 "$DB" ".backup $VOLUME/backup.db"
mkdir -p "$T_TMP/cp"
pod_exec tar cf - -C "$VOLUME" backup.db | tar xf - -C "$T_TMP/cp"
t_eq "runbook backup: sqlite3 .backup, then tar out as kubectl cp does" "ok" \
  "$(sqlite3 "$T_TMP/cp/backup.db" 'PRAGMA integrity_check')"
pod_exec rm "$VOLUME/backup.db"
t_match "exec: df on the volume (runbook: volume full)" "$VOLUME" "$(pod_exec df -h "$VOLUME")"

# ---- SIGTERM, as the kubelet stops the pod ----
stop_pod TERM
t_eq "SIGTERM: exit status 0 within 10 s (took $STOP_TOOK s)" 0 "$STOP_STATUS"
t_match "the stop is logged" '"msg":"stopped"' "$(tail -1 "$LOG")"
t_eq "the store is on the volume, owned by the image's user" "$uid:$gid" \
  "$(stat -c '%u:%g' "$VOL/$(basename "$STORE")")"

# ---- a restart on the same volume recovers ----
: >"$LOG"
start_pod
t_wait 20 logged "recovery done" || { cat "$LOG" || true; ls -la "$T_TMP" || true; t_fail "no recovery after the restart"; t_done; }
t_match "restart: recovery found the attempt in flight" '"in_flight":"?1"?[,}]' "$(grep '"msg":"recovery done"' "$LOG")"
t_bead smoke-2 "updated_at=UTC_TIMESTAMP()"
if t_wait 5 both_notes smoke-2; then t_ok "restart: a new bead is dispatched"; else t_fail "restart: smoke-2 not dispatched"; fi
t_eq "restart: smoke-1 was not sent again" 2 "$(t_posts)"
# A kill (node lost, OOM) instead of a stop; the next start recovers too.
stop_pod KILL
: >"$LOG"
start_pod
t_wait 20 logged "recovery done" || { cat "$LOG" || true; ls -la "$T_TMP" || true; t_fail "no recovery after a kill"; t_done; }
t_match "after a kill: recovery found both attempts in flight" '"in_flight":"?2"?[,}]' "$(grep '"msg":"recovery done"' "$LOG")"
t_wait 10 test "$(http_code /readyz)" = 200 || true
t_eq "after a kill: ready again" 200 "$(http_code /readyz)"
t_eq "after a kill: nothing sent twice" 2 "$(t_posts)"
t_eq "after a kill: the store passes its integrity check" ok "$(pod_exec sqlite3 "$DB" 'PRAGMA integrity_check')"
stop_pod TERM
t_eq "SIGTERM again: exit status 0 within 10 s (took $STOP_TOOK s)" 0 "$STOP_STATUS"
t_eq "every log line is a JSON object" "$(wc -l <"$LOG")" "$(jq -c . "$LOG" 2>/dev/null | wc -l)"

# ---- the runbook's restore, in a helper pod on the same volume ----
# (`command: ["sleep", "3600"]`, kubectl cp in, then the runbook's own
# `sh -c` script, taken from ops/RUNBOOK.md.)
script=$(awk '/kubectl exec beads-sched-restore -- sh -c '"'"'/ { on = 1; next }
              on { if ($0 ~ /'"'"'$/) { sub(/'"'"'$/, ""); print; exit } print }' "$SRC/ops/RUNBOOK.md")
t_match "the runbook's restore script found" 'mv restore.db beads-sched.db' "$script"
start_pod sleep 3600
helper_up() { [[ $(readlink "/proc/$DAEMON/exe") == */busybox ]]; }
t_wait 10 helper_up || t_fail "the helper pod did not start"
tar cf - -C "$T_TMP/cp" backup.db | pod_exec tar xf - -C "$VOLUME"
pod_exec mv "$VOLUME/backup.db" "$VOLUME/restore.db"
status=0
out=$(pod_exec sh -c "$script" 2>&1) || status=$?
t_eq "runbook restore: the script runs with the image's tools" 0 "$status"
t_match "... and lists the restored store" 'beads-sched\.db\.before-restore' "$out"
stop_pod KILL
: >"$LOG"
start_pod
t_wait 20 logged "recovery done" || { cat "$LOG" || true; ls -la "$T_TMP" || true; t_fail "no start on the restored store"; t_done; }
t_match "runbook restore: the daemon starts on the restored store (1 attempt in flight at the backup)" \
  '"in_flight":"?1"?[,}]' "$(grep '"msg":"recovery done"' "$LOG")"
stop_pod TERM
t_eq "... and stops with status 0" 0 "$STOP_STATUS"
t_done
