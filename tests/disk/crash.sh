#!/bin/sh
# Crash safety: a writer doing allocating writes is killed (SIGKILL) at random
# points, many times; after each kill the image is reopened read-write (a VHDX
# replays its log), every write that a successful flush covered must be
# present, and `hvp disk check` must be clean.
hvp=$(realpath "$1")
tool=$(realpath "$2")
rounds=${CRASH_ROUNDS:-12}
T=$(mktemp -d "${TMPDIR:-/tmp}/hvp-disk-crash.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
kills=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for spec in "vhd 512K" "vhd 2M" "vhdx 1M"; do
    set -- $spec
    f=$1 bs=$2
    i=0
    while [ $i -lt $rounds ]; do
        i=$((i + 1))
        img=c$i.$f
        rm -f "$img"
        size=64M; [ "$f" = vhd ] && size=1G
        "$hvp" disk create -f "$f" --block-size "$bs" "$img" $size || { fail "create"; continue; }
        "$tool" crashwriter "$img" $i 100000 > out.txt 2>err.txt &
        pid=$!
        # kill after 20-290 ms
        sleep "0.$(printf %02d $(( (i * 7919 % 28) + 2 )))"
        kill -9 $pid 2>/dev/null
        wait $pid 2>/dev/null
        grep -q '^done' out.txt || kills=$((kills + 1))
        n=$(grep '^flushed' out.txt | tail -1 | cut -d' ' -f2)
        [ -n "$n" ] || n=0
        "$tool" verify "$img" $i "$n" || fail "$spec round $i: flushed writes missing (n=$n)"
        out=$("$hvp" disk check "$img") || fail "$spec round $i: check after the crash: $out"
        rm -f "$img"
    done
done
[ $kills -ge $((rounds * 3 / 2)) ] || fail "only $kills of $((rounds * 3)) writers were killed mid-run"
[ $fails -eq 0 ] && echo "ok: $kills writers killed mid-run; $rounds rounds each for VHD 512K, VHD 2M, VHDX 1M"
[ $fails -eq 0 ]
