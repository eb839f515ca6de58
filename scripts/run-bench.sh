#!/usr/bin/env bash
# Runs every benchmark under bench/ that the build produced. Not a test:
# prints figures and ratios against the named peer.
set -uo pipefail
build=${1:-build}
for b in "$build"/bench/bench-* "$build"/bench/*/bench-*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b" || echo "(benchmark $(basename "$b") failed: exit $?)"
done
