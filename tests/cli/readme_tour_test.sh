#!/usr/bin/env bash
# README.md's "A short tour", run as written: the ```sh block that starts with the DALA_PASSPHRASE export is
# extracted and run with `set -euo pipefail` in an empty directory (HOME too), with BIN_DIR on PATH. Every
# line must succeed, and the desk must end with every report verified and none failed.
# Usage: readme_tour_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
SRC=$(cd "$1" && pwd)
BIN=$(cd "$2" && pwd)
WORK=$(mktemp -d)
cleanup() {
  # The tour stops its server itself; if it failed half-way, stop what it started.
  for p in $(pgrep -f "dala-server run --data srv" || true); do  # only the tour's own server
    [ "$(readlink "/proc/$p/cwd" 2>/dev/null)" = "$WORK/cwd" ] && kill "$p" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
python3 "$SRC/tests/bindings/extract_sample.py" "$SRC/README.md" sh "export DALA_PASSPHRASE=" "$WORK/tour.sh"
mkdir "$WORK/home" "$WORK/cwd"
cd "$WORK/cwd"
if ! HOME=$WORK/home PATH="$BIN:$PATH" timeout 300 bash -euo pipefail "$WORK/tour.sh" >"$WORK/out" 2>&1; then
  echo "FAIL: the README tour stopped:"; tail -30 "$WORK/out"; exit 1
fi
python3 - "$WORK/cwd/desk/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
reports, verified, failed = s["reports"], s["verified"], s["failed"]
if reports < 1 or verified != reports or failed != 0:
    sys.exit(f"FAIL: the desk verified {verified} of {reports} reports ({failed} failed)")
print(f"ok: the README tour ran line by line; the desk verified {verified} of {reports} reports")
PY
