/* libFuzzer target: the x86 decoder and formatter on arbitrary bytes.
 *
 * Every input is decoded as a stream in 16-, 32- and 64-bit mode (stepping
 * by the decoded length, or one byte past an undecodable one) and each
 * instruction is formatted. Checked: a length within 1..15 and within the
 * bytes available, a record consistent with it, error codes from the
 * documented set, and a formatter that returns snprintf's length, never
 * writes past the buffer (exact-size heap buffers, so ASan sees one byte
 * over) and agrees with itself across buffer sizes, on decoded records and
 * on records made of the raw input bytes.
 *
 * A short run is part of `make test` (tests/x86/zydis/fuzz_short.sh, 20 s).
 * The longer run, from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         -Iinclude fuzz/x86_decode.c src/x86/decode.c src/x86/decode_tables.c \
 *         src/x86/format.c src/x86/names.c -o /tmp/fuzz-x86-decode
 *   mkdir -p /tmp/fuzz-x86-corpus
 *   /tmp/fuzz-x86-decode -max_len=64 -jobs=2 -workers=2 -max_total_time=3600 \
 *         /tmp/fuzz-x86-corpus
 *
 * (the source list is the one in src/x86/meson.build). Seed the corpus
 * with real code for faster coverage, e.g. a few KiB cut from a .text
 * section: objcopy -O binary --only-section=.text /bin/ls /tmp/ls.text;
 * split -b 64 /tmp/ls.text /tmp/fuzz-x86-corpus/ls-
 */
#include "hvp/x86.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "x86_decode fuzz: check failed: %s (line %d)\n", #cond, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_format(const struct hvp_x86_insn *in, uint64_t rip)
{
    char big[512];
    int n = hvp_x86_format(in, rip, big, sizeof(big));
    CHECK(n > 0 && n < (int)sizeof(big));
    CHECK(strlen(big) == (size_t)n);
    /* Exact-size and one-short heap buffers: ASan catches a byte too far. */
    char *exact = malloc((size_t)n + 1);
    CHECK(exact);
    CHECK(hvp_x86_format(in, rip, exact, (size_t)n + 1) == n);
    CHECK(!strcmp(exact, big));
    free(exact);
    char *shorter = malloc((size_t)n);
    CHECK(shorter);
    CHECK(hvp_x86_format(in, rip, shorter, (size_t)n) == n);
    CHECK(strlen(shorter) == (size_t)n - 1 && !memcmp(shorter, big, (size_t)n - 1));
    free(shorter);
    CHECK(hvp_x86_format(in, rip, NULL, 0) == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned modes[3] = {16, 32, 64};
    /* The formatter on a record no decoder made: any field values at all
     * (a corrupted trace cache, say) must still give bounded text. */
    if (size >= sizeof(struct hvp_x86_insn)) {
        struct hvp_x86_insn junk;
        memcpy(&junk, data, sizeof(junk));
        check_format(&junk, 0x1000);
    }
    for (int m = 0; m < 3; m++) {
        size_t pos = 0;
        while (pos < size) {
            struct hvp_x86_insn in;
            size_t avail = size - pos;
            int r = hvp_x86_decode(&in, data + pos, avail, modes[m]);
            if (r > 0) {
                CHECK(r <= HVP_X86_MAX_INSN_LEN);
                CHECK((size_t)r <= avail);
                CHECK(in.len == r);
                CHECK(in.mode == modes[m]);
                CHECK(in.op < HVP_X86_OP_COUNT && in.op != HVP_X86_OP_INVALID);
                CHECK(in.nops <= 5);
                for (unsigned i = 0; i < in.nops; i++) {
                    CHECK(in.ops[i].kind >= HVP_X86_OPK_REG && in.ops[i].kind <= HVP_X86_OPK_FAR);
                    if (in.ops[i].kind == HVP_X86_OPK_REG)
                        CHECK(in.ops[i].reg > HVP_X86_REG_NONE &&
                              in.ops[i].reg < HVP_X86_REG_COUNT);
                }
                CHECK(in.mem.base < HVP_X86_REG_COUNT && in.mem.index < HVP_X86_REG_COUNT);
                CHECK(in.imm_off < r && in.disp_off < r);
                check_format(&in, 0x1000 + pos);
                check_format(&in, UINT64_MAX - 3); /* targets wrap */
                pos += (size_t)r;
            } else {
                CHECK(r == -HVP_X86_EINVALID || r == -HVP_X86_ETOOLONG || r == -HVP_X86_ETRUNCATED);
                /* Truncated only when there were no more bytes to look at:
                 * with 16 or more, an unfinished instruction is too long.
                 * (At exactly 15 either answer is defensible.) */
                if (r == -HVP_X86_ETRUNCATED) CHECK(avail <= HVP_X86_MAX_INSN_LEN);
                pos++;
            }
        }
    }
    return 0;
}
