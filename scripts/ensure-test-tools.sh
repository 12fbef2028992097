#!/usr/bin/env bash
# Makes sure the real tools the tests run exist: Debian's chromium (the dashboard tests drive it
# with playwright-core; browsers are never downloaded by a test tool) and Debian's prometheus
# package (prometheus and promtool, for the metrics and alert-rule tests). Idempotent, and fast
# when both are installed. Set CHROMIUM_PATH to use another browser binary.
set -euo pipefail
browser="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ -n "${CHROMIUM_PATH:-}" && ! -x "$browser" ]]; then
  echo "test tools: CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
  exit 1
fi
missing=()
[[ -x "$browser" ]] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools: missing ${missing[*]}; install Debian's packages of that name (needs root and apt-get)" >&2
  exit 1
fi
echo "test tools: installing Debian's ${missing[*]} for the dashboard and Prometheus tests"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
