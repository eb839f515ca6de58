; The TSS I/O permission bitmap at CPL 3 with IOPL 0: an access runs only
; when the bit of every port it touches is clear (IN AL from an allowed
; port, IN AX across into a denied one, a denied port, a port past the
; TSS limit), and with IOPL 3 the bitmap is not consulted.
%include "sysguest.inc"
SYSGUEST_LONG

%define UREC (SG_USTACK_TOP - 0x800) ; what ring 3 saw (a user page)
%define IOMAP 0x68
%define NPORTS 0x400                 ; the TSS limit covers ports 0..0x3FF

main:
    ; bitmap after the TSS, all denied but port 0xE9; limit past it
    mov word [SG_TSS + 0x66], IOMAP
    mov rdi, SG_TSS + IOMAP
    mov al, 0xff
    mov ecx, NPORTS / 8 + 1
    rep stosb
    and byte [SG_TSS + IOMAP + 0xE9 / 8], ~(1 << (0xE9 & 7))
    mov word [SG_GDT + SG_TSS_SEL], IOMAP + NPORTS / 8
    and byte [SG_GDT + SG_TSS_SEL + 5], ~2 ; available again, for LTR
    mov ax, SG_TSS_SEL
    ltr ax

    %macro USER_IO 3 ; label, name, expected vector
    PRINT "  ", %2, 10
    TRY %%c
    TO_USER %1, SG_USTACK_TOP
%%c:
    EXPECT qword [SG_LAST_VEC], %3, "    vector"
    EXPECT qword [SG_LAST_RIP], %1.end, "    stopped at"
    %endmacro
    PRINT "CPL 3, IOPL 0", 10
    USER_IO u_allowed, "in al, 0xE9 (allowed)", 6
    EXPECT qword [UREC], 0xE9, "    read"
    USER_IO u_wide, "in ax, 0xE9 (0xEA denied)", 13
    USER_IO u_denied, "in al, 0x80 (denied)", 13
    USER_IO u_dx, "in al, dx = 0x3F8 (denied)", 13
    USER_IO u_far, "in al, dx = 0x2000 (past the limit)", 13

    PRINT "CPL 3, IOPL 3: no bitmap", 10
    TRY .iopl
    push SG_UDATA
    push SG_USTACK_TOP
    push 0x3002
    push SG_UCODE
    push u_denied2
    iretq
.iopl:
    EXPECT qword [SG_LAST_VEC], 6, "  vector"
    EXPECT qword [SG_LAST_RIP], u_denied2.end, "  stopped at"
    DONE

USER_CODE_BEGIN
u_allowed:
    in al, 0xE9
    movzx eax, al
    mov [UREC], rax
.end:
    ud2
u_wide:
.end:
    in ax, 0xE9
    ud2
u_denied:
.end:
    in al, 0x80
    ud2
u_dx:
    mov dx, 0x3F8
.end:
    in al, dx
    ud2
u_far:
    mov dx, 0x2000
.end:
    in al, dx
    ud2
u_denied2:
    in al, 0x80
.end:
    ud2
USER_CODE_END
SYSGUEST_END
