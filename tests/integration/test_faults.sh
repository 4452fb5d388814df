#!/usr/bin/env bash
# Fault injection: Dolt stopped for a minute and slow, the agent sending a
# 10 MiB body or hanging past the timeout, the store on a full and on a
# read-only file system, a corrupt store. (Agent 500/429/malformed/truncated
# replies are in test_dispatch.sh; SIGKILL loops in test_reaper.sh.) In
# every case the daemon keeps running or exits with a clear message, nothing
# is lost or duplicated, and it recovers when the fault ends.
source "$(dirname "$0")/lib.sh"

fast_env() {
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_STALE_AFTER=3s
  export BEADS_SCHED_DISPATCH_INTERVAL=1s BEADS_SCHED_HTTP_TIMEOUT=2s
}
dispatched_count() { sqlite3 "$BEADS_SCHED_STORE" "SELECT count(DISTINCT bead_id) FROM journal WHERE state='dispatched'" 2>/dev/null || echo 0; }
wait_dispatched() { # N SECONDS
  local n=$1
  t_wait "$2" bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(DISTINCT bead_id) FROM journal WHERE state='dispatched'\" 2>/dev/null)\" = $n ]"
}

# --- Dolt stopped for a minute during dispatch, then back ---
dolt_down_a_minute() {
  local priv=$T_TMP/downdb port=$((BS_TEST_MYSQL_PORT + 12))
  bash "$HARNESS/mariadb.sh" start "$priv" "$port" >/dev/null
  bash "$HARNESS/newdb.sh" "$priv" down current >/dev/null
  local saved=$T_DB; T_DB=down
  t_sql_root() { mariadb --no-defaults --user=root --socket="$priv/mysqld.sock" --batch --skip-column-names "$@"; }
  t_agent --capacity 1000 --queue-limit 1000
  T_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$port/down"
  t_env "$T_TMP/down.db"; fast_env; export BEADS_SCHED_STALE_AFTER=30s
  t_fake config '{"latency_ms": 100}'
  t_beads dn 150
  "$BS_BIN" run 2>"$T_TMP/down.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal\" 2>/dev/null || echo 0)\" -gt 0 ]" || true
  bash "$HARNESS/mariadb.sh" halt "$priv" >/dev/null
  sleep 60
  kill -0 "$pid" && t_ok "Dolt down 60 s: the daemon kept running" || t_fail "Dolt down: the daemon died"
  t_match "Dolt down: logged once as unreachable" "dolt unreachable" "$(cat "$T_TMP/down.log")"
  bash "$HARNESS/mariadb.sh" start "$priv" "$port" >/dev/null
  t_fake config '{"latency_ms": 0}'
  t_agent_claims
  wait_dispatched 150 60 && t_ok "Dolt back: all 150 dispatched" || t_fail "Dolt back: only $(dispatched_count) dispatched"
  sleep 3 # dispatched notes that met Dolt down are owed, written by the next passes
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "Dolt down: 150 accepted POSTs" 150 "$(t_posts)"
  t_consistent "Dolt down a minute"
  t_agent_stop
  bash "$HARNESS/mariadb.sh" stop "$priv" >/dev/null
  t_sql_root() { mariadb --no-defaults --user=root --socket="$BS_TEST_MYSQL_DIR/mysqld.sock" --batch --skip-column-names "$@"; }
  T_DB=$saved
}

# --- Dolt answering slowly: a write lock held on issues ---
dolt_slow() {
  t_new_db current; t_agent --capacity 100
  t_env "$T_TMP/slow.db"; fast_env
  "$BS_BIN" run 2>"$T_TMP/slow.log" & local pid=$!
  sleep 1
  t_sql_root "$T_DB" -e "LOCK TABLES issues WRITE; SELECT SLEEP(8); UNLOCK TABLES" >/dev/null &
  local locker=$!
  sleep 1
  t_beads sl 20 2>/dev/null & # waits for the lock too
  local filler=$!
  sleep 4
  kill -0 "$pid" && t_ok "Dolt slow: the daemon keeps running while queries wait" || t_fail "Dolt slow: died"
  t_eq "Dolt slow: /healthz-style liveness: loop still turning (no crash)" 0 "$(grep -c 'level=error' "$T_TMP/slow.log" || true)"
  wait "$locker" "$filler"
  wait_dispatched 20 20 && t_ok "Dolt slow: all dispatched once the lock is gone" || t_fail "Dolt slow: $(dispatched_count) dispatched"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "Dolt slow: 20 accepted POSTs" 20 "$(t_posts)"
  t_consistent "Dolt slow"
  t_agent_stop
}

