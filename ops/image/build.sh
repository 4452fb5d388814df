#!/usr/bin/env bash
# Builds the container image without a registry and without a Docker daemon:
# Debian's debootstrap makes the bookworm base from the Debian mirror this
# machine's apt already uses, podman imports it under the names ops/Dockerfile
# starts from (debian:bookworm, debian:bookworm-slim), and podman builds
# ops/Dockerfile into beads-sched:<version>. Nothing is downloaded but
# Debian packages. Run as root (debootstrap, podman's image store).
#
#   ops/image/build.sh [--tag NAME:TAG]
#
# The base is kept as a tar file in BEADS_SCHED_IMAGE_CACHE (default
# /var/cache/beads-sched-image, or $XDG_CACHE_HOME/beads-sched-image when
# that is set), so only the first run on a machine runs debootstrap; podman
# keeps the build's layers, so an unchanged tree rebuilds in seconds.
# DEBIAN_MIRROR overrides the mirror read from /etc/apt/sources.list{,.d/*}.
# Prints the image's size and the version its binary reports.
set -euo pipefail

die() { echo "image/build.sh: $*" >&2; exit 2; }
say() { echo "image/build.sh: $*"; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=bookworm
tag=
while [ $# -gt 0 ]; do
  case $1 in
    --tag) [ $# -ge 2 ] || die "--tag needs NAME:TAG"; tag=$2; shift ;;
    *) die "unknown argument '$1' (usage: ops/image/build.sh [--tag NAME:TAG])" ;;
  esac
  shift
done
version=$(sed -n 's/^project(beads-sched VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$version" ] || die "no project version in $SRC/CMakeLists.txt"
tag=${tag:-beads-sched:$version}

command -v podman >/dev/null || die "podman is not installed (apt-get install podman)"
[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap and podman's image mount need it"

# The mirror and the security archive of SUITE, as apt's sources name them:
# one-line "deb [options] URI SUITE COMPONENTS" lists and deb822 .sources
# stanzas alike. Prints "URI SUITE" pairs.
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed 's/#.*//; s/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; fields may be folded.
    awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no") { n = split(uris, u, " "); m = split(suites, s, " ");
                              for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j] } types = uris = suites = enabled = "" }
         /^[[:space:]]*#/ { next }
         /^[[:space:]]*$/ { flush(); next }
         { line = $0; sub(/#.*/, "", line) }
         tolower(line) ~ /^types:/   { key = "t"; sub(/^[^:]*:/, "", line); types = line; next }
         tolower(line) ~ /^uris:/    { key = "u"; sub(/^[^:]*:/, "", line); uris = line; next }
         tolower(line) ~ /^suites:/  { key = "s"; sub(/^[^:]*:/, "", line); suites = line; next }
         tolower(line) ~ /^enabled:/ { key = ""; sub(/^[^:]*:[[:space:]]*/, "", line); enabled = tolower(line); next }
         /^[A-Za-z-]+:/ { key = ""; next }
         /^[[:space:]]/ { if (key == "t") types = types " " line; else if (key == "u") uris = uris " " line; else if (key == "s") suites = suites " " line }
         END { flush() }' "$f"
  done
}
mirror_for() { apt_sources | awk -v s="$1" '$2 == s { print $1; exit }'; }

base_ready() { podman image exists debian:$SUITE && podman image exists debian:$SUITE-slim; }

make_base() {
  local cache=${BEADS_SCHED_IMAGE_CACHE:-${XDG_CACHE_HOME:+$XDG_CACHE_HOME/beads-sched-image}}
  cache=${cache:-/var/cache/beads-sched-image}
  local tarball=$cache/debian-$SUITE-minbase.tar
  mkdir -p "$cache"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    local mirror=${DEBIAN_MIRROR:-$(mirror_for "$SUITE")}
    [ -n "$mirror" ] || die "no Debian mirror for '$SUITE' in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set DEBIAN_MIRROR)"
    local updates security
    updates=$(mirror_for "$SUITE-updates")
    security=$(mirror_for "$SUITE-security")
    local root=$cache/root.$$
    rm -rf "$root"
    say "debootstrap --variant=minbase $SUITE from $mirror (once; cached in $cache)"
    local t0=$SECONDS
    if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
      tail -20 "$cache/debootstrap.log" >&2
      rm -rf "$root"
      die "debootstrap failed (log: $cache/debootstrap.log)"
    fi
    # The image's apt gets the archives this machine's apt has: the release
    # and, where listed, its updates and its security fixes.
    {
      echo "deb $mirror $SUITE main"
      [ -z "$updates" ] || echo "deb $updates $SUITE-updates main"
      [ -z "$security" ] || echo "deb $security $SUITE-security main"
    } >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    say "base root file system made in $((SECONDS - t0)) s: $(du -h "$tarball" | cut -f1)"
  fi
  podman import --quiet "$tarball" debian:$SUITE >/dev/null
  podman tag debian:$SUITE debian:$SUITE-slim
  say "imported $tarball as debian:$SUITE and debian:$SUITE-slim"
}

base_ready || make_base

say "podman build -t $tag (ops/Dockerfile)"
t0=$SECONDS
podman build --isolation=chroot --pull=never -f "$SRC/ops/Dockerfile" -t "$tag" "$SRC"
built=$((SECONDS - t0))

size=$(podman image inspect --format '{{.Size}}' "$tag")
# The binary's version, run from the image's own root as the image's user.
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
entry=$(podman image inspect --format '{{index .Config.Entrypoint 0}}' "$tag")
root=$(podman image mount "$tag")
status=0
got=$(chroot --userspec="$user" "$root" "$entry" version 2>&1) || status=$?
podman image unmount "$tag" >/dev/null
[ $status -eq 0 ] || die "$entry version in the image failed: $got"
say "built $tag in $built s: $(awk -v b="$size" 'BEGIN { printf "%.1f MB (%d bytes)", b / 1e6, b }'), $got"
