#include <criterion/criterion.h>
#include "cli.h"

Test(cli, sizes_with_suffixes)
{
    uint64_t v;
    cr_assert_eq(hvp_cli_parse_size("512", &v), 0);
    cr_assert_eq(v, 512);
    cr_assert_eq(hvp_cli_parse_size("4K", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(hvp_cli_parse_size("10M", &v), 0);
    cr_assert_eq(v, 10ull << 20);
    cr_assert_eq(hvp_cli_parse_size("2GiB", &v), 0);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(hvp_cli_parse_size("1t", &v), 0);
    cr_assert_eq(v, 1ull << 40);
}

Test(cli, bad_sizes_are_rejected)
{
    uint64_t v;
    cr_assert_neq(hvp_cli_parse_size("", &v), 0);
    cr_assert_neq(hvp_cli_parse_size("-1", &v), 0);
    cr_assert_neq(hvp_cli_parse_size("12Q", &v), 0);
    cr_assert_neq(hvp_cli_parse_size("G", &v), 0);
    cr_assert_neq(hvp_cli_parse_size("99999999999T", &v), 0);
    cr_assert_neq(hvp_cli_parse_size("18446744073709551616", &v), 0);
}

Test(cli, integers_decimal_and_hex)
{
    uint64_t v;
    cr_assert_eq(hvp_cli_parse_u64("0x1f", &v), 0);
    cr_assert_eq(v, 31);
    cr_assert_eq(hvp_cli_parse_u64("100", &v), 0);
    cr_assert_eq(v, 100);
    cr_assert_neq(hvp_cli_parse_u64("1x", &v), 0);
    cr_assert_neq(hvp_cli_parse_u64("-3", &v), 0);
}
