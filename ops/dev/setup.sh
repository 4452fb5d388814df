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

# The container image's tools (ops/packages/image.txt) are optional: where
# they cannot be installed, the image test is skipped, not failed.
mapfile -t image_packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' \
  "$(dirname "$0")/../packages/image.txt")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=() missing_image=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${image_packages[@]}"; do installed "$p" || missing_image+=("$p"); done

if [ ${#missing[@]} -eq 0 ] && [ ${#missing_image[@]} -eq 0 ]; then
  echo "setup: all $((${#packages[@]} + ${#image_packages[@]})) packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: ${missing_image[*]} not installed (run as root to install): the image test will be skipped" >&2
    exit 0
  fi
  echo "setup: missing packages (${missing[*]} ${missing_image[*]}); run this script as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # The Debian mariadb-server package tries to start a system service; in a
  # container without an init system that fails harmlessly. Tests start
  # their own private server.
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ${#missing_image[@]} -gt 0 ]; then
  echo "setup: installing ${missing_image[*]} (container image)"
  # With podman's recommended packages (crun, fuse-overlayfs, uidmap, ...):
  # the set the image build is known to work with.
  if ! apt-get install -y -qq "${missing_image[@]}"; then
    echo "setup: could not install ${missing_image[*]}: the container image will not be built and its test is skipped" >&2
  fi
fi
echo "setup: done"
