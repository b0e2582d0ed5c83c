#!/usr/bin/env bash
# promtool for tests/deploy/test_alerts.py (`promtool check rules`, `promtool test rules` on the
# chart's alert rules): Debian's own build (package prometheus, 2.42 on bookworm, which has
# keep_firing_for), taken out of the .deb with dpkg -x: no service installed or started, and
# seconds instead of the 7 minutes a cold `go install` of promtool 3.x took on this machine.
# Goes to ~/.cache/prophoto-tools/bin (override: PROPHOTO_TOOLS_BIN); the tests look there,
# then on PATH. A second run is a stamp check and exits.
set -euo pipefail

BIN=${PROPHOTO_TOOLS_BIN:-$HOME/.cache/prophoto-tools/bin}
STAMP="$BIN/.promtool-debian"
mkdir -p "$BIN"
if [ -x "$BIN/promtool" ] && [ -f "$STAMP" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download prometheus >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  apt-get download prometheus >/dev/null
fi
dpkg -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$BIN/promtool"
rm -f "$BIN"/.promtool-*
touch "$STAMP"
echo "setup: $("$BIN/promtool" --version 2>&1 | head -1) (Debian package prometheus)" >&2
