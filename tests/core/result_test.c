/*
 * result_test.c - the reason table: every code unique, round-trips, texts present and
 * safe to place inside an Authentication-Results comment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <dkimd/engine.h>
#include <dkimd/reason.h>

static void test_codes_round_trip_and_are_unique(void **state)
{
    (void)state;
    for (int r = 0; r < DKD_REASON__COUNT; r++) {
        const char *code = dkd_reason_code((enum dkd_reason)r);
        assert_non_null(code);
        assert_true(strlen(code) > 0);
        assert_int_equal(dkd_reason_from_code(code), r);
        for (int o = r + 1; o < DKD_REASON__COUNT; o++) {
            assert_string_not_equal(code, dkd_reason_code((enum dkd_reason)o));
        }
    }
    assert_int_equal(dkd_reason_from_code("no-such-code"), -1);
}

static void test_texts_are_comment_safe(void **state)
{
    (void)state;
    for (int r = 0; r < DKD_REASON__COUNT; r++) {
        const char *texts[] = {dkd_reason_explanation((enum dkd_reason)r),
                               dkd_reason_fix((enum dkd_reason)r)};
        for (size_t t = 0; t < 2; t++) {
            assert_true(strlen(texts[t]) > 5);
            for (const char *p = texts[t]; *p; p++) {
                assert_true(*p >= 0x20 && *p < 0x7f);
                assert_true(*p != '(' && *p != ')' && *p != '\\');
            }
        }
    }
}

static void test_named_codes(void **state)
{
    (void)state;
    assert_string_equal(dkd_reason_code(DKD_REASON_NO_SIGNATURE), "no-signature");
    assert_string_equal(dkd_reason_code(DKD_REASON_KEY_NOT_FOUND), "key-not-found");
    assert_string_equal(dkd_reason_code(DKD_REASON_BODY_HASH_MISMATCH), "body-hash-mismatch");
    assert_string_equal(dkd_result_name(DKD_RESULT_PERMERROR), "permerror");
    assert_string_equal(dkd_result_name(DKD_RESULT_TEMPERROR), "temperror");
    assert_string_equal(dkd_result_name(DKD_RESULT_NONE), "none");
    /* Out-of-range values never crash and never read as pass. */
    assert_string_equal(dkd_reason_code((enum dkd_reason)9999), "internal");
    assert_string_equal(dkd_result_name((enum dkd_result)9999), "permerror");
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(dkd_strerror(0), "success");
    assert_true(strstr(dkd_strerror(DKD_ERR_PENDING), "key") != NULL);
    assert_string_equal(dkd_strerror(-4999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_round_trip_and_are_unique),
        cmocka_unit_test(test_texts_are_comment_safe),
        cmocka_unit_test(test_named_codes),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
