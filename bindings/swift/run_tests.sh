#!/usr/bin/env bash
# Runs the Swift binding's tests against the library in BUILD_DIR. Exit 77 (ctest: skipped) when there
# is no Swift toolchain. Usage: run_tests.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v swift >/dev/null 2>&1; then
  echo "no Swift toolchain on PATH: the Swift tests are skipped"
  exit 77
fi
export PKG_CONFIG_PATH="$BUILD/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec swift test --package-path "$HERE" --scratch-path "$BUILD/swift" -j 2
