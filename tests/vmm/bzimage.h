/* Synthetic bzImages for the loader's tests: a boot sector, a setup header
 * as Linux 6.1 writes it, and a payload whose 64-bit entry (+0x200) holds
 * the caller's code. */
#ifndef HVP_TEST_BZIMAGE_H
#define HVP_TEST_BZIMAGE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fake_bz {
    uint8_t setup_sects; /* 0 means 4 */
    uint16_t version;
    uint8_t loadflags;
    uint16_t xloadflags;
    uint32_t init_size;
    uint32_t cmdline_size;
    uint32_t initrd_addr_max;
    size_t payload; /* bytes after the setup code */
    const uint8_t *code;
    size_t code_len;
};

static inline struct fake_bz fake_bz_default(void)
{
    return (struct fake_bz){.setup_sects = 27,
                            .version = 0x020f,
                            .loadflags = 0x01,
                            .xloadflags = 0x03,
                            .init_size = 0x2000000,
                            .cmdline_size = 2047,
                            .initrd_addr_max = 0x7fffffff,
                            .payload = 0x10000};
}

static inline void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

/* Returns a malloc'ed image of *len bytes. */
static inline uint8_t *fake_bz_build(const struct fake_bz *f, size_t *len)
{
    size_t sects = f->setup_sects ? f->setup_sects : 4;
    size_t off = (sects + 1) * 512;
    *len = off + f->payload;
    uint8_t *img = calloc(1, *len);
    img[0x1ef] = 0xff; /* sentinel: the loader must not copy it */
    img[0x1f1] = f->setup_sects;
    put32(img + 0x1f4, (uint32_t)(f->payload / 16));
    img[0x1fe] = 0x55, img[0x1ff] = 0xaa;
    img[0x200] = 0xeb, img[0x201] = 0x6a; /* header ends at 0x26c */
    memcpy(img + 0x202, "HdrS", 4);
    memcpy(img + 0x206, &f->version, 2);
    img[0x211] = f->loadflags;
    put32(img + 0x22c, f->initrd_addr_max);
    put32(img + 0x230, 0x200000);
    img[0x234] = 1;
    memcpy(img + 0x236, &f->xloadflags, 2);
    put32(img + 0x238, f->cmdline_size);
    uint64_t pref = 0x1000000;
    memcpy(img + 0x258, &pref, 8);
    put32(img + 0x260, f->init_size);
    for (size_t i = 0; i < f->payload; i++)
        img[off + i] = (uint8_t)(i * 7 + 3); /* recognisable payload */
    if (f->code && f->payload >= 0x200 + f->code_len)
        memcpy(img + off + 0x200, f->code, f->code_len);
    return img;
}

#endif
