/* bench-decode: x86 decoder throughput, hvp beside Zydis, on the same code.
 *
 *   bench-decode [--runs N] [--max-mib N] [FILE...]
 *
 * The corpus is the .text of a few large libraries and binaries on this
 * machine (libc, libstdc++, libcrypto, bash, ... whichever exist), or of the
 * ELF files named. Instruction boundaries come from one Zydis sweep, so every
 * decoder decodes exactly the same instructions. Each decoder makes N timed
 * passes (default 7); min and median are printed in million instructions per
 * second, with the ratio hvp / Zydis (above 1: hvp is faster).
 *
 * Zydis is measured two ways: ZydisDecoderDecodeFull (instruction and all
 * operands: what hvp's record holds) and ZydisDecoderDecodeInstruction
 * (no operands). The formatters are timed too (hvp_x86_format against
 * ZydisFormatterFormatInstruction).
 */
#include "hvp/x86.h"

#include <Zydis/Zydis.h>

#include <elf.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct corpus {
    uint8_t *code; /* all .text sections back to back, 16 zero bytes between */
    size_t size;
    uint32_t *off; /* instruction start offsets (Zydis's sweep) */
    size_t n;
    unsigned files;
};

static bool load_text(const char *path, struct corpus *c, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return false;
    }
    size_t sz = (size_t)st.st_size;
    const uint8_t *m = mmap(NULL, sz, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return false;
    bool ok = false;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m;
    if (!memcmp(m, ELFMAG, SELFMAG) && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
        eh->e_machine == EM_X86_64 && eh->e_shentsize == sizeof(Elf64_Shdr) && eh->e_shoff < sz &&
        (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) <= sz - eh->e_shoff &&
        eh->e_shstrndx < eh->e_shnum) {
        const Elf64_Shdr *sh = (const Elf64_Shdr *)(m + eh->e_shoff);
        const Elf64_Shdr *ss = &sh[eh->e_shstrndx];
        for (unsigned i = 0; i < eh->e_shnum && !ok; i++) {
            if (ss->sh_offset > sz || sh[i].sh_name + 6 > ss->sh_size ||
                ss->sh_offset + sh[i].sh_name + 6 > sz ||
                memcmp(m + ss->sh_offset + sh[i].sh_name, ".text", 6) || sh[i].sh_offset > sz ||
                sh[i].sh_size > sz - sh[i].sh_offset)
                continue;
            size_t len = sh[i].sh_size;
            if (c->size + len + 16 > max) len = max > c->size + 16 ? max - c->size - 16 : 0;
            if (!len) break;
            uint8_t *p = realloc(c->code, c->size + len + 16);
            if (!p) break;
            c->code = p;
            memcpy(c->code + c->size, m + sh[i].sh_offset, len);
            memset(c->code + c->size + len, 0, 16);
            c->size += len + 16;
            c->files++;
            printf("  %-48s %8.2f MiB\n", path, len / 1048576.0);
            ok = true;
        }
    }
    munmap((void *)m, sz);
    return ok;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum which { HVP_DECODE, ZY_FULL, ZY_INSN, HVP_FORMAT, ZY_FORMAT, NWHICH };
static const char *const which_name[NWHICH] = {
    "hvp_x86_decode", "ZydisDecoderDecodeFull", "ZydisDecoderDecodeInstruction",
    "hvp_x86_format (decode+format)", "ZydisFormatter (DecodeFull+format)"};

/* One timed pass; returns seconds. *sum defeats dead-code elimination. */
static double pass(enum which w, const struct corpus *c, const ZydisDecoder *zd,
                   const ZydisFormatter *zf, uint64_t *sum)
{
    struct hvp_x86_insn hi;
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
    char text[256];
    uint64_t s = 0;
    double t0 = now_s();
    switch (w) {
    case HVP_DECODE:
        for (size_t i = 0; i < c->n; i++)
            s += (unsigned)hvp_x86_decode(&hi, c->code + c->off[i], c->size - c->off[i], 64);
        break;
    case ZY_FULL:
        for (size_t i = 0; i < c->n; i++)
            if (ZYAN_SUCCESS(
                    ZydisDecoderDecodeFull(zd, c->code + c->off[i], c->size - c->off[i], &zi, zo)))
                s += zi.length;
        break;
    case ZY_INSN:
        for (size_t i = 0; i < c->n; i++)
            if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(zd, NULL, c->code + c->off[i],
                                                           c->size - c->off[i], &zi)))
                s += zi.length;
        break;
    case HVP_FORMAT:
        for (size_t i = 0; i < c->n; i++)
            if (hvp_x86_decode(&hi, c->code + c->off[i], c->size - c->off[i], 64) > 0)
                s += (unsigned)hvp_x86_format(&hi, c->off[i], text, sizeof(text));
        break;
    case ZY_FORMAT:
        for (size_t i = 0; i < c->n; i++)
            if (ZYAN_SUCCESS(ZydisDecoderDecodeFull(zd, c->code + c->off[i], c->size - c->off[i],
                                                    &zi, zo)) &&
                ZYAN_SUCCESS(ZydisFormatterFormatInstruction(zf, &zi, zo, zi.operand_count_visible,
                                                             text, sizeof(text), c->off[i], NULL)))
                s += (unsigned char)text[0];
        break;
    default: break;
    }
    double t = now_s() - t0;
    *sum += s;
    return t;
}

