#!/usr/bin/env bash
# A daemon that survives its operators and its neighbours: stray signals,
# the store file deleted or replaced under it, the admin endpoint under a
# slowloris flood, readiness that follows Dolt's last answer, and a commit
# author Dolt would refuse.
source "$(dirname "$0")/lib.sh"

code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true; }

t_new_db current
t_agent --capacity 10
t_env "$T_TMP/op.db"
APORT=$(free_port)
ADMIN=http://127.0.0.1:$APORT
export BEADS_SCHED_LISTEN=127.0.0.1:$APORT BEADS_SCHED_PROBE_INTERVAL=200ms
"$BS_BIN" run 2>"$T_TMP/op.log" &
pid=$!
t_wait 10 bash -c "curl -sf $ADMIN/readyz >/dev/null" && t_ok "ready" || t_fail "never ready: $(tail -3 "$T_TMP/op.log")"

# --- stray signals: a log line each, never a death ---
for sig in HUP USR1 USR2 ALRM; do
  kill -s "$sig" "$pid"
  sleep 0.3
  if kill -0 "$pid" 2>/dev/null; then t_ok "SIG$sig: still running"; else t_fail "SIG$sig killed the daemon"; fi
done
log=$(cat "$T_TMP/op.log")
t_match "SIGHUP logged" 'msg="SIGHUP: nothing to reload' "$log"
t_match "SIGUSR1 logs a status line" 'msg=status signal=SIGUSR1 store=ok dolt=ok' "$log"
t_match "SIGUSR2 logged" 'msg="signal ignored" signal=SIGUSR2' "$log"
t_match "SIGALRM logged" 'msg="signal ignored" signal=SIGALRM' "$log"
t_bead s1
t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 1 ]" \
  && t_ok "still dispatching after the signals" || t_fail "no dispatch after the signals"

# --- the admin endpoint under a slowloris flood from several addresses ---
# 5 addresses x 120 connections, each sending a request line and then one
# header byte a second, never finishing. /healthz from another address must
# keep answering while they hang on.
cat >"$T_TMP/slowloris.py" <<'EOF'
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
socks = []
for a in range(2, 7):
    for _ in range(120):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.bind(("127.0.0.%d" % a, 0))
            s.connect(("127.0.0.1", port))
            s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            s.close()
print(len(socks), flush=True)
end = time.time() + seconds
while time.time() < end:
    for s in list(socks):
        try:
            s.send(b"X")
        except OSError:
            socks.remove(s)
    time.sleep(1)
EOF
python3 "$T_TMP/slowloris.py" "$APORT" 12 >"$T_TMP/slowloris.out" 2>&1 &
flood=$!
sleep 2
answered=0 slow=0
for i in $(seq 10); do
  c=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$ADMIN/healthz" || true)
  [ "$c" = 200 ] && answered=$((answered + 1)) || slow=$((slow + 1))
  sleep 0.8
done
wait "$flood" || true
t_match "the flood opened its connections" '^[0-9]+$' "$(head -1 "$T_TMP/slowloris.out")"
t_eq "healthz answered every probe during the flood (opened: $(head -1 "$T_TMP/slowloris.out"))" "10 0" "$answered $slow"
t_eq "healthz after the flood" 200 "$(code "$ADMIN/healthz")"

