/* hvp disk: create, info, convert, check, compare, merge, compact, resize. */
#include "cli.h"
#include "hvp/disk.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define ERRLEN 1024

static void disk_usage(FILE *f)
{
    fprintf(f,
            "usage: hvp disk <command> [options] ...\n\n"
            "  create [-f vhd|vhdx|raw] [--type fixed|dynamic] [--parent FILE]\n"
            "         [--block-size N] FILE [SIZE]      create an image (SIZE: K/M/G/T suffixes)\n"
            "  info [--json] FILE                       format, sizes, block size, parent chain\n"
            "  convert [-O FORMAT] [--type fixed|dynamic] [--block-size N] [--progress] IN OUT\n"
            "  check [--repair] FILE                    exit 0 clean, 1 problems, 2 unreadable\n"
            "  compare A B                              exit 0 identical, 1 different\n"
            "  merge CHILD                              merge a differencing disk into its parent\n"
            "  compact FILE                             drop blocks that are zero or discarded\n"
            "  resize FILE SIZE                         grow (or shrink an unused tail)\n");
}

struct progress {
    bool on;
    int last;
};

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    if (!p->on || !total) return;
    int pct = (int)(done * 100 / total);
    if (pct == p->last) return;
    p->last = pct;
    char bar[41];
    int n = pct * 40 / 100;
    memset(bar, '#', (size_t)n);
    memset(bar + n, ' ', (size_t)(40 - n));
    bar[40] = 0;
    fprintf(stderr, "\r[%s] %3d%%", bar, pct);
    if (pct >= 100) fputc('\n', stderr);
    fflush(stderr);
}

static void progress_init(struct progress *p, bool force)
{
    p->on = force || isatty(2);
    p->last = -1;
}

static void progress_end(struct progress *p)
{
    if (p->on && p->last >= 0 && p->last < 100) fputc('\n', stderr);
}

static enum hvp_disk_format format_from_name(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && (!strcasecmp(dot, ".vhd") || !strcasecmp(dot, ".avhd"))) return HVP_DISK_FMT_VHD;
    if (dot && (!strcasecmp(dot, ".vhdx") || !strcasecmp(dot, ".avhdx"))) return HVP_DISK_FMT_VHDX;
    return HVP_DISK_FMT_RAW;
}

static int parse_type(const char *s, enum hvp_disk_type *t)
{
    if (!strcmp(s, "fixed"))
        *t = HVP_DISK_TYPE_FIXED;
    else if (!strcmp(s, "dynamic"))
        *t = HVP_DISK_TYPE_DYNAMIC;
    else
        return -1;
    return 0;
}

