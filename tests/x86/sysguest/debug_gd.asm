; DR7.GD: with it set, the next MOV to or from a debug register is a #DB
; fault (RIP at the MOV), DR6.BD is set and GD cleared on the way to the
; handler (SDM vol. 3, 18.2.4 "Debug Control Register": general detect).
%include "sysguest.inc"
SYSGUEST_NO_QEMU "QEMU 7.2 TCG ignores DR7.GD: the MOV DR runs without a #DB"
SYSGUEST_LONG

main:
    xor eax, eax
    mov dr6, rax
    PRINT "DR7.GD", 10
    mov eax, 0x2000
    mov dr7, rax
    TRY .gd
.gd_insn:
    mov rbx, dr0
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
.gd:
    EXPECT qword [SG_LAST_VEC], 1, "  vector"
    EXPECT qword [SG_LAST_RIP], .gd_insn, "  rip (a fault)"
    mov rbx, dr6
    and ebx, 0x2000
    EXPECT rbx, 0x2000, "  DR6.BD"
    mov rbx, dr7
    EXPECT rbx, 0x400, "  DR7 (GD cleared)"
    xor eax, eax
    mov dr6, rax

    DONE
SYSGUEST_END
