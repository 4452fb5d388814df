#!/usr/bin/env bash
# Private MariaDB 10.11 for the tests (the Dolt stand-in, CONTRACTS.md §6).
#
#   mariadb.sh start   DIR PORT   install (first time) and start; no-op if running
#   mariadb.sh restart DIR PORT   stop keeping the data, start again
#   mariadb.sh halt    DIR        stop keeping the data (start DIR PORT brings it back)
#   mariadb.sh stop    DIR        shut down and remove DIR
#   mariadb.sh status  DIR        exit 0 when the server answers
#
# Layout: DIR/data (datadir), DIR/mysqld.sock, DIR/mysqld.pid, DIR/mysqld.log,
# DIR/port. Listens on 127.0.0.1:PORT only. Accounts: root over the socket
# (unix_socket auth, we run as root), and beads / beads-test-pw
# (mysql_native_password, hosts '%' and 'localhost', all privileges).
# No --skip-grant-tables: passwords are checked as on the real server.
set -euo pipefail

MARKER=.bs-test-mariadb
BEADS_USER=beads
BEADS_PASSWORD=beads-test-pw
START_TIMEOUT_S=60
STOP_TIMEOUT_S=30

die() { echo "mariadb.sh: $*" >&2; exit 1; }
usage() { die "usage: mariadb.sh start|restart DIR PORT | stop|halt|status DIR"; }

find_tool() {
    local t
    for t in "$@"; do
        if command -v "$t" >/dev/null 2>&1; then command -v "$t"; return 0; fi
        if [ -x "/usr/sbin/$t" ]; then echo "/usr/sbin/$t"; return 0; fi
    done
    return 1
}

MARIADBD=$(find_tool mariadbd mysqld) || die "mariadbd not found (apt-get install mariadb-server)"
INSTALL_DB=$(find_tool mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
ADMIN=$(find_tool mariadb-admin mysqladmin) || die "mariadb-admin not found (apt-get install mariadb-client)"
CLIENT=$(find_tool mariadb mysql) || die "mariadb client not found (apt-get install mariadb-client)"

[ $# -ge 2 ] || usage
cmd=$1
DIR=$2
PORT=${3:-}
case "$DIR" in
    ""|/) die "refusing DIR '$DIR'" ;;
esac
# Absolute path: the server chdirs, and the socket path must stay valid.
DIR=$(realpath -m -- "$DIR")
[ "$DIR" != / ] || die "refusing DIR /"
SOCK=$DIR/mysqld.sock
PIDFILE=$DIR/mysqld.pid
LOG=$DIR/mysqld.log

admin() { "$ADMIN" --no-defaults --user=root --socket="$SOCK" --connect-timeout=2 "$@"; }
sql() { "$CLIENT" --no-defaults --user=root --socket="$SOCK" --batch "$@"; }

server_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

answers() { [ -S "$SOCK" ] && admin ping >/dev/null 2>&1; }

show_log() {
    echo "---- last lines of $LOG ----" >&2
    tail -n 40 "$LOG" >&2 2>/dev/null || echo "(no log)" >&2
    echo "----" >&2
}

# A directory we may wipe: empty, or one this script created.
check_owned() {
    if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ] && [ ! -f "$DIR/$MARKER" ]; then
        die "$DIR exists, is not empty and was not created by mariadb.sh; refusing to use it"
    fi
}

# A private tmpdir for the bootstrap too: with the shared /tmp, concurrent
# installs remove each other's temporary tables.
install_db() {
    [ -d "$DIR/data/mysql" ] && return 0
    rm -rf "$DIR/data"
    mkdir -p "$DIR/data" "$DIR/tmp"
    if ! "$INSTALL_DB" --no-defaults --user=root --datadir="$DIR/data" \
            --auth-root-authentication-method=socket --skip-test-db \
            --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
            --tmpdir="$DIR/tmp" >"$DIR/install.log" 2>&1; then
        echo "mariadb.sh: mariadb-install-db failed:" >&2
        tail -n 40 "$DIR/install.log" >&2
        exit 1
    fi
}

