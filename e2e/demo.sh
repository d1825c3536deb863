#!/usr/bin/env bash
# The demo that `make demo` runs once the world is up: builds and runs e2e/cmd/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o _output/bin/demo ./e2e/cmd/demo
# openstack-provider runs on the real node from the product's image: the one of this tree.
make images >_output/demo-images.log 2>&1 || { tail -20 _output/demo-images.log; exit 1; }
e2e/world/realnode.sh images >>_output/demo-images.log 2>&1 || { tail -20 _output/demo-images.log; exit 1; }
for b in connection-agent connection-metrics-adapter; do go build -o _output/bin/$b ./cmd/$b; done
_output/bin/demo --out _output/demo-timeline.svg
