/*
 * taglist_test.c - unit tests for engine/core/taglist.c: the RFC 6376 section 3.2 grammar,
 * value trimming and raw ranges, FWS and folding, every syntax error with its offset,
 * duplicates, the tag limit, and key records as publishers really write them. Inputs
 * sit against a guard page so an over-read crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "taglist.h"

static dkd_taglist tl;
static const uint8_t *base;

static dkd_taglist_status parse(const char *s)
{
    size_t n = strlen(s);
    base = guard_copy(s, n);
    return dkd__taglist_parse(dkd__span(base, n), &tl);
}

static void check_tag(size_t idx, const char *name, const char *value)
{
    assert_true(idx < tl.count);
    assert_true(dkd__span_eq_str(tl.tags[idx].name, name));
    if (!dkd__span_eq_str(tl.tags[idx].value, value)) {
        fail_msg("tag %s: value '%.*s', want '%s'", name, (int)tl.tags[idx].value.len,
                 (const char *)tl.tags[idx].value.ptr, value);
    }
}

static void check_syntax(const char *s, size_t off)
{
    assert_int_equal(parse(s), DKD_TAGLIST_SYNTAX);
    assert_non_null(tl.err);
    if (tl.err_off != off) {
        fail_msg("'%s': error '%s' at %zu, want %zu", s, tl.err, tl.err_off, off);
    }
}

static void test_simple(void **state)
{
    (void)state;
    assert_int_equal(parse("v=1; a=rsa-sha256; d=example.com"), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 3);
    check_tag(0, "v", "1");
    check_tag(1, "a", "rsa-sha256");
    check_tag(2, "d", "example.com");
}

static void test_value_ranges(void **state)
{
    (void)state;
    const char *s = "a=x;  b = \r\n\tyy zz \r\n ;c=";
    assert_int_equal(parse(s), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 3);
    check_tag(0, "a", "x");
    assert_int_equal(tl.tags[0].value_off, 2);
    assert_int_equal(tl.tags[0].value_end, 3);
    check_tag(1, "b", "yy zz");
    assert_int_equal(tl.tags[1].value_off, 9);
    assert_int_equal(tl.tags[1].value_end, strchr(s + 4, ';') - s);
    /* The value span points into the input, inside its raw range. */
    assert_ptr_equal(tl.tags[1].value.ptr, base + (strstr(s, "yy") - s));
    check_tag(2, "c", "");
    assert_int_equal(tl.tags[2].value_off, strlen(s));
    assert_int_equal(tl.tags[2].value_end, strlen(s));
}

static void test_trailing(void **state)
{
    (void)state;
    assert_int_equal(parse("a=1;"), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 1);
    assert_int_equal(parse("a=1; \r\n "), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 1);
    assert_int_equal(parse("  a=1  "), DKD_TAGLIST_OK);
    check_tag(0, "a", "1");
    assert_int_equal(parse(""), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 0);
    assert_int_equal(parse(" \t "), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 0);
}

static void test_key_records(void **state)
{
    (void)state;
    assert_int_equal(parse("v=DKIM1; s=email:web:fine; x1 = extra ; t = y:n:extra; "
                           "p=MIGfMA0GCSqGSIb3DQEB ; "),
                     DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 5);
    check_tag(0, "v", "DKIM1");
    check_tag(1, "s", "email:web:fine");
    check_tag(2, "x1", "extra");
    check_tag(3, "t", "y:n:extra");
    check_tag(4, "p", "MIGfMA0GCSqGSIb3DQEB");
    check_syntax("k=rsa; t; p=abc", 8);
    /* "v=DKIM1: g=*" is one tag with a colon in the value, not two tags. */
    assert_int_equal(parse("v=DKIM1: g=*; p=x"), DKD_TAGLIST_OK);
    check_tag(0, "v", "DKIM1: g=*");
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(parse("Ab_9=1; a=2; A=3"), DKD_TAGLIST_OK);
    check_tag(0, "Ab_9", "1");
    /* Names are case-sensitive: "a" and "A" are different tags. */
    assert_non_null(dkd__taglist_find(&tl, "a"));
    assert_true(dkd__span_eq_str(dkd__taglist_find(&tl, "A")->value, "3"));
    assert_null(dkd__taglist_find(&tl, "b"));
    assert_null(dkd__taglist_find(&tl, "Ab"));
    check_syntax("9a=1", 0);
    check_syntax("_a=1", 0);
    check_syntax("a-b=1", 1);
    check_syntax("a b=1", 2);
    check_syntax("a=1; =2", 5);
    check_syntax("a\xc3\xa9=1", 1);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    check_syntax(";a=1", 0);
    check_syntax("a=1;;b=2", 4);
    check_syntax("a=1; ;b=2", 5);
    check_syntax("a", 1);
    check_syntax("a=1; b", 6);
    check_syntax("a=1; b;", 6);
    check_syntax("a=x\x01y", 3);
    check_syntax("a=x\x7fy", 3);
}

