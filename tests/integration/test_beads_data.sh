#!/usr/bin/env bash
# Beads as they really are: full notes (TEXT, 65,535 bytes), a bead the
# server refuses to write, ids holding a NUL byte, and a daemon whose clock
# is off by 40 minutes either way. In every case the other beads are
# dispatched or reaped in the same pass.
source "$(dirname "$0")/lib.sh"
t_needs_hooks # crash points and the clock skew

FILL=65500
notes_len() { t_sql "SELECT OCTET_LENGTH(notes) FROM issues WHERE id = '$1'"; }
notes_md5() { t_sql "SELECT MD5(notes) FROM issues WHERE id = '$1'"; }
status_of() { t_sql "SELECT status FROM issues WHERE id = '$1'"; }
# events_with BEAD TEXT: events of BEAD whose comment holds TEXT.
events_with() { t_sql "SELECT COUNT(*) FROM events WHERE issue_id = '$1' AND INSTR(comment, '$2') > 0"; }

# --- a bead with 65,500 bytes of notes is dispatched; notes never grow past 65,535 ---
full_dispatch() { # schema [dolt]
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/full.$T_DB.db"
  local v="$*"
  t_bead full "notes=REPEAT('n', $FILL)" "priority=0"
  t_bead other "priority=1"
  local before; before=$(notes_md5 full)
  t_once
  t_eq "[$v] full bead dispatched" in_progress "$(status_of full)"
  t_eq "[$v] the bead assigned with it dispatched in the same cycle" in_progress "$(status_of other)"
  t_eq "[$v] full bead: the user's notes intact" "$before" "$(t_sql "SELECT MD5(LEFT(notes, $FILL)) FROM issues WHERE id = 'full'")"
  t_eq "[$v] full bead: no room for the claim note, the short dispatched note fits" "dispatched: job=" \
    "$(t_sql "SELECT SUBSTRING(notes, $((FILL + 2)), 16) FROM issues WHERE id = 'full'")"
  [ "$(notes_len full)" -le 65535 ] && t_ok "[$v] notes within 65,535 bytes" || t_fail "[$v] notes grew past 65,535"
  local did job
  did=$(t_store "SELECT dispatch_id FROM journal WHERE bead_id = 'full'")
  job=$(t_store "SELECT job_id FROM journal WHERE bead_id = 'full'")
  t_eq "[$v] journal: dispatched" dispatched "$(t_store "SELECT state FROM journal WHERE bead_id = 'full'")"
  t_eq "[$v] the claim is recorded in the bead's events" 1 "$(events_with full "$did")"
  t_eq "[$v] the dispatched note is recorded in the bead's events" 1 "$(events_with full "dispatched: job=$job")"
  t_eq "[$v] claim event as bd writes it: claimed, JSON old and new values" \
    'claimed|in_progress|agent|open' \
    "$(t_sql "SELECT CONCAT_WS('|', event_type, JSON_VALUE(new_value, '$.status'), JSON_VALUE(new_value, '$.assignee'), JSON_VALUE(old_value, '$.status')) FROM events WHERE issue_id = 'full' AND event_type = 'claimed'")"
  t_eq "[$v] events ids and times from the column defaults" 1 \
    "$(t_sql "SELECT COUNT(*) FROM events WHERE issue_id = 'full' AND event_type = 'claimed' AND LENGTH(id) = 36 AND ABS(TIMESTAMPDIFF(SECOND, created_at, UTC_TIMESTAMP())) < 60")"
  t_eq "[$v] the other bead got its notes as usual (empty before: no leading newline)" 1 \
    "$(t_sql "SELECT notes REGEXP '^auto-dispatcher claimed at [^\\n]*\\ndispatched: job=[0-9a-f]+\$' FROM issues WHERE id = 'other'")"
  # Nearly full: the claim note is shortened, never the user's text (in a
  # batch with a bead whose notes have some text already).
  t_bead nearly "notes=REPEAT('m', 65454)"
  t_bead mate "notes='a user line'" "priority=1"
  before=$(notes_md5 nearly)
  t_once
  t_eq "[$v] the bead claimed with it: its note after the user's line" 1 \
    "$(t_sql "SELECT notes REGEXP '^a user line\\nauto-dispatcher claimed at [^\\n]*\\ndispatched: job=[0-9a-f]+\$' FROM issues WHERE id = 'mate'")"
  t_eq "[$v] nearly full bead dispatched" in_progress "$(status_of nearly)"
  [ "$(notes_len nearly)" -le 65535 ] && t_ok "[$v] nearly full: within 65,535 bytes" || t_fail "[$v] nearly full: grew past"
  t_eq "[$v] nearly full: the user's text is intact" "$before" "$(t_sql "SELECT MD5(LEFT(notes, 65454)) FROM issues WHERE id = 'nearly'")"
  t_match "[$v] nearly full: shortened claim note says where the rest is" "^auto-dispatcher claimed at .* \[cut; whole note in events\]$" "$(t_sql "SELECT SUBSTRING(notes, 65456) FROM issues WHERE id = 'nearly'")"
  local out; out=$("$BS_BIN" explain full)
  t_match "[$v] explain says the notes are full" "notes +pass +655[0-9][0-9] of 65535 bytes used \(full" "$out"
  t_agent_stop
}

