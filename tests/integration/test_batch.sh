#!/usr/bin/env bash
# Batches of claims and notes on the Dolt emulation: a 1213 on one bead in a
# batch of ten, Dolt commit messages and authors, a crash inside and after a
# batch at every crash point, capped cycles overlapping (the next one
# claims while the POSTs of the one before are out), the bodies of a large
# batch built beside its claims, and the dispatched notes written on a
# connection of their own.
#
# BATCH_COMMITS_EXPECTED=1 switches on what "one Dolt transaction per batch"
# promises: one claim commit per batch naming its beads (capped), one commit
# per batch of dispatched notes and per reaper pass, and the crash points
# inside_claim_batch, after_claim_batch and after_notes_batch. Without it
# those checks are reported as skipped and the rest runs as always.
source "$(dirname "$0")/lib.sh"

BATCH=${BATCH_COMMITS_EXPECTED:-1}
t_skip() { echo "skip - $1 (BATCH_COMMITS_EXPECTED=1 turns it on)"; }
status_of() { t_sql "SELECT status FROM issues WHERE id = '$1'"; }
posted_once() { t_stats | jq -r '[.by_bead | to_entries[] | select(.value != 1) | "\(.key):\(.value)"] | join(" ")'; }

# --- a) 10 beads at once, one bead's claim fails with 1213 ---
# update: at its CAS UPDATE (dolt_emul_fail); commit: at the DOLT_COMMIT of
# the transaction that wrote it, which Dolt aborts whole
# (dolt_emul_fail_commit).
conflict_in_batch() { # update|commit
  local at=$1 table=dolt_emul_fail
  [ "$at" = commit ] && table=dolt_emul_fail_commit
  t_new_db current dolt; t_agent --capacity 10
  t_env "$T_TMP/conflict.$at.db"
  local i
  for i in $(seq 1 10); do t_bead "b$i" "updated_at=UTC_TIMESTAMP() - INTERVAL $((100 - i)) MINUTE"; done
  t_sql "INSERT INTO $table (issue_id) VALUES ('b5')"
  t_once
  t_eq "[1213 at $at] the nine others POSTed" 9 "$(t_posts)"
  t_eq "[1213 at $at] each of them once" "" "$(posted_once)"
  t_eq "[1213 at $at] the contested bead not POSTed" null "$(t_posts '.by_bead.b5')"
  t_eq "[1213 at $at] the nine others in_progress, the contested one open" \
    "b1 b10 b2 b3 b4 b6 b7 b8 b9 | b5" \
    "$(t_sql "SELECT id FROM issues WHERE status='in_progress' ORDER BY id" | xargs) | $(t_sql "SELECT id FROM issues WHERE status='open'" | xargs)"
  t_eq "[1213 at $at] the contested bead untouched in Dolt (no claim note, no event)" "0 0" \
    "$(t_notes_count b5 'auto-dispatcher claimed') $(t_sql "SELECT count(*) FROM events WHERE issue_id='b5'")"
  t_eq "[1213 at $at] the contested bead's attempt ended without a POST" "" \
    "$(t_store "SELECT state FROM journal WHERE bead_id='b5' AND (posting_at IS NOT NULL OR state NOT IN ('lost_race','released'))")"
  t_match "[1213 at $at] the journal says why" "1213" "$(t_store "SELECT detail FROM journal WHERE bead_id='b5'")"
  t_eq "[1213 at $at] nine dispatched notes" 9 "$(t_sql "SELECT count(*) FROM issues WHERE notes LIKE '%dispatched: job=%'")"
  t_consistent "[1213 at $at]"
  # The conflict is gone: the bead is claimable again, and only it is POSTed.
  t_sql "DELETE FROM $table"
  export BEADS_SCHED_RETRY_BACKOFF=1s
  t_wait 15 bash -c "'$BS_BIN' once 2>>'$T_TMP/once.log'; [ \"\$(curl -sf '$T_AGENT_URL/_fake/stats' | jq -r '.by_bead.b5 // 0')\" = 1 ]" \
    && t_ok "[1213 at $at] the contested bead dispatched once the conflict is gone" || t_fail "[1213 at $at] b5 not dispatched after the fail row was removed"
  unset BEADS_SCHED_RETRY_BACKOFF
  t_eq "[1213 at $at] ten POSTs in all, one per bead" "10 " "$(t_posts) $(posted_once)"
  t_eq "[1213 at $at] every bead in_progress with its dispatched note" 10 \
    "$(t_sql "SELECT count(*) FROM issues WHERE status='in_progress' AND notes LIKE '%dispatched: job=%'")"
  t_consistent "[1213 at $at] after"
  t_agent_stop
}

