#!/bin/sh
# hvp as a user meets it: help, version, and a clear error for a bad command.
hvp=$1
fail() { echo "FAIL: $*"; exit 1; }
"$hvp" --help | grep -q '^  dis ' || fail "--help does not list 'dis'"
"$hvp" --version | grep -q '^hvp [0-9]' || fail "--version"
err=$("$hvp" frobnicate 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown command exits $rc, not 2"
[ "$err" = "hvp: frobnicate: unknown command (see 'hvp --help')" ] || fail "unknown command message: $err"
"$hvp" >/dev/null 2>&1 && fail "no arguments should fail"
echo ok