static void test_nul_and_controls(void **state)
{
    (void)state;
    static const char with_nul[] = {'a', '=', 'x', 0, 'y'};
    base = guard_copy(with_nul, sizeof with_nul);
    assert_int_equal(dkd__taglist_parse(dkd__span(base, sizeof with_nul), &tl), DKD_TAGLIST_SYNTAX);
    assert_int_equal(tl.err_off, 3);
    check_syntax("a=\x0b", 2);
    check_syntax("a=\f", 2);
}

static void test_utf8_values(void **state)
{
    (void)state;
    assert_int_equal(parse("d=\xc3\xa9xample.com; i=\xe2\x82\xac@x"), DKD_TAGLIST_OK);
    check_tag(0, "d", "\xc3\xa9xample.com");
    check_tag(1, "i", "\xe2\x82\xac@x");
}

static void test_duplicate(void **state)
{
    (void)state;
    assert_int_equal(parse("a=1; b=2; a=3; c=4"), DKD_TAGLIST_DUPLICATE);
    assert_true(dkd__span_eq_str(tl.dup, "a"));
    /* The first occurrence is kept and the tags after the duplicate are still read. */
    assert_int_equal(tl.count, 3);
    check_tag(0, "a", "1");
    check_tag(2, "c", "4");
    /* A syntax error later on is reported over the duplicate. */
    check_syntax("a=1; a=2; ;", 10);
}

static void test_tag_limit(void **state)
{
    (void)state;
    char buf[DKD_TAGLIST_MAX * 12 + 16];
    size_t n = 0;
    for (int i = 0; i < DKD_TAGLIST_MAX; i++) {
        n += (size_t)snprintf(buf + n, sizeof buf - n, "t%d=%d;", i, i);
    }
    assert_int_equal(parse(buf), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, DKD_TAGLIST_MAX);
    size_t at = n;
    snprintf(buf + n, sizeof buf - n, "z=1");
    check_syntax(buf, at);
    assert_int_equal(tl.count, DKD_TAGLIST_MAX);
}

static void test_folded_signature(void **state)
{
    (void)state;
    const char *s = " v=1; a=rsa-sha256; s=brisbane; d=example.com;\r\n"
                    "      c=simple/simple; q=dns/txt; i=joe@football.example.com;\r\n"
                    "      h=Received : From : To : Subject : Date : Message-ID;\r\n"
                    "      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
                    "      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB\r\n"
                    "      4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut\r\n"
                    "      KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV\r\n"
                    "      4bmp/YzhwvcubU4=;\r\n";
    assert_int_equal(parse(s), DKD_TAGLIST_OK);
    assert_int_equal(tl.count, 10);
    check_tag(7, "h", "Received : From : To : Subject : Date : Message-ID");
    const dkd_tag *b = dkd__taglist_find(&tl, "b");
    assert_non_null(b);
    assert_int_equal(b->value_off, strstr(s, "b=AuUo") - s + 2);
    assert_int_equal(s[b->value_end], ';');
    assert_int_equal(b->value.len, b->value_end - b->value_off);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_value_ranges),
        cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_key_records),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_nul_and_controls),
        cmocka_unit_test(test_utf8_values),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_tag_limit),
        cmocka_unit_test(test_folded_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