# --- a stale in-progress orphan with full notes is blocked ---
full_orphan() { # schema [dolt]
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/orphan.$T_DB.db"; export BEADS_SCHED_STALE_AFTER=30m
  local v="$*"
  t_bead stale "status='in_progress'" "notes=REPEAT('o', 65530)" "updated_at=UTC_TIMESTAMP() - INTERVAL 40 MINUTE"
  t_bead ready2
  local before; before=$(notes_md5 stale)
  t_once
  t_eq "[$v] stale orphan with full notes blocked" blocked "$(status_of stale)"
  t_eq "[$v] its notes untouched" "$before" "$(notes_md5 stale)"
  t_eq "[$v] the reaper's note is in its events" 1 "$(events_with stale "reaper: no progress for 40m")"
  t_eq "[$v] status_changed event with JSON values" 'status_changed|blocked|in_progress' \
    "$(t_sql "SELECT CONCAT_WS('|', event_type, JSON_VALUE(new_value, '$.status'), JSON_VALUE(old_value, '$.status')) FROM events WHERE issue_id = 'stale'")"
  t_eq "[$v] the bead assigned with it dispatched in the same run" in_progress "$(status_of ready2)"
  unset BEADS_SCHED_STALE_AFTER
  t_agent_stop
}

# --- any failed write is that bead's problem only ---
poison() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/poison.$T_DB.db"; export BEADS_SCHED_STALE_AFTER=30m
  t_bead poison "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 50 MINUTE"
  t_bead stale2 "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 50 MINUTE"
  t_bead ready3
  t_sql_root "$T_DB" <<'SQL'
DELIMITER //
CREATE TRIGGER poison_bead BEFORE UPDATE ON issues FOR EACH ROW
BEGIN
  IF OLD.id = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'row refused by a check'; END IF;
END//
SQL
  t_once
  t_eq "poison: the refused bead is left as it was" in_progress "$(status_of poison)"
  t_eq "poison: the other stale bead is blocked in the same pass" blocked "$(status_of stale2)"
  t_eq "poison: the ready bead is dispatched in the same run" in_progress "$(status_of ready3)"
  t_match "poison: logged" "bead write failed; only this bead is affected.*bead=poison" "$(cat "$T_TMP/once.log")"
  t_match "poison: in history" "write_failed +block not written to the bead: i/o error: row refused by a check" "$("$BS_BIN" history poison)"
  t_match "poison: in explain" "last write +pass +failed .*row refused by a check" "$("$BS_BIN" explain poison)"
  # The next pass tries again, and fails again, alone.
  t_once
  t_eq "poison: two failures recorded" 2 "$(t_store "SELECT COUNT(*) FROM event_log WHERE bead_id = 'poison' AND event = 'write_failed'")"
  unset BEADS_SCHED_STALE_AFTER
  t_agent_stop
}

