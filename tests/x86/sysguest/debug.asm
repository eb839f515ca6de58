; Debug side of the CPU: MOV to/from DR0-DR7 (DR6/DR7 fixed bits, DR4 as
; DR6 without CR4.DE, #GP for DR7 bits 63:32), RFLAGS.TF single-step (#DB
; after every instruction that started with TF, the frame's RIP, DR6.BS,
; the POPF that clears TF still traps, MOV SS holds the trap until after
; the next instruction).
%include "sysguest.inc"
SYSGUEST_LONG

%define LOG  SG_SCRATCH           ; the frame RIP of each trap
%define CNT  (SG_SCRATCH + 0x100) ; traps taken
%define DR6V (SG_SCRATCH + 0x108) ; DR6 in the last trap

main:
    PRINT "MOV DR", 10
    mov rax, 0x123456789a
    mov dr0, rax
    mov rbx, dr0
    EXPECT rbx, 0x123456789a, "  DR0"
    xor eax, eax
    mov dr6, rax
    mov rbx, dr6
    EXPECT rbx, 0xffff0ff0, "  DR6 after writing 0"
    mov rbx, dr7
    EXPECT rbx, 0x400, "  DR7"
    mov rbx, dr4
    EXPECT rbx, 0xffff0ff0, "  DR4 (DR6)"
    mov rcx, 1 << 32
    EXPECT_FAULT 13, 0, mov dr7, rcx
    xor eax, eax
    mov dr6, rax

    SET_GATE 1, db_handler, 0, 0
    PRINT "TF single-step", 10
    mov qword [CNT], 0
    pushfq
    or qword [rsp], 0x100
    popfq
    nop
.b: nop
.c: pushfq
.d: and qword [rsp], ~0x100
.e: popfq
.f:
    EXPECT qword [CNT], 5, "  traps"
    EXPECT qword [LOG], .b, "  1"
    EXPECT qword [LOG + 8], .c, "  2"
    EXPECT qword [LOG + 16], .d, "  3"
    EXPECT qword [LOG + 24], .e, "  4"
    EXPECT qword [LOG + 32], .f, "  5 (the POPF that cleared TF)"
    mov rax, [DR6V]
    and eax, 0x4000
    EXPECT rax, 0x4000, "  DR6.BS"

    PRINT "TF over MOV SS", 10
    mov qword [CNT], 0
    mov ax, SG_KDATA
    pushfq
    or qword [rsp], 0x100
    popfq
    mov ss, ax
    nop
.s2: pushfq
.s3: and qword [rsp], ~0x100
.s4: popfq
.s5:
    EXPECT qword [CNT], 4, "  traps"
    EXPECT qword [LOG], .s2, "  1 (after MOV SS and the next)"
    EXPECT qword [LOG + 8], .s3, "  2"
    EXPECT qword [LOG + 24], .s5, "  4"
    DONE

db_handler:
    push rax
    push rbx
    mov rax, [rsp + 16]
    mov rbx, [CNT]
    mov [LOG + rbx * 8], rax
    inc qword [CNT]
    mov rax, dr6
    mov [DR6V], rax
    pop rbx
    pop rax
    iretq
SYSGUEST_END
