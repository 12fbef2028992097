#!/usr/bin/env bash
# Makes sure a Chromium for the dashboard test exists: Debian's package (the test drives it
# with playwright-core; browsers are never downloaded by a test tool). Idempotent and fast
# when it is already installed. Set CHROMIUM_PATH to use another binary.
set -euo pipefail
browser="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ -x "$browser" ]]; then
  exit 0
fi
if [[ -n "${CHROMIUM_PATH:-}" ]]; then
  echo "browser: CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
  exit 1
fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: /usr/bin/chromium is missing; install Debian's chromium package (needs root and apt-get)" >&2
  exit 1
fi
echo "browser: installing Debian's chromium package for the dashboard test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
echo "browser: $(/usr/bin/chromium --version)"
