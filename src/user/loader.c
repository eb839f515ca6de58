/* The ELF loader: static x86-64 executables (ET_EXEC and static-PIE), and the
 * initial stack laid out as Linux's create_elf_tables() does. Every header
 * field is checked before use: a hostile file ends in -ENOEXEC and one line
 * of error, never a host fault. */
#include "internal.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE (1ULL << 30)
#define MAX_PHNUM 256

static int read_file(struct hvp_user *u, const char *path, uint8_t **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return user_fail(u, -errno, "%s", strerror(errno));
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) < 0) {
        ret = user_fail(u, -errno, "%s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = user_fail(u, -EACCES, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > MAX_FILE) {
        ret = user_fail(u, -EFBIG, "larger than 1 GiB");
        goto out;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        ret = user_fail(u, -ENOMEM, "out of memory");
        goto out;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            ret = user_fail(u, r < 0 ? -errno : -EIO, "read: %s", r < 0 ? strerror(errno) : "short");
            goto out;
        }
        got += (size_t)r;
    }
    *data = buf;
    *size = n;
out:
    close(fd);
    return ret;
}

static unsigned seg_prot(uint32_t f)
{
    return ((f & PF_R) ? HVP_CPU_PROT_READ : 0) | ((f & PF_W) ? HVP_CPU_PROT_WRITE : 0) |
           ((f & PF_X) ? HVP_CPU_PROT_EXEC : 0);
}

/* Checks the headers; fills *bias, *phdr_addr. */
static int check_elf(struct hvp_user *u, const uint8_t *d, size_t n, uint64_t *bias,
                     uint64_t *phdr_addr)
{
    const Elf64_Ehdr *eh = (const void *)d;
    if (n < 4 || memcmp(d, ELFMAG, SELFMAG))
        return user_fail(u, -ENOEXEC, "not an ELF file");
    if (n < sizeof(Elf64_Ehdr))
        return user_fail(u, -ENOEXEC, "truncated ELF header");
    if (d[EI_CLASS] != ELFCLASS64 || d[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64)
        return user_fail(u, -ENOEXEC, "not an x86-64 ELF file (class %u, data %u, machine %u)",
                         d[EI_CLASS], d[EI_DATA], eh->e_machine);
    if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
        return user_fail(u, -ENOEXEC, "not an executable (ELF type %u)", eh->e_type);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return user_fail(u, -ENOEXEC, "bad program header size %u", eh->e_phentsize);
    if (eh->e_phnum == 0 || eh->e_phnum > MAX_PHNUM)
        return user_fail(u, -ENOEXEC, "bad program header count %u", eh->e_phnum);
    if (eh->e_phoff > n || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > n - eh->e_phoff ||
        eh->e_phoff % 8)
        return user_fail(u, -ENOEXEC, "truncated or misplaced program headers");
    const Elf64_Phdr *ph = (const void *)(d + eh->e_phoff);

    /* The interpreter first: the most useful thing to say about a dynamic
     * executable. */
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_INTERP)
            continue;
        if (ph[i].p_offset > n || ph[i].p_filesz > n - ph[i].p_offset || ph[i].p_filesz < 2 ||
            ph[i].p_filesz > 4096)
            return user_fail(u, -ENOEXEC, "bad PT_INTERP");
        char interp[4097];
        memcpy(interp, d + ph[i].p_offset, ph[i].p_filesz);
        interp[ph[i].p_filesz] = 0;
        for (char *c = interp; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                *c = '?';
        return user_fail(u, -ENOEXEC,
                         "dynamically linked (needs %s); only static executables run", interp);
    }

    *bias = eh->e_type == ET_DYN ? PIE_BASE : 0;
    uint64_t prev_end = 0;
    unsigned nload = 0;
    *phdr_addr = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type == PT_PHDR)
            *phdr_addr = p->p_vaddr + *bias;
        if (p->p_type != PT_LOAD)
            continue;
        nload++;
        if (p->p_filesz > p->p_memsz)
            return user_fail(u, -ENOEXEC, "segment %u: file size above memory size", i);
        if (p->p_offset > n || p->p_filesz > n - p->p_offset)
            return user_fail(u, -ENOEXEC, "segment %u: beyond the end of the file", i);
        if (p->p_align > 1 && ((p->p_align & (p->p_align - 1)) ||
                               (p->p_vaddr - p->p_offset) % (p->p_align < PAGE_SIZE_
                                                                 ? p->p_align
                                                                 : PAGE_SIZE_)))
            return user_fail(u, -ENOEXEC, "segment %u: bad alignment", i);
        if ((p->p_vaddr - p->p_offset) & PAGE_MASK_)
            return user_fail(u, -ENOEXEC, "segment %u: address and offset not page-congruent",
                             i);
        if (p->p_memsz == 0)
            continue;
        uint64_t va = p->p_vaddr + *bias;
        if (p->p_vaddr >= IMAGE_LIMIT || va < GUEST_MIN || va >= IMAGE_LIMIT ||
            p->p_memsz > IMAGE_LIMIT - va)
            return user_fail(u, -ENOEXEC,
                             "segment %u: 0x%llx+0x%llx outside the guest's image space", i,
                             (unsigned long long)p->p_vaddr, (unsigned long long)p->p_memsz);
        if (va < prev_end)
            return user_fail(u, -ENOEXEC, "segment %u: overlaps or precedes the one before", i);
        prev_end = va + p->p_memsz;
        /* Where the headers land when there is no PT_PHDR. */
        if (!*phdr_addr && eh->e_phoff >= p->p_offset &&
            eh->e_phoff - p->p_offset < p->p_filesz)
            *phdr_addr = va + (eh->e_phoff - p->p_offset);
    }
    if (!nload)
        return user_fail(u, -ENOEXEC, "no loadable segment");
    return 0;
}

