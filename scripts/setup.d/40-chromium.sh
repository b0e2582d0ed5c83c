#!/usr/bin/env bash
# The status dashboard's browser test: Debian's chromium, driven by the Python playwright
# package (never `playwright install`: its browser builds come from a project CDN).
# Idempotent: a second run is one dpkg check.
set -euo pipefail

if dpkg -s chromium >/dev/null 2>&1 && [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "setup: apt-get install chromium (status dashboard browser test)" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version >&2
