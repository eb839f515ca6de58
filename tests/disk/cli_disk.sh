#!/bin/sh
# hvp disk as a user meets it: exit codes and exact one-line errors.
hvp=$(realpath "$1")
T=$(mktemp -d "${TMPDIR:-/tmp}/hvp-disk-cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect RC "STDERR" command...
expect() {
    want_rc=$1 want_err=$2
    shift 2
    err=$("$@" 2>&1 >/dev/null); rc=$?
    [ $rc -eq "$want_rc" ] || fail "$*: exit $rc, not $want_rc ($err)"
    [ -z "$want_err" ] || [ "$err" = "$want_err" ] || fail "$*: said '$err', not '$want_err'"
}

expect 0 "" "$hvp" disk create -f vhd a.vhd 4M
expect 1 "hvp: a.vhd: file exists" "$hvp" disk create -f vhd a.vhd 4M
expect 2 "hvp: 12Q: not a valid size" "$hvp" disk create -f vhd b.vhd 12Q
expect 1 "hvp: big.vhd: size 3298534883328 is too large (a vhd image holds at most 2040 GiB)" \
    "$hvp" disk create -f vhd big.vhd 3T
expect 1 "hvp: big.vhdx: size 109951162777600 is too large (a vhdx image holds at most 65536 GiB)" \
    "$hvp" disk create big.vhdx 100T
expect 1 "hvp: odd.vhdx: size 1000 is not a multiple of 512 bytes" "$hvp" disk create odd.vhdx 1000
expect 2 "hvp: nofile.vhd: No such file or directory" "$hvp" disk info nofile.vhd
expect 2 "hvp: frob: unknown disk command (see 'hvp disk --help')" "$hvp" disk frob
"$hvp" disk info --json a.vhd | grep -q '"format": "vhd", "type": "dynamic", "virtual_size": 4194304' \
    || fail "info --json: $("$hvp" disk info --json a.vhd)"

# differencing chain through the CLI
"$hvp" disk create --parent a.vhd c.vhd || fail "create child"
"$hvp" disk info c.vhd | grep -q "^parent chain:   a.vhd\$" || fail "info lists no parent chain: $("$hvp" disk info c.vhd)"
expect 0 "" "$hvp" disk compare a.vhd c.vhd
expect 0 "" "$hvp" disk merge c.vhd
[ -e c.vhd ] && fail "merge left the child"
expect 1 "hvp: a.vhd: not a differencing disk: nothing to merge into" "$hvp" disk merge a.vhd

# check: clean, problems (exit 1, listed), repair, unreadable (exit 2)
out=$("$hvp" disk check a.vhd); rc=$?
[ $rc -eq 0 ] && [ "$out" = "No errors were found on the image." ] || fail "check clean: $rc $out"
printf 'data' | dd of=a.raw bs=1 seek=1000 conv=notrunc 2>/dev/null
"$hvp" disk convert -O vhd a.raw x.vhd || fail convert
printf '\000\020\000\000' | dd of=x.vhd bs=1 seek=1536 conv=notrunc 2>/dev/null
expect 2 "hvp: x.vhd: BAT entry 0 points past the end of the file (offset 536870912)" "$hvp" disk info x.vhd
out=$("$hvp" disk check x.vhd); rc=$?
[ $rc -eq 1 ] || fail "check of a bad BAT exits $rc"
[ "$out" = "x.vhd: BAT entry 0 points past the end of the file (offset 536870912)
x.vhd: 1 problem found" ] || fail "check output: $out"
out=$("$hvp" disk check --repair x.vhd); rc=$?
[ $rc -eq 0 ] || fail "check --repair exits $rc: $out"
expect 0 "" "$hvp" disk check x.vhd
head -c 3000000 /dev/zero > junk.vhdx
printf 'vhdxfile' | dd of=junk.vhdx conv=notrunc 2>/dev/null
expect 2 "hvp: junk.vhdx: both VHDX headers are damaged (bad signature or checksum)" "$hvp" disk check junk.vhdx

# truncated dynamic VHD
"$hvp" disk create -f vhd t.vhd 8M && dd if=/dev/urandom of=t.raw bs=1M count=8 2>/dev/null
"$hvp" disk convert -O vhd t.raw t2.vhd && truncate -s 3M t2.vhd
expect 2 "hvp: t2.vhd: the footer at the end of the file is missing (file truncated?)" "$hvp" disk info t2.vhd

# compare
"$hvp" disk convert -O vhdx t.raw t.vhdx || fail "convert to vhdx"
expect 0 "" "$hvp" disk compare t.raw t.vhdx
printf 'X' | dd of=t.raw bs=1 seek=5000000 conv=notrunc 2>/dev/null
out=$("$hvp" disk compare t.raw t.vhdx); rc=$?
[ $rc -eq 1 ] && [ "$out" = "Content mismatch at offset 5000000" ] || fail "compare different: $rc $out"

# resize and compact
expect 0 "" "$hvp" disk resize t.vhdx 16M
"$hvp" disk info --json t.vhdx | grep -q '"virtual_size": 16777216' || fail "resize did not grow"
expect 1 "hvp: t.vhdx: cannot shrink: data at offset 1048576 is beyond the new size" "$hvp" disk resize t.vhdx 1M
out=$("$hvp" disk compact t.vhdx) || fail "compact: $out"

[ $fails -eq 0 ] && echo ok
[ $fails -eq 0 ]