int main(int argc, char **argv)
{
    unsigned runs = 7;
    size_t max = (size_t)24 << 20;
    struct corpus c = {0};
    char **files = calloc((size_t)argc, sizeof(char *));
    int nfiles = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--max-mib") && i + 1 < argc)
            max = (size_t)strtoul(argv[++i], NULL, 0) << 20;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench-decode [--runs N] [--max-mib N] [FILE...]\n");
            return 2;
        } else
            files[nfiles++] = argv[i];
    }
    if (!runs) runs = 1;
    static const char *const defaults[] = {
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/bin/bash",
        "/usr/bin/python3",
        "/usr/bin/ls",
        "/usr/bin/tar",
    };
    printf("bench-decode: corpus (.text)\n");
    if (nfiles)
        for (int i = 0; i < nfiles; i++)
            load_text(files[i], &c, max);
    else
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
            load_text(defaults[i], &c, max);
    free(files);
    if (!c.size) {
        printf("bench-decode: no x86-64 ELF .text found; nothing to measure\n");
        return 0;
    }

    ZydisDecoder zd;
    ZydisDecoderInit(&zd, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    ZydisFormatter zf;
    ZydisFormatterInit(&zf, ZYDIS_FORMATTER_STYLE_INTEL);

    /* Instruction boundaries: one Zydis sweep (1 byte past undecodable). */
    c.off = malloc((c.size + 1) * sizeof(*c.off));
    if (!c.off) return 1;
    size_t hvp_ok = 0;
    for (size_t p = 0; p < c.size;) {
        ZydisDecodedInstruction zi;
        c.off[c.n++] = (uint32_t)p;
        if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&zd, NULL, c.code + p, c.size - p, &zi)))
            p += zi.length;
        else
            p++;
    }
    for (size_t i = 0; i < c.n; i++) {
        struct hvp_x86_insn hi;
        hvp_ok += hvp_x86_decode(&hi, c.code + c.off[i], c.size - c.off[i], 64) > 0;
    }
    printf("bench-decode: %u files, %.2f MiB, %zu instructions (hvp decodes %.2f%% of them), "
           "%u runs each\n",
           c.files, c.size / 1048576.0, c.n, 100.0 * hvp_ok / c.n, runs);

    /* Runs interleave the decoders, so that noise from a shared machine
     * falls on all of them alike. */
    double med[NWHICH], best[NWHICH];
    double *t = malloc((size_t)NWHICH * runs * sizeof(double));
    uint64_t sum = 0;
    for (int w = 0; w < NWHICH; w++)
        pass((enum which)w, &c, &zd, &zf, &sum); /* warm-up */
    for (unsigned r = 0; r < runs; r++)
        for (int w = 0; w < NWHICH; w++)
            t[w * runs + r] = pass((enum which)w, &c, &zd, &zf, &sum);
    for (int w = 0; w < NWHICH; w++) {
        double *tw = t + w * runs;
        qsort(tw, runs, sizeof(double), cmp_double);
        best[w] = tw[0];
        med[w] = tw[runs / 2];
        printf("  %-36s min %7.2f ms  median %7.2f ms  best %7.1f M insn/s  median %7.1f M "
               "insn/s\n",
               which_name[w], best[w] * 1e3, med[w] * 1e3, c.n / best[w] / 1e6, c.n / med[w] / 1e6);
    }
    printf("bench-decode: hvp / ZydisDecoderDecodeFull        = %.2f (median), %.2f (min)\n",
           med[ZY_FULL] / med[HVP_DECODE], best[ZY_FULL] / best[HVP_DECODE]);
    printf("bench-decode: hvp / ZydisDecoderDecodeInstruction = %.2f (median), %.2f (min)\n",
           med[ZY_INSN] / med[HVP_DECODE], best[ZY_INSN] / best[HVP_DECODE]);
    printf("bench-decode: hvp / Zydis, decode+format          = %.2f (median)\n",
           med[ZY_FORMAT] / med[HVP_FORMAT]);
    printf("  (ratios are throughput, hvp's over Zydis's: above 1 means hvp is faster; "
           "checksum %" PRIu64 ")\n",
           sum & 0xffff);
    free(t);
    free(c.off);
    free(c.code);
    return 0;
}
