; Triple fault -> shutdown: with an empty IDT, #UD cannot be delivered
; (#GP), nor can that (#DF), and the CPU shuts down. Under QEMU with
; -no-reboot the machine stops; the runner expects "shutdown" from both.
%include "sysguest.inc"
SYSGUEST_EXPECT_SHUTDOWN
SYSGUEST_LONG
main:
    PRINT "loading an empty IDT", 10
    lidt [empty_idtr]
    PRINT "ud2", 10
    ud2
    PRINT "still running: no shutdown", 10
    EXIT SG_EXIT_FAIL
    align 8
empty_idtr:
    dw 0
    dq 0
SYSGUEST_END