# --- recovery at every crash point when the claim note does not fit ---
full_crash() { # point [force_status]
  local point=$1 force=${2:-0}
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/fcrash.$point.db"
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_DISPATCH_INTERVAL=1s
  t_bead f1 "priority=0" "notes=REPEAT('f', $FILL)"; t_bead f2 "priority=1" "notes=REPEAT('g', $FILL)"
  [ "$force" != 0 ] && t_fake config "{\"force_status\": $force}"
  set +e
  BEADS_SCHED_CRASH_AT=$point "$BS_BIN" once 2>>"$T_TMP/fcrash.log"
  local rc=$?
  set -e
  t_eq "[full $point] the process died there" 137 "$rc"
  t_fake config '{"force_status": 0}'
  # The agent cannot note its claim on a full bead (bd note fails too).
  export BEADS_SCHED_STALE_AFTER=2s
  "$BS_BIN" run 2>>"$T_TMP/fcrash.log" & local pid=$!
  t_wait 30 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(DISTINCT bead_id) FROM journal WHERE state='dispatched'\")\" = 2 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "[full $point] every bead dispatched" 2 "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state = 'dispatched'")"
  t_eq "[full $point] no attempt left half-way" "" "$(t_store "SELECT bead_id || ':' || state FROM journal WHERE state IN ('claiming','claimed','posting','unknown')" | xargs)"
  local b did bad=""
  for b in f1 f2; do
    did=$(t_store "SELECT dispatch_id FROM journal WHERE bead_id = '$b' AND state = 'dispatched'")
    [ "$(status_of $b)" = in_progress ] && [ "$(events_with $b "$did")" = 1 ] || bad+=" $b"
    [ "$(t_sql "SELECT OCTET_LENGTH(notes) <= 65535 AND LEFT(notes, $FILL) = REPEAT(LEFT(notes, 1), $FILL) FROM issues WHERE id = '$b'")" = 1 ] || bad+=" $b(notes changed)"
  done
  t_eq "[full $point] Dolt agrees with the store (the claim in the events)" "" "$bad"
  local posts; posts=$(t_stats | jq -r '[.by_bead[]] | max')
  case $point in
    after_post_response|after_dispatched_commit)
      # A POST whose answer was not journaled (this bead's, or the other
      # one's still in flight at the crash): the agent cannot note its claim
      # on a full bead, so nothing tells; one more attempt at most.
      [ "$posts" -le 2 ] && t_ok "[full $point] at most one extra POST per bead" || t_fail "[full $point] $posts POSTs" ;;
    *) t_eq "[full $point] one accepted POST per bead" 1 "$posts" ;;
  esac
  unset BEADS_SCHED_STALE_AFTER BEADS_SCHED_REAP_INTERVAL BEADS_SCHED_RETRY_BACKOFF BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

# --- ids holding a NUL byte are skipped, never cut into another bead's id ---
nul_ids() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/nul.$T_DB.db"; export BEADS_SCHED_STALE_AFTER=30m
  t_bead nul-b "priority=1"
  t_sql "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority, assignee, updated_at)
         VALUES (CONCAT('nul-a', CHAR(0), 'x'), 'a', '', '', 'ac', '', 'open', 0, 'agent', UTC_TIMESTAMP() - INTERVAL 1 HOUR),
                (CONCAT('nul-b', CHAR(0), 'evil'), 'b', '', '', 'ac', '', 'open', 0, 'agent', UTC_TIMESTAMP() - INTERVAL 1 HOUR),
                (CONCAT('live', CHAR(0), 'x'), 'l', '', '', 'ac', '', 'in_progress', 0, 'agent', UTC_TIMESTAMP() - INTERVAL 2 HOUR)"
  t_bead live "status='in_progress'" "updated_at=UTC_TIMESTAMP()"
  # The NUL bead blocks nul-b through a dependency: it is an open blocker.
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_by) VALUES ('nul-b', CONCAT('live', CHAR(0), 'x'), 'blocks', 't')"
  t_once
  t_eq "nul: the NUL-id beads were never claimed" "open open" "$(t_sql "SELECT status FROM issues WHERE id LIKE 'nul-_\0%' ORDER BY id" | xargs)"
  t_eq "nul: nul-b is blocked by the in-progress NUL bead, not dispatched" open "$(status_of nul-b)"
  t_eq "nul: no POST at all" 0 "$(t_posts)"
  t_eq "nul: the stale NUL orphan was not reaped under a shortened id" in_progress "$(status_of live)"
  t_eq "nul: ...and it is untouched itself" in_progress "$(t_sql "SELECT status FROM issues WHERE id = CONCAT('live', CHAR(0), 'x')")"
  t_match "nul: logged" "bead skipped: its id holds a NUL byte" "$(cat "$T_TMP/once.log")"
  local out rc=0
  out=$("$BS_BIN" explain nul-a) || rc=$?
  t_eq "nul: explain exits 0" 0 "$rc"
  t_match "nul: explain verdict" "^verdict: not dispatched: id: no bead has exactly this id, but \"nul-a.+x\" does: its id holds a NUL byte" "$(tail -1 <<<"$out")"
  # Once the blocker is gone, nul-b (the real one) is dispatched, once.
  t_sql "UPDATE issues SET status = 'closed' WHERE id = CONCAT('live', CHAR(0), 'x')"
  t_once
  t_eq "nul: nul-b dispatched once its blocker closed" in_progress "$(status_of nul-b)"
  t_eq "nul: one POST, for nul-b" '{"nul-b":1}' "$(t_stats | jq -c '.by_bead')"
  unset BEADS_SCHED_STALE_AFTER
  t_agent_stop
}

