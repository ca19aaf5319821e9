#!/usr/bin/env bash
# System packages the test suite drives for real: Prometheus (PromQL collection), Chromium
# (the browser test) and nginx (gateway admission through auth_request). Installed from Debian's packages when missing; nothing is downloaded otherwise.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
# nginx lives in /usr/sbin, which a non-root PATH may leave out.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install_test_deps: missing ${missing[*]} and not root; those tests will be skipped (they fail under CI=true)." >&2
    exit 0
  fi
fi
echo "install_test_deps: installing ${missing[*]} from Debian's packages" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
# Debian's package starts a system Prometheus on :9090; the tests start their own on a free port.
$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
# Debian's nginx starts a system nginx on :80; the tests start their own on a free port.
$sudo systemctl disable --now nginx >/dev/null 2>&1 || true
[ -s /run/nginx.pid ] && $sudo /usr/sbin/nginx -s quit >/dev/null 2>&1 || true
