#!/bin/busybox sh
# Runs inside the nested-KVM guest (as nested-kvm.sh's PROGRAM): hvp with
# its console on a FIFO, answering the default guest's "hvp-selftest: type
# a line" (hvp.selftest.input) like a person would, so that console input
# (COM1 receive and its interrupt) is exercised too. Exits with hvp's status.
#   nested-drive.sh HVP_ARG...      (hvp is /bin/hvp-static)
mkfifo /tmp/console-in || exit 1
exec 3<>/tmp/console-in # read-write: hvp never sees end of input
{
    /bin/hvp-static "$@" <&3
    echo $? >/tmp/hvp-rc
} | while IFS= read -r line; do
    printf '%s\n' "$line"
    case $line in
    *"hvp-selftest: type a line"*) echo "typed-by-the-host 42" >&3 ;;
    esac
done
exit "$(cat /tmp/hvp-rc 2>/dev/null || echo 1)"
