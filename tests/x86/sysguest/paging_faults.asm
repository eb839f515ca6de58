; 4-level paging faults: #PF error code (P W U RSVD I/D), CR2 and the
; frame's RIP for not-present (at the PTE and at the PDE), write-protect
; (CR0.WP on and off), user/supervisor, NX and reserved-bit cases, a
; read straddling into a missing page, a fetch running into one; and that
; INVLPG makes a changed PTE visible.
%include "sysguest.inc"
SYSGUEST_LONG

%define PAGE  (SG_FREE + 0x10000) ; a test data page
%define PAGE2 (SG_FREE + 0x11000) ; the page after it
%define CODE  (SG_FREE + 0x20000) ; RAM to put code in
%define BIG   0x40000000 - 0x200000 ; the last 2 MiB page of PD0

%macro SET_PTE 2 ; linear, value
    mov rax, %2
    mov [SG_PTE(%1)], rax
    invlpg [%1]
%endmacro

main:
    mov qword [PAGE], 0x1111
    mov qword [PAGE2], 0x2222

    PRINT "supervisor read, not present", 10
    SET_PTE PAGE, PAGE | PTE_W
    EXPECT_PF 0, PAGE + 0x18, mov rax, [PAGE + 0x18]
    PRINT "supervisor write, not present", 10
    EXPECT_PF 2, PAGE + 8, mov qword [PAGE + 8], 1
    PRINT "present again after INVLPG", 10
    SET_PTE PAGE, PAGE | PTE_P | PTE_W
    mov rax, [PAGE]
    EXPECT rax, 0x1111, "  read"

    PRINT "read straddling into a missing page", 10
    SET_PTE PAGE2, PAGE2 | PTE_W
    EXPECT_PF 0, PAGE2, mov rax, [PAGE2 - 4]
    PRINT "write straddling into a missing page", 10
    mov qword [PAGE + 0xff8], 0x77
    EXPECT_PF 2, PAGE2, mov qword [PAGE2 - 4], 0x55
    EXPECT qword [PAGE + 0xff8], 0x77, "  the first page is unchanged"
    SET_PTE PAGE2, PAGE2 | PTE_P | PTE_W

    PRINT "not present at the PDE", 10
    mov rax, [SG_PD0 + (BIG >> 21) * 8]
    mov [SG_SCRATCH], rax
    mov qword [SG_PD0 + (BIG >> 21) * 8], 0
    invlpg [BIG + 0x1234]
    EXPECT_PF 0, BIG + 0x1234, mov eax, [BIG + 0x1234]
    mov rax, [SG_SCRATCH]
    mov [SG_PD0 + (BIG >> 21) * 8], rax
    invlpg [BIG + 0x1234]

    PRINT "supervisor write to a read-only page, CR0.WP=1", 10
    SET_PTE PAGE, PAGE | PTE_P
    EXPECT_PF 3, PAGE + 0x10, mov qword [PAGE + 0x10], 5
    PRINT "supervisor read of a read-only page", 10
    EXPECT_NO_FAULT mov rax, [PAGE + 0x10]
    PRINT "supervisor write to a read-only page, CR0.WP=0", 10
    mov rax, cr0
    btr rax, 16
    mov cr0, rax
    EXPECT_NO_FAULT mov qword [PAGE + 0x10], 5
    mov rax, cr0
    bts rax, 16
    mov cr0, rax
    EXPECT qword [PAGE + 0x10], 5, "  written"
    SET_PTE PAGE, PAGE | PTE_P | PTE_W

    ; QEMU 7.2 leaves P clear in the error code of a reserved-bit fault
    ; (hardware and hvp set it; tests/x86/cpu/test_system checks hvp's):
    ; only the other bits are compared here.
    PRINT "reserved bit 51 in the PTE, read", 10
    mov rax, PAGE | PTE_P | PTE_W | (1 << 51)
    mov [SG_PTE(PAGE)], rax
    invlpg [PAGE]
    mov edx, 8
    call rsvd_read
    PRINT "reserved bit 51 in the PTE, write", 10
    TRY .rsvd_w
.rsvd_w_insn:
    mov qword [PAGE + 0x20], 1
    inc qword [SG_FAILS]
.rsvd_w:
    mov edx, 0xA
    call rsvd_report
    EXPECT qword [SG_LAST_RIP], .rsvd_w_insn, "  rip"
    SET_PTE PAGE, PAGE | PTE_P | PTE_W
    PRINT "PS in a PML4 entry is reserved", 10
    ; PML4[1] (512 GiB up) -> the same PDPT, with PS
    mov rax, SG_PDPT | PTE_P | PTE_W | PTE_PS
    mov [SG_PML4 + 8], rax
    mov rax, (1 << 39) + PAGE + 0x20
    TRY .rsvd_pml4
    mov rbx, [rax]
    inc qword [SG_FAILS]
.rsvd_pml4:
    mov edx, 8
    call rsvd_report
    EXPECT qword [SG_LAST_CR2], (1 << 39) + PAGE + 0x20, "  cr2"
    PRINT "and without PS the same address works", 10
    mov qword [SG_PML4 + 8], SG_PDPT | PTE_P | PTE_W
    mov rax, (1 << 39) + PAGE
    EXPECT qword [rax], 0x1111, "  read"
    mov qword [SG_PML4 + 8], 0
    mov rax, cr3
    mov cr3, rax

    ; code for the fetch cases: "mov eax, 0x12345678; ret" in RAM
    mov rdi, CODE
    mov dword [rdi], 0x345678B8
    mov word [rdi + 4], 0xC312
    PRINT "fetch from an NX page", 10
    SET_PTE CODE, CODE | PTE_P | PTE_W | PTE_NX
    mov rax, CODE
    TRY .nx
    call rax
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
    jmp .nx_done
.nx:
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    EXPECT qword [SG_LAST_ERR], 0x11, "  error code"
    EXPECT qword [SG_LAST_CR2], CODE, "  cr2"
    EXPECT qword [SG_LAST_RIP], CODE, "  rip"
.nx_done:
    PRINT "read from an NX page", 10
    EXPECT_NO_FAULT mov eax, [CODE]
    PRINT "fetch after clearing NX", 10
    SET_PTE CODE, CODE | PTE_P | PTE_W
    mov rax, CODE
    xor ebx, ebx
    call rax
    EXPECT rax, 0x12345678, "  returned"

    PRINT "fetch of an instruction running into a missing page", 10
    ; 48 B8 imm64 (10 bytes) at CODE2 - 4, CODE2 not present
    mov rdi, CODE + 0x1000 - 4
    mov dword [rdi], 0x1111B848
    SET_PTE CODE + 0x1000, (CODE + 0x1000) | PTE_W
    mov rax, CODE + 0x1000 - 4
    TRY .split
    call rax
    PRINT "  no fault FAIL", 10
    inc qword [SG_FAILS]
    jmp .split_done
.split:
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    EXPECT qword [SG_LAST_ERR], 0x10, "  error code"
    EXPECT qword [SG_LAST_CR2], CODE + 0x1000, "  cr2"
    EXPECT qword [SG_LAST_RIP], CODE + 0x1000 - 4, "  rip"
.split_done:
    PRINT "and once the page is there, the same instruction runs", 10
    SET_PTE CODE + 0x1000, (CODE + 0x1000) | PTE_P | PTE_W
    mov dword [CODE + 0x1000], 0x44332211
    mov dword [CODE + 0x1004], 0x00C30000 ; imm64 high bytes 0, ret
    mov rax, CODE + 0x1000 - 4
    call rax
    EXPECT rax, 0x0000443322111111, "  rax"

    ; ring 3: the user code page and stack are U, PAGE is not
    PRINT "user read of a supervisor page", 10
    mov qword [SG_SCRATCH], u_read
    call user_fault
    EXPECT qword [SG_LAST_ERR], 5, "  error code"
    EXPECT qword [SG_LAST_CR2], PAGE + 0x30, "  cr2"
    EXPECT qword [SG_LAST_RIP], u_read, "  rip"
    EXPECT qword [SG_LAST_CS], SG_UCODE, "  cs"
    PRINT "user write to a read-only user page", 10
    SET_PTE PAGE, PAGE | PTE_P | PTE_U
    mov qword [SG_SCRATCH], u_write
    call user_fault
    EXPECT qword [SG_LAST_ERR], 7, "  error code"
    EXPECT qword [SG_LAST_CR2], PAGE + 0x38, "  cr2"
    PRINT "user write to a read-only user page, CR0.WP=0", 10
    mov rax, cr0
    btr rax, 16
    mov cr0, rax
    mov qword [SG_SCRATCH], u_write
    call user_fault
    EXPECT qword [SG_LAST_ERR], 7, "  error code"
    mov rax, cr0
    bts rax, 16
    mov cr0, rax
    PRINT "user read of a user page, then not present", 10
    SET_PTE PAGE, PAGE | PTE_U
    mov qword [SG_SCRATCH], u_read
    call user_fault
    EXPECT qword [SG_LAST_ERR], 4, "  error code"
    PRINT "user fetch from an NX user page", 10
    SET_PTE CODE, CODE | PTE_P | PTE_U | PTE_NX
    mov qword [SG_SCRATCH], u_call
    call user_fault
    EXPECT qword [SG_LAST_ERR], 0x15, "  error code"
    EXPECT qword [SG_LAST_CR2], CODE, "  cr2"
    EXPECT qword [SG_LAST_RIP], CODE, "  rip"
    PRINT "user fetch from a supervisor page", 10
    SET_PTE CODE, CODE | PTE_P
    mov qword [SG_SCRATCH], u_call
    call user_fault
    EXPECT qword [SG_LAST_ERR], 0x15, "  error code"
    PRINT "user: the supervisor-set upper level bit", 10
    ; U clear in the PDE: a U PTE below it is still supervisor-only
    SET_PTE CODE, CODE | PTE_P | PTE_U
    and qword [SG_PD0], ~PTE_U
    mov rax, cr3
    mov cr3, rax
    mov qword [SG_SCRATCH], u_call
    call user_fault
    EXPECT qword [SG_LAST_ERR], 0x15, "  error code"
    EXPECT qword [SG_LAST_RIP], u_call, "  rip (the user code page is supervisor now)"
    or qword [SG_PD0], PTE_U
    mov rax, cr3
    mov cr3, rax
    DONE

rsvd_read:
    TRY .caught
    mov rax, [PAGE + 0x20]
    inc qword [SG_FAILS]
.caught:
    call rsvd_report
    EXPECT qword [SG_LAST_CR2], PAGE + 0x20, "  cr2"
    ret

; prints the vector and the error code without P (expected: rdx)
rsvd_report:
    push rax
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    mov rax, [SG_LAST_ERR]
    and eax, ~1
    EXPECT rax, rdx, "  error code without P"
    pop rax
    ret

; Runs the user code at [SG_SCRATCH] in ring 3 and catches what it raises.
user_fault:
    TRY .back
    TO_USER qword [SG_SCRATCH], SG_USTACK_TOP
.back:
    EXPECT qword [SG_LAST_VEC], 14, "  vector"
    ret

USER_CODE_BEGIN
u_read:
    mov rax, [PAGE + 0x30]
    ud2
u_write:
    mov qword [PAGE + 0x38], 1
    ud2
u_call:
    mov rax, CODE
    call rax
    ud2
USER_CODE_END
SYSGUEST_END
