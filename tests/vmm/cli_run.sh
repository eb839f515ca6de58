#!/bin/sh
# `hvp run` as a user meets it with bad input: one line on stderr naming the
# file or option, and the documented exit status (2: bad usage or input).
hvp=$1 mkbz=$2
fail() { echo "not ok - $*"; exit 1; }
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
"$mkbz" "$t/bz" ebfe || fail "mkbzimage"

# expect STATUS PATTERN ARGS...: exit status, and stderr one line matching PATTERN.
n=0
expect() {
    want=$1 pat=$2
    shift 2
    n=$((n + 1))
    err=$("$hvp" run --console none "$@" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" -eq "$want" ] || fail "hvp run $*: exit $rc, expected $want ($err)"
    [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "hvp run $*: not one line: $err"
    printf '%s\n' "$err" | grep -Eq "$pat" || fail "hvp run $*: message '$err' does not match '$pat'"
    echo "ok $n - $* -> $rc: $err"
}

printf 'hello, world\n' >"$t/text"
head -c 100000 /dev/zero >"$t/zeros"
expect 2 "^hvp: $t/text: not a bzImage" --kernel "$t/text"
expect 2 "^hvp: $t/zeros: not a bzImage" --kernel "$t/zeros"
expect 2 "^hvp: $t/missing: No such file" --kernel "$t/missing"
expect 2 "^hvp: /bin/sh: not a bzImage: an ELF file" --kernel /bin/sh
: >"$t/empty"
expect 2 "^hvp: $t/empty: not a bzImage: the file is empty" --kernel "$t/empty"
head -c 40000000 /dev/zero >"$t/bigrd"
expect 2 "^hvp: $t/bigrd: initrd does not fit in memory" --kernel "$t/bz" --initrd "$t/bigrd" --memory 64M
expect 2 "^hvp: --memory: 0: " --kernel "$t/bz" --memory 0
expect 2 "^hvp: --memory: 'lots' is not a size" --kernel "$t/bz" --memory lots
expect 2 "^hvp: --memory: .*too little" --kernel "$t/bz" --memory 1M
expect 2 "^hvp: --memory: .*too small" --kernel "$t/bz" --memory 40M
expect 2 "^hvp: --backend: unknown backend 'vmx' \(auto, soft or kvm\)" --kernel "$t/bz" --backend vmx
expect 2 "^hvp: --cpus: '0' is not a number" --kernel "$t/bz" --cpus 0
expect 2 "^hvp: --console: unknown console 'tty'" --kernel "$t/bz" --console tty
expect 2 "^hvp: run: unknown option '--frobnicate'" --kernel "$t/bz" --frobnicate
expect 2 "^hvp: run: option '--append' needs a value" --kernel "$t/bz" --append
expect 2 "^hvp: run: unexpected argument 'extra'" --kernel "$t/bz" extra
expect 2 "^hvp: --initrd: needs --kernel" --initrd "$t/bz"
expect 2 "^hvp: $t/nodisk: " --kernel "$t/bz" --disk "$t/nodisk"
long=$(head -c 3000 /dev/zero | tr '\0' x)
expect 2 "^hvp: --append: command line is 3000 bytes; this kernel takes at most 2047" --kernel "$t/bz" --append "$long"
HVP_GUEST_DIR=$t/nowhere expect 2 "^hvp: run: no --kernel, and no default guest in $t/nowhere" 

"$hvp" run --help | grep -q 'Ctrl-A X' || fail "--help does not list the escapes"
"$hvp" run --help | grep -q 'no block device' || fail "--help does not say disks are not given to the guest"
"$hvp" --help | grep -q '^  run ' || fail "hvp --help does not list run"
echo "1..$n"
