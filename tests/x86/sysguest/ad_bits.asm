; Accessed and dirty bits: a read sets A in every entry of the walk, a
; write sets D in the leaf only (4 KiB PTE, 2 MiB PDE, 1 GiB PDPTE); a
; write to a page whose A is clear sets both; entries the walk does not
; use stay clear.
%include "sysguest.inc"
SYSGUEST_LONG

%define PAGE  (SG_FREE + 0x30000)
%define PAGE2 (SG_FREE + 0x31000)
%define PAGE3 (SG_FREE + 0x32000)
; a private walk under PML4[1] (512 GiB up): tables in free RAM, A/D clear
%define TPDPT (SG_FREE + 0x40000)
%define TPD   (SG_FREE + 0x41000)
%define TPT   (SG_FREE + 0x42000)
%define BASE  (1 << 39)

%macro AD 3 ; entry address, expected A|D bits, label
    mov rax, [%1]
    and eax, PTE_A | PTE_D
    EXPECT rax, %2, %3
%endmacro

main:
    PRINT "4 KiB pages in the standard tables", 10
    and qword [SG_PTE(PAGE)], ~(PTE_A | PTE_D)
    and qword [SG_PTE(PAGE2)], ~(PTE_A | PTE_D)
    and qword [SG_PTE(PAGE3)], ~(PTE_A | PTE_D)
    mov rax, cr3
    mov cr3, rax
    mov rax, [PAGE]
    mov qword [PAGE2 + 8], 1
    EXPECT qword [SG_PTE(PAGE)], PAGE | PTE_P | PTE_W | PTE_A, "  read: PTE"
    EXPECT qword [SG_PTE(PAGE2)], PAGE2 | PTE_P | PTE_W | PTE_A | PTE_D, "  write: PTE"
    EXPECT qword [SG_PTE(PAGE3)], PAGE3 | PTE_P | PTE_W, "  untouched: PTE"
    PRINT "a write after a read sets D", 10
    mov qword [PAGE + 8], 2
    EXPECT qword [SG_PTE(PAGE)], PAGE | PTE_P | PTE_W | PTE_A | PTE_D, "  PTE"
    PRINT "a locked read-modify-write sets D", 10
    lock inc qword [PAGE3]
    EXPECT qword [SG_PTE(PAGE3)], PAGE3 | PTE_P | PTE_W | PTE_A | PTE_D, "  PTE"

    PRINT "a fresh 4-level walk, read", 10
    call fresh_tables
    mov rax, TPT + PTE_P + PTE_W
    mov [TPD], rax
    mov rax, PAGE + PTE_P + PTE_W
    mov [TPT + 5 * 8], rax
    mov rbx, BASE
    mov rax, [rbx + 5 * 0x1000 + 8]
    EXPECT rax, 2, "  value"
    AD SG_PML4 + 8, PTE_A, "  PML4E"
    AD TPDPT, PTE_A, "  PDPTE"
    AD TPD, PTE_A, "  PDE"
    AD TPT + 5 * 8, PTE_A, "  PTE"
    AD TPT + 6 * 8, 0, "  PTE of the next page (unused)"
    PRINT "then a write", 10
    mov qword [rbx + 5 * 0x1000 + 16], 3
    AD SG_PML4 + 8, PTE_A, "  PML4E"
    AD TPDPT, PTE_A, "  PDPTE"
    AD TPD, PTE_A, "  PDE"
    AD TPT + 5 * 8, PTE_A | PTE_D, "  PTE"

    PRINT "a 2 MiB page, write first", 10
    call fresh_tables
    mov rax, 0x200000 + PTE_P + PTE_W + PTE_PS
    mov [TPD + 8], rax
    mov rbx, BASE
    mov qword [rbx + 0x200000 + 0x40000], 7
    EXPECT qword [0x240000], 7, "  value through the identity map"
    AD SG_PML4 + 8, PTE_A, "  PML4E"
    AD TPDPT, PTE_A, "  PDPTE"
    AD TPD + 8, PTE_A | PTE_D, "  PDE (leaf)"

    PRINT "a 1 GiB page, read then write", 10
    mov eax, 0x80000001
    cpuid
    bt edx, 26
    jnc .no1g
    call fresh_tables
    mov rax, PTE_P + PTE_W + PTE_PS      ; 512 GiB -> 0
    mov [TPDPT], rax
    mov rbx, BASE
    mov rax, [rbx + PAGE + 16]
    EXPECT rax, 3, "  value"
    AD TPDPT, PTE_A, "  PDPTE (leaf) after the read"
    mov qword [rbx + PAGE + 24], 4
    AD TPDPT, PTE_A | PTE_D, "  PDPTE (leaf) after the write"
    EXPECT qword [PAGE + 24], 4, "  value through the identity map"
    jmp .done
.no1g:
    PRINT "  1 GiB pages not advertised", 10
.done:
    mov qword [SG_PML4 + 8], 0
    mov rax, cr3
    mov cr3, rax
    DONE

; clears TPDPT/TPD/TPT, PML4[1] -> TPDPT (A clear), flushes the TLB
fresh_tables:
    push rdi
    push rcx
    push rax
    mov edi, TPDPT
    mov ecx, 3 * 512
    xor eax, eax
    rep stosq
    mov rax, TPDPT + PTE_P + PTE_W
    mov [SG_PML4 + 8], rax
    mov rax, TPD + PTE_P + PTE_W
    mov [TPDPT], rax
    mov rax, cr3
    mov cr3, rax
    pop rax
    pop rcx
    pop rdi
    ret
SYSGUEST_END
