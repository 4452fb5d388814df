#!/usr/bin/env bash
# Assembles the runtime image's root file system in OUT from the stage it
# runs in (ops/Dockerfile, stage "rootfs": Debian with ops/packages/runtime.txt
# installed). Only what the daemon and an operator's `kubectl exec` use goes
# in: the beads-sched binary, the sqlite3 shell, busybox with the few applets
# ops/RUNBOOK.md calls (sh, ls, mv, tar for `kubectl cp`, ...), the shared
# libraries these load (ldd, and libmariadb's authentication plugins), CA
# certificates, OpenSSL's configuration, a few terminal descriptions, the
# copyright files of every package something was taken from, and a passwd
# and group file naming uid/gid 10001. No package manager, no perl, no
# coreutils, no documentation.
#
#   ops/image/rootfs.sh OUT UID
set -euo pipefail

die() { echo "rootfs.sh: $*" >&2; exit 2; }
[ $# -eq 2 ] || die "usage: ops/image/rootfs.sh OUT UID"
out=$1 uid=$2
[[ $uid =~ ^[1-9][0-9]*$ ]] || die "UID must be a number above 0, not '$uid'"
[ ! -e "$out" ] || die "$out exists"

# Applets of busybox the runbook uses (ops/RUNBOOK.md: backup, restore,
# "volume full"); kubectl cp needs tar.
APPLETS="sh ls cat cp mv rm mkdir df du grep sleep tar id env head tail wc"
BINARIES="/usr/local/bin/beads-sched /usr/bin/sqlite3 /usr/bin/busybox"
# ncurses-base's terminal descriptions (230 kB) for `kubectl exec -it`.
DATA="/etc/ssl/certs/ca-certificates.crt /usr/lib/ssl/openssl.cnf /etc/ssl/openssl.cnf
      /lib/terminfo"
PLUGINS=$(echo /usr/lib/*/libmariadb3/plugin)

mkdir -p "$out"
# Debian's merged /usr: the ELF interpreter's path (/lib64/ld-linux-x86-64.so.2
# on amd64) goes through these links.
for d in bin lib lib64 sbin; do
  [ -L "/$d" ] && ln -s "usr/$d" "$out/$d"
done

declare -A copied=()
# copy PATH: PATH into OUT at its canonical directory, keeping a symbolic
# link a link and following it to what it names.
copy() {
  local p=$1 dir
  dir=$(realpath -e "$(dirname "$p")") || die "$p: no such directory"
  p=$dir/$(basename "$p")
  [ -e "$p" ] || die "$p: not found"
  [ -z "${copied[$p]:-}" ] || return 0
  copied[$p]=1
  mkdir -p "$out$dir"
  cp -a "$p" "$out$dir/"
  if [ -L "$p" ]; then
    local t; t=$(readlink "$p")
    [[ $t == /* ]] || t=$dir/$t
    copy "$t"
  fi
}
# libs FILE: every shared library FILE loads, as ldd resolves it here.
libs() {
  local out_ldd
  out_ldd=$(ldd "$1") || die "ldd $1 failed"
  if grep -q 'not found' <<<"$out_ldd"; then die "$1: $(grep 'not found' <<<"$out_ldd")"; fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out_ldd"
}

files=()
for b in $BINARIES; do files+=("$b"); done
[ -d "$PLUGINS" ] || die "libmariadb's plugin directory not found (/usr/lib/*/libmariadb3/plugin)"
for f in "$PLUGINS"/*.so; do files+=("$f"); done
for f in "${files[@]}"; do
  copy "$f"
  for l in $(libs "$f"); do copy "$l"; done
done
for f in $DATA; do copy "$f"; done
for a in $APPLETS; do ln -s busybox "$out/usr/bin/$a"; done

# The copyright notice of every package a file came from.
# (dpkg knows files by the path the package ships, often /lib rather than
# /usr/lib.)
for p in "${!copied[@]}"; do
  dpkg -S "$p" 2>/dev/null || dpkg -S "${p#/usr}" 2>/dev/null || true
done | grep -v '^diversion' | sed 's/: .*//; s/, /\n/g' | sed 's/:.*//' | sort -u | while read -r pkg; do
  c=/usr/share/doc/$pkg/copyright
  if [ -f "$c" ]; then mkdir -p "$out/usr/share/doc/$pkg"; cp "$c" "$out/usr/share/doc/$pkg/"; fi
done

# Users: root, and the daemon's user (its home is the store's volume).
mkdir -p "$out/etc"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nbeads-sched:x:%s:%s:beads-sched:/var/lib/beads-sched:/usr/sbin/nologin\n' \
  "$uid" "$uid" >"$out/etc/passwd"
printf 'root:x:0:\nbeads-sched:x:%s:\n' "$uid" >"$out/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
# Mount points a container runtime fills (/proc, /dev, /run: the secrets;
# /tmp: SQLite's temporary files on an emptyDir) and the store's volume.
install -d -m 0755 "$out/proc" "$out/dev" "$out/run" "$out/root"
install -d -m 1777 "$out/tmp"
install -d -o "$uid" -g "$uid" -m 0750 "$out/var/lib/beads-sched"
