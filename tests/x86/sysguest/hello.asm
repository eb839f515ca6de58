; The smallest guest: reset -> long mode, one line, an EXPECT, exit 0.
%include "sysguest.inc"
SYSGUEST_LONG
main:
    PRINT "hello from long mode", 10
    mov rax, cr0
    EXPECT rax, 0x80010033, "cr0"
    mov rax, cr4
    EXPECT rax, 0x620, "cr4"
    mov ecx, 0xC0000080
    rdmsr
    EXPECT rax, 0xD01, "efer"
    DONE
SYSGUEST_END
