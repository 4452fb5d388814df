#!/usr/bin/env bash
# Installs every Debian package beads-sched needs to build, test and run its
# demo. Idempotent: installs only what is missing. Run as root.
set -euo pipefail

# What the build needs is listed once, in ops/packages/build.txt, shared with
# the container image (ops/Dockerfile); the rest is for tests and the demo.
mapfile -t build_packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' \
  "$(dirname "$0")/../packages/build.txt")
packages=(
  "${build_packages[@]}"
  libcmocka-dev
  mariadb-server mariadb-client sqlite3 curl jq procps
  clang libclang-rt-14-dev   # libFuzzer targets (tests/fuzz)
  prometheus                 # promtool checks the /metrics text format
  python3 python3-yaml       # deployment consistency tests parse the YAML
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages (${missing[*]}); run this script as root" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The Debian mariadb-server package tries to start a system service; in a
# container without an init system that fails harmlessly. Tests start their
# own private server.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
