/*
 * netmatch_test.c - --internal-hosts address lists (ipc/netmatch.c): parsing, the error
 * messages an operator sees, and matching the address forms MTAs send in a milter
 * CONNECT (plain, bracketed, Sendmail's "IPv6:", IPv4-mapped), each address at a guard
 * page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "netmatch.h"

static bool match(const dkd__netlist *l, const char *addr)
{
    return dkd__netlist_match(l, dkd__span(guard_str(addr), strlen(addr)));
}

static dkd__netlist parse_ok(const char *spec)
{
    dkd__netlist l;
    char err[256] = "";
    if (!dkd__netlist_parse(spec, &l, err, sizeof err)) {
        fail_msg("%s: %s", spec, err);
    }
    return l;
}

/* parse_err returns the message for a spec that must be refused. */
static const char *parse_err(const char *spec)
{
    static char err[256];
    dkd__netlist l;
    err[0] = '\0';
    assert_false(dkd__netlist_parse(spec, &l, err, sizeof err));
    assert_true(err[0] != '\0');
    return err;
}

static void test_parse_forms(void **state)
{
    (void)state;
    dkd__netlist l = parse_ok("127.0.0.0/8, ::1, 10.1.2.3, 2001:db8::/32");
    assert_int_equal(l.n, 4);
    assert_int_equal(l.nets[0].bits, 96 + 8);
    assert_int_equal(l.nets[1].bits, 128);
    assert_int_equal(l.nets[2].bits, 128);
    assert_int_equal(l.nets[3].bits, 32);
    static const uint8_t mapped127[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 0};
    assert_memory_equal(l.nets[0].addr, mapped127, 16);
    /* Spaces, tabs, commas and line ends all separate; runs of them are one separator. */
    l = parse_ok("  10.0.0.0/8,,192.168.0.0/16\t::1\n,fe80::/10 ");
    assert_int_equal(l.n, 4);
    l = parse_ok("");
    assert_int_equal(l.n, 0);
    l = parse_ok(" , ");
    assert_int_equal(l.n, 0);
    assert_false(match(&l, "127.0.0.1"));
    l = parse_ok("0.0.0.0/0 ::/0 10.0.0.0/32 1.2.3.4/032");
    assert_int_equal(l.nets[3].bits, 128);
}

