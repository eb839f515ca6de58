#!/bin/sh
# How a VM ends, as `hvp run`'s exit status says it: tiny 64-bit guests
# (synthetic bzImages) that power off through the ACPI PM block, reset
# through the i8042 and port 0xCF9, and triple-fault. SKIP when no backend
# can run a VM here.
hvp=$1 mkbz=$2
fail() { echo "not ok - $*"; exit 1; }
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
"$mkbz" "$t/probe" 66ba040666b8003466efebfe || fail mkbzimage
err=$(timeout 30 "$hvp" run --kernel "$t/probe" --memory 64M --console none 2>&1 </dev/null)
case $err in
*--backend:*) echo "1..0 # SKIP no backend can run a VM here: $err"; exit 0 ;;
esac

n=0
# run NAME HEX STATUS PATTERN
run() {
    n=$((n + 1))
    "$mkbz" "$t/$1" "$2" || fail mkbzimage
    err=$(timeout 30 "$hvp" run --kernel "$t/$1" --memory 64M --console none 2>&1 </dev/null)
    rc=$?
    [ "$rc" -eq "$3" ] || fail "$1: exit $rc, expected $3 ($err)"
    printf '%s\n' "$err" | grep -Eq "$4" || fail "$1: message '$err' does not match '$4'"
    echo "ok $n - $1: exit $rc ${err:+($err)}"
}
# mov dx, 0x604; mov ax, 0x3400 (SLP_TYP 5 | SLP_EN); out dx, ax; jmp $
run poweroff 66ba040666b8003466efebfe 0 '^$'
# mov al, 0xfe; out 0x64, al: the keyboard controller's reset
run i8042-reset b0fee664ebfe 3 '^hvp: run: guest reset: '
# mov dx, 0xcf9; mov al, 6; out dx, al
run cf9-reset 66baf90cb006eeebfe 3 '^hvp: run: guest reset: '
# int3 with an empty IDT: #GP, #DF, shutdown
run triple-fault cc 4 '^hvp: run: triple fault: vCPU 0: triple fault at RIP 0x10020'
echo "1..$n"
