#!/usr/bin/env bash
# The demo that `make demo` runs once the world is up: builds and runs e2e/cmd/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o _output/bin/demo ./e2e/cmd/demo
go build -o _output/bin/openstack-provider ./cmd/openstack-provider
_output/bin/demo --out _output/demo-timeline.svg
