#!/usr/bin/env bash
# Readiness parity with `bd ready` (bd 1.0.2, CONTRACTS.md section 4): a
# table of beads covering every rule, the set bd ready would offer written
# out by hand, checked against the dispatcher's choice (`once --dry-run`)
# and against explain's verdict (and the rule it names) for every bead, on
# the bd 1.0.x schema and the one before migration 0027, with and without
# the Dolt emulation.
source "$(dirname "$0")/lib.sh"

# t_dep ISSUE TARGET TYPE [METADATA]: ISSUE depends on TARGET.
t_dep() {
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_by, metadata)
         VALUES ('$1', '$2', '$3', 'test', '${4:-{\}}')"
}

# The table: bead | first failing rule in explain ("ready" when bd ready
# offers it and the dispatcher takes it). Set up below, row by row.
EXPECT=$(cat <<'EOF'
r-plain|ready
r-null-flags|ready
x-pinned|pinned
x-ephemeral|ephemeral
x-type-merge-request|issue type
x-type-gate|issue type
x-type-molecule|issue type
x-type-message|issue type
x-type-agent|issue type
x-type-role|issue type
x-type-rig|issue type
r-type-epic|ready
x-deferred|deferred
r-defer-past|ready
x-blocks-open|blocked
x-blocks-in-progress|blocked
x-blocks-custom-status|blocked
r-blocks-closed|ready
r-blocks-pinned|ready
r-blocks-missing|ready
x-conditional-blocks|blocked
r-conditional-closed|ready
x-waits-all-active-child|blocked
r-waits-all-children-closed|ready
r-waits-any-one-closed|ready
x-waits-any-none-closed|blocked
r-waits-no-children|ready
x-waits-spawner-closed-child-open|blocked
r-waits-only-pinned-children|ready
x-child-of-blocked|parent blocked
r-grandchild-of-blocked|ready
x-child-of-deferred|parent deferred
r-grandchild-of-deferred|ready
r-child-of-open-epic|ready
x-no-acceptance|acceptance criteria
x-human|assignee
x-in-progress|status
x-custom-status|status
x-closed|status
EOF
)

