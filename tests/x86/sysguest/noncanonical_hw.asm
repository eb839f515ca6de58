; Non-canonical cases where QEMU 7.2 differs from the hardware (checked
; on the host CPU, AMD EPYC, from user mode):
; - stack references raise #SS(0), not #GP(0): RSP- or RBP-based
;   addressing (also with a DS prefix, which 64-bit mode ignores; an SS
;   prefix on an RBX base is ignored too: #GP), PUSH, POP, CALL and RET
;   with a non-canonical RSP; the #SS goes through an IST gate here since
;   the current stack is unusable, and RSP is unchanged;
; - a JMP, CALL or RET to a non-canonical address faults at the branch
;   (QEMU: RIP = the target) and CALL pushes nothing;
; - WRMSR of a non-canonical FS_BASE/GS_BASE/KERNEL_GS_BASE/LSTAR is
;   #GP(0) (QEMU accepts it).
%include "sysguest.inc"
SYSGUEST_NO_QEMU "QEMU 7.2: #GP for stack refs, RIP = target for branches"
SYSGUEST_LONG

%define HOLE_LO 0x0000800000000000

; STACK_SS instruction: with RSP non-canonical, the instruction raises
; #SS(0) on IST1 and leaves RSP as it was
%macro STACK_SS 1+
    TRY %%c
    mov r15, rsp
    mov rsp, r14
%%insn:
    %1
    mov rsp, r15
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
%%c:
    EXPECT qword [SG_LAST_VEC], 12, "  vector"
    EXPECT qword [SG_LAST_ERR], 0, "  error code"
    EXPECT qword [SG_LAST_RIP], %%insn, "  rip"
    EXPECT qword [SG_LAST_RSP], r14, "  frame RSP (unchanged)"
    EXPECT qword [SG_LAST_FRAME], SG_IST1_TOP - 40, "  frame RIP slot"
%endmacro

main:
    PRINT "RSP-based access", 10
    mov rbx, HOLE_LO
    EXPECT_FAULT 12, 0, mov rax, [rsp + rbx]
    PRINT "RBP-based access", 10
    mov rbp, HOLE_LO
    EXPECT_FAULT 12, 0, mov rax, [rbp + 8]
    PRINT "RBP-based access with a DS prefix", 10
    TRY .ds
.ds_insn:
    db 0x3E
    mov rax, [rbp + 8]
    inc qword [SG_FAILS]
.ds:
    EXPECT qword [SG_LAST_VEC], 12, "  vector"
    EXPECT qword [SG_LAST_RIP], .ds_insn, "  rip"
    xor ebp, ebp
    PRINT "RBX-based access with an SS prefix: #GP", 10
    mov rbx, HOLE_LO
    TRY .ss
.ss_insn:
    db 0x36
    mov rax, [rbx]
    inc qword [SG_FAILS]
.ss:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    EXPECT qword [SG_LAST_RIP], .ss_insn, "  rip"

    SET_GATE 12, sg_stubs + 12 * 16, 1, 0
    mov r14, HOLE_LO + 8
    PRINT "PUSH", 10
    STACK_SS push rax
    PRINT "POP", 10
    STACK_SS pop rax
    PRINT "CALL", 10
    STACK_SS call main
    PRINT "RET", 10
    STACK_SS ret
    PRINT "PUSH with RSP just above the hole's end: the write lands in it", 10
    mov r14, 0xFFFF800000000004
    STACK_SS push rax
    SET_GATE 12, sg_stubs + 12 * 16, 0, 0

    PRINT "JMP to a non-canonical address", 10
    mov rax, HOLE_LO
    EXPECT_FAULT 13, 0, jmp rax
    PRINT "CALL to a non-canonical address pushes nothing", 10
    mov rax, 0xFFFF7FFFFFFFFFF0
    mov rbx, rsp
    EXPECT_FAULT 13, 0, call rax
    EXPECT qword [SG_LAST_RSP], rbx, "  frame RSP (as before the CALL)"
    PRINT "RET to a non-canonical address", 10
    mov rax, HOLE_LO
    push rax
    EXPECT_FAULT 13, 0, ret
    pop rax

    %macro WRMSR_NC 2 ; msr, name
    PRINT "WRMSR ", %2, " non-canonical", 10
    mov ecx, %1
    xor eax, eax
    mov edx, 0x00008000
    EXPECT_FAULT 13, 0, wrmsr
    %endmacro
    WRMSR_NC 0xC0000100, "FS_BASE"
    WRMSR_NC 0xC0000101, "GS_BASE"
    WRMSR_NC 0xC0000102, "KERNEL_GS_BASE"
    WRMSR_NC 0xC0000082, "LSTAR"
    DONE
SYSGUEST_END