# --- a2) one bead of a batch of ten not moved by the batch's UPDATE ---
# The batch is one UPDATE; when it fails, or moves fewer rows than it
# should, the transaction is made again with one UPDATE per bead, so only
# that bead is affected. refused: the server refuses its row (the whole
# statement fails); unchanged: its row stays as it was (the UPDATE matches
# it but changes nothing, as a lost race does).
row_in_batch() { # refused|unchanged
  local how=$1 body
  t_new_db current dolt; t_agent --capacity 10
  t_env "$T_TMP/row.$how.db"
  local i
  for i in $(seq 1 10); do t_bead "r$i" "updated_at=UTC_TIMESTAMP() - INTERVAL $((100 - i)) MINUTE"; done
  t_sql "CALL DOLT_COMMIT('-m', 'fixture', '--author', 'Test <test@example.org>')" >/dev/null
  local seq0; seq0=$(t_sql "SELECT MAX(seq) FROM dolt_emul_commits")
  if [ "$how" = refused ]; then
    body="SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'row refused by a check'"
  else
    body="SET NEW.status = OLD.status, NEW.updated_at = OLD.updated_at, NEW.notes = OLD.notes, NEW.started_at = OLD.started_at"
  fi
  t_sql_root "$T_DB" <<SQL
DELIMITER //
CREATE TRIGGER row_in_batch BEFORE UPDATE ON issues FOR EACH ROW
BEGIN
  IF OLD.id = 'r5' AND OLD.status = 'open' THEN $body; END IF;
END//
SQL
  local redo0; redo0=$(grep -c "batch update did not move every bead" "$T_TMP/once.log" || true)
  BEADS_SCHED_LOG_LEVEL=debug t_once
  t_eq "[$how] the batch was made again, one update per bead" $((redo0 + 1)) \
    "$(grep -c "batch update did not move every bead" "$T_TMP/once.log" || true)"
  t_eq "[$how] the nine others POSTed, each once" "9 " "$(t_posts) $(posted_once)"
  t_eq "[$how] r5 not POSTed, left open without a claim note" "null open 0" \
    "$(t_posts '.by_bead.r5') $(status_of r5) $(t_notes_count r5 'auto-dispatcher claimed')"
  t_eq "[$how] nine dispatched notes" 9 "$(t_sql "SELECT count(*) FROM issues WHERE notes LIKE '%dispatched: job=%'")"
  local claims; claims=$(t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $seq0 AND message LIKE 'beads-sched: claim %'")
  t_eq "[$how] the nine claims in one commit naming them" "1 r1 r10 r2 r3 r4 r6 r7 r8 r9" \
    "$(grep -c . <<<"$claims") $(named "$claims" | sort | xargs)"
  if [ "$how" = refused ]; then
    t_match "[$how] the journal says why" "row refused by a check" "$(t_store "SELECT detail FROM journal WHERE bead_id='r5'")"
  else
    t_eq "[$how] r5's attempt is a lost race" lost_race "$(t_store "SELECT state FROM journal WHERE bead_id='r5'")"
  fi
  t_consistent "[$how]"
  t_agent_stop
}

# --- b) Dolt commit messages and authors ---
# The beads named in commit message MSG (after "beads-sched: VERB "), one a line.
named() { sed -E 's/^beads-sched: [a-z]+ //; s/ /\n/g' <<<"$1" | grep -v '^$' || true; }
commits() {
  t_new_db current dolt; t_agent --capacity 10
  t_env "$T_TMP/commits.db"
  export BEADS_SCHED_ACTOR="Batch Bot" BEADS_SCHED_ACTOR_EMAIL="batch@example.org"
  local i
  for i in $(seq 1 10); do t_bead "c$i"; done
  t_bead noac "acceptance_criteria=''"
  # The fixture's own writes, committed: from here on every write is the daemon's.
  t_sql "CALL DOLT_COMMIT('-m', 'fixture', '--author', 'Test <test@example.org>')" >/dev/null
  local seq0; seq0=$(t_sql "SELECT MAX(seq) FROM dolt_emul_commits")
  local call0; call0=$(t_sql "SELECT MAX(seq) FROM dolt_emul_calls")
  t_once
  t_eq "commits: ten dispatched" 10 "$(t_posts)"
  # Today: one commit per bead and write, "beads-sched: <verb> <id>".
  echo "# Dolt commits made by one cycle of 10 beads:"
  t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $seq0 ORDER BY seq" | sed 's/^/#   /'
  t_eq "commits: every DOLT_COMMIT call has -m, a beads-sched message, --author ACTOR <ACTOR_EMAIL>" "" \
    "$(t_sql "SELECT seq FROM dolt_emul_calls WHERE seq > $call0 AND proc = 'DOLT_COMMIT' AND NOT (arg1 = '-m'
             AND arg2 LIKE 'beads-sched: %' AND arg3 = '--author' AND arg4 = 'Batch Bot <batch@example.org>')" | xargs)"
  t_eq "commits: every commit's author is ACTOR <ACTOR_EMAIL>" "" \
    "$(t_sql "SELECT seq FROM dolt_emul_commits WHERE seq > $seq0 AND author <> 'Batch Bot <batch@example.org>'" | xargs)"
  t_eq "commits: no write left uncommitted" "$(t_sql "SELECT dolt_emul_version()")" \
    "$(t_sql "SELECT committed_version FROM dolt_emul_state")"
  t_eq "commits: every DOLT_COMMIT follows DOLT_ADD of issues and events" "" \
    "$(t_sql "SELECT c.seq FROM dolt_emul_calls c WHERE c.seq > $call0 AND c.proc = 'DOLT_COMMIT' AND
             NOT COALESCE((SELECT FIND_IN_SET('issues', GROUP_CONCAT(a.arg1)) AND FIND_IN_SET('events', GROUP_CONCAT(a.arg1))
                FROM dolt_emul_calls a WHERE a.proc = 'DOLT_ADD' AND a.seq < c.seq
                AND a.seq > (SELECT COALESCE(MAX(p.seq), $call0) FROM dolt_emul_calls p WHERE p.proc = 'DOLT_COMMIT' AND p.seq < c.seq)), 0)" | xargs)"
  local claims notes m b missing=""
  claims=$(t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $seq0 AND message LIKE 'beads-sched: claim %' ORDER BY seq")
  notes=$(t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $seq0 AND message LIKE 'beads-sched: note %'
                 AND message NOT REGEXP '(^| )noac( |$)' ORDER BY seq")
  for b in $(seq 1 10); do
    named "$claims" | grep -qx "c$b" || missing+=" claim:c$b"
    named "$notes" | grep -qx "c$b" || missing+=" note:c$b"
  done
  t_eq "commits: every claim and every dispatched note is in a commit naming its bead" "" "$(echo $missing)"
  t_eq "commits: the skip note's commit names its bead" 1 \
    "$(t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $seq0 AND message NOT LIKE 'beads-sched: claim %'" |
       while read -r m; do named "$m"; done | grep -cx noac)"
  t_eq "commits: no commit names a bead it did not write" "" \
    "$(while read -r m; do for b in $(named "$m"); do [[ $b =~ ^c([1-9]|10)$ ]] || echo "$b"; done; done <<<"$claims
$notes" | xargs)"
  if [ "$BATCH" = 1 ]; then
    t_eq "commits: one claim commit for the batch of ten" 1 "$(grep -c . <<<"$claims")"
    t_eq "commits: it names every claimed bead" "c1 c10 c2 c3 c4 c5 c6 c7 c8 c9" "$(named "$claims" | sort | xargs)"
    # Replies journaled together share their dispatched_at: one note commit per such batch.
    local batches; batches=$(t_store "SELECT count(DISTINCT dispatched_at) FROM journal WHERE state = 'dispatched'")
    [ "$(grep -c . <<<"$notes")" -le "$batches" ] \
      && t_ok "commits: one note commit per batch of replies ($(grep -c . <<<"$notes") for $batches)" \
      || t_fail "commits: $(grep -c . <<<"$notes") note commits for $batches batches of replies"
  else
    t_skip "commits: one claim commit per batch, one note commit per batch of replies"
  fi
  unset BEADS_SCHED_ACTOR BEADS_SCHED_ACTOR_EMAIL
  t_agent_stop
}

# Long ids: a batch's claim message is capped, and says so.
commits_capped() {
  if [ "$BATCH" != 1 ]; then
    t_skip "commits: a claim message naming many long ids is capped, with a marker"
    return
  fi
  t_new_db current dolt; t_agent --capacity 10
  t_env "$T_TMP/capped.db"
  local i ids=""
  for i in $(seq 1 10); do
    local id; id="long-$(printf 'x%.0s' $(seq 1 180))-$i"
    t_bead "$id"; ids+=" $id"
  done
  t_once
  t_eq "capped: ten dispatched" 10 "$(t_posts)"
  local msg; msg=$(t_sql "SELECT message FROM dolt_emul_commits WHERE message LIKE 'beads-sched: claim %'")
  t_eq "capped: one claim commit" 1 "$(grep -c . <<<"$msg")"
  [ "${#msg}" -lt $(( ${#ids} + 20 )) ] && t_ok "capped: the message is shorter than the ids (${#msg} bytes)" \
    || t_fail "capped: the message names all ids in full (${#msg} bytes)"
  t_match "capped: it names the first bead and marks the cap" "^beads-sched: claim long-x+-[0-9]+ .*(…|\.\.\.|more)" "$msg"
  t_agent_stop
}

# A reaper pass that releases several beads writes one commit for the pass.
reaper_pass() {
  if [ "$BATCH" != 1 ]; then
    t_skip "commits: one commit per reaper pass"
    return
  fi
  t_new_db current dolt; t_agent --capacity 10 --job-ms 200 --final-status failed
  t_env "$T_TMP/reap.db"
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1h BEADS_SCHED_DISPATCH_INTERVAL=1s
  local i
  for i in $(seq 1 5); do t_bead "r$i"; done
  t_once
  sleep 0.5 # every job fails
  local s0; s0=$(t_sql "SELECT MAX(seq) FROM dolt_emul_commits")
  "$BS_BIN" run 2>>"$T_TMP/reap.log" & local pid=$!
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state = 'retrying'\")\" = 5 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "reaper: five attempts released" 5 "$(t_store "SELECT count(*) FROM journal WHERE state = 'retrying'")"
  local msgs; msgs=$(t_sql "SELECT message FROM dolt_emul_commits WHERE seq > $s0 AND message LIKE 'beads-sched: release %'")
  t_eq "reaper: one release commit for the pass" 1 "$(grep -c . <<<"$msgs")"
  t_eq "reaper: it names the five beads" "r1 r2 r3 r4 r5" "$(named "$msgs" | sort | xargs)"
  unset BEADS_SCHED_REAP_INTERVAL BEADS_SCHED_RETRY_BACKOFF BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

# --- c) a crash inside and after a batch of ten, then a restart ---
crash_batch() { # point
  local point=$1 tag=${1//:/-}
  # Room for twenty: a released attempt's job may still hold a slot.
  t_new_db current dolt; t_agent --capacity 20
  t_env "$T_TMP/crash.$tag.$T_DB.db"
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_STALE_AFTER=30m
  export BEADS_SCHED_DISPATCH_INTERVAL=1s
  local i
  for i in $(seq 1 10); do t_bead "k$i" "updated_at=UTC_TIMESTAMP() - INTERVAL $((100 - i)) MINUTE"; done
  set +e
  BEADS_SCHED_CRASH_AT=$point "$BS_BIN" once 2>>"$T_TMP/crash.log"
  local rc=$?
  set -e
  t_eq "[$point] the process died there" 137 "$rc"
  # Every job the agent took starts with its claim note (the job id its
  # prompt gave), at once: STALE_AFTER is minutes in production, 5 s here,
  # and the replies of a batch of ten are journaled in more than one group,
  # so a crash between them leaves POSTs that reached the agent unjournaled.
  t_agent_claims
  # Restart and settle while the agents work, as in test_reaper.sh: attempts
  # whose POST never left are released once the bead has been quiet for
  # STALE_AFTER; an attempt whose 202 was lost is known by its agent's claim
  # note and never re-POSTed.
  # (5 s, not test_reaper.sh's 2 s: one round of ten agents noting takes
  # seconds on a loaded machine, and a quiet agent is taken for a stopped one.)
  export BEADS_SCHED_STALE_AFTER=5s
  "$BS_BIN" run 2>>"$T_TMP/crash.log" & local pid=$!
  t_agents_until 10 60
  t_agents_work 4
  kill -TERM "$pid"; wait "$pid" || true
  t_consistent "[$point]"
  [ "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")" = 10 ] ||
    t_store "SELECT bead_id, attempt, state, detail FROM journal ORDER BY bead_id, attempt" | sed 's/^/# journal: /'
  t_eq "[$point] every bead dispatched, or its agent's claim note seen" 10 \
    "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")"
  t_eq "[$point] one accepted POST per bead" "10 " "$(t_posts) $(posted_once)"
  t_eq "[$point] one agent run per bead" "" \
    "$(t_stats | jq -r '[.jobs[] | select(.status == "running" or .status == "queued") | .bead_id] | group_by(.) | map(select(length > 1) | .[0]) | join(" ")')"
  unset BEADS_SCHED_REAP_INTERVAL BEADS_SCHED_RETRY_BACKOFF BEADS_SCHED_STALE_AFTER BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

# --- d) a capped cycle's POSTs overlap the next cycle's claims ---
# With more free slots than one cycle takes (128), the next cycle starts as
# soon as the POSTs of the one before are out. The service counts a POST
# only once it has taken it, so the next cycle counts the POSTs still out
# against the free slots: the service's room is never overrun. (A POST the
# service has taken but whose answer is not read yet counts twice: the
# cycle takes fewer, never more, and the next round fills the rest.)
# Here the service takes each POST 600 ms after it arrives (and answers
# then), /health answers at once; 200 free slots, 250 beads. (It would
# queue whatever came beyond its room: an overrun shows as more than 200
# POSTs.)
overlap() {
  t_new_db current dolt; t_agent --capacity 200 --queue-limit 1000
  t_env "$T_TMP/overlap.db"
  t_fake config '{"latency_ms": 600, "latency_paths": ["execute"], "delay_before": true}'
  t_beads o 250
  local l0=0; [ -f "$T_TMP/once.log" ] && l0=$(wc -l < "$T_TMP/once.log")
  BEADS_SCHED_LOG_LEVEL=debug t_once
  local cycles; cycles=$(t_store "SELECT count(*) FROM journal GROUP BY created_at ORDER BY created_at" | xargs)
  t_match "overlap: two cycles, 128 then at most the 72 slots left" "^128 ([1-9]|[1-6][0-9]|7[0-2])$" "$cycles"
  t_eq "overlap: no POST beyond the service's room" true "$(t_stats | jq '.requests.execute <= 200 and .posts == .requests.execute')"
  t_eq "overlap: every POST journaled dispatched before \`once\` ended" "$(t_posts)" \
    "$(t_store "SELECT count(*) FROM journal WHERE state = 'dispatched'")"
  t_eq "overlap: the second cycle claimed while the first cycle's POSTs were out" 1 \
    "$(t_store "SELECT (SELECT MAX(created_at) FROM journal) < (SELECT MAX(dispatched_at) FROM journal
                 WHERE created_at = (SELECT MIN(created_at) FROM journal))")"
  t_eq "overlap: only the round's first cycle scans for beads to note as skipped" "1 0" \
    "$(tail -n +$((l0 + 1)) "$T_TMP/once.log" | grep -o 'msg="claim steps".*unready_scan=[01]' | grep -o '[01]$' | xargs)"
  t_once # the next round fills what is left of the room
  t_eq "overlap: then the service's 200 slots filled, each bead once" "200 " "$(t_posts) $(posted_once)"
  t_eq "overlap: 200 dispatched notes, 50 beads still open" "200 50" \
    "$(t_sql "SELECT count(*) FROM issues WHERE notes LIKE '%dispatched: job=%'") $(t_sql "SELECT count(*) FROM issues WHERE status = 'open'")"
  t_consistent "overlap"
  t_agent_stop
}

# A cycle of 16 or more builds its request bodies on a thread of their own
# while its claims are in Dolt: each prompt is still its own bead's, with
# its own dispatch id and attempt number (3 beads had an attempt before).
bodies_aside() {
  t_new_db current dolt; t_agent --capacity 40
  t_env "$T_TMP/aside.db"
  "$BS_BIN" migrate >/dev/null
  t_beads ba 20
  t_sql "UPDATE issues SET title = CONCAT('title of ', id), description = CONCAT('about ', id) WHERE id LIKE 'ba%'"
  local i
  for i in 1 2 3; do
    t_store "INSERT INTO journal (bead_id, attempt, dispatch_id, state, created_at, claimed_at, posting_at,
               finished_at, outcome) VALUES ('ba$i', 1, 'earlier-$i', 'retrying', 1, 1, 1, 2, 'retrying');
             INSERT INTO bead_state (bead_id, attempts) VALUES ('ba$i', 1)"
  done
  t_once
  t_eq "bodies aside: 20 dispatched in one cycle" "20 1" \
    "$(t_posts) $(t_store "SELECT count(DISTINCT created_at) FROM journal WHERE state = 'dispatched'")"
  local bad="" bead job did prompt want
  while IFS='|' read -r bead job did; do
    prompt=$(t_job_prompt "$job")
    case $bead in ba1 | ba2 | ba3) want="Attempt 2 of 3." ;; *) want="Attempt 1 of 3." ;; esac
    grep -qxF "Task id: $bead" <<<"$prompt" && grep -qxF "Title: title of $bead" <<<"$prompt" &&
      grep -qxF "about $bead" <<<"$prompt" && grep -qxF "Job id: $did" <<<"$prompt" &&
      grep -qxF "$want" <<<"$prompt" || bad="$bad $bead"
  done < <(t_store "SELECT bead_id, job_id, dispatch_id FROM journal WHERE state = 'dispatched'")
  t_eq "bodies aside: every prompt is its bead's, with its dispatch id and attempt number" "" "$bad"
  t_consistent "bodies aside"
  t_agent_stop
}

# --- e) the dispatched notes on a connection of their own ---
# A batch of dispatched notes is written on the notes worker's connection
# while the Dolt worker goes on with the next claims: each bead's claim and
# its note are two writes from two connections (the emulation's write log
# names each write's connection), and every bead still gets its note once.
# A note that fails there (1213 on its bead) is owed: the Dolt worker writes
# it once the bead takes writes again, and only then.
notes_beside() {
  t_new_db current dolt; t_agent --capacity 1000 --queue-limit 1000
  t_env "$T_TMP/beside.db"
  t_beads nb 200
  t_once
  t_eq "notes beside: 200 dispatched, each bead's note once" "200 200" \
    "$(t_posts) $(t_sql "SELECT count(*) FROM issues WHERE id LIKE 'nb%' AND notes LIKE '%dispatched: job=%'
                         AND notes NOT LIKE '%dispatched: job=%dispatched: job=%'")"
  t_eq "notes beside: each bead's claim and note, two writes from two connections" "" \
    "$(t_sql "SELECT row_id FROM dolt_emul_writes WHERE tbl = 'issues' AND op = 'U' AND row_id LIKE 'nb%'
              GROUP BY row_id HAVING COUNT(*) <> 2 OR COUNT(DISTINCT conn) <> 2" | xargs)"
  t_eq "notes beside: the claims from one connection, the notes from one other" "1 1 2" \
    "$(t_sql "SELECT COUNT(DISTINCT conn) FROM dolt_emul_writes w WHERE tbl = 'issues' AND op = 'U' AND row_id LIKE 'nb%'
              AND seq = (SELECT MIN(seq) FROM dolt_emul_writes v WHERE v.tbl = 'issues' AND v.op = 'U' AND v.row_id = w.row_id)") $(
     t_sql "SELECT COUNT(DISTINCT conn) FROM dolt_emul_writes w WHERE tbl = 'issues' AND op = 'U' AND row_id LIKE 'nb%'
              AND seq = (SELECT MAX(seq) FROM dolt_emul_writes v WHERE v.tbl = 'issues' AND v.op = 'U' AND v.row_id = w.row_id)") $(
     t_sql "SELECT COUNT(DISTINCT conn) FROM dolt_emul_writes WHERE tbl = 'issues' AND op = 'U' AND row_id LIKE 'nb%'")"
  t_consistent "notes beside"
  t_agent_stop

  t_new_db current dolt; t_agent --capacity 10
  t_env "$T_TMP/beside_owed.db"
  export BEADS_SCHED_REAP_INTERVAL=1s
  t_fake config '{"latency_ms": 1500, "latency_paths": ["execute"]}'
  t_beads nf 3
  "$BS_BIN" run 2>"$T_TMP/beside_owed.log" & local pid=$!
  t_wait 20 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state = 'posting'\" 2>/dev/null)\" = 3 ]" || true
  t_sql "INSERT INTO dolt_emul_fail (issue_id) VALUES ('nf2')"
  t_wait 20 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state = 'dispatched'\")\" = 3 ]" || true
  sleep 2 # two reap passes: the owed note still meets the 1213
  t_eq "notes beside: the refused note not written, the others are" "1 0 1" \
    "$(t_notes_count nf1 '^dispatched: job=') $(t_notes_count nf2 '^dispatched: job=') $(t_notes_count nf3 '^dispatched: job=')"
  t_match "notes beside: the refused note is logged as retried later" "could not add the dispatched notes; retried later" \
    "$(cat "$T_TMP/beside_owed.log")"
  t_sql "DELETE FROM dolt_emul_fail"
  t_wait 10 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket='$BS_TEST_MYSQL_DIR/mysqld.sock' -N '$T_DB' -e \"SELECT notes LIKE '%dispatched: job=%' FROM issues WHERE id = 'nf2'\")\" = 1 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_REAP_INTERVAL
  t_eq "notes beside: the owed note written once the bead takes writes" "1 1 1" \
    "$(t_notes_count nf1 '^dispatched: job=') $(t_notes_count nf2 '^dispatched: job=') $(t_notes_count nf3 '^dispatched: job=')"
  t_match "notes beside: the owed note names its job" "dispatched: job=$(t_store "SELECT job_id FROM journal WHERE bead_id = 'nf2'")" \
    "$(t_sql "SELECT notes FROM issues WHERE id = 'nf2'")"
  t_consistent "notes beside (owed)"
  t_agent_stop
}

overlap
bodies_aside
notes_beside
conflict_in_batch update
conflict_in_batch commit
row_in_batch refused
row_in_batch unchanged
commits
commits_capped
reaper_pass
for p in after_claiming_commit after_dolt_claim after_dolt_claim:5 after_claimed_commit \
         after_posting_commit after_post_response after_dispatched_commit; do
  crash_batch "$p"
done
for p in inside_claim_batch after_claim_batch after_notes_batch; do
  if [ "$BATCH" = 1 ]; then crash_batch "$p"; else t_skip "crash point $p (added with the batches)"; fi
done
t_done