# --- readiness follows Dolt's last answer, not a window ---
# The daemon's own account is locked and its connections killed: the server
# is up, but the next probe fails. readyz must say so at once rather than
# after three probe intervals of stale success.
kill -TERM "$pid"; wait "$pid" || true
OPUSER=bsop_$$
t_sql_root -e "CREATE USER '$OPUSER'@'%' IDENTIFIED BY 'op-pw'; GRANT ALL ON \`$T_DB\`.* TO '$OPUSER'@'%';
               CREATE USER '$OPUSER'@'localhost' IDENTIFIED BY 'op-pw'; GRANT ALL ON \`$T_DB\`.* TO '$OPUSER'@'localhost'"
trap 't_sql_root -e "DROP USER IF EXISTS '"'$OPUSER'"'@'"'%'"', '"'$OPUSER'"'@'"'localhost'"'" 2>/dev/null || true; t_cleanup' EXIT
export BEADS_SCHED_DOLT_URL="mysql://$OPUSER:op-pw@127.0.0.1:$BS_TEST_MYSQL_PORT/$T_DB"
export BEADS_SCHED_PROBE_INTERVAL=500ms
"$BS_BIN" run 2>"$T_TMP/ready.log" &
pid=$!
t_wait 10 bash -c "curl -sf $ADMIN/readyz >/dev/null" && t_ok "ready with its own account" || t_fail "never ready"
t_sql_root -e "ALTER USER '$OPUSER'@'%' ACCOUNT LOCK; ALTER USER '$OPUSER'@'localhost' ACCOUNT LOCK"
for id in $(t_sql_root -e "SELECT id FROM information_schema.processlist WHERE user = '$OPUSER'"); do
  t_sql_root -e "KILL CONNECTION $id" 2>/dev/null || true
done
# Three probe intervals are 1.5 s: well inside the old window, the answer
# must already be 503.
t_wait 2 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/readyz)\" = 503 ]" \
  && t_ok "readyz 503 after the first failed probe" || t_fail "readyz still $(code "$ADMIN/readyz") after Dolt refused"
t_match "503 names the reason" "dolt" "$(curl -s "$ADMIN/readyz")"
t_eq "healthz stays 200" 200 "$(code "$ADMIN/healthz")"
t_sql_root -e "ALTER USER '$OPUSER'@'%' ACCOUNT UNLOCK; ALTER USER '$OPUSER'@'localhost' ACCOUNT UNLOCK"
t_wait 15 bash -c "curl -sf $ADMIN/readyz >/dev/null" && t_ok "ready again once Dolt answers" || t_fail "not ready again"

# --- the store file moved away, then back; then replaced ---
posts=$(t_posts)
mv "$BEADS_SCHED_STORE" "$T_TMP/moved.db"
t_wait 5 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/readyz)\" = 503 ]" \
  && t_ok "store moved away: readyz 503" || t_fail "store moved away: readyz $(code "$ADMIN/readyz")"
t_match "503 names the store" "store .*op.db" "$(curl -s "$ADMIN/readyz")"
t_bead s2
sleep 1.5
t_eq "store moved away: nothing dispatched" "$posts" "$(t_posts)"
t_eq "no new store file journaled at the old path" "absent" "$([ -e "$BEADS_SCHED_STORE" ] && echo present || echo absent)"
t_match "logged at error level" 'level=error msg="store file gone or replaced' "$(cat "$T_TMP/ready.log")"
mv "$T_TMP/moved.db" "$BEADS_SCHED_STORE"
t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = $((posts + 1)) ]" \
  && t_ok "store back: work resumes (s2 dispatched)" || t_fail "store back: no dispatch"
t_eq "s2 journaled in the store" "dispatched" "$(t_store "SELECT state FROM journal WHERE bead_id = 's2'")"

posts=$(t_posts)
sqlite3 "$BEADS_SCHED_STORE" ".backup '$T_TMP/copy.db'"
mv "$T_TMP/copy.db" "$BEADS_SCHED_STORE"
t_wait 5 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/readyz)\" = 503 ]" \
  && t_ok "store replaced: readyz 503" || t_fail "store replaced: readyz $(code "$ADMIN/readyz")"
t_match "503 says replaced" "no longer the one opened" "$(curl -s "$ADMIN/readyz")"
t_bead s3
sleep 1.5
t_eq "store replaced: nothing dispatched" "$posts" "$(t_posts)"
t_eq "the replacement file was not written" "" "$(t_store "SELECT bead_id FROM journal WHERE bead_id = 's3'")"
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
t_eq "SIGTERM with the store replaced: exit 0" 0 "$rc"
t_agent_stop

# --- a once that could not do its work says so in its exit status ---
t_new_db current
t_agent --capacity 10
t_env "$T_TMP/once.db"
set +e
"$BS_BIN" once 2>"$T_TMP/once-empty.log"; rc=$?
set -e
t_eq "once with nothing ready: exit 0" 0 "$rc"
t_bead o1
set +e
BEADS_SCHED_AGENT_TOKEN=wrong-token "$BS_BIN" once 2>"$T_TMP/once-token.log"; rc=$?
set -e
t_eq "once against an agent refusing the token: exit 1" 1 "$rc"
t_eq "...and the bead was not touched" "open" "$(t_sql "SELECT status FROM issues WHERE id = 'o1'")"
t_match "...saying why" 'agent service refuses our token|once: nothing could be handed to the agent' "$(cat "$T_TMP/once-token.log")"
"$BS_BIN" once 2>"$T_TMP/once-ok.log" \
  && t_ok "once that dispatched its bead: exit 0" || t_fail "once that dispatched: exit $?: $(tail -3 "$T_TMP/once-ok.log")"
t_eq "...and it did" "in_progress" "$(t_sql "SELECT status FROM issues WHERE id = 'o1'")"
t_agent_stop

# --- a commit author Dolt would refuse: exit 2 before anything ---
for bad in "ACTOR=beads (sched)" "ACTOR=" "ACTOR_EMAIL=a b@example.com" "ACTOR_EMAIL=x>y@example.com"; do
  set +e
  out=$(env "BEADS_SCHED_${bad%%=*}=${bad#*=}" BEADS_SCHED_STORE="$T_TMP/never.db" "$BS_BIN" run 2>&1)
  rc=$?
  set -e
  t_eq "$bad: exit 2" 2 "$rc"
  t_match "$bad: the error names the variable" "BEADS_SCHED_${bad%%=*}:" "$out"
done
t_eq "no store created for a bad author" absent "$([ -e "$T_TMP/never.db" ] && echo present || echo absent)"
t_done
