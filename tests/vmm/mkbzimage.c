/* Writes a synthetic bzImage for the `hvp run` tests:
 *   mkbzimage OUT [HEX-CODE [INIT-SIZE-MIB]]
 * HEX-CODE is the 64-bit entry's code ("ebfe": jmp $). */
#include "bzimage.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mkbzimage OUT [HEX-CODE [INIT-SIZE-MIB]]\n");
        return 2;
    }
    struct fake_bz f = fake_bz_default();
    uint8_t code[256];
    size_t n = 0;
    if (argc > 2) {
        for (const char *p = argv[2]; p[0] && p[1] && n < sizeof(code); p += 2) {
            unsigned b;
            if (sscanf(p, "%2x", &b) != 1) return 2;
            code[n++] = (uint8_t)b;
        }
        f.code = code;
        f.code_len = n;
    }
    if (argc > 3) f.init_size = (uint32_t)strtoul(argv[3], NULL, 0) << 20;
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    FILE *o = fopen(argv[1], "wb");
    if (!o || fwrite(img, 1, len, o) != len || fclose(o)) {
        perror(argv[1]);
        return 1;
    }
    free(img);
    return 0;
}
