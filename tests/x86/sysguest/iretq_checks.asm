; IRETQ to ring 3 checks the new SS before anything changes: RPL and DPL
; must equal the new CPL, it must be a present, writable data segment
; inside the GDT; otherwise #GP(SS) is raised in ring 0 with CS, RSP and
; RFLAGS untouched. (Not here: a not-present SS, #SS by the SDM's IRET
; pseudocode but #NP under QEMU 7.2.)
%include "sysguest.inc"
SYSGUEST_LONG

%define S_RO  0x50 ; data, DPL 3, read-only
%define S_DPL0 SG_KDATA

; IRET_SS ss, vector: IRETQ to u_code at CPL 3 with that SS must fault
%macro IRET_SS 2
    TRY %%c
    push %1
    push SG_USTACK_TOP
    push 2
    push SG_UCODE
    push u_code
%%insn:
    iretq
%%c:
    EXPECT qword [SG_LAST_VEC], %2, "  vector"
    EXPECT qword [SG_LAST_ERR], (%1) & ~3, "  error code"
    EXPECT qword [SG_LAST_RIP], %%insn, "  rip (the IRETQ)"
    EXPECT qword [SG_LAST_CS], SG_KCODE, "  CS (still ring 0)"
%endmacro

main:
    mov rax, 0x00CFF1000000FFFF
    mov [SG_GDT + S_RO], rax
    PRINT "SS with RPL 0", 10
    IRET_SS SG_UDATA & ~3, 13
    PRINT "SS with DPL 0 (RPL 3)", 10
    IRET_SS S_DPL0 | 3, 13
    PRINT "SS read-only", 10
    IRET_SS S_RO | 3, 13
    PRINT "SS past the GDT limit", 10
    IRET_SS 0x1003, 13
    PRINT "SS null", 10
    IRET_SS 3, 13
    DONE

USER_CODE_BEGIN
u_code:
    ud2
USER_CODE_END
SYSGUEST_END
