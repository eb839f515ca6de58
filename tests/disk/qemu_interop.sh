#!/bin/sh
# Interop with qemu-img/qemu-io both ways (see shared/reference/disks.md s.4):
# images hvp makes are read by qemu with identical content and exact size;
# images qemu makes and writes are read by hvp with identical content.
hvp=$(realpath "$1")
tool=$(realpath "$2")
for p in qemu-img qemu-io python3; do
    command -v $p >/dev/null 2>&1 || { echo "SKIP: $p not found (Debian: qemu-utils)"; exit 77; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/hvp-disk-interop.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
qfmt() { case $1 in vhd) echo vpc ;; *) echo "$1" ;; esac; }
vsize() { qemu-img info -f "$1" --output=json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }

# 1. hvp writes, qemu reads
n=0
for spec in "vhd fixed 1048576" "vhd dynamic 1048576" "vhd fixed 10489856" "vhd dynamic 10489856" \
            "vhd dynamic 67108864" "vhd fixed 5243392" "vhd dynamic 5243392 --block-size=512K" \
            "vhdx dynamic 1048576" "vhdx fixed 10489856" "vhdx dynamic 10489856 --block-size=1M" \
            "vhdx dynamic 67108864 --block-size=2M" "vhdx fixed 5243392 --block-size=1M" \
            "vhdx dynamic 5243392 --block-size=32M" "vhd dynamic 136365212160" \
            "vhdx dynamic 136365212160"; do
    set -- $spec
    f=$1 t=$2 size=$3 bs=${4:-}
    n=$((n + 1))
    img=img$n.$f
    "$hvp" disk create -f "$f" --type "$t" $bs "$img" "$size" || { fail "create $spec"; continue; }
    truncate -s "$size" ref$n.raw
    cnt=30; case $size in 136365212160) cnt=6 ;; esac
    "$tool" randwrite "$img" ref$n.raw $n $cnt 300000 || { fail "library writes to $spec"; continue; }
    q=$(qfmt "$f")
    got=$(vsize "$q" "$img")
    [ "$got" = "$size" ] || fail "$spec: qemu-img reads virtual size $got, not $size"
    # qemu's vhdx driver has no block status: it would read all 127 GiB
    if [ "$f" = vhd ] || [ "$size" -lt 4294967296 ]; then
        qemu-img compare -q -f raw -F "$q" ref$n.raw "$img" || fail "$spec: qemu-img compare says the content differs"
    fi
    if [ "$f" = vhdx ]; then
        qemu-img check -q "$img" || fail "$spec: qemu-img check finds errors"
    fi
    out=$("$hvp" disk check "$img") || fail "$spec: hvp disk check: $out"
    "$hvp" disk compare ref$n.raw "$img" >/dev/null || fail "$spec: hvp reads back different content"
    # convert: raw -> image by hvp, read by qemu
    "$hvp" disk convert -O "$f" --type "$t" ref$n.raw conv$n.$f || fail "$spec: convert"
    if [ "$f" = vhd ] || [ "$size" -lt 4294967296 ]; then
        qemu-img compare -q -f raw -F "$q" ref$n.raw conv$n.$f || fail "$spec: converted image differs for qemu"
    fi
    rm -f "$img" conv$n.$f ref$n.raw
done

# 2. qemu writes, hvp reads
for spec in "vpc dynamic" "vpc fixed" "vpc dynamic force_size=on" "vpc fixed force_size=on" \
            "vhdx dynamic" "vhdx fixed" "vhdx dynamic block_size=1M" "vhdx fixed block_state_zero=off"; do
    set -- $spec
    q=$1 sub=$2 extra=${3:-}
    o="subformat=$sub"; [ -n "$extra" ] && o="$o,$extra"
    sizes="64M 10489856"; [ "$spec" = "vpc dynamic" ] && sizes="$sizes 1G"
    for size in $sizes; do
        img="q-$q-$sub-$extra-$size.img"
        qemu-img create -q -f "$q" -o "$o" "$img" "$size" || { fail "qemu-img create $spec $size"; continue; }
        qemu-io -f "$q" -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 4M 512' -c 'write -P 0x5a 3000000 700000' \
            -c 'write -P 0x11 9M 4096' -c 'write -P 0x77 10481664 4096' "$img" >/dev/null || fail "qemu-io $spec"
        qemu-img convert -f "$q" -O raw "$img" ref.raw
        want=$(vsize "$q" "$img")
        got=$("$hvp" disk info --json "$img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual_size"])')
        [ "$got" = "$want" ] || fail "$spec $size: hvp reads virtual size $got, qemu $want"
        out=$("$hvp" disk compare ref.raw "$img") || fail "$spec $size: content differs: $out"
        "$hvp" disk convert -O raw "$img" out.raw || fail "$spec $size: convert to raw"
        cmp -s ref.raw out.raw || fail "$spec $size: raw export differs"
        out=$("$hvp" disk check "$img") || fail "$spec $size: hvp disk check: $out"
        rm -f "$img" ref.raw out.raw
    done
