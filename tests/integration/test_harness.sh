#!/usr/bin/env bash
# The MariaDB harness scripts against the shared fixture server: start is
# idempotent, newdb.sh builds a usable database (older schema + Dolt
# emulation), beads can log in over TCP with its password and root cannot.
set -euo pipefail
H=$BS_SOURCE_DIR/tests/harness
DB=bs_sh_$$

fail() { echo "FAIL: $*" >&2; exit 1; }
q() {
    mariadb --no-defaults -h127.0.0.1 -P"$BS_TEST_MYSQL_PORT" -ubeads -pbeads-test-pw \
        --batch --skip-column-names "$DB" -e "$1"
}
cleanup() {
    mariadb --no-defaults -uroot --socket="$BS_TEST_MYSQL_SOCKET" -e "DROP DATABASE IF EXISTS $DB" || true
}
trap cleanup EXIT

out=$(bash "$H/mariadb.sh" start "$BS_TEST_MYSQL_DIR" "$BS_TEST_MYSQL_PORT")
[[ "$out" == *"already running"* ]] || fail "start on a running server: $out"
bash "$H/mariadb.sh" status "$BS_TEST_MYSQL_DIR" || fail "status"

bash "$H/newdb.sh" "$BS_TEST_MYSQL_DIR" "$DB" older dolt
[ "$(q 'SELECT dolt_version()')" = "2.0.3-emul" ] || fail "dolt_version"
[ "$(q "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = '$DB'
        AND table_name = 'issues' AND column_name = 'is_blocked'")" = 0 ] || fail "older schema has is_blocked"
h0=$(q 'SELECT dolt_hashof_db()')
q "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, created_at, updated_at)
   VALUES ('code-1', 't', '', '', 'ok', '', UTC_TIMESTAMP(), UTC_TIMESTAMP())"
[ "$(q 'SELECT dolt_hashof_db()')" != "$h0" ] || fail "hash did not change"
q "CALL DOLT_ADD('issues')" >/dev/null
q "CALL DOLT_COMMIT('-m', 'bd: create code-1', '--author', 'T <t@example.com>')" >/dev/null
if q "CALL DOLT_COMMIT('-m', 'again', '--author', 'T <t@example.com>')" 2>/tmp/bs_sh_err_$$; then
    fail "second commit should report nothing to commit"
fi
grep -q "nothing to commit" /tmp/bs_sh_err_$$ || fail "wrong error: $(cat /tmp/bs_sh_err_$$)"
rm -f /tmp/bs_sh_err_$$
[ "$(q 'SELECT COUNT(*) FROM dolt_emul_commits')" = 1 ] || fail "commit count"

# Two sessions writing different rows commit at the same time: both succeed,
# as on Dolt (B's transaction is open, with its write, while A commits).
q "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, created_at, updated_at)
   VALUES ('code-2', 't', '', '', 'ok', '', UTC_TIMESTAMP(), UTC_TIMESTAMP())"
q "CALL DOLT_COMMIT('-m', 'bd: create code-2', '--author', 'T <t@example.com>')" >/dev/null
q "START TRANSACTION; UPDATE issues SET notes = 'A' WHERE id = 'code-1'; DO SLEEP(1);
   CALL DOLT_COMMIT('-m', 'A', '--author', 'T <t@example.com>')" >/dev/null 2>/tmp/bs_sh_a_$$ & a=$!
sleep 0.3
q "START TRANSACTION; UPDATE issues SET notes = 'B' WHERE id = 'code-2'; DO SLEEP(2);
   CALL DOLT_COMMIT('-m', 'B', '--author', 'T <t@example.com>')" >/dev/null 2>/tmp/bs_sh_b_$$ || fail "B: $(cat /tmp/bs_sh_b_$$)"
wait $a || fail "A: $(cat /tmp/bs_sh_a_$$)"
rm -f /tmp/bs_sh_a_$$ /tmp/bs_sh_b_$$
[ "$(q "SELECT GROUP_CONCAT(notes ORDER BY id) FROM issues")" = "A,B" ] || fail "concurrent writes lost"
[ "$(q "SELECT GROUP_CONCAT(message ORDER BY seq) FROM dolt_emul_commits")" = "bd: create code-1,bd: create code-2,A,B" ] ||
    fail "concurrent commits: $(q 'SELECT GROUP_CONCAT(message ORDER BY seq) FROM dolt_emul_commits')"
[ "$(q 'SELECT dolt_emul_version() = committed_version FROM dolt_emul_state')" = 1 ] || fail "a write left uncommitted"

# Re-running newdb.sh gives a fresh database.
bash "$H/newdb.sh" "$BS_TEST_MYSQL_DIR" "$DB" current
[ "$(q 'SELECT COUNT(*) FROM issues')" = 0 ] || fail "newdb.sh did not recreate"
if q 'SELECT dolt_version()' 2>/dev/null; then fail "plain database has dolt_version"; fi

# Passwords are checked (no --skip-grant-tables).
if mariadb --no-defaults -h127.0.0.1 -P"$BS_TEST_MYSQL_PORT" -ubeads -pwrong -e 'SELECT 1' 2>/dev/null; then
    fail "wrong password accepted"
fi
if mariadb --no-defaults -h127.0.0.1 -P"$BS_TEST_MYSQL_PORT" -uroot -e 'SELECT 1' 2>/dev/null; then
    fail "root over TCP without a password accepted"
fi
echo "harness ok"
