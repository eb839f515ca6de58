#!/usr/bin/env bash
# Runs every suite: all of them in the plain build, the fast ones again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Ends with one summary line
# "N passed, N failed, N skipped" over both runs.
set -uo pipefail
plain=${1:-build}
asan=${2:-build-asan}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp:print_suppressions=0}

status=0
echo "== tests: $plain (all suites)"
meson test -C "$plain" --print-errorlogs --num-processes 2 || status=1
echo "== tests: $asan (ASan+UBSan, suites without 'slow')"
meson test -C "$asan" --print-errorlogs --num-processes 2 --no-suite slow || status=1

python3 - "$plain/meson-logs/testlog.json" "$asan/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        rec = json.loads(line)
        r = rec.get("result")
        # A TAP test (Criterion with --tap) counts each of its cases.
        tap = [l for l in (rec.get("stdout") or "").splitlines()
               if l.startswith("ok ") or l.startswith("not ok ")]
        if tap and r not in ("TIMEOUT",):
            for l in tap:
                if "# SKIP" in l:
                    skipped += 1
                elif l.startswith("ok "):
                    passed += 1
                else:
                    failed += 1
            if r not in ("OK", "EXPECTEDFAIL", "SKIP") and not any(l.startswith("not ok") for l in tap):
                failed += 1  # crashed outside any case
        elif r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
[ $? -eq 0 ] || status=1
exit $status
