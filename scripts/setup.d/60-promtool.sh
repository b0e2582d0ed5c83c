#!/usr/bin/env bash
# promtool for tests/deploy/test_alerts.py (`promtool check rules`, `promtool test rules` on the
# chart's alert rules), built from the Go module proxy like helm (no downloads from project
# sites). Pinned; a second run is a stamp check and exits. Goes to ~/.cache/prophoto-tools/bin
# (override: PROPHOTO_TOOLS_BIN); the tests look there, then on PATH.
# The Go module github.com/prometheus/prometheus tags Prometheus 3.Y.Z as v0.3YY.Z.
# -tags remove_all_sd leaves out the service-discovery plugins (AWS, Azure, GCE, ...): rule
# checks and rule unit tests do not use them, and they are most of a cold build. Cold build
# (empty module and build caches) on the 2-core dev machine: 442 s, with tests running beside
# it; without the tag it had not finished after 11 minutes.
set -euo pipefail

PROMETHEUS_MODULE_VERSION=v0.316.0
PROMETHEUS_VERSION=3.16.0
BIN=${PROPHOTO_TOOLS_BIN:-$HOME/.cache/prophoto-tools/bin}
STAMP="$BIN/.promtool-$PROMETHEUS_MODULE_VERSION"
mkdir -p "$BIN"

if [ -x "$BIN/promtool" ] && [ -f "$STAMP" ]; then
  exit 0
fi
command -v go >/dev/null || [ ! -x /usr/local/go/bin/go ] || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "setup: go is missing; install Go >= 1.26.7 to build promtool $PROMETHEUS_VERSION" >&2
  exit 1
fi
echo "setup: go install promtool $PROMETHEUS_VERSION" >&2
start=$(date +%s)
v=github.com/prometheus/common/version
ldflags="-s -w -X $v.Version=$PROMETHEUS_VERSION -X $v.Branch=module-proxy"
GOBIN="$BIN" CGO_ENABLED=0 go install -tags remove_all_sd -ldflags "$ldflags" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
rm -f "$BIN"/.promtool-*
touch "$STAMP"
echo "setup: promtool $PROMETHEUS_VERSION built in $(( $(date +%s) - start )) s" >&2
"$BIN/promtool" --version 2>&1 | head -1 >&2
