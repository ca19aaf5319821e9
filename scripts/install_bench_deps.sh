#!/usr/bin/env bash
# System packages `make bench` drives: wrk, the HTTP load generator, and nginx (the gateway section: the
# shipped auth_request config in front of an upstream), both Debian's packages.
# Installed when missing; nothing is downloaded otherwise.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
# nginx lives in /usr/sbin, which a non-root PATH may leave out.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install_bench_deps: ${missing[*]} missing and we are not root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install_bench_deps: installing ${missing[*]} from Debian's packages" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's nginx starts a system nginx on :80; the bench starts its own on free ports.
if [[ " ${missing[*]} " == *" nginx "* ]]; then
  $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  [ -s /run/nginx.pid ] && $sudo /usr/sbin/nginx -s quit >/dev/null 2>&1 || true
fi
