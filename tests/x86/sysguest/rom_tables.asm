; Page tables in ROM: a walk through a PML4 that lives in the (read-only)
; BIOS ROM works, and the accessed bit the CPU would set there is dropped,
; as a PC drops every write to its ROM: the entry reads back unchanged.
; (hvp used to write the A bit through the host pointer: a host fault
; when the embedder's ROM memory is read-only.) QEMU 7.2 never finishes
; the walk (it hangs until the runner's timeout), so its half is skipped.
%include "sysguest.inc"
SYSGUEST_NO_QEMU "QEMU 7.2 hangs walking a page table in ROM with A clear"
SYSGUEST_LONG

main:
    PRINT "CR3 -> a PML4 in ROM whose entry has A clear", 10
    mov eax, rom_pml4
    mov cr3, rax
    mov rax, [SG_FREE]
    mov qword [SG_FREE + 8], 1
    EXPECT qword [rom_pml4], sg_boot_pdpt + PTE_P + PTE_W, "  the ROM entry after a read and a write"
    PRINT "a ROM write by the guest is dropped too", 10
    mov qword [rom_pml4 + 8], 0x1234
    EXPECT qword [rom_pml4 + 8], 0, "  ROM qword 1"
    mov eax, SG_PML4
    mov cr3, rax
    DONE

    align 4096, db 0
rom_pml4:
    dq sg_boot_pdpt + PTE_P + PTE_W ; A clear; the levels below have it set
    times 511 dq 0
SYSGUEST_END