static int load_segments(struct hvp_user *u, const uint8_t *d, uint64_t bias)
{
    const Elf64_Ehdr *eh = (const void *)d;
    const Elf64_Phdr *ph = (const void *)(d + eh->e_phoff);
    uint64_t mapped_end = 0; /* end of pages mapped by earlier segments */
    unsigned prev_prot = 0;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type != PT_LOAD || !p->p_memsz)
            continue;
        uint64_t va = p->p_vaddr + bias;
        uint64_t ps = PAGE_DOWN(va), pe = PAGE_UP(va + p->p_memsz);
        unsigned prot = seg_prot(p->p_flags);
        int ret;
        if (ps < mapped_end) {
            /* Shares its first page with the segment before: that page gets
             * both protections. */
            ret = mem_protect(u, ps, PAGE_SIZE_, prot | prev_prot);
            if (ret < 0)
                return user_fail(u, ret, "segment %u: cannot map", i);
            ps += PAGE_SIZE_;
        }
        if (pe > ps) {
            ret = mem_map(u, ps, pe - ps, prot);
            if (ret < 0)
                return user_fail(u, ret, "segment %u: cannot map 0x%llx bytes", i,
                                 (unsigned long long)(pe - ps));
        }
        memcpy(u->host + va, d + p->p_offset, p->p_filesz);
        /* Fresh pages are zero; only a shared first page may need clearing. */
        uint64_t z = va + p->p_filesz, ze = va + p->p_memsz;
        if (ze > PAGE_UP(z))
            ze = PAGE_UP(z);
        if (ze > z)
            memset(u->host + z, 0, ze - z);
        mapped_end = PAGE_UP(va + p->p_memsz);
        prev_prot = prot;
        if (mapped_end > u->brk_start)
            u->brk_start = mapped_end;
    }
    u->brk_cur = u->brk_start;
    return 0;
}

/* Pushes bytes down from *sp; returns their guest address. */
static uint64_t push_bytes(struct hvp_user *u, uint64_t *sp, const void *p, size_t n)
{
    *sp -= n;
    memcpy(u->host + *sp, p, n);
    return *sp;
}

