#!/usr/bin/env bash
# Deployment tooling for tests/deploy: the helm binary, built from the Go module proxy
# (no downloads from project sites). Pinned; a second run is a stamp check and exits.
# Binaries go to ~/.cache/prophoto-tools/bin (override: PROPHOTO_TOOLS_BIN); the tests look
# there, then on PATH. Cold build on the 2-core dev machine: about 1m45s.
set -euo pipefail

HELM_VERSION=v3.19.5
# The Kubernetes version helm assumes without --kube-version (lint deprecations, template):
# the one of the k8s.io modules HELM_VERSION is built against, as helm's own Makefile sets.
K8S_MAJOR=1 K8S_MINOR=34
BIN=${PROPHOTO_TOOLS_BIN:-$HOME/.cache/prophoto-tools/bin}
STAMP="$BIN/.helm-$HELM_VERSION-k8s$K8S_MAJOR.$K8S_MINOR"
mkdir -p "$BIN"

if [ -x "$BIN/helm" ] && [ -f "$STAMP" ]; then
  exit 0
fi
# Go's own installer puts it in /usr/local/go; a non-login shell may not have it on PATH.
command -v go >/dev/null || [ ! -x /usr/local/go/bin/go ] || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "setup: go is missing; install Go >= 1.24 to build helm $HELM_VERSION" >&2
  exit 1
fi
echo "setup: go install helm $HELM_VERSION (cold: about two minutes)" >&2
start=$(date +%s)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
GOBIN="$BIN" CGO_ENABLED=0 go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
rm -f "$BIN"/.helm-*
touch "$STAMP"
echo "setup: helm $HELM_VERSION built in $(( $(date +%s) - start )) s" >&2
"$BIN/helm" version --short >&2
