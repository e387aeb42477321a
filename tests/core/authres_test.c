/*
 * authres_test.c - Authentication-Results formatting: the exact text for common cases,
 * and quoting that keeps hostile values from injecting a result; recognizing our own
 * authserv-id in a received field, forged-field tricks included, each value at a guard
 * page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "authres.h"
#include "guard.h"

static dkd_arena arena;

static int setup(void **state)
{
    (void)state;
    dkd__arena_init(&arena, 1 << 20);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dkd__arena_destroy(&arena);
    return 0;
}

static dkd_sig_result result(enum dkd_result res, enum dkd_reason reason, const char *d,
                             const char *i)
{
    return (dkd_sig_result){.result = res, .reason = reason, .detail = "", .d = d,
                            .s = "sel", .i = i, .a = "rsa-sha256", .b_prefix = "AbC/dE+f",
                            .key_bits = 2048};
}

static void test_unsigned(void **state)
{
    (void)state;
    const char *s = dkd__authres_format(&arena, "mx.example.net", NULL, 0);
    assert_string_equal(s, "Authentication-Results: mx.example.net;\r\n"
                           "\tdkim=none (message not signed)");
}

static void test_pass_and_fail(void **state)
{
    (void)state;
    dkd_sig_result r[2] = {
        result(DKD_RESULT_PASS, DKD_REASON_OK, "example.com", "@example.com"),
        result(DKD_RESULT_FAIL, DKD_REASON_BODY_HASH_MISMATCH, "example.org",
               "user@mail.example.org"),
    };
    r[1].key_bits = 0;
    const char *s = dkd__authres_format(&arena, "mx.example.net", r, 2);
    assert_string_equal(
        s, "Authentication-Results: mx.example.net;\r\n"
           "\tdkim=pass (2048-bit key) header.d=example.com header.i=@example.com"
           " header.s=sel header.a=rsa-sha256 header.b=\"AbC/dE+f\";\r\n"
           "\tdkim=fail (body-hash-mismatch) header.d=example.org"
           " header.i=user@mail.example.org header.s=sel header.a=rsa-sha256"
           " header.b=\"AbC/dE+f\"");
}

static void test_hostile_values_are_quoted(void **state)
{
    (void)state;
    dkd_sig_result r = result(DKD_RESULT_PERMERROR, DKD_REASON_BAD_DOMAIN,
                              "evil.com; dkim=pass", "a\"b@x(y)");
    r.key_bits = 0;
    const char *s = dkd__authres_format(&arena, "mx", &r, 1);
    assert_non_null(strstr(s, "header.d=\"evil.com; dkim=pass\""));
    assert_non_null(strstr(s, "header.i=\"a\\\"b@x(y)\""));
    /* Only one dkim= result outside quotes. */
    assert_null(strstr(s, "\tdkim=pass"));
}

static void test_control_bytes_never_reach_the_header(void **state)
{
    (void)state;
    dkd_sig_result r = result(DKD_RESULT_PERMERROR, DKD_REASON_BAD_DOMAIN, "a\r\nX-Evil: 1",
                              "");
    const char *s = dkd__authres_format(&arena, "mx", &r, 1);
    const char *body = strchr(s, '\t');
    assert_non_null(body);
    assert_null(strstr(body, "\r\nX-Evil"));
}

/* ours asks whether value names mx.example.net, the value right before a guard page. */
static bool ours(const char *value)
{
    return dkd__authres_servid_is(dkd__span(guard_str(value), strlen(value)),
                                  dkd__span_str("mx.example.net"));
}