static int parse_block_size(const char *s, uint32_t *out)
{
    uint64_t v;
    if (hvp_cli_parse_size(s, &v) || v == 0 || v > UINT32_MAX) {
        hvp_cli_error(s, "not a valid block size");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

enum { OPT_TYPE = 256, OPT_PARENT, OPT_BS, OPT_JSON, OPT_PROGRESS, OPT_REPAIR, OPT_HELP };

static int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"type", required_argument, NULL, OPT_TYPE},
                                         {"parent", required_argument, NULL, OPT_PARENT},
                                         {"block-size", required_argument, NULL, OPT_BS},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    struct hvp_disk_create_params p = {0};
    int c;
    while ((c = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (hvp_disk_parse_format(optarg, &p.format)) {
                hvp_cli_error(optarg, "unknown format (vhd, vhdx or raw)");
                return 2;
            }
            break;
        case OPT_TYPE:
            if (parse_type(optarg, &p.type)) {
                hvp_cli_error(optarg, "unknown type (fixed or dynamic)");
                return 2;
            }
            break;
        case OPT_PARENT: p.parent = optarg; break;
        case OPT_BS:
            if (parse_block_size(optarg, &p.block_size)) return 2;
            break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (optind >= argc || argc - optind > 2 || (!p.parent && argc - optind != 2)) {
        hvp_cli_error("disk create", "expected FILE and SIZE (SIZE may be left out with --parent)");
        return 2;
    }
    const char *file = argv[optind];
    if (argc - optind == 2 && hvp_cli_parse_size(argv[optind + 1], &p.size)) {
        hvp_cli_error(argv[optind + 1], "not a valid size");
        return 2;
    }
    if (p.parent && p.type == HVP_DISK_TYPE_FIXED) {
        hvp_cli_error(file, "a differencing disk cannot be fixed");
        return 2;
    }
    if (p.format == HVP_DISK_FMT_AUTO) {
        p.format = format_from_name(file);
        if (p.parent && p.format == HVP_DISK_FMT_RAW) {
            hvp_disk *par;
            char err[ERRLEN];
            struct hvp_disk_info pi;
            if (hvp_disk_open(p.parent, HVP_DISK_RDONLY, &par, err, sizeof err) == 0) {
                if (hvp_disk_info(par, &pi) == 0) p.format = pi.format;
                hvp_disk_close(par);
            }
        }
    }
    char err[ERRLEN];
    int r = hvp_disk_create(file, &p, err, sizeof err);
    if (r) {
        hvp_cli_error(file, "%s", err);
        return 1;
    }
    return 0;
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static const char *human(uint64_t v, char *buf, size_t n)
{
    static const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    double x = (double)v;
    while (x >= 1024 && u < 5)
        x /= 1024, u++;
    if (u == 0)
        snprintf(buf, n, "%llu bytes", (unsigned long long)v);
    else
        snprintf(buf, n, "%.4g %s", x, units[u]);
    return buf;
}

static int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_JSON: json = true; break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (argc - optind != 1) {
        hvp_cli_error("disk info", "expected one FILE");
        return 2;
    }
    const char *file = argv[optind];
    char err[ERRLEN];
    hvp_disk *d;
    int r = hvp_disk_open(file, HVP_DISK_RDONLY, &d, err, sizeof err);
    if (r) {
        hvp_cli_error(file, "%s", err);
        return 2;
    }
    struct hvp_disk_info in;
    r = hvp_disk_info(d, &in);
    if (r) {
        hvp_cli_error(file, "%s", hvp_disk_error(d));
        hvp_disk_close(d);
        return 2;
    }
    char h1[64];
    if (json) {
        printf("{\"file\": ");
        json_str(file);
        printf(", \"format\": \"%s\", \"type\": \"%s\", \"virtual_size\": %llu, "
               "\"file_size\": %llu, \"allocated\": %llu, \"block_size\": %u, \"parents\": [",
               hvp_disk_format_name(in.format), hvp_disk_type_name(in.type),
               (unsigned long long)in.virtual_size, (unsigned long long)in.file_size,
               (unsigned long long)in.allocated, in.block_size);
        int k = 0;
        for (hvp_disk *p = hvp_disk_parent(d); p; p = hvp_disk_parent(p)) {
            if (k++) printf(", ");
            json_str(hvp_disk_path(p));
        }
        printf("]}\n");
    } else {
        printf("file:           %s\n", file);
        printf("format:         %s\n", hvp_disk_format_name(in.format));
        printf("type:           %s\n", hvp_disk_type_name(in.type));
        printf("virtual size:   %llu (%s)\n", (unsigned long long)in.virtual_size,
               human(in.virtual_size, h1, sizeof h1));
        printf("file size:      %llu (%s)\n", (unsigned long long)in.file_size,
               human(in.file_size, h1, sizeof h1));
        printf("allocated:      %llu (%s)\n", (unsigned long long)in.allocated,
               human(in.allocated, h1, sizeof h1));
        if (in.block_size) printf("block size:     %u\n", in.block_size);
        if (hvp_disk_parent(d)) {
            printf("parent chain:   ");
            int k = 0;
            for (hvp_disk *p = hvp_disk_parent(d); p; p = hvp_disk_parent(p))
                printf("%s%s", k++ ? " -> " : "", hvp_disk_path(p));
            printf("\n");
        }
    }
    hvp_disk_close(d);
    return 0;
}

static int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {{"format", required_argument, NULL, 'O'},
                                         {"type", required_argument, NULL, OPT_TYPE},
                                         {"block-size", required_argument, NULL, OPT_BS},
                                         {"progress", no_argument, NULL, OPT_PROGRESS},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    struct hvp_disk_create_params p = {0};
    bool prog = false;
    int c;
    while ((c = getopt_long(argc, argv, "O:p", opts, NULL)) != -1) {
        switch (c) {
        case 'O':
            if (hvp_disk_parse_format(optarg, &p.format)) {
                hvp_cli_error(optarg, "unknown format (vhd, vhdx or raw)");
                return 2;
            }
            break;
        case OPT_TYPE:
            if (parse_type(optarg, &p.type)) {
                hvp_cli_error(optarg, "unknown type (fixed or dynamic)");
                return 2;
            }
            break;
        case OPT_BS:
            if (parse_block_size(optarg, &p.block_size)) return 2;
            break;
        case 'p':
        case OPT_PROGRESS: prog = true; break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        hvp_cli_error("disk convert", "expected IN and OUT");
        return 2;
    }
    const char *in = argv[optind], *out = argv[optind + 1];
    if (p.format == HVP_DISK_FMT_AUTO) p.format = format_from_name(out);
    char err[ERRLEN];
    hvp_disk *d;
    int r = hvp_disk_open(in, HVP_DISK_RDONLY, &d, err, sizeof err);
    if (r) {
        hvp_cli_error(in, "%s", err);
        return 2;
    }
    struct progress pr;
    progress_init(&pr, prog);
    r = hvp_disk_convert(d, out, &p, progress_cb, &pr, err, sizeof err);
    progress_end(&pr);
    hvp_disk_close(d);
    if (r) {
        hvp_cli_error(out, "%s", err);
        return 1;
    }
    return 0;
}

struct check_ctx {
    const char *file;
    int n;
};

static void problem_cb(void *ctx, const char *msg)
{
    struct check_ctx *c = ctx;
    c->n++;
    printf("%s: %s\n", c->file, msg);
}

static int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {{"repair", no_argument, NULL, OPT_REPAIR},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    bool repair = false;
    int c;
    while ((c = getopt_long(argc, argv, "r", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
        case OPT_REPAIR: repair = true; break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (argc - optind != 1) {
        hvp_cli_error("disk check", "expected one FILE");
        return 2;
    }
    const char *file = argv[optind];
    struct check_ctx ctx = {file, 0};
    char err[ERRLEN];
    int r = hvp_disk_check(file, repair, problem_cb, &ctx, err, sizeof err);
    if (r < 0) {
        hvp_cli_error(file, "%s", err);
        return 2;
    }
    if (repair && ctx.n) {
        if (r == 0) {
            printf("%s: repaired %d problem%s\n", file, ctx.n, ctx.n == 1 ? "" : "s");
            return 0;
        }
        printf("%s: %d problem%s remain after repair\n", file, r, r == 1 ? "" : "s");
        return 1;
    }
    if (r == 0) {
        printf("No errors were found on the image.\n");
        return 0;
    }
    printf("%s: %d problem%s found\n", file, r, r == 1 ? "" : "s");
    return 1;
}

static int cmd_compare(int argc, char **argv)
{
    static const struct option opts[] = {{"progress", no_argument, NULL, OPT_PROGRESS},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    bool prog = false;
    int c;
    while ((c = getopt_long(argc, argv, "p", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
        case OPT_PROGRESS: prog = true; break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        hvp_cli_error("disk compare", "expected two files");
        return 2;
    }
    char err[ERRLEN];
    hvp_disk *a, *b;
    if (hvp_disk_open(argv[optind], HVP_DISK_RDONLY, &a, err, sizeof err)) {
        hvp_cli_error(argv[optind], "%s", err);
        return 2;
    }
    if (hvp_disk_open(argv[optind + 1], HVP_DISK_RDONLY, &b, err, sizeof err)) {
        hvp_cli_error(argv[optind + 1], "%s", err);
        hvp_disk_close(a);
        return 2;
    }
    struct progress pr;
    progress_init(&pr, prog);
    uint64_t where = 0;
    int r = hvp_disk_compare(a, b, &where, progress_cb, &pr, err, sizeof err);
    progress_end(&pr);
    uint64_t sa = hvp_disk_size(a), sb = hvp_disk_size(b);
    hvp_disk_close(a);
    hvp_disk_close(b);
    if (r < 0) {
        hvp_cli_error(argv[optind], "%s", err);
        return 2;
    }
    if (r) {
        printf("Content mismatch at offset %llu\n", (unsigned long long)where);
        return 1;
    }
    if (sa != sb)
        printf("Images are identical (sizes differ: %llu and %llu; the extra tail is zero).\n",
               (unsigned long long)sa, (unsigned long long)sb);
    else
        printf("Images are identical.\n");
    return 0;
}

static int one_file_args(int argc, char **argv, int want, const char *what, bool *prog)
{
    static const struct option opts[] = {{"progress", no_argument, NULL, OPT_PROGRESS},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
        case OPT_PROGRESS: *prog = true; break;
        case OPT_HELP: disk_usage(stdout); return 0;
        default: disk_usage(stderr); return 2;
        }
    }
    if (argc - optind != want) {
        hvp_cli_error(what, "expected %s", want == 1 ? "one FILE" : "FILE and SIZE");
        return 2;
    }
    return -1;
}

static int cmd_merge(int argc, char **argv)
{
    bool prog = false;
    int r = one_file_args(argc, argv, 1, "disk merge", &prog);
    if (r >= 0) return r;
    const char *file = argv[optind];
    char err[ERRLEN];
    struct progress pr;
    progress_init(&pr, prog);
    r = hvp_disk_merge(file, progress_cb, &pr, err, sizeof err);
    progress_end(&pr);
    if (r) {
        hvp_cli_error(file, "%s", err);
        return 1;
    }
    return 0;
}

static int cmd_compact(int argc, char **argv)
{
    bool prog = false;
    int r = one_file_args(argc, argv, 1, "disk compact", &prog);
    if (r >= 0) return r;
    const char *file = argv[optind];
    char err[ERRLEN], h[64];
    struct progress pr;
    progress_init(&pr, prog);
    uint64_t saved = 0;
    r = hvp_disk_compact(file, &saved, progress_cb, &pr, err, sizeof err);
    progress_end(&pr);
    if (r) {
        hvp_cli_error(file, "%s", err);
        return 1;
    }
    printf("%s: reclaimed %s\n", file, human(saved, h, sizeof h));
    return 0;
}

static int cmd_resize(int argc, char **argv)
{
    bool prog = false;
    int r = one_file_args(argc, argv, 2, "disk resize", &prog);
    if (r >= 0) return r;
    const char *file = argv[optind];
    uint64_t size;
    if (hvp_cli_parse_size(argv[optind + 1], &size)) {
        hvp_cli_error(argv[optind + 1], "not a valid size");
        return 2;
    }
    char err[ERRLEN];
    struct progress pr;
    progress_init(&pr, prog);
    r = hvp_disk_resize(file, size, progress_cb, &pr, err, sizeof err);
    progress_end(&pr);
    if (r) {
        hvp_cli_error(file, "%s", err);
        return 1;
    }
    return 0;
}

int hvp_cmd_disk(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } sub[] = {
        {"create", cmd_create},   {"info", cmd_info},       {"convert", cmd_convert},
        {"check", cmd_check},     {"compare", cmd_compare}, {"merge", cmd_merge},
        {"compact", cmd_compact}, {"resize", cmd_resize},
    };
    if (argc < 2) {
        disk_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        disk_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        if (!strcmp(argv[1], sub[i].name)) {
            optind = 1;
            return sub[i].fn(argc - 1, argv + 1);
        }
    hvp_cli_error(argv[1], "unknown disk command (see 'hvp disk --help')");
    return 2;
}
