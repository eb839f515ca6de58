; SYSENTER from ring 3 (CS/SS from SYSENTER_CS, RIP/RSP from SYSENTER_EIP/
; ESP, IF cleared, RCX/RDX untouched), SYSEXIT back with REX.W (CS
; SYSENTER_CS+32, SS +40, RIP = RDX, RSP = RCX) and without it (32-bit
; compatibility mode: CS +16, SS +24), #GP(0) for SYSENTER with a null
; SYSENTER_CS and for SYSEXIT at CPL 3. hvp follows Intel (SDM vol. 2B
; SYSENTER/SYSEXIT); QEMU's max CPU is AMD-flavoured, where both are #UD
; in long mode, so the QEMU half is skipped.
%include "sysguest.inc"
SYSGUEST_NO_QEMU "QEMU TCG -cpu max is AMD: SYSENTER is #UD in long mode"
SYSGUEST_LONG

%define REC SG_SCRATCH
%define UREC (SG_USTACK_TOP - 0x800)
%define KSTK 0x60000

%macro WRMSR 2
    mov ecx, %1
    mov rax, %2
    mov rdx, rax
    shr rdx, 32
    wrmsr
%endmacro

main:
    WRMSR 0x174, SG_KCODE
    WRMSR 0x175, KSTK
    WRMSR 0x176, k_sysenter
    PRINT "ring 3 -> SYSENTER -> SYSEXIT (64-bit)", 10
    mov qword [REC + 0x40], 8
    TRY .back
    TO_USER u_enter, SG_USTACK_TOP
.back:
    EXPECT qword [SG_LAST_VEC], 6, "  ended by #UD"
    EXPECT qword [SG_LAST_RIP], u_after.end, "  at"
    EXPECT qword [REC + 0x00], SG_KCODE, "  kernel CS"
    EXPECT qword [REC + 0x08], SG_KDATA, "  kernel SS"
    EXPECT qword [REC + 0x10], KSTK, "  kernel RSP"
    EXPECT qword [REC + 0x18], 0x202 & ~0x200 | 2, "  kernel RFLAGS"
    EXPECT qword [REC + 0x20], 0x1111, "  RCX kept"
    EXPECT qword [REC + 0x28], 0x2222, "  RDX kept"
    EXPECT qword [UREC + 0x00], (SG_KCODE + 32) | 3, "  user CS"
    EXPECT qword [UREC + 0x08], (SG_KCODE + 40) | 3, "  user SS"
    EXPECT qword [UREC + 0x10], SG_USTACK_TOP - 0x100, "  user RSP"

    PRINT "SYSEXIT without REX.W: compatibility mode", 10
    mov qword [REC + 0x40], 4
    TRY .back32
    TO_USER u_enter, SG_USTACK_TOP
.back32:
    EXPECT qword [SG_LAST_VEC], 6, "  ended by #UD"
    EXPECT qword [SG_LAST_CS], (SG_KCODE + 16) | 3, "  CS"
    EXPECT qword [SG_LAST_RIP], u_after32.end, "  at"
    EXPECT qword [SG_LAST_SS], (SG_KCODE + 24) | 3, "  SS"
    EXPECT qword [SG_LAST_RSP], SG_USTACK_TOP - 0x200, "  RSP"

    PRINT "SYSEXIT at CPL 3", 10
    TRY .gp3
    TO_USER u_sysexit, SG_USTACK_TOP
.gp3:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    EXPECT qword [SG_LAST_RIP], u_sysexit, "  rip"
    PRINT "SYSENTER with SYSENTER_CS = 0", 10
    WRMSR 0x174, 0
    EXPECT_FAULT 13, 0, sysenter
    DONE

k_sysenter:
    mov ax, cs
    movzx eax, ax
    mov [REC + 0x00], rax
    mov ax, ss
    movzx eax, ax
    mov [REC + 0x08], rax
    mov [REC + 0x10], rsp
    pushfq
    pop qword [REC + 0x18]
    mov [REC + 0x20], rcx
    mov [REC + 0x28], rdx
    cmp qword [REC + 0x40], 8
    jne .to32
    mov rdx, u_after
    mov rcx, SG_USTACK_TOP - 0x100
    o64 sysexit
.to32:
    mov edx, u_after32
    mov ecx, SG_USTACK_TOP - 0x200
    sysexit

USER_CODE_BEGIN
u_enter:
    mov ecx, 0x1111
    mov edx, 0x2222
    sysenter
u_after:
    mov ax, cs
    movzx eax, ax
    mov [UREC + 0x00], rax
    mov ax, ss
    movzx eax, ax
    mov [UREC + 0x08], rax
    mov [UREC + 0x10], rsp
.end:
    ud2
u_sysexit:
    sysexit
bits 32
u_after32:
    nop
.end:
    ud2
bits 64
USER_CODE_END
SYSGUEST_END
