; Exception and interrupt delivery through the 64-bit IDT: where the frame
; goes (the current stack aligned to 16, an IST stack, RSP0 on a ring
; change, IST over RSP0), what it holds (RIP, CS, RFLAGS, RSP, SS), IF in
; interrupt vs trap gates, the null SS after a ring change, gate checks
; (DPL for INT n, not-present gates) and #DF on its own IST stack.
; QEMU 7.2 puts vector * 16 in the index of a 64-bit IDT error code
; (hardware and hvp: vector * 8; tests/x86/cpu/test_system checks hvp's):
; only the IDT and EXT bits of those are compared here.
%include "sysguest.inc"
SYSGUEST_LONG

%define TSTACK 0x60000  ; a stack for the CPL 0 cases
%define REC    SG_SCRATCH ; what h_rec saw: +0 RSP, +8 RFLAGS, +16 SS, +24.. frame

main:
    SET_GATE 0x40, h_rec, 0, 0
    SET_GATE 0x41, h_rec, 1, 0
    SET_GATE 0x42, h_rec, 0, 3
    SET_GATE 0x43, h_rec, 2, 3
    SET_GATE 0x44, h_rec, 0, 0
    SET_GATE 0x45, h_rec, 0, 0
    mov byte [SG_IDT + 0x45 * 16 + 5], 0x8F ; a trap gate
    SET_GATE 0x46, h_rec, 0, 0
    mov byte [SG_IDT + 0x46 * 16 + 5], 0x0E ; not present
    mov r15, rsp

    PRINT "INT 0x40 at CPL 0, RSP 16-aligned: frame below RSP", 10
    mov rsp, TSTACK
    int 0x40
.a: mov rsp, r15
    EXPECT qword [REC], TSTACK - 40, "  RSP in the handler"
    EXPECT qword [REC + 24], .a, "  frame RIP (the next instruction)"
    EXPECT qword [REC + 32], SG_KCODE, "  frame CS"
    EXPECT qword [REC + 48], TSTACK, "  frame RSP"
    EXPECT qword [REC + 56], SG_KDATA, "  frame SS"
    PRINT "the same with RSP 8 off: aligned down first", 10
    mov rsp, TSTACK + 8
    int 0x40
    mov rsp, r15
    EXPECT qword [REC], TSTACK - 40, "  RSP in the handler"
    EXPECT qword [REC + 48], TSTACK + 8, "  frame RSP"

    PRINT "INT 0x41 through IST1", 10
    mov rsp, TSTACK
    int 0x41
    mov rsp, r15
    EXPECT qword [REC], SG_IST1_TOP - 40, "  RSP in the handler"
    EXPECT qword [REC + 48], TSTACK, "  frame RSP"
    ; SS stays as it is without a CPL change (SDM 6.14.4); QEMU 7.2 loads
    ; a null SS for every IST switch, so it is not compared here

    PRINT "interrupt gate clears IF, trap gate keeps it", 10
    sti
    int 0x40
    cli
    mov rax, [REC + 8]
    and eax, 0x200
    EXPECT rax, 0, "  IF in an interrupt gate's handler"
    mov rax, [REC + 40]
    and eax, 0x200
    EXPECT rax, 0x200, "  IF in its frame"
    sti
    int 0x45
    cli
    mov rax, [REC + 8]
    and eax, 0x200
    EXPECT rax, 0x200, "  IF in a trap gate's handler"

    PRINT "INT to a not-present gate: #NP(vector * 8 + 2)", 10
    TRY .np
.np_insn:
    int 0x46
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
.np:
    EXPECT qword [SG_LAST_VEC], 11, "  vector"
    mov rax, [SG_LAST_ERR]
    and eax, 7
    EXPECT rax, 2, "  error code bits 2:0"
    EXPECT qword [SG_LAST_RIP], .np_insn, "  rip"
    PRINT "INT3 is a trap: the frame points past it", 10
    SET_GATE 3, h_rec, 0, 0
    int3
.b: EXPECT qword [REC + 24], .b, "  frame RIP"

    PRINT "ring 3: INT 0x42 (DPL 3) switches to RSP0", 10
    TRY .u1
    TO_USER u_int42, SG_USTACK_TOP
.u1:
    EXPECT qword [SG_LAST_VEC], 6, "  back by #UD"
    EXPECT qword [REC], SG_RSP0_TOP - 40, "  RSP in the handler"
    EXPECT qword [REC + 16], 0, "  SS in the handler (null)"
    EXPECT qword [REC + 24], u_int42.ret, "  frame RIP"
    EXPECT qword [REC + 32], SG_UCODE, "  frame CS"
    EXPECT qword [REC + 48], SG_USTACK_TOP - 8, "  frame RSP"
    EXPECT qword [REC + 56], SG_UDATA, "  frame SS"
    PRINT "ring 3: INT 0x43 (DPL 3, IST2): IST wins over RSP0", 10
    TRY .u2
    TO_USER u_int43, SG_USTACK_TOP
.u2:
    EXPECT qword [REC], SG_IST2_TOP - 40, "  RSP in the handler"
    EXPECT qword [REC + 48], SG_USTACK_TOP, "  frame RSP"
    PRINT "ring 3: INT 0x44 (DPL 0): #GP(vector * 8 + 2)", 10
    TRY .u3
    TO_USER u_int44, SG_USTACK_TOP
.u3:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    mov rax, [SG_LAST_ERR]
    and eax, 7
    EXPECT rax, 2, "  error code bits 2:0"
    EXPECT qword [SG_LAST_RIP], u_int44, "  rip"
    EXPECT qword [SG_LAST_FRAME], SG_RSP0_TOP - 40, "  frame on RSP0"
    PRINT "ring 3: #GP with an error code through IST1", 10
    SET_GATE 13, sg_stubs + 13 * 16, 1, 0
    TRY .u4
    TO_USER u_hlt, SG_USTACK_TOP
.u4:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    EXPECT qword [SG_LAST_ERR], 0, "  error code"
    EXPECT qword [SG_LAST_FRAME], SG_IST1_TOP - 40, "  frame RIP slot"
    EXPECT qword [SG_LAST_SS], SG_UDATA, "  frame SS"
    SET_GATE 13, sg_stubs + 13 * 16, 0, 0

    PRINT "#PF through a not-present gate: #DF(0) on IST3", 10
    SET_GATE 8, sg_stubs + 8 * 16, 3, 0
    mov byte [SG_IDT + 14 * 16 + 5], 0x0E
    mov qword [SG_PTE(SG_FREE)], 0
    invlpg [SG_FREE]
    TRY .df
    mov rax, [SG_FREE]
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
.df:
    EXPECT qword [SG_LAST_VEC], 8, "  vector"
    EXPECT qword [SG_LAST_ERR], 0, "  error code"
    EXPECT qword [SG_LAST_FRAME], SG_IST3_TOP - 40, "  frame RIP slot"
    EXPECT qword [SG_LAST_CR2], SG_FREE, "  cr2"
    mov byte [SG_IDT + 14 * 16 + 5], 0x8E
    DONE

; Records RSP, RFLAGS and SS as the handler sees them, and the frame
; (vectors without an error code), then returns.
h_rec:
    mov [REC], rsp
    push rax
    pushfq
    pop rax
    mov [REC + 8], rax
    mov ax, ss
    movzx eax, ax
    mov [REC + 16], rax
%assign i 0
%rep 5
    mov rax, [rsp + 8 + i * 8]
    mov [REC + 24 + i * 8], rax
%assign i i + 1
%endrep
    pop rax
    iretq

USER_CODE_BEGIN
u_int42:
    push rax
    int 0x42
.ret:
    ud2
u_int43:
    int 0x43
    ud2
u_int44:
    int 0x44
    ud2
u_hlt:
    hlt
    ud2
USER_CODE_END
SYSGUEST_END