setup_table() {
  # Beads that others depend on, not dispatchable themselves.
  t_bead b-open "assignee='alice'"
  t_bead b-in-progress "assignee='alice'" "status='in_progress'"
  t_bead b-review "assignee='alice'" "status='review'"
  t_bead b-closed "assignee='alice'" "status='closed'"
  t_bead b-pinned "assignee='alice'" "status='pinned'"
  t_sql "INSERT INTO custom_statuses (name, category) VALUES ('review', 'active')"

  t_bead r-plain
  t_bead r-null-flags "pinned=NULL" "ephemeral=NULL"
  t_bead x-pinned "pinned=1"
  t_bead x-ephemeral "ephemeral=1"
  local ty
  for ty in merge-request gate molecule message agent role rig; do t_bead "x-type-$ty" "issue_type='$ty'"; done
  t_bead r-type-epic "issue_type='epic'"
  t_bead x-deferred "defer_until=UTC_TIMESTAMP() + INTERVAL 1 DAY"
  t_bead r-defer-past "defer_until=UTC_TIMESTAMP() - INTERVAL 1 MINUTE"

  t_bead x-blocks-open;           t_dep x-blocks-open b-open blocks
  t_bead x-blocks-in-progress;    t_dep x-blocks-in-progress b-in-progress blocks
  t_bead x-blocks-custom-status;  t_dep x-blocks-custom-status b-review blocks
  t_bead r-blocks-closed;         t_dep r-blocks-closed b-closed blocks
  t_bead r-blocks-pinned;         t_dep r-blocks-pinned b-pinned blocks
  t_bead r-blocks-missing;        t_dep r-blocks-missing no-such-bead blocks
  t_bead x-conditional-blocks;    t_dep x-conditional-blocks b-open conditional-blocks
  t_bead r-conditional-closed;    t_dep r-conditional-closed b-closed conditional-blocks
  # A blocks row points the other way from a closed bead: never blocks it.
  t_dep b-closed r-plain blocks

  # waits-for: the spawner's direct children decide, not the spawner.
  t_bead sp-a "assignee='alice'"                       # children: one closed, one open
  t_bead sp-a-c1 "assignee='alice'" "status='closed'"; t_dep sp-a-c1 sp-a parent-child
  t_bead sp-a-c2 "assignee='alice'";                   t_dep sp-a-c2 sp-a parent-child
  t_bead sp-b "assignee='alice'"                       # children: all closed
  t_bead sp-b-c1 "assignee='alice'" "status='closed'"; t_dep sp-b-c1 sp-b parent-child
  t_bead sp-c "assignee='alice'"                       # children: none closed
  t_bead sp-c-c1 "assignee='alice'";                   t_dep sp-c-c1 sp-c parent-child
  t_bead sp-c-c2 "assignee='alice'" "status='in_progress'"; t_dep sp-c-c2 sp-c parent-child
  t_bead sp-d "assignee='alice'"                       # no children at all
  t_bead sp-e "assignee='alice'" "status='closed'"     # closed, one child open
  t_bead sp-e-c1 "assignee='alice'";                   t_dep sp-e-c1 sp-e parent-child
  t_bead sp-f "assignee='alice'"                       # only a pinned child
  t_bead sp-f-c1 "assignee='alice'" "status='pinned'"; t_dep sp-f-c1 sp-f parent-child
  t_bead x-waits-all-active-child;         t_dep x-waits-all-active-child sp-a waits-for
  t_bead r-waits-all-children-closed;      t_dep r-waits-all-children-closed sp-b waits-for '{"gate":"all-children"}'
  t_bead r-waits-any-one-closed;           t_dep r-waits-any-one-closed sp-a waits-for '{"gate":"any-children"}'
  t_bead x-waits-any-none-closed;          t_dep x-waits-any-none-closed sp-c waits-for '{"gate":"any-children"}'
  t_bead r-waits-no-children;              t_dep r-waits-no-children sp-d waits-for
  t_bead x-waits-spawner-closed-child-open; t_dep x-waits-spawner-closed-child-open sp-e waits-for
  t_bead r-waits-only-pinned-children;     t_dep r-waits-only-pinned-children sp-f waits-for

  # Parent-child, depth 1 and 2: bd excludes the direct children of a blocked
  # or deferred parent only.
  t_bead ep-blocked "assignee='alice'" "issue_type='epic'"; t_dep ep-blocked b-open blocks
  t_bead x-child-of-blocked;          t_dep x-child-of-blocked ep-blocked parent-child
  t_bead r-grandchild-of-blocked;     t_dep r-grandchild-of-blocked x-child-of-blocked parent-child
  t_bead ep-deferred "assignee='alice'" "issue_type='epic'" "defer_until=UTC_TIMESTAMP() + INTERVAL 2 DAY"
  t_bead x-child-of-deferred;         t_dep x-child-of-deferred ep-deferred parent-child
  t_bead r-grandchild-of-deferred;    t_dep r-grandchild-of-deferred x-child-of-deferred parent-child
  t_bead ep-open "assignee='alice'" "issue_type='epic'"
  t_bead r-child-of-open-epic;        t_dep r-child-of-open-epic ep-open parent-child

  # This project's own rules.
  t_bead x-no-acceptance "acceptance_criteria=' \n '"
  t_bead x-human "assignee='alice'"
  t_bead x-in-progress "status='in_progress'" "updated_at=UTC_TIMESTAMP()"
  t_bead x-custom-status "status='review'"
  t_bead x-closed "status='closed'"
}

