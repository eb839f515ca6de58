#!/usr/bin/env bash
# A short libFuzzer run of fuzz/x86_decode.c (the x86 decoder and formatter):
# builds the target with clang into a temporary directory, straight from the
# sources listed in src/x86/meson.build, and fuzzes for FUZZ_SECONDS (20).
# Exit 77 (SKIP) when clang or its libFuzzer runtime is missing.
set -uo pipefail
src=${1:?usage: fuzz_short.sh SOURCE_ROOT}
seconds=${FUZZ_SECONDS:-20}
clang=$(command -v clang || command -v clang-14 || true)
if [ -z "$clang" ]; then
    echo "SKIP: clang is not installed (apt-get install clang)"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >"$work/probe.c"
if ! "$clang" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" 2>"$work/probe.err"; then
    echo "SKIP: clang's libFuzzer/ASan/UBSan runtimes are missing (apt-get install libclang-rt-dev): $(head -1 "$work/probe.err")"
    exit 77
fi

sources=()
for f in $(grep -o "'[^']*\.c'" "$src/src/x86/meson.build" | tr -d "'"); do
    sources+=("$src/src/x86/$f")
done
echo "building fuzz/x86_decode.c with ${sources[*]##*/}"
if ! "$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$src/include" "$src/fuzz/x86_decode.c" "${sources[@]}" -o "$work/fuzz" 2>"$work/build.err"; then
    cat "$work/build.err"
    echo "FAIL: the fuzz target does not build"
    exit 1
fi

mkdir -p "$work/corpus"
# Seeds: a few real instruction sequences.
printf '\x48\x89\xe5\x55\xc3' >"$work/corpus/mov"
printf '\x66\x2e\x0f\x1f\x84\x00\x00\x00\x00\x00' >"$work/corpus/nop"
printf '\xc5\xf9\x6f\x05\x10\x00\x00\x00' >"$work/corpus/vex"
printf '\x62\xf1\x7c\x48\x58\x40\x01' >"$work/corpus/evex"
printf '\xf3\x48\xa5\xd9\xe8\xdd\x00' >"$work/corpus/str-x87"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$work" || exit 1
"$work/fuzz" -max_total_time="$seconds" -max_len=64 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$work/corpus" >"$work/log" 2>&1
rc=$?
grep -E 'check failed|ERROR: (Address|Undefined|libFuzzer)|runtime error' "$work/log" | head -5
grep -v 'Uses:' "$work/log" | tail -12
if [ "$rc" -ne 0 ]; then
    echo "FAIL: fuzzer exit $rc; crash inputs: $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null | xargs -r -n1 od -An -tx1 | tr -s ' \n' ' ')"
    exit 1
fi
echo "ok: ${seconds}s of fuzzing without a finding"
