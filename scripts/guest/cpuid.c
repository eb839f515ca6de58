/* hvp-cpuid: prints the CPUID leaves the (virtual) CPU advertises, one per
 * line: "leaf subleaf eax ebx ecx edx" in hex. Basic leaves 0..max and
 * extended leaves 0x80000000..max, subleaf 0 (and leaf 7's subleaves).
 * The boot test compares it with the guest kernel's /proc/cpuinfo.
 * Freestanding (no libc): built with -nostdlib -static by scripts/guest.sh. */
typedef unsigned int u32;

static void cpuid(u32 leaf, u32 sub, u32 r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static long sys3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static char *hex(char *p, u32 v)
{
    for (int i = 7; i >= 0; i--) *p++ = "0123456789abcdef"[(v >> (4 * i)) & 15];
    return p;
}

static void line(u32 leaf, u32 sub)
{
    u32 r[4];
    char buf[6 * 9 + 1], *p = buf;
    cpuid(leaf, sub, r);
    p = hex(p, leaf);
    *p++ = ' ';
    p = hex(p, sub);
    for (int i = 0; i < 4; i++) {
        *p++ = ' ';
        p = hex(p, r[i]);
    }
    *p++ = '\n';
    sys3(1, 1, (long)buf, p - buf); /* write(1, ...) */
}

static void range(u32 base)
{
    u32 r[4];
    cpuid(base, 0, r);
    u32 max = r[0];
    if (max < base || max - base > 0x40) max = base; /* absent or nonsense: the base only */
    for (u32 leaf = base; leaf <= max; leaf++) {
        line(leaf, 0);
        if (leaf == 7) {
            u32 s[4];
            cpuid(7, 0, s);
            for (u32 sub = 1; sub <= s[0] && sub < 8; sub++) line(7, sub);
        }
    }
}

void _start(void)
{
    range(0);
    range(0x80000000u);
    sys3(60, 0, 0, 0); /* exit(0) */
    for (;;) {
    }
}
