; Reset -> real mode -> 32-bit protected mode -> long mode, printing in
; each: the reset state (CS:IP at the reset vector, CR0), real-mode segment
; arithmetic (DS << 4 + offset, aliases), an INT through the IVT and its
; IRET, then protected mode with a flat 32-bit GDT (a far jump loads CS,
; data accesses above 1 MiB), then the standard way to long mode.
; No long-mode shortcut: this guest needs real mode.
%include "sysguest.inc"
SYSGUEST_RESET

main:
    PRINT "long mode", 10
    mov rax, [0x20000]
    EXPECT rax, 0x3332, "  what real and protected mode left in RAM"
    DONE

    bits 16
; cs:si: a NUL-terminated string to the debug port
print16:
    push ax
.l: cs lodsb
    test al, al
    jz .e
    out SG_PORT_DEBUG, al
    jmp .l
.e: pop ax
    ret

%macro PRINT16 1+
    jmp %%over
%%s: db %1, 0
%%over:
    mov si, SG_REAL(%%s)
    call print16
%endmacro

; CHECK16 cond-jump-if-ok, "label": prints label and ok or FAIL
%macro CHECK16 2
    j%-1 %%bad
    PRINT16 "  ", %2, ": ok", 10
    jmp %%next
%%bad:
    PRINT16 "  ", %2, ": FAIL", 10
    mov al, SG_EXIT_FAIL
    out SG_PORT_EXIT, al
%%next:
%endmacro

int30:
    PRINT16 "  in the INT 0x30 handler", 10
    mov bx, 0x7777
    iret

sg_reset16:
    cli
    cld
    PRINT16 "real mode", 10
    mov ax, cs
    cmp ax, 0xF000
    CHECK16 e, "CS is 0xF000"
    mov eax, cr0
    and eax, 0x7FFFFFFF & ~0x60000000
    cmp eax, 0x10
    CHECK16 e, "CR0 = ET (PE and PG clear)"
    ; a stack in low RAM
    xor ax, ax
    mov ss, ax
    mov sp, 0x7000
    ; DS:offset arithmetic and aliases
    mov ax, 0x1000
    mov ds, ax
    mov word [0x0010], 0x3132
    mov ax, 0x1001
    mov es, ax
    cmp word [es:0x0000], 0x3132
    CHECK16 e, "0x1000:0x0010 and 0x1001:0x0000 are the same byte"
    ; an interrupt through the IVT
    xor ax, ax
    mov ds, ax
    mov word [0x30 * 4], SG_REAL(int30)
    mov word [0x30 * 4 + 2], 0xF000
    xor bx, bx
    int 0x30
    cmp bx, 0x7777
    CHECK16 e, "INT 0x30 ran its handler and returned"
    ; into protected mode with the boot GDT
    o32 lgdt [cs:SG_REAL(sg_rom_gdtr)]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp dword SG_KCODE32:pm32

    bits 32
pm32:
    mov ax, SG_KDATA
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7000
    mov esi, .msg
.l: lodsb
    test al, al
    jz .e
    out SG_PORT_DEBUG, al
    jmp .l
.e:
    ; what real mode wrote at 0x10010 is at linear 0x10010 now (flat)
    mov eax, [0x10010]
    and eax, 0xFFFF
    cmp eax, 0x3132
    jne .fail
    mov dword [0x20000], 0x3332
    mov dword [0x20004], 0
    jmp SG_KCODE32:sg_prot32  ; the standard way on to long mode
.fail:
    mov al, SG_EXIT_FAIL
    out SG_PORT_EXIT, al
    hlt
.msg: db "32-bit protected mode", 10, 0
    bits 64
SYSGUEST_END