static int build_stack(struct hvp_user *u, const char *path, int argc, char *const *argv,
                       char *const *envp, uint64_t phdr, unsigned phnum, uint64_t entry)
{
    int ret = mem_map(u, STACK_TOP - STACK_SIZE, STACK_SIZE,
                      HVP_CPU_PROT_READ | HVP_CPU_PROT_WRITE);
    if (ret < 0)
        return user_fail(u, ret, "cannot map the stack");
    int envc = 0;
    while (envp && envp[envc])
        envc++;
    /* Strings must leave room for the tables: a quarter of the stack, like
     * Linux's limit on arguments. */
    size_t strbytes = strlen(path) + 1;
    for (int i = 0; i < argc; i++)
        strbytes += strlen(argv[i]) + 1;
    for (int i = 0; i < envc; i++)
        strbytes += strlen(envp[i]) + 1;
    if (strbytes + ((size_t)argc + envc + 64) * 8 > STACK_SIZE / 4)
        return user_fail(u, -E2BIG, "argument list too long");

    uint64_t sp = STACK_TOP - 8; /* Linux leaves a NULL word at the very top */
    uint64_t execfn = push_bytes(u, &sp, path, strlen(path) + 1);
    uint64_t *envs = malloc(sizeof(uint64_t) * ((size_t)envc + 1));
    uint64_t *args = malloc(sizeof(uint64_t) * ((size_t)argc + 1));
    if (!envs || !args) {
        free(envs);
        free(args);
        return user_fail(u, -ENOMEM, "out of memory");
    }
    for (int i = envc; i-- > 0;)
        envs[i] = push_bytes(u, &sp, envp[i], strlen(envp[i]) + 1);
    for (int i = argc; i-- > 0;)
        args[i] = push_bytes(u, &sp, argv[i], strlen(argv[i]) + 1);
    sp &= ~15ULL;
    uint64_t platform = push_bytes(u, &sp, "x86_64", 7);
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0x5a, sizeof(rnd));
    sp &= ~15ULL;
    uint64_t random = push_bytes(u, &sp, rnd, sizeof(rnd));

    uint64_t auxv[][2] = {
        {AT_PHDR, phdr},
        {AT_PHENT, sizeof(Elf64_Phdr)},
        {AT_PHNUM, phnum},
        {AT_PAGESZ, PAGE_SIZE_},
        {AT_BASE, 0},
        {AT_FLAGS, 0},
        {AT_ENTRY, entry},
        {AT_UID, (uint64_t)getuid()},
        {AT_EUID, (uint64_t)geteuid()},
        {AT_GID, (uint64_t)getgid()},
        {AT_EGID, (uint64_t)getegid()},
        {AT_SECURE, 0},
        {AT_HWCAP, 0},
        {AT_HWCAP2, 0},
        {AT_CLKTCK, (uint64_t)sysconf(_SC_CLK_TCK)},
        {AT_RANDOM, random},
        {AT_EXECFN, execfn},
        {AT_PLATFORM, platform},
        {AT_NULL, 0},
    };
    size_t nauxv = sizeof(auxv) / sizeof(auxv[0]);
    size_t words = 1 + (size_t)argc + 1 + (size_t)envc + 1 + nauxv * 2;
    sp = (sp - words * 8) & ~15ULL; /* argc ends 16-byte aligned */
    uint64_t *w = (uint64_t *)(u->host + sp);
    *w++ = (uint64_t)argc;
    for (int i = 0; i < argc; i++)
        *w++ = args[i];
    *w++ = 0;
    for (int i = 0; i < envc; i++)
        *w++ = envs[i];
    *w++ = 0;
    memcpy(w, auxv, sizeof(auxv));
    free(envs);
    free(args);
    u->sp = sp;
    return 0;
}

int loader_load(struct hvp_user *u, const char *path, int argc, char *const *argv,
                char *const *envp, bool replace, bool *committed)
{
    *committed = false;
    uint8_t *d = NULL;
    size_t n = 0;
    int ret = read_file(u, path, &d, &n);
    if (ret < 0)
        return ret;
    uint64_t bias = 0, phdr = 0;
    ret = check_elf(u, d, n, &bias, &phdr);
    if (ret == 0 && replace) {
        /* The point of no return of execve: the old image goes. */
        *committed = true;
        ret = mem_reset(u);
    }
    if (ret == 0)
        ret = load_segments(u, d, bias);
    if (ret == 0) {
        const Elf64_Ehdr *eh = (const void *)d;
        u->entry = eh->e_entry + bias;
        ret = build_stack(u, path, argc, argv, envp, phdr, eh->e_phnum, u->entry);
    }
    free(d);
    if (ret < 0)
        return ret;
    char real[sizeof(u->exe)];
    if (realpath(path, real))
        memcpy(u->exe, real, sizeof(real));
    else
        u->exe[0] = 0;
    return 0;
}

int hvp_user_load(struct hvp_user *u, const char *path, int argc, char *const *argv,
                  char *const *envp)
{
    if (u->loaded)
        return user_fail(u, -EBUSY, "a program is already loaded");
    if (argc < 0 || (argc && !argv))
        return user_fail(u, -EINVAL, "bad arguments");
    bool committed;
    int ret = loader_load(u, path, argc, argv, envp, false, &committed);
    if (ret < 0)
        return ret;
    u->loaded = true;
    return 0;
}
