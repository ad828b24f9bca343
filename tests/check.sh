#!/usr/bin/env bash
# Runs the test suite of a build directory (optionally only tests whose names
# contain one of the given words) and prints the summary line last.
set -u
build=$1
shift
meson test -C "$build" --no-rebuild --print-errorlogs --num-processes "$(nproc)" "$@" >"$build/test-output.txt" 2>&1
grep -E '^ *[0-9]+/[0-9]+ ' "$build/test-output.txt"
exec python3 "$(dirname "$0")/summary.py" "$build/meson-logs/testlog.json"