# --- the daemon's clock is off by 40 minutes: only the server's counts ---
skew() { # skew_minutes
  local m=$1
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/skew$m.$T_DB.db"; export BEADS_SCHED_STALE_AFTER=30m
  export BEADS_SCHED_TEST_CLOCK_SKEW_MS=$((m * 60 * 1000))
  t_bead live "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 5 MINUTE"
  t_bead dead "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 35 MINUTE"
  t_bead claim1 "updated_at=UTC_TIMESTAMP() - INTERVAL 1 MINUTE"
  t_bead deferred "defer_until=UTC_TIMESTAMP() + INTERVAL 10 MINUTE"
  t_once
  t_eq "[skew ${m}m] a bead updated 5 min ago (server clock) is not blocked" in_progress "$(status_of live)"
  t_eq "[skew ${m}m] a bead quiet for 35 min (server clock) is blocked" blocked "$(status_of dead)"
  t_match "[skew ${m}m] the note gives the server's age" "reaper: no progress for 3[56]m" "$(t_sql "SELECT notes FROM issues WHERE id = 'dead'")"
  t_eq "[skew ${m}m] claimed" in_progress "$(status_of claim1)"
  t_eq "[skew ${m}m] updated_at and started_at written by the server's clock" "1 1" \
    "$(t_sql "SELECT ABS(TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP())) < 60, ABS(TIMESTAMPDIFF(SECOND, started_at, UTC_TIMESTAMP())) < 60 FROM issues WHERE id = 'claim1'" | xargs)"
  local note_ts; note_ts=$(t_sql "SELECT notes FROM issues WHERE id = 'claim1'" | sed -n 's/^auto-dispatcher claimed at \([^ ]*\) .*/\1/p')
  t_eq "[skew ${m}m] the claim note's time is the server's" 1 \
    "$(t_sql "SELECT ABS(TIMESTAMPDIFF(SECOND, STR_TO_DATE('$note_ts', '%Y-%m-%dT%H:%i:%sZ'), UTC_TIMESTAMP())) < 60")"
  t_eq "[skew ${m}m] a bead deferred 10 more minutes (server clock) waits" open "$(status_of deferred)"
  unset BEADS_SCHED_TEST_CLOCK_SKEW_MS BEADS_SCHED_STALE_AFTER
  t_agent_stop
}

