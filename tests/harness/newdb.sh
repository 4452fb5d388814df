#!/usr/bin/env bash
# Creates a fresh test database on a server started by mariadb.sh.
#
#   newdb.sh DIR DBNAME current|older [dolt]
#
# Drops DBNAME if it exists, creates it (utf8mb4_bin: ids compare byte-wise
# as on Dolt), loads tests/fixtures/schema_<current|older>.sql and, with
# "dolt", tests/fixtures/dolt_emulation.sql. Connects as root over
# DIR/mysqld.sock. The daemon connects as beads / beads-test-pw over TCP:
#   mysql://beads:beads-test-pw@127.0.0.1:$(cat DIR/port)/DBNAME
set -euo pipefail

die() { echo "newdb.sh: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "usage: newdb.sh DIR DBNAME current|older [dolt]"
DIR=$1 DB=$2 SCHEMA=$3 EMUL=${4:-}
FIXTURES=$(cd "$(dirname "${BASH_SOURCE[0]}")/../fixtures" && pwd)
case "$SCHEMA" in current|older) ;; *) die "schema must be current or older" ;; esac
case "$EMUL" in ""|dolt) ;; *) die "fourth argument must be 'dolt' or absent" ;; esac
[[ "$DB" =~ ^[A-Za-z0-9_]+$ ]] || die "database name must match [A-Za-z0-9_]+"
SOCK=$DIR/mysqld.sock
[ -S "$SOCK" ] || die "no server socket at $SOCK (run mariadb.sh start first)"

sql() { mariadb --no-defaults --user=root --socket="$SOCK" --batch "$@"; }
sql -e "DROP DATABASE IF EXISTS \`$DB\`; CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
sql "$DB" <"$FIXTURES/schema_$SCHEMA.sql"
if [ "$EMUL" = dolt ]; then
    sql "$DB" <"$FIXTURES/dolt_emulation.sql"
fi
