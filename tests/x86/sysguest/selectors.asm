; Segment selector checks in 64-bit mode: MOV to DS/ES/FS/GS/SS and LTR
; raise #GP(selector) for selectors past the GDT limit, in an absent LDT,
; for system or execute-only descriptors, privilege mismatches, and
; #NP/#SS(selector) for not-present ones; the null selector is fine in
; DS and, at CPL 0 in 64-bit mode, in SS. (IRETQ's checks of the new
; SS are in iretq_checks.)
%include "sysguest.inc"
SYSGUEST_LONG

; extra descriptors from SG_GDT_FREE
%define S_XONLY  0x48 ; 64-bit code, execute-only
%define S_CODE_R 0x50 ; 32-bit code, readable
%define S_NP     0x58 ; data, not present
%define S_DATA3  0x60 ; data, DPL 3
%define S_LIMIT  0x1000 ; past the GDT's limit (0xFFF)

%macro LOADSEG 4+ ; seg register, selector, vector, error code
    mov ax, %2
    EXPECT_FAULT %3, %4, mov %1, ax
%endmacro

main:
    mov rax, 0x00AF98000000FFFF
    mov [SG_GDT + S_XONLY], rax
    mov rax, 0x00CF9B000000FFFF
    mov [SG_GDT + S_CODE_R], rax
    mov rax, 0x00CF13000000FFFF
    mov [SG_GDT + S_NP], rax
    mov rax, 0x00CFF3000000FFFF
    mov [SG_GDT + S_DATA3], rax

    PRINT "DS: past the GDT limit", 10
    LOADSEG ds, S_LIMIT, 13, S_LIMIT
    PRINT "ES: in the LDT (none loaded)", 10
    LOADSEG es, 0x14, 13, 0x14
    PRINT "FS: the TSS descriptor", 10
    LOADSEG fs, SG_TSS_SEL, 13, SG_TSS_SEL
    PRINT "GS: execute-only code", 10
    LOADSEG gs, S_XONLY, 13, S_XONLY
    PRINT "DS: not present", 10
    LOADSEG ds, S_NP, 11, S_NP
    PRINT "DS: RPL 3 on a DPL 0 data segment", 10
    LOADSEG ds, SG_KDATA | 3, 13, SG_KDATA
    PRINT "DS: readable code is fine, and so is null", 10
    mov ax, S_CODE_R
    EXPECT_NO_FAULT mov ds, ax
    xor eax, eax
    EXPECT_NO_FAULT mov ds, ax
    mov ax, SG_KDATA
    mov ds, ax
    PRINT "DS: DPL 3 data at CPL 0 is fine", 10
    mov ax, S_DATA3
    EXPECT_NO_FAULT mov es, ax
    mov ax, SG_KDATA
    mov es, ax

    PRINT "SS: code segment", 10
    LOADSEG ss, SG_KCODE, 13, SG_KCODE
    PRINT "SS: DPL 3 data at CPL 0", 10
    LOADSEG ss, S_DATA3, 13, S_DATA3
    PRINT "SS: RPL 3 at CPL 0", 10
    LOADSEG ss, SG_KDATA | 3, 13, SG_KDATA
    PRINT "SS: not present", 10
    mov rax, 0x00CF13000000FFFF & ~(3 << 45)
    mov [SG_GDT + S_NP], rax
    LOADSEG ss, S_NP, 12, S_NP
    PRINT "SS: null at CPL 0", 10
    xor eax, eax
    EXPECT_NO_FAULT mov ss, ax
    mov ax, SG_KDATA
    mov ss, ax

    PRINT "LTR: a data segment", 10
    mov ax, SG_KDATA
    EXPECT_FAULT 13, SG_KDATA, ltr ax
    PRINT "LTR: the busy TSS", 10
    mov ax, SG_TSS_SEL
    EXPECT_FAULT 13, SG_TSS_SEL, ltr ax

    PRINT "ring 3: MOV DS of a DPL 0 segment", 10
    TRY .u
    TO_USER u_code, SG_USTACK_TOP
.u:
    EXPECT qword [SG_LAST_VEC], 13, "  vector"
    EXPECT qword [SG_LAST_ERR], SG_KDATA, "  error code"
    EXPECT qword [SG_LAST_RIP], u_code.mov, "  rip"
    DONE

USER_CODE_BEGIN
u_code:
    mov ax, SG_KDATA | 3
.mov:
    mov ds, ax
    ud2
USER_CODE_END
SYSGUEST_END