# --- a schema that is not bd's: one clear error naming the column ---
bad_schema() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/bad.$T_DB.db"
  t_bead a
  t_sql "ALTER TABLE issues DROP COLUMN defer_until"
  local rc=0 out
  t_once || rc=$?
  t_eq "bad schema: once exits 1" 1 "$rc"
  t_match "bad schema: the error names the column" 'msg="beads schema not supported" error="column issues.defer_until is missing' "$(cat "$T_TMP/once.log")"
  t_eq "bad schema: nothing dispatched" open "$(status_of a)"
  rc=0; out=$("$BS_BIN" explain a 2>&1) || rc=$?
  t_eq "bad schema: explain exits 1" 1 "$rc"
  t_match "bad schema: explain names the column" "not a supported beads schema: column issues.defer_until is missing" "$out"
  t_agent_stop
}

# --- the running daemon: full beads never hold the others back ---
full_live() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/live.$T_DB.db"
  export BEADS_SCHED_STALE_AFTER=30m BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_DISPATCH_INTERVAL=10m
  t_bead stale "status='in_progress'" "notes=REPEAT('o', 65530)" "updated_at=UTC_TIMESTAMP() - INTERVAL 40 MINUTE"
  "$BS_BIN" run 2>>"$T_TMP/live.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='stale'\")\" = blocked ]" \
    && t_ok "live: the stale orphan with full notes is blocked by the running reaper" || t_fail "live: stale orphan not blocked"
  # Assigned at the same time: one full, one not. The probe (200 ms) sees
  # them; one cycle takes both.
  t_sql "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority, assignee, updated_at)
         VALUES ('full', 'f', '', '', 'ac', REPEAT('n', $FILL), 'open', 0, 'agent', UTC_TIMESTAMP()),
                ('other', 'o', '', '', 'ac', '', 'open', 1, 'agent', UTC_TIMESTAMP())"
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state='dispatched'\")\" = 2 ]" \
    && t_ok "live: both dispatched" || t_fail "live: not both dispatched"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "live: claimed in the same cycle (one claiming time)" 1 \
    "$(t_store "SELECT COUNT(DISTINCT at) FROM history WHERE event = 'claiming' AND bead_id IN ('full', 'other')")"
  unset BEADS_SCHED_STALE_AFTER BEADS_SCHED_REAP_INTERVAL BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

bad_schema
full_live
full_dispatch current
full_dispatch older dolt
full_orphan current
full_orphan older dolt
poison
for p in after_claiming_commit after_dolt_claim after_claimed_commit after_posting_commit \
         after_post_response after_dispatched_commit; do
  full_crash "$p"
done
full_crash after_dolt_revert 400 # a refusal of the bead itself: the claim is reverted

# The reaper's own crash points on a full bead: its release note does not
# fit, the events row tells the restarted reaper that it released the bead.
full_reap_crash() { # point
  local point=$1
  t_new_db current; t_agent --capacity 10 --job-ms 200 --final-status failed
  t_env "$T_TMP/frcrash.$point.db"
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_DISPATCH_INTERVAL=1s
  t_bead r1 "notes=REPEAT('r', $FILL)"
  t_once
  sleep 0.5 # the job fails
  set +e
  BEADS_SCHED_CRASH_AT=$point timeout 20 "$BS_BIN" run 2>>"$T_TMP/frcrash.log"
  t_eq "[full $point] the reaper died there" 137 $?
  set -e
  "$BS_BIN" run 2>>"$T_TMP/frcrash.log" & local pid=$!
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE bead_id='r1' AND attempt=2 AND state='dispatched'\")\" = 1 ]" \
    && t_ok "[full $point] attempt 2 dispatched after the restart" || t_fail "[full $point] no attempt 2"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "[full $point] attempt 1 ended retrying" retrying "$(t_store "SELECT state FROM journal WHERE bead_id='r1' AND attempt=1")"
  t_eq "[full $point] two accepted POSTs, one per attempt" 2 "$(t_posts '.by_bead.r1')"
  t_eq "[full $point] the user's notes intact" 1 "$(t_sql "SELECT LEFT(notes, $FILL) = REPEAT('r', $FILL) AND OCTET_LENGTH(notes) <= 65535 FROM issues WHERE id = 'r1'")"
  unset BEADS_SCHED_REAP_INTERVAL BEADS_SCHED_RETRY_BACKOFF BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}
full_reap_crash after_reap_dolt_write
full_reap_crash after_reap_commit

nul_ids
skew 40
skew -40
t_done
