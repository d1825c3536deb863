#!/usr/bin/env bash
# helm-docs, which writes the chart's README.md from Chart.yaml, README.md.gotmpl and the
# `# --` comments of values.yaml: built from its Go module with `go install`, cached in
# $OSA_CACHE/helm-docs-$HELM_DOCS_VERSION/bin. Prints the binary's path.
#
# usage: e2e/world/helm-docs.sh
. "$(dirname "$0")/lib.sh"

HELM_DOCS_VERSION=${HELM_DOCS_VERSION:-v1.14.2}
BIN=$OSA_CACHE/helm-docs-$HELM_DOCS_VERSION/bin
if [ ! -x "$BIN/helm-docs" ]; then
  mkdir -p "$BIN"
  log "building helm-docs $HELM_DOCS_VERSION from its Go module (once; ~20 s)" >&2
  CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION" >&2
fi
echo "$BIN/helm-docs"
