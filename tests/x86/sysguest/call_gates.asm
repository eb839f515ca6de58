; 64-bit call gates: a far CALL through a DPL 3 gate from ring 3 lands in
; ring 0 on the TSS's RSP0 stack with the caller's SS, RSP, CS and RIP
; pushed, and a far RET (REX.W) returns to ring 3; a gate whose DPL is
; below the caller's CPL is #GP(gate selector).
; Not here: the same gate called from ring 0 (no stack switch): hvp does
; what the SDM describes, QEMU 7.2 raises #GP(0x8c00); not settled which.
%include "sysguest.inc"
SYSGUEST_LONG

%define GATE3  0x48 ; 16-byte call gate, DPL 3 -> k_gate
%define GATE0  0x58 ; 16-byte call gate, DPL 0 -> k_gate
%define REC    SG_SCRATCH
%define UREC   (SG_USTACK_TOP - 0x800)

%macro CALL_GATE 3 ; GDT offset, target, DPL
    mov rax, %2
    mov rdx, rax
    and eax, 0xFFFF
    or eax, SG_KCODE << 16
    mov [SG_GDT + %1], eax
    mov eax, edx
    and eax, 0xFFFF0000
    or eax, 0x8C00 | ((%3) << 13)
    mov [SG_GDT + %1 + 4], eax
    shr rdx, 32
    mov [SG_GDT + %1 + 8], rdx
%endmacro

main:
    CALL_GATE GATE3, k_gate, 3
    CALL_GATE GATE0, k_gate, 0

    PRINT "ring 3: far CALL through a DPL 3 gate, far RET back", 10
    TRY .back
    TO_USER u_call, SG_USTACK_TOP
.back:
    EXPECT qword [SG_LAST_VEC], 6, "  ended by #UD"
    EXPECT qword [SG_LAST_RIP], u_call.end, "  at"
    EXPECT qword [REC + 0x00], SG_RSP0_TOP - 32, "  RSP in ring 0"
    EXPECT qword [REC + 0x08], u_call.ret, "  pushed RIP"
    EXPECT qword [REC + 0x10], SG_UCODE, "  pushed CS"
    EXPECT qword [REC + 0x18], SG_USTACK_TOP - 8, "  pushed RSP"
    EXPECT qword [REC + 0x20], SG_UDATA, "  pushed SS"
    EXPECT qword [REC + 0x28], SG_KCODE, "  CS in the gate's code"
    EXPECT qword [UREC], SG_UCODE, "  CS back in ring 3"
    EXPECT qword [UREC + 8], SG_USTACK_TOP - 8, "  RSP back in ring 3"

    PRINT "ring 3: far CALL through a DPL 0 gate", 10
    TRY .gp
    TO_USER u_call0, SG_USTACK_TOP
.gp:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    EXPECT qword [SG_LAST_ERR], GATE0, "  error code"
    EXPECT qword [SG_LAST_RIP], u_call0, "  rip"
    DONE

; records what the far CALL left, returns with a far RET
k_gate:
    lea rax, [rsp + 16]          ; as if nothing had been pushed at CPL 0
    cmp qword [rsp + 8], SG_KCODE
    je .same
    mov rax, rsp
.same:
    mov [REC + 0x00], rax
    mov rax, [rsp]
    mov [REC + 0x08], rax
    mov rax, [rsp + 8]
    mov [REC + 0x10], rax
    cmp qword [rsp + 8], SG_KCODE
    je .skip
    mov rax, [rsp + 16]
    mov [REC + 0x18], rax
    mov rax, [rsp + 24]
    mov [REC + 0x20], rax
.skip:
    mov ax, cs
    movzx eax, ax
    mov [REC + 0x28], rax
    o64 retf

USER_CODE_BEGIN
u_call:
    push rax
    call far [rel .ptr]
.ret:
    mov ax, cs
    movzx eax, ax
    mov [UREC], rax
    mov [UREC + 8], rsp
.end:
    ud2
    align 8
.ptr:
    dq 0
    dw GATE3 | 3
u_call0:
    call far [rel .ptr]
    ud2
    align 8
.ptr:
    dq 0
    dw GATE0 | 3
USER_CODE_END
SYSGUEST_END
