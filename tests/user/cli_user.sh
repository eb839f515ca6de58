#!/bin/sh
# hvp user as a user meets it: usage, exit status, --strace, --stats, the
# one-line refusal of a dynamic executable, PATH lookup.
#   cli_user.sh HVP SYS   (SYS: the libc-free test program, exits 3)
abs() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
hvp=$(abs "$1") sys=$(abs "$2")
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

"$hvp" user >/dev/null 2>&1; [ $? -eq 2 ] || fail "no program: exit not 2"
"$hvp" user --help | grep -q '^usage: hvp user' || fail "--help"
"$hvp" user --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option: exit not 2"

"$hvp" user "$sys" a b >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || fail "exit status $rc, not 3"
grep -q '^argc 3$' "$tmp/out" || fail "argc"
[ -s "$tmp/err" ] && fail "stderr not empty: $(cat "$tmp/err")"

"$hvp" user --strace "$sys" >/dev/null 2>"$tmp/err"
grep -q '^brk(0) = 0x' "$tmp/err" || fail "--strace: no brk line"
grep -q '^syscall_999(0, ' "$tmp/err" || fail "--strace: unknown call not listed"
grep -q ') = -1 ENOSYS (Function not implemented)$' "$tmp/err" || fail "--strace: ENOSYS"
grep -q '^open("/nonexistent/x", 0, 0) = -1 ENOENT (No such file or directory)$' "$tmp/err" ||
    fail "--strace: path argument"
grep -q '^exit_group(3) = ?$' "$tmp/err" || fail "--strace: exit_group"

"$hvp" user --stats "$sys" >/dev/null 2>"$tmp/err"
grep -q '^hvp: user: [0-9][0-9]* instructions in [0-9.]* s: [0-9.]* MIPS$' "$tmp/err" ||
    fail "--stats: $(cat "$tmp/err")"

# A dynamic executable: refused in one line, exit 2.
dyn=$(command -v sh)
dyn=$(readlink -f "$dyn")
if head -c 4 "$dyn" | grep -q ELF && ! "$hvp" user "$dyn" -c true 2>"$tmp/err"; then
    [ $(wc -l <"$tmp/err") -eq 1 ] || fail "dynamic: not one line"
    grep -q "^hvp: user: $dyn: dynamically linked (needs /.*); only static executables run$" \
        "$tmp/err" || fail "dynamic: $(cat "$tmp/err")"
fi

# PATH lookup for a name without a slash.
cp "$sys" "$tmp/hvp-sys-test"
(cd "$tmp" && PATH="$tmp:$PATH" "$hvp" user hvp-sys-test >/dev/null 2>&1); [ $? -eq 3 ] || fail "PATH lookup"
echo ok
