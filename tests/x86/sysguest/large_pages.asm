; 2 MiB and 1 GiB pages (as CPUID advertises them): aliases read and
; write the same memory as the identity map, offsets within the page are
; kept, reserved bits 20:13 (2 MiB) and 29:13 (1 GiB) fault, the PAT bit
; (12) does not; large pages honour R/W and NX; INVLPG of one address
; drops the whole large translation.
%include "sysguest.inc"
SYSGUEST_LONG

%define TPDPT (SG_FREE + 0x40000)
%define TPD   (SG_FREE + 0x41000)
%define BASE  (1 << 39)           ; PML4[1]: private tables
%define DATA  0x600000            ; a 2 MiB-aligned piece of RAM

; QEMU 7.2 leaves P clear in reserved-bit error codes: compared without it
%macro EXPECT_RSVD 2+ ; error code without P, instruction
    TRY %%caught
    %2
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
    jmp %%next
%%caught:
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    mov rax, [SG_LAST_ERR]
    and eax, ~1
    EXPECT rax, %1, "  error code without P"
%%next:
%endmacro

%macro FLUSH 0
    mov rax, cr3
    mov cr3, rax
%endmacro

main:
    mov edi, TPDPT
    mov ecx, 2 * 512
    xor eax, eax
    rep stosq
    mov rax, TPDPT + PTE_P + PTE_W
    mov [SG_PML4 + 8], rax
    mov rax, TPD + PTE_P + PTE_W
    mov [TPDPT], rax
    mov rbx, BASE
    mov qword [DATA + 0x1238], 0x600
    mov qword [DATA + 0x1FFFF8], 0x6FF

    PRINT "2 MiB page: alias of DATA at 512 GiB + 4 MiB", 10
    mov rax, DATA + PTE_P + PTE_W + PTE_PS
    mov [TPD + 2 * 8], rax
    FLUSH
    EXPECT qword [rbx + 0x400000 + 0x1238], 0x600, "  read at +0x1238"
    EXPECT qword [rbx + 0x400000 + 0x1FFFF8], 0x6FF, "  read at the last qword"
    mov qword [rbx + 0x400000 + 0x100000], 0x55
    EXPECT qword [DATA + 0x100000], 0x55, "  a write, seen through the identity map"
    PRINT "a qword straddling two 2 MiB pages", 10
    mov rax, (DATA + 0x200000) + PTE_P + PTE_W + PTE_PS
    mov [TPD + 3 * 8], rax
    mov qword [DATA + 0x200000], 0x11
    FLUSH
    mov rax, [rbx + 0x400000 + 0x1FFFFC]
    EXPECT rax, 0x0000001100000000, "  value"

    PRINT "the PAT bit (12) is allowed in a 2 MiB PDE", 10
    mov rax, DATA + PTE_P + PTE_W + PTE_PS + 0x1000
    mov [TPD + 2 * 8], rax
    FLUSH
    EXPECT_NO_FAULT mov rax, [rbx + 0x400000 + 0x1238]
    PRINT "reserved bit 13 in a 2 MiB PDE", 10
    mov rax, DATA + PTE_P + PTE_W + PTE_PS + 0x2000
    mov [TPD + 2 * 8], rax
    FLUSH
    EXPECT_RSVD 8, mov rax, [rbx + 0x400000 + 0x1238]
    PRINT "reserved bit 20 in a 2 MiB PDE, write", 10
    mov rax, DATA + PTE_P + PTE_W + PTE_PS + 0x100000
    mov [TPD + 2 * 8], rax
    FLUSH
    EXPECT_RSVD 0xA, mov qword [rbx + 0x400000 + 0x1238], 1

    PRINT "a read-only 2 MiB page", 10
    mov rax, DATA + PTE_P + PTE_PS
    mov [TPD + 2 * 8], rax
    FLUSH
    EXPECT_NO_FAULT mov rax, [rbx + 0x400000 + 0x1238]
    mov rax, BASE + 0x400000 + 0x1238
    EXPECT_PF 3, BASE + 0x400000 + 0x1238, mov qword [rbx + 0x400000 + 0x1238], 1
    PRINT "an NX 2 MiB page", 10
    mov dword [DATA + 0x3000], 0xC3C03148 ; xor rax, rax; ret
    mov rax, DATA + PTE_P + PTE_W + PTE_PS + PTE_NX
    mov [TPD + 2 * 8], rax
    FLUSH
    lea rax, [rbx + 0x400000 + 0x3000]
    TRY .nx
    call rax
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
    jmp .nx_done
.nx:
    EXPECT qword [SG_LAST_ERR], 0x11, "  error code"
    mov rax, BASE + 0x403000
    EXPECT qword [SG_LAST_CR2], rax, "  cr2"
.nx_done:
    PRINT "INVLPG of one address drops the whole 2 MiB translation", 10
    mov rax, DATA + PTE_P + PTE_W + PTE_PS
    mov [TPD + 2 * 8], rax
    FLUSH
    mov rax, [rbx + 0x400000 + 0x1238]  ; cached
    mov rax, (DATA + 0x200000) + PTE_P + PTE_W + PTE_PS
    mov [TPD + 2 * 8], rax
    invlpg [rbx + 0x400000 + 0x1FF000]
    EXPECT qword [rbx + 0x400000], 0x11, "  read at the start after INVLPG near the end"

    mov eax, 0x80000001
    cpuid
    bt edx, 26
    jc .has1g
    PRINT "1 GiB pages not advertised", 10
    jmp .done
.has1g:
    mov rbx, BASE
    PRINT "1 GiB page: 512 GiB + 1 GiB -> 0", 10
    mov rax, PTE_P + PTE_W + PTE_PS
    mov [TPDPT + 8], rax
    FLUSH
    EXPECT qword [rbx + 0x40000000 + DATA + 0x1238], 0x600, "  read"
    mov qword [rbx + 0x40000000 + DATA + 0x1240], 0x601
    EXPECT qword [DATA + 0x1240], 0x601, "  a write, seen through the identity map"
    PRINT "reserved bit 29 in a 1 GiB PDPTE", 10
    mov rax, PTE_P + PTE_W + PTE_PS + (1 << 29)
    mov [TPDPT + 8], rax
    FLUSH
    EXPECT_RSVD 8, mov rax, [rbx + 0x40000000 + DATA + 0x1238]
    PRINT "the PAT bit (12) is allowed in a 1 GiB PDPTE", 10
    mov rax, PTE_P + PTE_W + PTE_PS + 0x1000
    mov [TPDPT + 8], rax
    FLUSH
    EXPECT_NO_FAULT mov rax, [rbx + 0x40000000 + DATA + 0x1238]
.done:
    mov qword [SG_PML4 + 8], 0
    FLUSH
    DONE
SYSGUEST_END
