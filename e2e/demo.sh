#!/usr/bin/env bash
# The demo that `make demo` runs once the world is up: builds and runs e2e/cmd/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o _output/bin/demo ./e2e/cmd/demo
for b in openstack-provider connection-agent connection-metrics-adapter; do go build -o _output/bin/$b ./cmd/$b; done
_output/bin/demo --out _output/demo-timeline.svg
