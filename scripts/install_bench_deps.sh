#!/usr/bin/env bash
# System packages `make bench` drives: wrk, the HTTP load generator (Debian's package).
# Installed when missing; nothing is downloaded otherwise.
set -euo pipefail
command -v wrk >/dev/null && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install_bench_deps: wrk is missing and we are not root: apt-get install wrk" >&2
    exit 1
  fi
fi
echo "install_bench_deps: installing wrk from Debian's packages" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