static void test_parse_errors(void **state)
{
    (void)state;
    assert_string_equal(parse_err("10.0.0.1/8"),
                        "10.0.0.1/8: host bits set; did you mean 10.0.0.0/8?");
    assert_string_equal(parse_err("::1, 2001:db8::1/32"),
                        "2001:db8::1/32: host bits set; did you mean 2001:db8::/32?");
    assert_string_equal(parse_err("192.168.1.0/23"),
                        "192.168.1.0/23: host bits set; did you mean 192.168.0.0/23?");
    assert_non_null(strstr(parse_err("10.0.0.0/33"), "10.0.0.0/33: the prefix length"));
    assert_non_null(strstr(parse_err("::/129"), "::/129"));
    assert_non_null(strstr(parse_err("10.0.0.0/"), "10.0.0.0/:"));
    assert_non_null(strstr(parse_err("10.0.0.0/-8"), "10.0.0.0/-8:"));
    assert_non_null(strstr(parse_err("10.0.0.0/8/9"), "10.0.0.0/8/9:"));
    assert_non_null(strstr(parse_err("10.0.0.0/1234"), "10.0.0.0/1234:"));
    assert_non_null(strstr(parse_err("/8"), "/8:"));
    /* The message names the bad item, not the first one. */
    assert_string_equal(parse_err("127.0.0.1, ::1,bogus, 10.0.0.0/8"),
                        "bogus: not an IPv4 or IPv6 address");
    assert_non_null(strstr(parse_err("10.0.0"), "10.0.0:"));
    assert_non_null(strstr(parse_err("[10.0.0.1]"), "[10.0.0.1]:"));
    assert_non_null(strstr(parse_err("fe80::1%eth0"), "fe80::1%eth0:"));
    char longitem[200];
    memset(longitem, '1', sizeof longitem - 1);
    longitem[sizeof longitem - 1] = '\0';
    assert_non_null(strstr(parse_err(longitem), "too long"));
    /* No err buffer: still refused, nothing written. */
    dkd__netlist l;
    assert_false(dkd__netlist_parse("bogus", &l, NULL, 0));
    /* A short buffer gets a truncated message, never an overflow. */
    char small[8];
    assert_false(dkd__netlist_parse("bogus", &l, small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_parse_limit(void **state)
{
    (void)state;
    char spec[64 * 20 + 32] = "";
    for (int i = 0; i < 64; i++) {
        char item[24];
        snprintf(item, sizeof item, "10.0.%d.0/24,", i);
        strcat(spec, item);
    }
    dkd__netlist l = parse_ok(spec);
    assert_int_equal(l.n, 64);
    assert_true(match(&l, "10.0.63.7"));
    strcat(spec, "10.9.9.9");
    assert_non_null(strstr(parse_err(spec), "10.9.9.9: more than 64"));
}

static void test_match_forms(void **state)
{
    (void)state;
    dkd__netlist l = parse_ok("127.0.0.0/8, ::1, 10.1.2.3, 2001:db8::/32");
    assert_true(match(&l, "127.0.0.1"));
    assert_true(match(&l, "127.255.255.255"));
    assert_true(match(&l, "[127.1.2.3]"));
    assert_true(match(&l, "::1"));
    assert_true(match(&l, "IPv6:::1"));
    assert_true(match(&l, "ipv6:::1"));
    assert_true(match(&l, "[IPv6:::1]"));
    assert_true(match(&l, "10.1.2.3"));
    assert_true(match(&l, "2001:db8::1"));
    assert_true(match(&l, "IPv6:2001:db8:ffff:ffff::1"));
    assert_true(match(&l, "2001:DB8::1"));
    /* IPv4-mapped IPv6 matches the IPv4 entries, in either notation. */
    assert_true(match(&l, "::ffff:127.0.0.1"));
    assert_true(match(&l, "::ffff:7f00:1"));
    assert_true(match(&l, "IPv6:::ffff:10.1.2.3"));
    assert_false(match(&l, "128.0.0.1"));
    assert_false(match(&l, "10.1.2.4"));
    assert_false(match(&l, "::2"));
    assert_false(match(&l, "2001:db9::1"));
    assert_false(match(&l, "::ffff:10.1.2.4"));
    /* IPv4-compatible (::a.b.c.d, deprecated) is not IPv4-mapped. */
    assert_false(match(&l, "::127.0.0.1"));
    /* Unparsable: nothing matches. */
    assert_false(match(&l, ""));
    assert_false(match(&l, "[]"));
    assert_false(match(&l, "localhost"));
    assert_false(match(&l, "IPv6:127.0.0.1"));
    assert_false(match(&l, " 127.0.0.1"));
    assert_false(match(&l, "127.0.0.1 "));
    assert_false(match(&l, "[127.0.0.1"));
    assert_false(match(&l, "127.0.0.1]"));
    assert_false(match(&l, "[[127.0.0.1]]"));
    assert_false(match(&l, "127.0.0.1/8"));
    assert_false(match(&l, "fe80::1%lo"));
    assert_false(match(&l, "IPv6:"));
    static const char nul[] = "127.0.0.1\0junk";
    assert_false(
        dkd__netlist_match(&l, dkd__span(guard_copy(nul, sizeof nul - 1), sizeof nul - 1)));
    char longaddr[300];
    memset(longaddr, '1', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    assert_false(match(&l, longaddr));
}

static void test_match_prefixes(void **state)
{
    (void)state;
    dkd__netlist l = parse_ok("192.168.0.0/23");
    assert_true(match(&l, "192.168.0.0"));
    assert_true(match(&l, "192.168.1.255"));
    assert_false(match(&l, "192.168.2.0"));
    assert_false(match(&l, "192.167.255.255"));
    l = parse_ok("0.0.0.0/0");
    assert_true(match(&l, "1.2.3.4"));
    assert_true(match(&l, "::ffff:1.2.3.4"));
    assert_false(match(&l, "2001:db8::1"));
    l = parse_ok("::/0");
    assert_true(match(&l, "1.2.3.4"));
    assert_true(match(&l, "2001:db8::1"));
    l = parse_ok("2001:db8:8000::/33");
    assert_true(match(&l, "2001:db8:ffff::1"));
    assert_false(match(&l, "2001:db8:7fff::1"));
    l = parse_ok("");
    assert_false(match(&l, "1.2.3.4"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_forms),    cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_limit),    cmocka_unit_test(test_match_forms),
        cmocka_unit_test(test_match_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
