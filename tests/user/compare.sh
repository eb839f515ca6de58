#!/bin/sh
# Runs one program natively and under `hvp user` on the same inputs and
# compares stdout, stderr and the exit status.
#   compare.sh HVP [--stdin FILE] [--crash] [--env VAR=VALUE] -- PROGRAM ARGS...
# Runs in a fresh directory filled by mkinputs.sh; FILE is relative to it.
# --crash: the program dies of a signal; stderr must then be empty natively
# and, for a CPU exception, exactly the one-line diagnostic under hvp.
# SKIP (77) when the software CPU lacks an instruction the program needs:
# decided from the run itself (#UD where the native run had none), so the
# test passes as soon as the CPU grows.
hvp=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
stdin=/dev/null crash=0
while [ $# -gt 0 ]; do
    case $1 in
    --stdin) stdin=$2; shift 2 ;;
    --crash) crash=1; shift ;;
    --env) export "$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "compare.sh: bad option $1"; exit 2 ;;
    esac
done
abs() { case $1 in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
hvp=$(abs "$hvp")
prog=$(abs "$1")
shift
set -- "$prog" "$@"
if [ ! -x "$prog" ]; then
    echo "SKIP: $prog is not installed (scripts/deps.sh test installs busybox-static)"
    exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/work" && cd "$tmp/work" || exit 1
sh "$here/mkinputs.sh" "$prog" || { echo "FAIL: mkinputs"; exit 1; }

# (...) 2>/dev/null: the shell's own "Segmentation fault" stays out of the
# captured stderr.
("$@" <"$stdin" >"$tmp/n.out" 2>"$tmp/n.err") 2>/dev/null
nrc=$?
(timeout -s KILL 600 "$hvp" user "$@" <"$stdin" >"$tmp/h.out" 2>"$tmp/h.err") 2>/dev/null
hrc=$?

diag=$(grep -m1 '^hvp: user: ' "$tmp/h.err")
case $diag in
*"dynamically linked"*)
    echo "SKIP: $prog is not static ($diag)"; exit 77 ;;
esac
ok=1
cmp -s "$tmp/n.out" "$tmp/h.out" || ok=0
[ $nrc -eq $hrc ] || ok=0
if [ $crash -eq 1 ]; then
    [ -s "$tmp/n.err" ] && { echo "FAIL: native stderr not empty"; ok=0; }
    lines=$(wc -l <"$tmp/h.err")
    if [ $nrc -ne 134 ] && [ $nrc -ne 141 ]; then
        # one diagnostic line: hvp: user: PROG: SIGxxx at rip 0x... (text)
        [ "$lines" -eq 1 ] && grep -q '^hvp: user: .*: SIG[A-Z]* at rip 0x[0-9a-f]* (.*)$' "$tmp/h.err" || ok=0
    else
        [ "$lines" -eq 0 ] || ok=0 # abort(), SIGPIPE: nothing, as natively
    fi
else
    cmp -s "$tmp/n.err" "$tmp/h.err" || ok=0
fi
if [ $ok -eq 1 ]; then
    echo "ok: $* (exit $hrc)"
    exit 0
fi
# A #UD (SIGILL) or a CPU stop the native run did not have: the CPU lacks
# an instruction group. Say which instruction.
case $diag in
*": SIGILL at rip "*)
    # ud2 is the program's own #UD; anything else is the CPU's gap
    if [ $nrc -ne 132 ] || ! expr "$diag" : '.*(ud[0-9]' >/dev/null; then
        echo "SKIP: needs more of the software CPU: #UD ${diag#*: SIGILL }"
        exit 77
    fi ;;
*": cpu: "*|*": cpu run: "*)
    echo "SKIP: the software CPU stopped: ${diag#hvp: user: }"
    exit 77 ;;
esac
echo "FAIL: $*"
echo "native exit $nrc, hvp exit $hrc"
echo "--- native stdout (head)"; head -c 1500 "$tmp/n.out"; echo
echo "--- hvp stdout (head)"; head -c 1500 "$tmp/h.out"; echo
echo "--- native stderr"; head -20 "$tmp/n.err"
echo "--- hvp stderr"; head -20 "$tmp/h.err"
cmp "$tmp/n.out" "$tmp/h.out"
exit 1
