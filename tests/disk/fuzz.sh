#!/bin/sh
# Short libFuzzer run of the disk parsers (fuzz/disk_image.c) seeded with
# images of one format (TARGET: vhd or vhdx), built with clang into a
# temporary directory. Usage: fuzz.sh SRCROOT TARGET HVP [SECONDS]
# A longer run: FUZZ_SECONDS=3600 sh tests/disk/fuzz.sh . vhdx build/hvp
src=$(realpath "$1") target=$2 hvp=$(realpath "$3")
secs=${4:-${FUZZ_SECONDS:-15}}
cc=$(command -v clang-14 || command -v clang) || { echo "SKIP: clang not found"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/hvp-fuzz-$target.XXXXXX") || exit 1
[ -n "${FUZZ_KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > "$T/probe.c"
"$cc" -fsanitize=fuzzer "$T/probe.c" -o "$T/probe" 2>/dev/null || { echo "SKIP: libFuzzer is missing ($cc -fsanitize=fuzzer fails)"; exit 77; }
"$cc" -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE \
    -I"$src/include" -I"$src/src/disk" "$src"/src/disk/*.c "$src/fuzz/disk_image.c" \
    -pthread -o "$T/fuzz" || { echo "FAIL: build of fuzz/disk_image.c"; exit 1; }
# seeds: small images of every type
mkdir "$T/corpus"
cd "$T/corpus" || exit 1
if [ "$target" = vhd ]; then
    "$hvp" disk create -f vhd --type fixed f.vhd 64K
    "$hvp" disk create -f vhd --block-size 4K d.vhd 64K
    "$hvp" disk create -f vhd --block-size 4K --parent d.vhd c.vhd
    head -c 70000 /dev/urandom > r.raw && "$hvp" disk convert -O vhd --block-size 8K r.raw w.vhd
else
    "$hvp" disk create -f vhdx --block-size 1M d.vhdx 1M
    "$hvp" disk create -f vhdx --block-size 1M --parent d.vhdx c.vhdx
fi
rm -f r.raw
cd "$T" || exit 1
ASAN_OPTIONS=detect_leaks=1 ./fuzz -max_total_time="$secs" -max_len=8388608 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus > fuzz.log 2>&1
rc=$?
tail -5 fuzz.log
[ $rc -eq 0 ] || { grep -E 'ERROR|SUMMARY|Test unit' fuzz.log | head -5; echo "FAIL: fuzzer found a crash"; exit 1; }
echo "ok: $(grep -c . fuzz.log) log lines, no crash in ${secs}s"
