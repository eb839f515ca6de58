#!/usr/bin/env bash
# The main job. Until the VM worker exists, it shows what hvp can do today:
# the decoder on this machine's own code, and the disk tools.
set -euo pipefail
build=${1:-build}
hvp="$build/hvp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== hvp $("$hvp" --version | cut -d' ' -f2): what it can do today"
echo
echo "-- hvp dis: the first instructions of this machine's /bin/true (.text)"
if command -v objcopy >/dev/null; then
    objcopy -O binary --only-section=.text /bin/true "$work/true.text"
    "$hvp" dis --bits 64 --length 96 "$work/true.text" || true
fi
echo
echo "-- hvp disk: a dynamic VHDX, written, inspected, checked"
if "$hvp" disk create -f vhdx --type dynamic "$work/demo.vhdx" 64M 2>/dev/null; then
    "$hvp" disk info "$work/demo.vhdx" || true
    "$hvp" disk check "$work/demo.vhdx" || true
else
    echo "(hvp disk is not available in this build)"
fi
