#!/usr/bin/env bash
# The main job. Until the VM worker exists, it shows what hvp can do today:
# real programs on hvp's own x86-64 CPU, the decoder on this machine's code,
# and the virtual-disk tools.
set -euo pipefail
build=${1:-build}
hvp="$build/hvp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== hvp $("$hvp" --version | cut -d' ' -f2): what it can do today"

bb=/bin/busybox  # Debian's busybox-static (scripts/deps.sh run)
if [ -x "$bb" ]; then
    echo
    echo "-- hvp user: busybox (static) on hvp's software x86-64 CPU, next to the native run"
    seq 1 20000 > "$work/numbers"
    printf 'native : '; "$bb" sha256sum < "$work/numbers"
    printf 'hvp    : '; "$hvp" user "$bb" sha256sum < "$work/numbers"
    echo "gzip -9 and back on the software CPU (--stats):"
    "$hvp" user --stats "$bb" gzip -9 -c "$work/numbers" > "$work/numbers.gz"
    "$hvp" user "$bb" gunzip -c "$work/numbers.gz" | cmp - "$work/numbers" && echo "round trip: identical"
    "$hvp" user "$bb" awk 'BEGIN { s = 0; for (i = 1; i <= 10; i++) s += 1 / i; printf "awk on hvp: H(10) = %.12f\n", s }'
fi

echo
echo "-- hvp dis: the start of this machine's /bin/true (.text)"
if command -v objcopy >/dev/null; then
    objcopy -O binary --only-section=.text /bin/true "$work/true.text"
    "$hvp" dis --bits 64 "$work/true.text" | head -n 16 || true  # head closes the pipe early
fi

echo
echo "-- hvp disk: a dynamic VHDX with a differencing child, written, inspected, checked"
"$hvp" disk create -f vhdx --type dynamic "$work/base.vhdx" 64M
"$hvp" disk create -f vhdx --parent "$work/base.vhdx" "$work/child.vhdx"
"$hvp" disk info "$work/child.vhdx"
"$hvp" disk check "$work/child.vhdx"
