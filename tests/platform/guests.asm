; Guest programs for the platform conformance suite. Each is copied to
; guest memory by the test: real-mode ones run with CS = 0x100 (base
; 0x1000) and IP = 0, so offsets from the start label are their addresses;
; an interrupt handler, where there is one, sits at offset 0x100. The
; long-mode one runs at linear 0x1000 with identity paging.
; Ports: 0x10..0x1f are "report a value" ports the tests check.

section .rodata
%macro guest 1
global %1, %1_end
%1:
%endmacro
%macro endguest 1
%1_end:
%endmacro

bits 16
; OUT, IN, OUT of what was read, HLT.
guest g_io
    mov al, 0x5a
    out 0x10, al
    in al, 0x20
    out 0x21, al
    hlt
endguest g_io

; MMIO around a hole at 0x4000 (RAM at 0x6000 holds 0x33).
guest g_mmio
    mov al, [0x6000]
    out 0x10, al
    mov al, [0x4000]
    out 0x11, al
    mov byte [0x4000], 0x77
    hlt
endguest g_mmio

; The same device byte through ModRM forms.
guest g_mmio_modrm
    mov bx, 0x4000
    mov al, [bx]
    out 0x11, al
    mov byte [bx], 0x77
    hlt
endguest g_mmio_modrm

; String I/O: REP OUTSB of 4 bytes, REP INSB of 4 bytes, report one.
guest g_string
    cld
    mov si, 0x6000
    mov cx, 4
    mov dx, 0x30
    rep outsb
    mov di, 0x6100
    mov cx, 4
    rep insb
    mov al, [0x6102]
    out 0x11, al
    hlt
endguest g_string

guest g_cpuid
    mov eax, 0x40000000
    cpuid
    out 0x10, eax
    mov eax, ebx
    out 0x11, eax
    hlt
endguest g_cpuid

guest g_msr
    mov ecx, 0x40000100
    rdmsr
    out 0x10, eax
    mov eax, edx
    out 0x11, eax
    mov eax, 0x11223344
    mov edx, 0x55667788
    wrmsr
    mov ecx, 0x40000101        ; IgnoreWriteReadZero: reads 0 without an exit
    mov eax, 0xdead
    rdmsr
    out 0x12, eax
    hlt
endguest g_msr

guest g_int3
    int3
    hlt
endguest g_int3

