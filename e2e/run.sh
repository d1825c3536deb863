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
# The output is kept in _output/e2e.log, and a summary of the top-level tests follows it.
mkdir -p _output
set +e
go test -tags e2e -count=1 -timeout 60m "${@:--v}" ./e2e/ 2>&1 | tee _output/e2e.log
rc=${PIPESTATUS[0]}
set -e
if grep -q '^--- ' _output/e2e.log; then
  n() { grep -c "^--- $1: " _output/e2e.log || true; }
  echo "e2e summary: $(n PASS) passed, $(n FAIL) failed, $(n SKIP) skipped (go test exit $rc; log _output/e2e.log)"
  grep -E '^--- (FAIL|SKIP): ' _output/e2e.log | sed 's/^---/ /' || true
fi
exit "$rc"
