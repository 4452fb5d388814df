#!/usr/bin/env bash
# The binary's command line: configuration errors, config printout, migrate,
# store refusals, the single-writer lock and clean shutdown.
source "$(dirname "$0")/lib.sh"
cd "$T_TMP"
unset "${!BEADS_SCHED_@}"

# --- configuration ---
out=$(BEADS_SCHED_AGENT_TOKEN=super-secret-token-1 BEADS_SCHED_DOLT_URL='mysql://beads:db-pass-2@h/code' "$BS_BIN" config)
t_match "config prints the token as ***" "BEADS_SCHED_AGENT_TOKEN=\\*\\*\\*" "$out"
t_match "config redacts the URL password" "BEADS_SCHED_DOLT_URL=mysql://beads:\\*\\*\\*@h:3306/code" "$out"
[[ $out == *super-secret-token-1* || $out == *db-pass-2* ]] && t_fail "secret printed" || t_ok "no secret in config output"

set +e
err=$(BEADS_SCHED_STORE=$T_TMP/s1.db BEADS_SCHED_PROBE_INTERVAL=abc "$BS_BIN" run 2>&1); rc=$?
set -e
t_eq "PROBE_INTERVAL=abc: exit 2" 2 "$rc"
t_match "PROBE_INTERVAL=abc: names the variable" "^beads-sched: BEADS_SCHED_PROBE_INTERVAL: " "$err"
t_eq "PROBE_INTERVAL=abc: one line" 1 "$(echo "$err" | wc -l)"
[ -e "$T_TMP/s1.db" ] && t_fail "store created despite bad config" || t_ok "bad config touched no store"

set +e
err=$(BEADS_SCHED_STORE=$T_TMP/s2.db BEADS_SCHED_AGENT_URL=http://x BEADS_SCHED_AGENT_TOKEN=t "$BS_BIN" run 2>&1); rc=$?
set -e
t_eq "missing DOLT_URL: exit 2" 2 "$rc"
t_match "missing DOLT_URL: names it" "^beads-sched: BEADS_SCHED_DOLT_URL: required" "$err"
[ -e "$T_TMP/s2.db" ] && t_fail "store created despite missing DOLT_URL" || t_ok "missing DOLT_URL touched no store"

set +e
err=$(BEADS_SCHED_DOLT_URL='mysql://u:leaky-pw@h/db?tls=yes' "$BS_BIN" config 2>&1); rc=$?
set -e
t_eq "bad DOLT_URL: exit 2" 2 "$rc"
[[ $err == *leaky-pw* ]] && t_fail "bad DOLT_URL error shows the password" || t_ok "bad DOLT_URL error hides the password"
set +e
"$BS_BIN" frobnicate 2>/dev/null; t_eq "unknown command: exit 2" 2 $?
"$BS_BIN" migrate --bogus 2>/dev/null; t_eq "unknown flag: exit 2" 2 $?
set -e

# --- migrate and store refusals ---
export BEADS_SCHED_STORE=$T_TMP/store.db
LATEST=$(find "$BS_SOURCE_DIR/migrations" -name '[0-9][0-9][0-9][0-9]_*.sql' | wc -l) # the newest schema version
t_match "migrate creates the store" "schema version $LATEST\$" "$("$BS_BIN" migrate 2>/dev/null)"
t_eq "journal mode WAL" wal "$(sqlite3 "$BEADS_SCHED_STORE" 'PRAGMA journal_mode')"
t_match "migrate again is a no-op" "schema version $LATEST\$" "$("$BS_BIN" migrate 2>/dev/null)"
t_eq "views readable by plain sqlite3" "bead_id|attempt|state|job_id|dispatch_id|claimed_at|dispatched_at|finished_at|outcome|detail" \
  "$(sqlite3 "$BEADS_SCHED_STORE" "SELECT group_concat(name, '|') FROM pragma_table_info('attempts')")"

cp "$BEADS_SCHED_STORE" "$T_TMP/newer.db"
sqlite3 "$T_TMP/newer.db" 'PRAGMA user_version = 9'
set +e
err=$(BEADS_SCHED_STORE=$T_TMP/newer.db "$BS_BIN" migrate 2>&1); rc=$?
set -e
t_eq "newer store: exit 1" 1 "$rc"
t_match "newer store: both versions named" "9.*$LATEST|$LATEST.*9" "$err"

head -c 65536 /dev/urandom >"$T_TMP/corrupt.db"
sum=$(md5sum <"$T_TMP/corrupt.db")
set +e
err=$(BEADS_SCHED_STORE=$T_TMP/corrupt.db "$BS_BIN" migrate 2>&1); rc=$?
set -e
t_eq "corrupt store: exit 1" 1 "$rc"
t_match "corrupt store: names the file" "corrupt.db" "$err"
t_eq "corrupt store: file unchanged" "$sum" "$(md5sum <"$T_TMP/corrupt.db")"

# --- the daemon: lock and shutdown ---
t_new_db current; t_agent
t_env "$T_TMP/daemon.db"
"$BS_BIN" run 2>"$T_TMP/a.log" &
a=$!
t_wait 10 grep -q "msg=started" "$T_TMP/a.log" || true
set +e
err=$("$BS_BIN" run 2>&1); rc=$?
set -e
t_eq "second daemon on the same store: exit 1" 1 "$rc"
t_match "second daemon: already in use" "already in use" "$err"
kill -0 "$a" && t_ok "first daemon unaffected" || t_fail "first daemon died"
start=$SECONDS
kill -TERM "$a"
set +e; wait "$a"; rc=$?; set -e
t_eq "SIGTERM: exit 0" 0 "$rc"
[ $((SECONDS - start)) -le 10 ] && t_ok "SIGTERM: stopped within 10 s" || t_fail "SIGTERM took $((SECONDS - start)) s"
t_match "SIGTERM: logged stop" "msg=stopped" "$(cat "$T_TMP/a.log")"
grep -q "did not close cleanly" "$T_TMP/a.log" && t_fail "loop did not close cleanly" || t_ok "loop closed cleanly"

"$BS_BIN" run 2>"$T_TMP/b.log" &
b=$!
t_wait 10 grep -q "msg=started" "$T_TMP/b.log" || true
kill -INT "$b"
set +e; wait "$b"; rc=$?; set -e
t_eq "SIGINT: exit 0" 0 "$rc"
t_done