parity() { # schema [dolt]
  t_new_db "$@"; t_agent --capacity 100
  t_env "$T_TMP/parity.$T_DB.db"
  local v="$*" want got id rule out first
  setup_table
  want=$(grep '|ready$' <<<"$EXPECT" | cut -d'|' -f1 | sort | xargs)
  [ "$(wc -w <<<"$want")" -ge 15 ] || t_fail "[$v] the table lost its ready beads"
  got=$(t_once --dry-run | sed -n 's/^dry-run: would dispatch \([^ ]*\) .*/\1/p' | sort | xargs)
  t_eq "[$v] dispatcher (once --dry-run) offers exactly what bd ready would" "$want" "$got"
  local bad=""
  while IFS='|' read -r id rule; do
    out=$("$BS_BIN" explain "$id" --json 2>>"$T_TMP/explain.err")
    first=$(jq -r '[.rules[] | select(.ok == false) | .rule][0] // "ready"' <<<"$out")
    [ "$first" = "$rule" ] || bad+=" $id($first, want $rule)"
  done <<<"$EXPECT"
  t_eq "[$v] explain names the same verdict and rule for all $(wc -l <<<"$EXPECT") beads" "" "$bad"
  # explain names the blocker, and for waits-for the spawner and its active children.
  out=$("$BS_BIN" explain x-blocks-open | tail -1)
  t_eq "[$v] explain blocks" "verdict: not dispatched: blocked: blocks: b-open (open)" "$out"
  out=$("$BS_BIN" explain x-waits-any-none-closed | tail -1)
  t_match "[$v] explain waits-for: spawner and active children" \
    "^verdict: not dispatched: blocked: waits-for sp-c \(gate any-children, none closed\): 2 active children: sp-c-c1, sp-c-c2$" "$out"
  out=$("$BS_BIN" explain x-child-of-blocked | tail -1)
  t_eq "[$v] explain child of blocked" "verdict: not dispatched: parent blocked: parent ep-blocked is blocked (by b-open)" "$out"
  out=$("$BS_BIN" explain x-child-of-deferred | tail -1)
  t_eq "[$v] explain child of deferred" "verdict: not dispatched: parent deferred: parent ep-deferred is deferred into the future" "$out"
  out=$("$BS_BIN" explain r-null-flags)
  t_match "[$v] explain: NULL pinned counts as 0" "pinned +pass +pinned=NULL \(counts as 0\)" "$out"
  # The real dispatch takes the same set.
  t_once
  got=$(t_sql "SELECT id FROM issues WHERE status = 'in_progress' AND assignee = 'agent' AND id <> 'x-in-progress' ORDER BY id" | xargs)
  t_eq "[$v] a real cycle dispatches the same set" "$want" "$got"
  t_agent_stop
}

# No statement the daemon runs against Dolt has a correlated EXISTS.
no_exists() {
  t_new_db current; t_agent --capacity 100
  t_env "$T_TMP/noexists.$T_DB.db"
  setup_table
  t_sql_root -e "SET GLOBAL general_log_file = '$T_TMP/general.log'; SET GLOBAL log_output = 'FILE'; SET GLOBAL general_log = 1"
  t_once --dry-run >/dev/null
  "$BS_BIN" explain x-child-of-blocked >/dev/null
  t_sql_root -e "SET GLOBAL general_log = 0"
  # Only this database's sessions (other tests share the server).
  awk -v db="$T_DB" '
    { line = $0; sub(/^[0-9]+ +[0-9:]+/, "", line); split(line, f, " ") }
    f[2] == "Connect" && index(line, " on " db " ") { mine[f[1]] = 1 }
    (f[1] in mine) { print line }' "$T_TMP/general.log" >"$T_TMP/mine.log"
  t_match "the general log has this database's statements" "FROM issues" "$(cat "$T_TMP/mine.log")"
  local n
  n=$(grep -ciE "\bEXISTS *\(" "$T_TMP/mine.log" || true)
  t_eq "no EXISTS subquery in any statement the daemon ran" 0 "$n"
  t_match "the blocked set comes from a single-table read of dependencies" \
    "SELECT issue_id, depends_on_id, type, metadata FROM dependencies WHERE type IN" "$(cat "$T_TMP/mine.log")"
  t_match "blocked beads are excluded with NOT IN lists" "AND id NOT IN \(" "$(cat "$T_TMP/mine.log")"
  t_agent_stop
}

parity current
parity older
parity current dolt
parity older dolt
no_exists
t_done
