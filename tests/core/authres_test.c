/*
 * authres_test.c - Authentication-Results formatting: the exact text for common cases,
 * and quoting that keeps hostile values from injecting a result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "authres.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unsigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pass_and_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_values_are_quoted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_bytes_never_reach_the_header, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