# --- the agent sends 10 MiB, or hangs past the timeout ---
agent_big_and_hanging() {
  t_new_db current; t_agent --capacity 100
  t_env "$T_TMP/big.db"; fast_env
  t_bead big1
  t_fake config '{"big_body_bytes": 10485760, "shape_paths": ["health"]}'
  t_once || true
  t_eq "10 MiB /health: nothing dispatched" 0 "$(t_posts)"
  t_match "10 MiB /health: logged, survived" "agent health check failed" "$(cat "$T_TMP/once.log")"
  t_fake config '{"shape_paths": ["execute"]}'
  t_once
  t_eq "10 MiB /execute reply: the job exists once" 1 "$(t_posts)"
  t_eq "10 MiB /execute reply: outcome unknown, not re-sent" unknown "$(t_store "SELECT state FROM journal WHERE bead_id='big1'")"
  t_fake config '{"big_body_bytes": 0, "shape_paths": null}'
  t_agent_claims
  t_once
  t_eq "10 MiB /execute reply: the agent's claim note names this attempt" 1 \
    "$(t_notes_count big1 "^claimed by agent $(t_store "SELECT dispatch_id FROM journal WHERE bead_id='big1'")\$")"
  t_eq "10 MiB /execute reply: still unknown (the job id is), never re-sent" unknown "$(t_store "SELECT state FROM journal WHERE bead_id='big1'")"
  t_eq "10 MiB: still one POST" 1 "$(t_posts)"

  t_bead hang1
  t_fake config '{"hang": true, "shape_paths": ["execute"]}'
  "$BS_BIN" run 2>"$T_TMP/hang.log" & local pid=$!
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='hang1'\" 2>/dev/null)\" = unknown ]" \
    && t_ok "hang past the timeout: outcome unknown" || t_fail "hang: $(t_store "SELECT state FROM journal WHERE bead_id='hang1'")"
  t_eq "hang: the agent has the job" 1 "$(t_posts '.by_bead.hang1')"
  t_fake config '{"hang": false, "shape_paths": null}'
  t_agents_work 16 # 8 s > STALE_AFTER, its agent working
  t_eq "hang: the agent's claim note names this attempt" 1 \
    "$(t_notes_count hang1 "^claimed by agent $(t_store "SELECT dispatch_id FROM journal WHERE bead_id='hang1'")\$")"
  t_eq "hang: unknown, watched through the bead, not re-sent" unknown "$(t_store "SELECT state FROM journal WHERE bead_id='hang1'")"
  kill -0 "$pid" && t_ok "hang: the daemon kept running" || t_fail "hang: died"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "hang: one POST for hang1" 1 "$(t_posts '.by_bead.hang1')"
  t_agent_stop
}

# --- the store on a full, then a read-only file system ---
store_fs_faults() {
  local mnt=$T_TMP/smallfs
  mkdir -p "$mnt"
  if ! mount -t tmpfs -o size=2m tmpfs "$mnt" 2>/dev/null; then
    echo "skipped: cannot mount a tmpfs here (the store's disk-full seam is covered in test_store)"
    return 0
  fi
  t_new_db current; t_agent --capacity 100
  t_env "$mnt/store.db"; fast_env
  "$BS_BIN" run 2>"$T_TMP/full.log" & local pid=$!
  t_wait 10 grep -q "recovery done" "$T_TMP/full.log" || true
  dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true   # until full
  t_beads fs 20
  sleep 4
  kill -0 "$pid" && t_ok "full disk: the daemon keeps running" || t_fail "full disk: died: $(tail -3 "$T_TMP/full.log")"
  t_match "full disk: says so" "disk full|full" "$(cat "$T_TMP/full.log")"
  t_eq "full disk: nothing sent without a journal" 0 "$(t_posts)"
  t_eq "full disk: no bead claimed without a journal" 0 "$(t_sql "SELECT count(*) FROM issues WHERE status <> 'open'")"
  rm -f "$mnt/filler"
  wait_dispatched 20 20 && t_ok "full disk: recovers once space is back" || t_fail "full disk: $(dispatched_count) dispatched after space came back"
  t_eq "full disk: 20 accepted POSTs" 20 "$(t_posts)"
  t_consistent "full disk"

  # Read-only: Linux will not remount a file system read-only while the
  # daemon holds files on it open for writing, so this is the restart case:
  # a daemon that finds its store read-only exits with a clear message.
  kill -TERM "$pid"; wait "$pid" || true
  t_beads ro 5
  mount -o remount,ro "$mnt"
  set +e
  local err; err=$("$BS_BIN" run 2>&1); local rc=$?
  set -e
  t_eq "read-only store: exits 1" 1 "$rc"
  t_match "read-only store: says so" "[Rr]ead-only" "$err"
  t_eq "read-only store: nothing claimed" 0 "$(t_sql "SELECT count(*) FROM issues WHERE id LIKE 'ro%' AND status <> 'open'")"
  mount -o remount,rw "$mnt"
  "$BS_BIN" run 2>>"$T_TMP/full.log" & pid=$!
  wait_dispatched 25 20 && t_ok "read-only store: recovers once writable" || t_fail "read-only store: $(dispatched_count) of 25"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "read-only store: 25 accepted POSTs in all" 25 "$(t_posts)"
  t_consistent "read-only store"
  t_agent_stop
  umount "$mnt"
}

# --- a corrupt store: the daemon refuses it with a clear message ---
corrupt_store() {
  t_new_db current; t_agent
  t_env "$T_TMP/corrupt.db"
  "$BS_BIN" migrate >/dev/null 2>&1
  printf 'garbage over the first page' | dd of="$BEADS_SCHED_STORE" bs=1 seek=100 conv=notrunc 2>/dev/null
  local sum; sum=$(md5sum <"$BEADS_SCHED_STORE")
  set +e
  local err; err=$("$BS_BIN" run 2>&1); local rc=$?
  set -e
  t_eq "corrupt store: run exits 1" 1 "$rc"
  t_match "corrupt store: the message names the file" "corrupt\\.db" "$err"
  t_eq "corrupt store: left as it was" "$sum" "$(md5sum <"$BEADS_SCHED_STORE")"
  t_agent_stop
}

corrupt_store
agent_big_and_hanging
dolt_slow
store_fs_faults
dolt_down_a_minute
t_done