; Single-step: with RFLAGS.TF the first NOP traps (#DB).
guest g_trap
    nop
    nop
    hlt
endguest g_trap

guest g_spin
    jmp $
endguest g_spin

guest g_dirty
    mov byte [0x3000], 1
    mov byte [0x5000], 2
    hlt
endguest g_dirty

guest g_ud2
    ud2
endguest g_ud2

; In-kernel APIC: enable it through DS (base FEE00000 set by the test),
; report, then wait for the interrupt; the handler reports on 0x11.
guest g_apic
    mov dword [0xf0], 0x1ff
    out 0x10, al
    sti
.wait:
    hlt
    jmp .wait
    times 0x100 - ($ - g_apic) db 0x90
    mov al, 0x40
    out 0x11, al
    hlt
endguest g_apic

; Interrupt window: IF off, report, IF on; the injected interrupt's handler
; reports on 0x11.
guest g_window
    cli
    out 0x10, al
    sti
    nop
.wait:
    hlt
    jmp .wait
    times 0x100 - ($ - g_window) db 0x90
    mov al, 0x41
    out 0x11, al
    hlt
endguest g_window

; LAPIC timer, one-shot: vector 0x42 after 100000 ticks (divide by 1).
guest g_timer
    mov dword [0xf0], 0x1ff
    mov dword [0x3e0], 0xb
    mov dword [0x320], 0x42
    mov dword [0x380], 100000
    sti
.wait:
    hlt
    jmp .wait
    times 0x100 - ($ - g_timer) db 0x90
    mov al, 0x42
    out 0x11, al
    hlt
endguest g_timer

; x2APIC: enable it through IA32_APIC_BASE, then the timer through MSRs.
guest g_x2timer
    mov ecx, 0x1b
    rdmsr
    or eax, 0xc00              ; EN | EXTD
    wrmsr
    xor edx, edx
    mov ecx, 0x80f             ; SVR
    mov eax, 0x1ff
    wrmsr
    mov ecx, 0x83e             ; divide by 1
    mov eax, 0xb
    wrmsr
    mov ecx, 0x832             ; LVT timer: one-shot, vector 0x44
    mov eax, 0x44
    wrmsr
    mov ecx, 0x838             ; initial count
    mov eax, 100000
    wrmsr
    sti
.wait:
    hlt
    jmp .wait
    times 0x100 - ($ - g_x2timer) db 0x90
    mov al, 0x44
    out 0x11, al
    hlt
endguest g_x2timer

; IPI: vCPU 0 starts at 0, sends vector 0x43 to APIC ID 1 and reports;
; vCPU 1 starts at 0x80, enables its APIC, reports ready, waits.
guest g_ipi
    mov dword [0x310], 0x01000000
    mov dword [0x300], 0x4043      ; fixed, assert, vector 0x43
    out 0x10, al
    hlt
    times 0x80 - ($ - g_ipi) db 0x90
    mov dword [0xf0], 0x1ff
    out 0x12, al
    sti
.wait:
    hlt
    jmp .wait
    times 0x100 - ($ - g_ipi) db 0x90
    mov al, 0x43
    out 0x11, al
    hlt
endguest g_ipi

bits 64
guest g_long
    mov rax, [rel .val]
    out 0x10, eax
    shr rax, 32
    out 0x11, eax
    mov eax, [dword 0x100000]  ; MMIO (no RAM there)
    out 0x12, eax
    mov dword [dword 0x100010], 0xcafe
    hlt
.val: dq 0x1122334455667788
endguest g_long



; Waits with STI;HLT (no lost wake-up) until reg >= n; leaves IF set.
%macro wait_for 2
%%w:
    cli
    cmp %1, %2
    jae %%d
    sti
    hlt
    jmp %%w
%%d:
    sti
%endmacro

; ---- 64-bit guests for the platform-emulated LAPIC (they run on soft
; before its CPU has real mode). Linear = physical; the LAPIC page is at
; FEE00000 (mapped by the test's long-mode tables); handlers sit at fixed
; offsets (0x200 + 0x20 * n) and the test points IDT gates at them.

; Timer: one-shot (0x40), periodic (0x41, three ticks), TSC-deadline (0x42).
guest g64_timer
    mov rbx, 0xfee00000
    mov dword [rbx+0xf0], 0x1ff
    mov dword [rbx+0x3e0], 0xb        ; divide by 1
    mov dword [rbx+0x320], 0x40       ; one-shot
    mov dword [rbx+0x380], 20000000   ; 20 ms (a loaded host must not miss the count)
    mov eax, [rbx+0x390]              ; current count: counting down
    out 0x13, eax
    sti
    wait_for r12d, 1
    mov eax, [rbx+0x390]
    out 0x10, eax                     ; 0 after a one-shot
    mov dword [rbx+0x320], 0x20041    ; periodic
    mov dword [rbx+0x380], 300000     ; 300 us
    wait_for r13d, 3
    mov dword [rbx+0x320], 0x30041    ; masked
    mov eax, r13d
    out 0x11, eax
    mov dword [rbx+0x320], 0x40042    ; TSC-deadline
    rdtsc
    shl rdx, 32
    or rax, rdx
    add rax, 2000000
    mov rdx, rax
    shr rdx, 32
    mov ecx, 0x6e0
    wrmsr
    wait_for r14d, 1
    rdmsr
    out 0x12, eax                     ; the deadline MSR reads 0 once fired
    hlt
    times 0x200 - ($ - g64_timer) db 0x90
    inc r12d
    mov dword [rbx+0xb0], 0
    iretq
    times 0x220 - ($ - g64_timer) db 0x90
    inc r13d
    mov dword [rbx+0xb0], 0
    iretq
    times 0x240 - ($ - g64_timer) db 0x90
    inc r14d
    mov dword [rbx+0xb0], 0
    iretq
endguest g64_timer

; Injection with the platform's APIC: level-triggered 0x50 (its EOI exits),
; TPR masking through CR8 (0x60 waits while CR8 = 6, 0x70 does not).
guest g64_inject
    mov rbx, 0xfee00000
    mov dword [rbx+0xf0], 0x1ff
    out 0x10, al                      ; the test sends level 0x50
    sti
    wait_for r12d, 1
    cli
    mov eax, 6
    mov cr8, rax
    out 0x12, al                      ; the test sends 0x60 and 0x70
    sti
    wait_for r13d, 1
    mov eax, r14d
    out 0x13, eax                     ; 0x60 not taken yet: 0
    mov eax, [rbx+0x80]
    out 0x15, eax                     ; TPR = 0x60
    xor eax, eax
    mov cr8, rax
    nop
    nop
    mov eax, r14d
    out 0x14, eax                     ; taken once CR8 went down: 1
    hlt
    times 0x200 - ($ - g64_inject) db 0x90
    inc r12d                          ; 0x50, level
    mov dword [rbx+0xb0], 0
    out 0x11, al
    iretq
    times 0x220 - ($ - g64_inject) db 0x90
    inc r14d                          ; 0x60
    mov dword [rbx+0xb0], 0
    iretq
    times 0x240 - ($ - g64_inject) db 0x90
    inc r13d                          ; 0x70
    mov dword [rbx+0xb0], 0
    iretq
endguest g64_inject

; x2APIC through MSRs: enable, read ID/version/LDR, TPR -> PPR, self IPI.
guest g64_x2apic
    mov ecx, 0x1b
    rdmsr
    or eax, 0xc00
    wrmsr
    mov ecx, 0x80f
    mov eax, 0x1ff
    xor edx, edx
    wrmsr
    mov ecx, 0x802
    rdmsr
    out 0x10, eax                     ; ID
    mov ecx, 0x803
    rdmsr
    out 0x11, eax                     ; version
    mov ecx, 0x80d
    rdmsr
    out 0x12, eax                     ; LDR
    mov ecx, 0x808
    mov eax, 0x30
    wrmsr
    mov ecx, 0x80a
    rdmsr
    out 0x13, eax                     ; PPR = 0x30
    mov ecx, 0x808
    xor eax, eax
    wrmsr
    sti
    mov ecx, 0x83f
    mov eax, 0x45
    wrmsr                             ; self IPI
    nop
    wait_for r12d, 1
    out 0x14, al
    hlt
    times 0x200 - ($ - g64_x2apic) db 0x90
    inc r12d
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
    iretq
endguest g64_x2apic

; IPIs: vCPU 0 (offset 0) sends fixed 0x43 to APIC ID 1 (physical), then
; waits for the answer; vCPU 1 (offset 0x80) sets its logical ID 2 (flat),
; reports ready and waits; its handler answers with 0x44 to logical 1
; (vCPU 0, LDR bit 0) and an NMI to itself comes last.
guest g64_ipi
    mov rbx, 0xfee00000
    mov dword [rbx+0xf0], 0x1ff
    mov dword [rbx+0xd0], 0x01000000  ; LDR: logical 1
    sti
    mov dword [rbx+0x310], 0x01000000
    mov dword [rbx+0x300], 0x4043     ; fixed, physical, vector 0x43
    wait_for r12d, 1
    out 0x10, al
    hlt
    times 0x80 - ($ - g64_ipi) db 0x90
    mov rbx, 0xfee00000
    mov dword [rbx+0xf0], 0x1ff
    mov dword [rbx+0xd0], 0x02000000  ; LDR: logical 2
    out 0x12, al
    sti
    wait_for r13d, 1
    mov dword [rbx+0x310], 0x01000000
    mov dword [rbx+0x300], 0x4844     ; fixed, logical, vector 0x44 -> vCPU 0
    mov dword [rbx+0x300], 0x44400    ; NMI to self (shorthand)
    wait_for r14d, 1
    out 0x11, al
    hlt
    times 0x200 - ($ - g64_ipi) db 0x90
    inc r13d                          ; 0x43 on vCPU 1
    mov dword [rbx+0xb0], 0
    iretq
    times 0x220 - ($ - g64_ipi) db 0x90
    inc r12d                          ; 0x44 on vCPU 0
    mov dword [rbx+0xb0], 0
    iretq
    times 0x240 - ($ - g64_ipi) db 0x90
    inc r14d                          ; NMI (vector 2)
    iretq
endguest g64_ipi

; Interrupt window with APIC mode None (the VMM injects 0x41).
guest g64_window
    cli
    out 0x10, al
    sti
    nop
.w:
    hlt
    jmp .w
    times 0x200 - ($ - g64_window) db 0x90
    out 0x11, al
    iretq
endguest g64_window

; SMP map change: read [0x200000] until it is 2, bumping [0x200008] every
; round (the test checks that no store reaches the old page afterwards).
guest g64_remap
    mov rbx, 0x200000
.l:
    inc qword [rbx+8]
    mov eax, [rbx]
    cmp eax, 2
    jne .l
    out 0x11, eax
    hlt
endguest g64_remap


; INIT/SIPI: vCPU 0 wakes vCPU 1 (halted with IF clear at 0x80) with
; INIT, INIT de-assert and STARTUP 0x08; vCPU 1 starts in real mode at
; 0x8000 (the test puts code there).
guest g64_sipi
    mov rbx, 0xfee00000
    mov dword [rbx+0xf0], 0x1ff
    mov dword [rbx+0x310], 0x01000000
    mov dword [rbx+0x300], 0xc500     ; INIT, level, assert
    mov dword [rbx+0x300], 0x8500     ; INIT, level, de-assert
    mov dword [rbx+0x300], 0x4608     ; STARTUP, vector 0x08
    out 0x10, al
    hlt
    times 0x80 - ($ - g64_sipi) db 0x90
    cli
.h:
    hlt
    jmp .h
endguest g64_sipi

bits 16
guest g16_ap
    mov al, 0x5a
    out 0x11, al
    hlt
endguest g16_ap
bits 64

; CPUID and MSR exits in 64-bit mode (the handler at 0x200 takes #GP).
guest g64_exits
    mov eax, 0x40000000
    cpuid                             ; exits: the VMM answers
    out 0x10, eax
    mov eax, ebx
    out 0x11, eax
    mov eax, 0x40000000
    cpuid                             ; exits: run again = the table's answer
    out 0x16, eax
    mov ecx, 0x40000100
    rdmsr                             ; exits
    out 0x12, eax
    mov eax, edx
    out 0x13, eax
    mov ecx, 0x40000101               ; IgnoreWriteReadZero
    mov eax, 0xdead
    rdmsr
    out 0x14, eax
    mov ecx, 0x40000102               ; not implemented, no action: #GP
    rdmsr
    hlt
    times 0x200 - ($ - g64_exits) db 0x90
    out 0x15, al
    hlt
endguest g64_exits

guest g64_dirty
    mov byte [0x3000], 1
    mov byte [0x5000], 2
    hlt
endguest g64_dirty

section .note.GNU-stack noalloc noexec nowrite progbits
