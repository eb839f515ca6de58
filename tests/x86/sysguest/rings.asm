; Ring 3 <-> ring 0: SYSCALL (RCX, R11, SFMASK, CS/SS from STAR) and
; SYSRETQ back, INT 0x80 through a DPL 3 gate and IRETQ back, IRETQ
; into ring 3 with IOPL 3 (then CLI and port I/O are allowed), #GP(0) for
; privileged instructions, CLI and IN/OUT at CPL 3 with IOPL 0, #UD for
; SYSCALL when EFER.SCE is clear.
%include "sysguest.inc"
SYSGUEST_LONG

%define REC SG_SCRATCH            ; what the kernel side saw
%define UREC (SG_USTACK_TOP - 0x800) ; what ring 3 saw (a user page)

main:
    mov ecx, 0xC0000082 ; LSTAR
    mov eax, k_syscall
    xor edx, edx
    wrmsr
    SET_GATE 0x80, k_int80, 0, 3

    PRINT "ring 3 -> SYSCALL -> SYSRETQ -> INT 0x80 -> IRETQ -> #UD", 10
    TRY .back
    TO_USER u_main, SG_USTACK_TOP
.back:
    EXPECT qword [SG_LAST_VEC], 6, "  ended by #UD"
    EXPECT qword [SG_LAST_RIP], u_main.end, "  at"
    EXPECT qword [SG_LAST_CS], SG_UCODE, "  from CS"
    PRINT "what SYSCALL gave the kernel", 10
    EXPECT qword [REC + 0x00], u_main.after_syscall, "  RCX (the next RIP)"
    EXPECT qword [REC + 0x08], 0x402, "  R11 (RFLAGS in ring 3: DF)"
    EXPECT qword [REC + 0x10], 0x2, "  RFLAGS (SFMASK cleared IF, TF, DF)"
    EXPECT qword [REC + 0x18], SG_KCODE, "  CS"
    EXPECT qword [REC + 0x20], SG_KDATA, "  SS"
    EXPECT qword [REC + 0x28], SG_USTACK_TOP, "  RSP (unchanged)"
    PRINT "what ring 3 saw after SYSRETQ", 10
    EXPECT qword [UREC + 0x30], SG_UCODE, "  CS"
    EXPECT qword [UREC + 0x38], SG_UDATA, "  SS"
    EXPECT qword [UREC + 0x40], 0x402, "  RFLAGS (from R11)"
    PRINT "what INT 0x80 gave the kernel", 10
    EXPECT qword [REC + 0x48], u_main.after_int, "  frame RIP"
    EXPECT qword [REC + 0x50], SG_UCODE, "  frame CS"
    EXPECT qword [REC + 0x60], SG_USTACK_TOP, "  frame RSP"
    EXPECT qword [REC + 0x68], SG_UDATA, "  frame SS"
    EXPECT qword [REC + 0x70], 0x1234, "  rax from ring 3"
    PRINT "what ring 3 saw after IRETQ", 10
    EXPECT qword [UREC + 0x78], 0x4321, "  rax from the kernel"
    EXPECT qword [UREC + 0x80], SG_UCODE, "  CS"

    PRINT "CPL 3 with IOPL 0", 10
    %macro USER_GP 2 ; label, name
    PRINT "  ", %2, 10
    TRY %%c
    TO_USER %1, SG_USTACK_TOP
%%c:
    EXPECT qword [SG_LAST_VEC], 13, "    vector"
    EXPECT qword [SG_LAST_ERR], 0, "    error code"
    EXPECT qword [SG_LAST_RIP], %1, "    rip"
    %endmacro
    USER_GP u_cr0, "mov rax, cr0"
    USER_GP u_cr3w, "mov cr3, rax"
    USER_GP u_hlt, "hlt"
    USER_GP u_cli, "cli"
    USER_GP u_in, "in al, 0x80"
    USER_GP u_out, "out 0xE9, al"
    USER_GP u_lgdt, "lgdt"
    USER_GP u_wrmsr, "wrmsr"
    USER_GP u_invlpg, "invlpg"

    PRINT "CPL 3 with IOPL 3: CLI, STI and OUT run", 10
    TRY .iopl
    push SG_UDATA
    push SG_USTACK_TOP
    push 0x3002
    push SG_UCODE
    push u_iopl
    iretq
.iopl:
    EXPECT qword [SG_LAST_VEC], 6, "  ended by #UD"
    EXPECT qword [SG_LAST_RIP], u_iopl.end, "  at"
    mov rax, [SG_LAST_RFLAGS]
    and eax, 0x3200
    EXPECT rax, 0x3000, "  IOPL 3, IF clear again"

    PRINT "SYSCALL with EFER.SCE clear: #UD", 10
    mov ecx, 0xC0000080
    rdmsr
    and eax, ~1
    wrmsr
    EXPECT_FAULT 6, 0, syscall
    mov ecx, 0xC0000080
    rdmsr
    or eax, 1
    wrmsr
    DONE

k_syscall:
    mov [REC + 0x00], rcx
    mov [REC + 0x08], r11
    pushfq
    pop rax
    mov [REC + 0x10], rax
    mov ax, cs
    movzx eax, ax
    mov [REC + 0x18], rax
    mov ax, ss
    movzx eax, ax
    mov [REC + 0x20], rax
    mov [REC + 0x28], rsp
    o64 sysret

k_int80:
    push rax
    mov rax, [rsp + 8]
    mov [REC + 0x48], rax
    mov rax, [rsp + 16]
    mov [REC + 0x50], rax
    mov rax, [rsp + 32]
    mov [REC + 0x60], rax
    mov rax, [rsp + 40]
    mov [REC + 0x68], rax
    pop rax
    mov [REC + 0x70], rax
    mov eax, 0x4321
    iretq

USER_CODE_BEGIN
u_main:
    std
    mov rax, 0x12
    syscall
.after_syscall:
    pushfq
    pop qword [UREC + 0x40]
    cld
    mov ax, cs
    movzx eax, ax
    mov [UREC + 0x30], rax
    mov ax, ss
    movzx eax, ax
    mov [UREC + 0x38], rax
    mov eax, 0x1234
    int 0x80
.after_int:
    mov [UREC + 0x78], rax
    mov ax, cs
    movzx eax, ax
    mov [UREC + 0x80], rax
.end:
    ud2
u_cr0:
    mov rax, cr0
u_cr3w:
    mov cr3, rax
u_hlt:
    hlt
u_cli:
    cli
u_in:
    in al, 0x80
u_out:
    out 0xE9, al
u_lgdt:
    lgdt [rsp]
u_wrmsr:
    wrmsr
u_invlpg:
    invlpg [rsp]
u_iopl:
    cli
    sti
    cli
    mov al, '*'
    out 0xE9, al
    mov al, 10
    out 0xE9, al
.end:
    ud2
USER_CODE_END
SYSGUEST_END