done

# 3. round trips: hvp -> qemu convert -> hvp, and qemu -> hvp convert -> qemu
truncate -s 20M rt.raw
"$hvp" disk create -f vhd rt.vhd 20M && "$tool" randwrite rt.vhd rt.raw 99 40 500000 || fail "round-trip setup"
qemu-img convert -f vpc -O vhdx rt.vhd rt-q.vhdx || fail "qemu convert of an hvp VHD"
"$hvp" disk compare rt.raw rt-q.vhdx >/dev/null || fail "hvp reads qemu's conversion of an hvp VHD differently"
"$hvp" disk convert -O vhd rt-q.vhdx rt-h.vhd || fail "hvp convert of a qemu VHDX"
qemu-img compare -q -f vhdx -F vpc rt-q.vhdx rt-h.vhd || fail "qemu reads hvp's conversion differently"

# 4. dirty log: an hvp VHDX left with an active log (writer never closed)
truncate -s 8M dl.raw
"$hvp" disk create -f vhdx --block-size 1M dl.vhdx 8M
"$tool" dirty dl.vhdx dl.raw 5 20 100000 || fail "dirty writer"
sum=$(md5sum < dl.vhdx)
err=$("$hvp" disk info dl.vhdx 2>&1); rc=$?
[ $rc -eq 2 ] || fail "read-only open of a dirty log exits $rc"
case $err in "hvp: dl.vhdx: the log must be replayed"*) ;; *) fail "dirty log message: $err" ;; esac
[ "$(md5sum < dl.vhdx)" = "$sum" ] || fail "a read-only open wrote to the file"
cp dl.vhdx dl-q.vhdx
qemu-img check -q -r all dl-q.vhdx >/dev/null 2>&1 || fail "qemu-img check -r all on hvp's log"
"$hvp" disk check --repair dl.vhdx >/dev/null || fail "hvp disk check --repair"
"$hvp" disk check dl.vhdx >/dev/null || fail "still dirty after repair"
"$hvp" disk compare dl.raw dl.vhdx >/dev/null || fail "content after hvp replay"
qemu-img compare -q -f raw -F vhdx dl.raw dl-q.vhdx || fail "content after qemu replay"

# 5. resize (in place where the metadata has room, else rewritten): qemu
# reads the new size exactly and the same content
for spec in "vhd fixed 3146752 7340544" "vhd dynamic 3146752 7340544" "vhd dynamic 3146752 42991616 --block-size=64K" \
            "vhdx dynamic 3146752 7340544 --block-size=1M" "vhdx fixed 3146752 7340544 --block-size=1M" \
            "vhdx dynamic 7340544 3146752 --block-size=1M"; do
    set -- $spec
    f=$1 t=$2 size=$3 new=$4 bs=${5:-}
    q=$(qfmt "$f")
    "$hvp" disk create -f "$f" --type "$t" $bs rs.$f "$size" || { fail "create $spec"; continue; }
    truncate -s "$size" rs.raw
    "$tool" randwrite rs.$f rs.raw 7 20 100000 || fail "writes $spec"
    if [ "$new" -lt "$size" ]; then
        "$tool" discard rs.$f rs.raw "$new" $((size - new)) || fail "discard $spec"
    fi
    "$hvp" disk resize rs.$f "$new" || fail "resize $spec"
    truncate -s "$new" rs.raw
    got=$(vsize "$q" rs.$f)
    [ "$got" = "$new" ] || fail "resize $spec: qemu-img reads virtual size $got, not $new"
    qemu-img compare -q -f raw -F "$q" rs.raw rs.$f || fail "resize $spec: content differs for qemu"
    [ "$f" = vhdx ] && { qemu-img check -q rs.$f || fail "resize $spec: qemu-img check"; }
    out=$("$hvp" disk check rs.$f) || fail "resize $spec: hvp disk check: $out"
    rm -f rs.$f rs.raw
done

[ $fails -eq 0 ] && echo ok
[ $fails -eq 0 ]