static void test_servid_plain_forms(void **state)
{
    (void)state;
    assert_true(ours("mx.example.net"));
    assert_true(ours("mx.example.net;"));
    assert_true(ours("mx.example.net; dkim=pass header.d=example.com"));
    assert_true(ours("MX.EXAMPLE.NET; dkim=pass"));
    assert_true(ours("mx.example.net 1; dkim=pass"));
    assert_true(ours("mx.example.net 1"));
    assert_true(ours("mx.example.net (v) 1 (c) ; none"));
    assert_true(ours("mx.example.net ;"));
    assert_true(ours("mx.example.net\r\n"));
    assert_true(ours("mx.example.net(c);"));
    assert_true(ours("mx.example.net (c)"));
    assert_true(ours("mx.example.net 1 (c)"));
    assert_false(ours("(c)"));
    assert_false(ours(""));
    assert_false(ours("   "));
    assert_false(ours(";"));
    assert_false(ours("other.example.net; dkim=pass"));
    assert_false(ours("mx.example.net.evil; dkim=pass"));
    assert_false(ours("evil.mx.example.net; dkim=pass"));
    assert_false(ours("mx.example.ne; dkim=pass"));
    assert_false(ours("mx.example.net1; dkim=pass"));
    assert_false(ours("mx.example.net 1 2; dkim=pass"));
    assert_false(ours("mx.example.net x; dkim=pass"));
    assert_false(ours("mx.example.net/x; dkim=pass"));
    assert_false(ours("mx.example.net=; dkim=pass"));
    /* An empty id names nothing, not even an empty value. */
    assert_false(dkd__authres_servid_is(dkd__span_str(""), dkd__span_str("")));
}

static void test_servid_cfws_before(void **state)
{
    (void)state;
    assert_true(ours(" mx.example.net; dkim=pass"));
    assert_true(ours("\r\n\tmx.example.net; dkim=pass"));
    assert_true(ours("\n mx.example.net\n 1\n ; dkim=pass"));
    assert_true(ours("(c) mx.example.net; dkim=pass"));
    assert_true(ours("(a (nested (deeper)) comment) mx.example.net;"));
    assert_true(ours("(a \\) quoted paren) mx.example.net;"));
    assert_true(ours("(x)(y)\r\n (z)mx.example.net;"));
    assert_false(ours("(unterminated mx.example.net;"));
    assert_false(ours("(a (b) mx.example.net;"));
    assert_false(ours("(a \\"));
    assert_false(ours("(bad \\\n quoted-pair) mx.example.net;"));
}

static void test_servid_quoted(void **state)
{
    (void)state;
    assert_true(ours("\"mx.example.net\"; dkim=pass"));
    assert_true(ours("\"MX.Example.Net\" 1; dkim=pass"));
    assert_true(ours("\"mx\\.example\\.net\"; dkim=pass"));
    assert_true(ours("(c) \"mx.example.net\""));
    assert_false(ours("\"mx.exam\r\n ple.net\""));   /* the folded WSP stays */
    assert_true(ours("\"mx.example\r\n.net\""));            /* a bare fold unfolds */
    assert_false(ours("\"mx.example.net\"1; dkim=pass"));
    assert_false(ours("\"mx.example.net \"; dkim=pass"));
    assert_false(ours("\"mx.example.net"));
    assert_false(ours("\"mx.example.net\\\"; dkim=pass"));
    assert_false(ours("\"\"; dkim=pass"));
    assert_false(ours("\"mx.example.net\\\r\"; dkim=pass"));
    assert_false(ours("\"mx.example.net\x01\"; dkim=pass"));
    /* Quoted-pairs compare unescaped, so a quote inside an id is matched too. */
    assert_true(dkd__authres_servid_is(dkd__span_str("\"a\\\"b\\\\c\"; x"),
                                       dkd__span_str("A\"B\\C")));
}

/* What we write, we recognize: the value dkd__authres_format writes for an id is one
 * dkd__authres_servid_is takes for that id, quoted or bare. */
static void test_servid_reads_what_format_writes(void **state)
{
    (void)state;
    static const char *const ids[] = {"mx.example.net", "a b", "x;dkim=pass", "q\"uo\\te",
                                      "(c)", "caf\xc3\xa9.example"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const char *s = dkd__authres_format(&arena, ids[i], NULL, 0);
        const char *colon = strchr(s, ':');
        assert_non_null(colon);
        dkd_span v = dkd__span_str(colon + 1);
        assert_true(dkd__authres_servid_is(v, dkd__span_str(ids[i])));
        assert_false(dkd__authres_servid_is(v, dkd__span_str("mx.example.org")));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unsigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pass_and_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_values_are_quoted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_bytes_never_reach_the_header, setup,
                                        teardown),
        cmocka_unit_test(test_servid_plain_forms),
        cmocka_unit_test(test_servid_cfws_before),
        cmocka_unit_test(test_servid_quoted),
        cmocka_unit_test_setup_teardown(test_servid_reads_what_format_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
