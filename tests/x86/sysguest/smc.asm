; Self- and cross-modifying code: stores into code that has already run
; (and been decoded) take effect on its next execution, including a store
; into the very next instruction, a loop that rewrites its own body, an
; instruction that straddles two pages patched in its second page, code
; rewritten through a second linear alias of the same physical page, by
; REP MOVSB, and code in another page patched before a jump to it.
%include "sysguest.inc"
SYSGUEST_LONG

%define CODE  (SG_FREE + 0x50000) ; two pages of RAM code
%define ALIAS (SG_FREE + 0x60000) ; another linear address for CODE's page

; COPY snippet, dest: copies the bytes between snippet and snippet_end
%macro COPY 2
    mov esi, %1
    mov edi, %2
    mov ecx, %1_end - %1
    rep movsb
%endmacro

main:
    PRINT "patching an immediate between calls, 50 times", 10
    COPY s_ret_imm, CODE
    xor ebx, ebx
    mov r12d, 0
.loop:
    mov [CODE + 1], r12d      ; mov eax, imm32: the immediate
    mov rax, CODE
    call rax
    cmp eax, r12d
    je .same
    inc ebx
.same:
    add r12d, 0x01010101
    cmp r12d, 50 * 0x01010101
    jb .loop
    EXPECT rbx, 0, "  calls that returned a stale value"

    PRINT "a store into the next instruction", 10
    COPY s_next, CODE
    mov rax, CODE
    call rax
    EXPECT rax, 0x42, "  rax"
    PRINT "and again (the patched code, patched again)", 10
    mov byte [CODE + (s_next.x - s_next) + 1], 0x11
    mov rax, CODE
    call rax
    EXPECT rax, 0x42, "  rax"

    PRINT "a loop that rewrites its own body", 10
    COPY s_loop, CODE
    mov rax, CODE
    call rax
    EXPECT rax, 4 * 2, "  rax (0 in the first pass, then 2)"

    PRINT "an instruction straddling two pages, patched in the second", 10
    COPY s_ret_imm, CODE + 0x1000 - 3 ; B8 at 0xFFD, the immediate from 0xFFE
    mov dword [CODE + 0x1000 - 2], 0x11111111
    mov rax, CODE + 0x1000 - 3
    call rax
    EXPECT rax, 0x11111111, "  first"
    mov byte [CODE + 0x1001], 0x22
    mov rax, CODE + 0x1000 - 3
    call rax
    EXPECT rax, 0x22111111, "  after patching byte 0x1001 (its top byte)"

    PRINT "patched through an alias, run through the original and the alias", 10
    mov rax, CODE | PTE_P | PTE_W
    mov [SG_PTE(ALIAS)], rax
    invlpg [ALIAS]
    COPY s_ret_imm, CODE
    mov dword [CODE + 1], 5
    mov rax, CODE
    call rax
    mov rax, ALIAS
    call rax
    EXPECT rax, 5, "  through the alias"
    mov dword [ALIAS + 1], 6
    mov rax, CODE
    call rax
    EXPECT rax, 6, "  original, after a store through the alias"
    mov dword [CODE + 1], 7
    mov rax, ALIAS
    call rax
    EXPECT rax, 7, "  alias, after a store through the original"

    PRINT "code replaced by REP MOVSB", 10
    COPY s_ret_imm, CODE
    mov dword [CODE + 1], 8
    mov rax, CODE
    call rax
    COPY s_other, CODE
    mov rax, CODE
    call rax
    EXPECT rax, 0x99, "  rax"

    PRINT "code in another page patched before a jump to it", 10
    COPY s_ret_imm, CODE + 0x800
    COPY s_cross, CODE + 0x1100
    mov dword [CODE + 0x801], 1
    mov rax, CODE + 0x800
    call rax                      ; decoded once
    mov rax, CODE + 0x1100
    call rax                      ; patches CODE + 0x801 to 3 and calls it
    EXPECT rax, 3, "  rax"
    DONE

; mov eax, imm32; ret
s_ret_imm:
    mov eax, 0
    ret
s_ret_imm_end:

s_next:
    mov byte [rel .x + 1], 0x42
.x: mov eax, 0x11
    ret
s_next_end:

s_loop:
    xor eax, eax
    mov ecx, 5
.l: add eax, 0
    mov byte [rel .l + 2], 2
    dec ecx
    jnz .l
    ret
s_loop_end:

s_other:
    mov eax, 0x99
    ret
s_other_end:

; at CODE + 0x1100: patches the routine at CODE + 0x800 and calls it
s_cross:
    mov dword [rel s_cross - 0x1100 + 0x801 + (s_cross - s_cross)], 3
    lea rax, [rel s_cross - 0x1100 + 0x800]
    jmp rax
s_cross_end:
SYSGUEST_END
