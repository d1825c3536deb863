#!/usr/bin/env bash
# Helm for the chart's end-to-end tests: built from its Go module (helm.sh/helm/v3) with
# `go install`, cached in $OSA_CACHE/helm-$HELM_VERSION/bin. Prints the binary's path.
#
# usage: e2e/world/helm.sh [path]
. "$(dirname "$0")/lib.sh"

HELM_VERSION=${HELM_VERSION:-v3.21.4}
HELM_BIN=$OSA_CACHE/helm-$HELM_VERSION/bin
if [ ! -x "$HELM_BIN/helm" ]; then
  mkdir -p "$HELM_BIN"
  log "building helm $HELM_VERSION from its Go module (once; ~3-6 minutes on 2 cores)" >&2
  CGO_ENABLED=0 GOBIN="$HELM_BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
echo "$HELM_BIN/helm"
