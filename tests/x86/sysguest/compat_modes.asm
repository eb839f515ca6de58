; Compatibility mode and leaving/re-entering long mode, in the shape of the
; Linux 6.1 decompressor's trampoline: LRETQ to a 32-bit code segment, new
; DS/SS, CR0.PG off (EFER.LMA follows), a store with paging off, CR3 and
; CR0.PG again, LRET (32-bit) to 64-bit code. Then segment loads in
; compatibility mode that fault (#GP with the selector, #NP), caught in
; 64-bit mode through the 64-bit IDT.
%include "sysguest.inc"
SYSGUEST_LONG

%define S_ABSENT (SG_GDT_FREE)  ; data descriptor, not present
%define STK32 0x60000           ; the 32-bit code's stack
%define SAVE (SG_SCRATCH)       ; rsp, then what the 32-bit code saw

main:
    mov rax, 0x00CF13000000FFFF
    mov [SG_GDT + S_ABSENT], rax
    PRINT "trampoline", 10
    mov [SAVE], rsp
    push SG_KCODE32
    push tramp32
    o64 retf
back64:
    mov rsp, [SAVE]
    mov ecx, 0xC0000080
    rdmsr
    shl rdx, 32
    or rax, rdx
    EXPECT rax, 0xD01, "EFER back in long mode"
    mov eax, [SAVE + 8]
    EXPECT rax, 0x901, "EFER with paging off (LME, not LMA)"
    mov eax, [SAVE + 16]
    EXPECT rax, 0x10033, "CR0 with paging off"
    mov eax, [SG_FREE]
    EXPECT rax, 0x5A5A5A5A, "the store made with paging off"
    movzx eax, word [SAVE + 24]
    EXPECT rax, SG_KCODE32, "CS in compatibility mode"
    xor eax, eax
    mov ax, ss
    EXPECT rax, SG_KDATA, "SS"

    PRINT "compatibility-mode segment loads", 10
    TRY .c1
    push SG_KCODE32
    push load_far
    o64 retf
.c1:
    EXPECT qword [SG_LAST_VEC], 13, "  beyond the GDT limit: vector"
    EXPECT qword [SG_LAST_ERR], 0x1000, "  error code"
    EXPECT qword [SG_LAST_CS], SG_KCODE32, "  CS"
    TRY .c2
    push SG_KCODE32
    push load_absent
    o64 retf
.c2:
    EXPECT qword [SG_LAST_VEC], 11, "  not present: vector"
    EXPECT qword [SG_LAST_ERR], S_ABSENT, "  error code"
    TRY .c3
    push SG_KCODE32
    push load_ss_code
    o64 retf
.c3:
    EXPECT qword [SG_LAST_VEC], 13, "  code segment into SS: vector"
    EXPECT qword [SG_LAST_ERR], SG_KCODE32, "  error code"
    DONE

    bits 32
tramp32:
    mov eax, SG_KDATA
    mov ds, eax
    mov ss, eax
    mov esp, STK32
    mov [SAVE + 24], cs
    mov eax, cr0
    btr eax, 31
    mov cr0, eax
    mov [SAVE + 16], eax
    mov ecx, 0xC0000080
    rdmsr
    mov [SAVE + 8], eax
    mov dword [SG_FREE], 0x5A5A5A5A
    mov eax, SG_PML4
    mov cr3, eax
    push SG_KCODE
    push back64
    mov eax, cr0
    bts eax, 31
    mov cr0, eax
    retf
load_far:
    mov ax, 0x1000
    mov ds, ax
    hlt
load_absent:
    mov ax, S_ABSENT
    mov es, ax
    hlt
load_ss_code:
    mov ax, SG_KCODE32
    mov ss, ax
    hlt
    bits 64
SYSGUEST_END