start_server() {
    [ -n "$PORT" ] || usage
    case "$PORT" in *[!0-9]*) die "bad port '$PORT'" ;; esac
    if answers; then
        echo "mariadb.sh: already running in $DIR"
        return 0
    fi
    check_owned
    mkdir -p "$DIR" "$DIR/tmp"
    touch "$DIR/$MARKER"
    install_db
    # A stale pid file or socket from a crash would confuse the checks below.
    if ! server_pid >/dev/null; then rm -f "$PIDFILE" "$SOCK" "$SOCK.lock"; fi
    echo "$PORT" >"$DIR/port"
    # setsid and all fds redirected: the server must not hold ctest's output
    # pipe open (ctest would wait for it) nor share its process group.
    setsid "$MARIADBD" --no-defaults --user=root \
        --datadir="$DIR/data" --tmpdir="$DIR/tmp" \
        --socket="$SOCK" --pid-file="$PIDFILE" --log-error="$LOG" \
        --bind-address=127.0.0.1 --port="$PORT" --skip-name-resolve \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
        --innodb-flush-log-at-trx-commit=2 --skip-log-bin \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
        --max-connections=300 \
        </dev/null >>"$DIR/mysqld.out" 2>&1 &
    local launcher=$!
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers; do
        if ! kill -0 "$launcher" 2>/dev/null && ! server_pid >/dev/null; then
            echo "mariadb.sh: server in $DIR exited during startup (port $PORT)" >&2
            show_log
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "mariadb.sh: server in $DIR did not answer within ${START_TIMEOUT_S}s" >&2
            show_log
            kill -9 "$launcher" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
    # Idempotent account setup (also after a restart).
    if ! sql <<EOF
CREATE USER IF NOT EXISTS '$BEADS_USER'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('$BEADS_PASSWORD');
CREATE USER IF NOT EXISTS '$BEADS_USER'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('$BEADS_PASSWORD');
GRANT ALL PRIVILEGES ON *.* TO '$BEADS_USER'@'%';
GRANT ALL PRIVILEGES ON *.* TO '$BEADS_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
    then
        echo "mariadb.sh: creating user $BEADS_USER failed" >&2
        show_log
        exit 1
    fi
    echo "mariadb.sh: started in $DIR on 127.0.0.1:$PORT (socket $SOCK)"
}

# Shuts the server down, keeping DIR.
stop_server() {
    local pid
    pid=$(server_pid) || pid=""
    if answers; then
        admin --shutdown-timeout="$STOP_TIMEOUT_S" shutdown >/dev/null 2>&1 || true
    fi
    if [ -n "$pid" ]; then
        local deadline=$((SECONDS + STOP_TIMEOUT_S))
        while kill -0 "$pid" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                echo "mariadb.sh: server $pid did not stop, killing it" >&2
                kill -9 "$pid" 2>/dev/null || true
                break
            fi
            if [ $((deadline - SECONDS)) -lt $((STOP_TIMEOUT_S - 10)) ]; then
                kill -TERM "$pid" 2>/dev/null || true
            fi
            sleep 0.2
        done
    fi
    rm -f "$PIDFILE" "$SOCK" "$SOCK.lock"
}

case "$cmd" in
    start)
        start_server
        ;;
    restart)
        [ -n "$PORT" ] || usage
        [ -f "$DIR/$MARKER" ] || die "$DIR holds no server started by mariadb.sh"
        stop_server
        start_server
        ;;
    halt)
        [ -f "$DIR/$MARKER" ] || die "$DIR holds no server started by mariadb.sh"
        stop_server
        ;;
    stop)
        if [ ! -d "$DIR" ]; then exit 0; fi
        check_owned
        stop_server
        rm -rf "$DIR"
        echo "mariadb.sh: stopped and removed $DIR"
        ;;
    status)
        answers
        ;;
    *)
        usage
        ;;
esac
