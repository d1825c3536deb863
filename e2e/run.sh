#!/usr/bin/env bash
# Run the end-to-end suite against the local world. Brings the world up if it is not running and,
# in that case only, takes it down again afterwards — also when a test fails or the run is
# interrupted. A world that was already up (after `make demo`) is left as it was.
# usage: e2e/run.sh [go test args...]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORLD=$REPO/e2e/world/world.sh
started=0
cleanup() {
  if [ $started = 1 ] && [ "${OSA_KEEP_WORLD:-0}" != 1 ]; then
    echo "e2e: stopping the world this run started (OSA_KEEP_WORLD=1 keeps it)"
    "$WORLD" down || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if "$WORLD" running; then
  echo "e2e: using the running local world"
else
  started=1
  "$WORLD" up
fi
cd "$REPO"
# The end-to-end tests live in package e2e (the helpers beside it have unit tests of their own).
go test -tags e2e -count=1 -timeout 60m "${@:--v}" ./e2e/
