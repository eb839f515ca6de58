; Non-canonical addresses: #GP(0) for data accesses (reads, writes, string
; instructions) and an FS base that makes the address non-canonical; a
; canonical high-half address is a #PF.
; Where QEMU 7.2 differs from hardware (#SS for stack references, RIP of
; a branch to a non-canonical address, WRMSR of a non-canonical FS_BASE)
; see noncanonical_hw.
; Not here: an access that starts canonical and runs into the hole (the
; host CPU raises #GP, hvp and QEMU 7.2 a #PF for the unmapped first
; page), LGDT/LIDT of a non-canonical base (AMD: #GP, Intel: no check).
%include "sysguest.inc"
SYSGUEST_LONG

%define HOLE_LO 0x0000800000000000 ; the first non-canonical address
%define HOLE_HI 0xFFFF7FFFFFFFFFFF ; the last

main:
    PRINT "read at 0x0000800000000000", 10
    mov rbx, HOLE_LO
    EXPECT_FAULT 13, 0, mov rax, [rbx]
    PRINT "write at 0xFFFF7FFFFFFFFFFF", 10
    mov rbx, HOLE_HI
    EXPECT_FAULT 13, 0, mov byte [rbx], 1
    PRINT "canonical high half: a #PF, not a #GP", 10
    mov rbx, 0xFFFF800000000000
    TRY .pf
    mov rax, [rbx]
    inc qword [SG_FAILS]
.pf:
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    mov rax, 0xFFFF800000000000
    EXPECT qword [SG_LAST_CR2], rax, "  cr2"
    PRINT "MOVSB to a non-canonical RDI", 10
    mov rsi, SG_SCRATCH
    mov rdi, HOLE_LO
    EXPECT_FAULT 13, 0, movsb
    PRINT "LODSQ from a non-canonical RSI", 10
    mov rsi, HOLE_HI - 7
    EXPECT_FAULT 13, 0, lodsq

    PRINT "WRMSR FS_BASE canonical, then read through FS", 10
    mov qword [SG_SCRATCH + 0x10], 0x5a5a
    mov ecx, 0xC0000100
    mov eax, SG_SCRATCH
    xor edx, edx
    wrmsr
    mov rax, [fs:0x10]
    EXPECT rax, 0x5a5a, "  fs:0x10"
    PRINT "an FS base that makes the address non-canonical", 10
    mov ecx, 0xC0000100
    mov eax, 0xFFFFF000
    mov edx, 0x00007FFF
    wrmsr
    EXPECT_FAULT 13, 0, mov rax, [fs:0x1000]
    mov ecx, 0xC0000100
    xor eax, eax
    xor edx, edx
    wrmsr
    DONE
SYSGUEST_END
