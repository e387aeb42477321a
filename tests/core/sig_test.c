/*
 * sig_test.c - unit tests for engine/core/sig.c: the RFC 6376 A.2 and RFC 8463 A.3
 * signatures, every tag rule with its success and failure reasons and details, FWS and
 * folding inside values, UTF-8 in d= and i=, and d=/s= name syntax. Each signature is
 * built from a table of valid tags with one tag replaced, removed or added, so a test
 * changes exactly the thing it is about. Inputs sit against a guard page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "b64.h"
#include "guard.h"
#include "sig.h"

#define BH32 "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="

static const char *const base_tags[][2] = {
    {"v", "1"},       {"a", "rsa-sha256"}, {"d", "example.com"}, {"s", "sel"},
    {"h", "from:to"}, {"bh", BH32},        {"b", "AAECAwQF"},
};
enum { NBASE = sizeof base_tags / sizeof base_tags[0] };

static dkd_sig sig;
static dkd_sig_error err;
static dkd_arena arena;
static char text[8192];
static size_t text_len;
static const uint8_t *guarded;

/* build writes the base signature with tag name set to value (NULL removes it; a name
 * not in the base is appended) into text. */
static void build(const char *name, const char *value)
{
    size_t n = 0;
    bool seen = false;
    for (size_t k = 0; k < NBASE; k++) {
        const char *v = base_tags[k][1];
        if (name != NULL && strcmp(name, base_tags[k][0]) == 0) {
            seen = true;
            v = value;
        }
        if (v != NULL) {
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%s=%s", n ? "; " : "",
                                  base_tags[k][0], v);
        }
    }
    if (name != NULL && !seen && value != NULL) {
        n += (size_t)snprintf(text + n, sizeof text - n, "; %s=%s", name, value);
    }
    assert_true(n < sizeof text);
    text_len = n;
}

static bool parse_text(void)
{
    guarded = guard_copy(text, text_len);
    dkd__arena_reset(&arena);
    return dkd__sig_parse(dkd__span(guarded, text_len), &sig, &arena, &err);
}

static bool parse_str(const char *s)
{
    text_len = strlen(s);
    assert_true(text_len < sizeof text);
    memcpy(text, s, text_len);
    return parse_text();
}

static bool parse_with(const char *name, const char *value)
{
    build(name, value);
    return parse_text();
}

static void expect_ok(void)
{
    if (err.reason != DKD_REASON_OK) {
        fail_msg("'%.*s': %s: %s", (int)text_len, text, dkd_reason_code(err.reason), err.detail);
    }
}

/* expect_fail checks the reason and, when detail is non-NULL, the exact detail. */
static void expect_fail(bool ok, enum dkd_reason reason, const char *detail)
{
    if (ok || err.reason != reason) {
        fail_msg("'%.*s': got %s (%s), want %s", (int)text_len, text,
                 ok ? "success" : dkd_reason_code(err.reason), err.detail, dkd_reason_code(reason));
    }
    if (detail != NULL && strcmp(err.detail, detail) != 0) {
        fail_msg("detail '%s', want '%s'", err.detail, detail);
    }
}

static void ok_with(const char *name, const char *value)
{
    assert_true(parse_with(name, value));
    expect_ok();
}

static void fail_with(const char *name, const char *value, enum dkd_reason reason,
                      const char *detail)
{
    expect_fail(parse_with(name, value), reason, detail);
}

static bool span_is(dkd_span s, const char *want)
{
    return dkd__span_eq_str(s, want);
}

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

static void test_base(void **state)
{
    (void)state;
    assert_true(parse_with(NULL, NULL));
    expect_ok();
    assert_int_equal(sig.alg, DKD_ALG_RSA_SHA256);
    assert_int_equal(sig.hash, DKD_HASH_SHA256);
    assert_int_equal(sig.canon_header, DKD_CANON_SIMPLE);
    assert_int_equal(sig.canon_body, DKD_CANON_SIMPLE);
    assert_true(span_is(sig.d, "example.com"));
    assert_true(span_is(sig.s, "sel"));
    assert_true(span_is(sig.a, "rsa-sha256"));
    assert_true(span_is(sig.identity, "@example.com"));
    assert_int_equal(sig.i_raw.len, 0);
    assert_int_equal(sig.h_count, 2);
    assert_true(span_is(sig.h_names[0], "from"));
    assert_true(span_is(sig.h_names[1], "to"));
    assert_int_equal(sig.b_len, 6);
    assert_memory_equal(sig.b, "\0\1\2\3\4\5", 6);
    assert_int_equal(sig.bh_len, 32);
    assert_false(sig.has_l || sig.has_t || sig.has_x);
    assert_true(span_is(sig.b_raw, "AAECAwQF"));
    assert_int_equal(sig.b_value_end, text_len);
    assert_int_equal(sig.b_value_off, text_len - 8);
}

static const char rfc6376_a2[] = " v=1; a=rsa-sha256; s=brisbane; d=example.com;\r\n"
                                 "      c=simple/simple; q=dns/txt; i=joe@football.example.com;\r\n"
                                 "      h=Received : From : To : Subject : Date : Message-ID;\r\n"
                                 "      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
                                 "      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB\r\n"
                                 "      4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut\r\n"
                                 "      KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV\r\n"
                                 "      4bmp/YzhwvcubU4=;\r\n";

static void test_rfc6376_a2(void **state)
{
    (void)state;
    assert_true(parse_str(rfc6376_a2));
    expect_ok();
    assert_int_equal(sig.alg, DKD_ALG_RSA_SHA256);
    assert_int_equal(sig.canon_header, DKD_CANON_SIMPLE);
    assert_int_equal(sig.canon_body, DKD_CANON_SIMPLE);
    assert_true(span_is(sig.d, "example.com"));
    assert_true(span_is(sig.s, "brisbane"));
    assert_true(span_is(sig.identity, "joe@football.example.com"));
    assert_int_equal(sig.h_count, 6);
    static const char *const names[] = {"Received", "From", "To", "Subject", "Date", "Message-ID"};
    for (size_t k = 0; k < 6; k++) {
        assert_true(span_is(sig.h_names[k], names[k]));
    }
    assert_int_equal(sig.bh_len, 32);
    assert_int_equal(sig.b_len, 128); /* RSA-1024 */
    /* The b= range covers the folded value, up to the final ';'. */
    const char *b = strstr(rfc6376_a2, "b=AuUo");
    assert_int_equal(sig.b_value_off, (size_t)(b - rfc6376_a2) + 2);
    assert_int_equal(rfc6376_a2[sig.b_value_end], ';');
    assert_int_equal(sig.b_value_end, strlen(rfc6376_a2) - 3);
    /* Re-encoding the decoded signature gives the value with its folds removed. */
    char enc[200];
    size_t n = dkd__b64_encode(sig.b, sig.b_len, enc);
    assert_int_equal(n, 172);
    assert_memory_equal(enc, "AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB4nuj", 56);
}

static const char rfc8463_a3[] = " v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
                                 " d=football.example.com; i=@football.example.com;\r\n"
                                 " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
                                 " subject : date : message-id : from : subject : date;\r\n"
                                 " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
                                 " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
                                 " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n";

static void test_rfc8463_a3(void **state)
{
    (void)state;
    assert_true(parse_str(rfc8463_a3));
    expect_ok();
    assert_int_equal(sig.alg, DKD_ALG_ED25519_SHA256);
    assert_int_equal(sig.hash, DKD_HASH_SHA256);
    assert_int_equal(sig.canon_header, DKD_CANON_RELAXED);
    assert_int_equal(sig.canon_body, DKD_CANON_RELAXED);
    assert_true(span_is(sig.identity, "@football.example.com"));
    assert_true(sig.has_t);
    assert_int_equal(sig.t, 1528637909);
    assert_int_equal(sig.h_count, 8);
    assert_true(span_is(sig.h_names[7], "date"));
    assert_int_equal(sig.b_len, 64);
    assert_int_equal(sig.bh_len, 32);
    /* b= is the last tag: its range runs to the end of the value, CRLF included. */
    assert_int_equal(sig.b_value_end, strlen(rfc8463_a3));
    assert_true(span_is(sig.b_raw, "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
                                   "\r\n Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="));
}

static void test_taglist_errors(void **state)
{
    (void)state;
    expect_fail(parse_str("v=1; a=rsa-sha256;; d=example.com"), DKD_REASON_SIG_SYNTAX,
                "tag list: empty tag-spec at byte 18");
    assert_true(span_is(sig.a, "rsa-sha256"));
    expect_fail(parse_str("v=1; d=example.com; s=x; a"), DKD_REASON_SIG_SYNTAX, NULL);
    assert_non_null(strstr(err.detail, "at byte 26"));
    assert_true(span_is(sig.d, "example.com"));
    assert_true(span_is(sig.s, "x"));
    expect_fail(parse_str("v=1; h=from\x01; d=x"), DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("d", "example.com; d=example.org", DKD_REASON_SIG_DUPLICATE_TAG,
              "tag d= appears more than once");
    assert_true(span_is(sig.d, "example.com"));
    assert_true(span_is(sig.s, "sel")); /* tags after the duplicate are still read */
}

static void test_missing(void **state)
{
    (void)state;
    static const char *const req[] = {"v", "a", "b", "bh", "d", "h", "s"};
    for (size_t k = 0; k < 7; k++) {
        char want[32];
        snprintf(want, sizeof want, "missing tag %s=", req[k]);
        fail_with(req[k], NULL, DKD_REASON_SIG_MISSING_TAG, want);
    }
    /* v is checked first. */
    expect_fail(parse_str("d=example.com"), DKD_REASON_SIG_MISSING_TAG, "missing tag v=");
    assert_true(span_is(sig.d, "example.com"));
    expect_fail(parse_str(""), DKD_REASON_SIG_MISSING_TAG, "missing tag v=");
    /* Tag names are case-sensitive: D= is not d=. */
    build("d", NULL);
    strcat(text, "; D=example.com");
    text_len = strlen(text);
    expect_fail(parse_text(), DKD_REASON_SIG_MISSING_TAG, "missing tag d=");
}

static void test_version(void **state)
{
    (void)state;
    fail_with("v", "2", DKD_REASON_SIG_VERSION, "tag v: version is not 1: '2'");
    fail_with("v", "", DKD_REASON_SIG_VERSION, NULL);
    fail_with("v", "01", DKD_REASON_SIG_VERSION, NULL);
    fail_with("v", "1.0", DKD_REASON_SIG_VERSION, NULL);
    ok_with("v", " 1 ");
}

static void test_algorithm(void **state)
{
    (void)state;
    ok_with("a", "ed25519-sha256");
    assert_int_equal(sig.alg, DKD_ALG_ED25519_SHA256);
    ok_with("a", "rsa-sha1");
    assert_int_equal(sig.alg, DKD_ALG_RSA_SHA1);
    assert_int_equal(sig.hash, DKD_HASH_SHA1);
    ok_with("a", "RSA-SHA256");
    assert_int_equal(sig.alg, DKD_ALG_RSA_SHA256);
    fail_with("a", "rsa-md5", DKD_REASON_UNSUPPORTED_ALGORITHM,
              "tag a: unknown algorithm 'rsa-md5'");
    assert_true(span_is(sig.a, "rsa-md5"));
    assert_true(span_is(sig.d, "example.com"));
    fail_with("a", "dsa-sha1", DKD_REASON_UNSUPPORTED_ALGORITHM, NULL);
    fail_with("a", "rsa-sha256x", DKD_REASON_UNSUPPORTED_ALGORITHM, NULL);
    fail_with("a", "", DKD_REASON_UNSUPPORTED_ALGORITHM, NULL);
}

static void check_canon(const char *c, enum dkd_canon h, enum dkd_canon b)
{
    ok_with("c", c);
    assert_int_equal(sig.canon_header, h);
    assert_int_equal(sig.canon_body, b);
}

static void test_canon(void **state)
{
    (void)state;
    check_canon("simple", DKD_CANON_SIMPLE, DKD_CANON_SIMPLE);
    check_canon("relaxed", DKD_CANON_RELAXED, DKD_CANON_SIMPLE);
    check_canon("relaxed/relaxed", DKD_CANON_RELAXED, DKD_CANON_RELAXED);
    check_canon("simple/relaxed", DKD_CANON_SIMPLE, DKD_CANON_RELAXED);
    check_canon("relaxed/simple", DKD_CANON_RELAXED, DKD_CANON_SIMPLE);
    check_canon("Relaxed/Relaxed", DKD_CANON_RELAXED, DKD_CANON_RELAXED);
    fail_with("c", "foobar", DKD_REASON_UNSUPPORTED_CANON,
              "tag c: unknown canonicalization 'foobar'");
    fail_with("c", "nofws", DKD_REASON_UNSUPPORTED_CANON, NULL);
    fail_with("c", "relaxed/", DKD_REASON_UNSUPPORTED_CANON, NULL);
    fail_with("c", "/relaxed", DKD_REASON_UNSUPPORTED_CANON, NULL);
    fail_with("c", "relaxed/future", DKD_REASON_UNSUPPORTED_CANON, NULL);
    fail_with("c", "relaxed/relaxed/relaxed", DKD_REASON_UNSUPPORTED_CANON, NULL);
    fail_with("c", "", DKD_REASON_UNSUPPORTED_CANON, NULL);
}

static void test_query(void **state)
{
    (void)state;
    ok_with("q", "dns/txt");
    ok_with("q", "DNS/TXT");
    ok_with("q", "foo/bar:dns/txt:exam/ple");
    ok_with("q", "http \r\n : dns/txt ");
    fail_with("q", "dns", DKD_REASON_UNSUPPORTED_QUERY, "tag q: no dns/txt query method in 'dns'");
    fail_with("q", "http", DKD_REASON_UNSUPPORTED_QUERY, NULL);
    fail_with("q", "dns/special", DKD_REASON_UNSUPPORTED_QUERY, NULL);
    fail_with("q", "dns/txtx", DKD_REASON_UNSUPPORTED_QUERY, NULL);
    fail_with("q", "", DKD_REASON_UNSUPPORTED_QUERY, NULL);
}

static void test_domain_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "example.com",     "a",          "sel_2024-1", "x.y.z", "\xc3\xa9xample.com",
        "example.com\xe9", "123.example"};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        const uint8_t *g = guard_str(good[k]);
        assert_true(dkd__domain_valid(dkd__span(g, strlen(good[k]))));
    }
    static const char *const bad[] = {"",
                                      ".",
                                      ".example.com",
                                      "example.com.",
                                      "a..b",
                                      "legitimate.com(.attacker.com",
                                      "exa mple.com",
                                      "example.com;",
                                      "a/b",
                                      "a@b"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const uint8_t *g = guard_str(bad[k]);
        if (dkd__domain_valid(dkd__span(g, strlen(bad[k])))) {
            fail_msg("'%s' accepted", bad[k]);
        }
    }
    char name[300];
    memset(name, 'a', 63);
    assert_true(dkd__domain_valid(dkd__span(guard_copy(name, 63), 63)));
    assert_false(dkd__domain_valid(dkd__span(guard_copy(name, 64), 64)));
    /* 253 bytes total is the limit: four labels of 63 plus dots is 255. */
    for (size_t k = 0; k < sizeof name; k++) {
        name[k] = (k % 64 == 63) ? '.' : 'b';
    }
    assert_true(dkd__domain_valid(dkd__span(guard_copy(name, 253), 253)));
    assert_false(dkd__domain_valid(dkd__span(guard_copy(name, 254), 254)));
}

static void test_domain_tags(void **state)
{
    (void)state;
    fail_with("d", "legitimate.com(.attacker.com", DKD_REASON_BAD_DOMAIN,
              "tag d: invalid domain 'legitimate.com(.attacker.com'");
    assert_true(span_is(sig.d, "legitimate.com(.attacker.com"));
    fail_with("d", "example.com.", DKD_REASON_BAD_DOMAIN, NULL);
    fail_with("d", "", DKD_REASON_BAD_DOMAIN, NULL);
    fail_with("s", "sel.", DKD_REASON_BAD_DOMAIN, "tag s: invalid selector 'sel.'");
    fail_with("s", "", DKD_REASON_BAD_DOMAIN, NULL);
    ok_with("s", "2024._sel-1.x");
    /* RFC 8616: UTF-8 in d=, and a lone Latin-1 byte too (it fails later, at lookup). */
    ok_with("d", "\xc3\xa9xample.com");
    assert_true(span_is(sig.identity, "@\xc3\xa9xample.com"));
    ok_with("d", "example.com\xe9");
    /* The detail shows non-ASCII bytes escaped. */
    fail_with("d", "\xc3\xa9x..com", DKD_REASON_BAD_DOMAIN,
              "tag d: invalid domain '\\xc3\\xa9x..com'");
}

static void test_headers(void **state)
{
    (void)state;
    ok_with("h", " From \r\n : To:subject");
    assert_int_equal(sig.h_count, 3);
    assert_true(span_is(sig.h_names[0], "From"));
    assert_true(span_is(sig.h_names[1], "To"));
    assert_true(span_is(sig.h_names[2], "subject"));
    ok_with("h", "to:FROM:from");
    assert_int_equal(sig.h_count, 3);
    fail_with("h", "to:subject", DKD_REASON_FROM_NOT_SIGNED,
              "tag h: From is not among 'to:subject'");
    fail_with("h", "from-x:to", DKD_REASON_FROM_NOT_SIGNED, NULL);
    fail_with("h", "from::to", DKD_REASON_SIG_SYNTAX, "tag h: empty header field name in item 2");
    fail_with("h", "from:", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("h", ":from", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("h", "from: :to", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("h", "", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("h", "fr om:to", DKD_REASON_SIG_SYNTAX, "tag h: bad header field name 'fr om'");
    fail_with("h", "from:t\xc3\xa9", DKD_REASON_SIG_SYNTAX, NULL);

    char h[DKD_SIG_MAX_H * 5 + 8];
    size_t n = (size_t)snprintf(h, sizeof h, "from");
    for (int k = 1; k < DKD_SIG_MAX_H; k++) {
        n += (size_t)snprintf(h + n, sizeof h - n, ":x%d", k % 10);
    }
    ok_with("h", h);
    assert_int_equal(sig.h_count, DKD_SIG_MAX_H);
    snprintf(h + n, sizeof h - n, ":to");
    fail_with("h", h, DKD_REASON_SIG_SYNTAX, "tag h: more than 128 header fields");
}

static void test_identity(void **state)
{
    (void)state;
    ok_with("i", "@example.com");
    assert_true(span_is(sig.identity, "@example.com"));
    assert_true(span_is(sig.i_raw, "@example.com"));
    ok_with("i", "joe@sub.example.com");
    ok_with("i", "joe@a.b.EXAMPLE.COM");
    ok_with("i", "joe=40x@example.com"); /* quoted-printable '@' in the local part */
    assert_true(span_is(sig.identity, "joe@x@example.com"));
    assert_true(span_is(sig.i_raw, "joe=40x@example.com"));
    ok_with("i", "joe=3Bx@exa\r\n mple.com"); /* "=3B" is ';'; FWS is dropped */
    assert_true(span_is(sig.identity, "joe;x@example.com"));
    ok_with("i", "joe=3bx@example.com");
    fail_with("i", "joe@example.org", DKD_REASON_DOMAIN_MISMATCH,
              "tag i: 'joe@example.org' is not within d=example.com");
    assert_true(span_is(sig.i_raw, "joe@example.org"));
    fail_with("i", "joe@badexample.com", DKD_REASON_DOMAIN_MISMATCH, NULL);
    fail_with("i", "joe@com", DKD_REASON_DOMAIN_MISMATCH, NULL);
    fail_with("i", "joe@example.com.evil", DKD_REASON_DOMAIN_MISMATCH, NULL);
    fail_with("i", "joe", DKD_REASON_SIG_SYNTAX, "tag i: no '@' in identity 'joe'");
    fail_with("i", "", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe@", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe@.example.com", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe=4@example.com", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe@example.com=", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe@example.com=4", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("i", "joe=ZZ@example.com", DKD_REASON_SIG_SYNTAX, NULL);
}

static void test_identity_utf8(void **state)
{
    (void)state;
    build("d", "\xc3\xa9xample.com");
    strcat(text, "; i=j\xc3\xb6rg@mail.\xc3\xa9xample.com");
    text_len = strlen(text);
    assert_true(parse_text());
    expect_ok();
    assert_true(span_is(sig.identity, "j\xc3\xb6rg@mail.\xc3\xa9xample.com"));
    /* The same identity, quoted-printable. */
    build("d", "\xc3\xa9xample.com");
    strcat(text, "; i=j=C3=B6rg@=C3=A9xample.com");
    text_len = strlen(text);
    assert_true(parse_text());
    expect_ok();
    assert_true(span_is(sig.identity, "j\xc3\xb6rg@\xc3\xa9xample.com"));
    /* Case folding is ASCII only: a different UTF-8 letter is a different domain. */
    build("d", "\xc3\xa9xample.com");
    strcat(text, "; i=@\xc3\x89xample.com");
    text_len = strlen(text);
    expect_fail(parse_text(), DKD_REASON_DOMAIN_MISMATCH, NULL);
}

static void test_b_and_bh(void **state)
{
    (void)state;
    ok_with("b", "AAEC\r\n\tAwQF");
    assert_int_equal(sig.b_len, 6);
    assert_memory_equal(sig.b, "\0\1\2\3\4\5", 6);
    ok_with("bh", "2jUSOH9NhtVGCQWNr9BrIAPr\r\n eKQjO6Sn7XIkfJVOzv8 =");
    assert_int_equal(sig.bh_len, 32);
    ok_with("bh", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="); /* 20 bytes: kept, the verifier decides */
    assert_int_equal(sig.bh_len, 20);
    fail_with("b", "", DKD_REASON_SIG_SYNTAX, "tag b: empty signature");
    fail_with("b", " \r\n ", DKD_REASON_SIG_SYNTAX, "tag b: empty signature");
    fail_with("b", "AAA!", DKD_REASON_SIG_SYNTAX, "tag b: bad base64 'AAA!'");
    fail_with("b", "AAAAA", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("bh", "", DKD_REASON_SIG_SYNTAX, "tag bh: empty body hash");
    fail_with("bh", "2jUS=OH9", DKD_REASON_SIG_SYNTAX, NULL);

    static uint8_t raw[DKD_SIG_MAX_B + 1];
    static char enc[4 * (DKD_SIG_MAX_B + 3) / 3 + 4];
    for (size_t k = 0; k < sizeof raw; k++) {
        raw[k] = (uint8_t)(k * 7);
    }
    enc[dkd__b64_encode(raw, DKD_SIG_MAX_B, enc)] = '\0';
    ok_with("b", enc);
    assert_int_equal(sig.b_len, DKD_SIG_MAX_B);
    assert_memory_equal(sig.b, raw, DKD_SIG_MAX_B);
    enc[dkd__b64_encode(raw, DKD_SIG_MAX_B + 1, enc)] = '\0';
    fail_with("b", enc, DKD_REASON_SIG_SYNTAX,
              "tag b: signature of 1025 bytes is longer than 1024");
    enc[dkd__b64_encode(raw, 64, enc)] = '\0';
    ok_with("bh", enc);
    assert_int_equal(sig.bh_len, 64);
    enc[dkd__b64_encode(raw, 65, enc)] = '\0';
    fail_with("bh", enc, DKD_REASON_SIG_SYNTAX, "tag bh: body hash of 65 bytes is longer than 64");
}

static void test_b_range(void **state)
{
    (void)state;
    /* b= in the middle, with FWS around its value: the range is everything between '='
     * and ';', which the verifier empties. */
    const char *s =
        "v=1; a=rsa-sha256; b= AAEC\r\n AwQF ; bh=" BH32 "; d=example.com; s=sel; h=from";
    assert_true(parse_str(s));
    expect_ok();
    assert_int_equal(sig.b_value_off, strlen("v=1; a=rsa-sha256; b="));
    assert_int_equal(s[sig.b_value_end], ';');
    assert_int_equal(sig.b_value_end - sig.b_value_off, strlen(" AAEC\r\n AwQF "));
    assert_true(span_is(sig.b_raw, "AAEC\r\n AwQF"));
    /* Recorded even when the parse fails later. */
    fail_with("c", "bogus", DKD_REASON_UNSUPPORTED_CANON, NULL);
    assert_true(span_is(sig.b_raw, "AAECAwQF"));
    assert_int_equal(sig.b_value_end, text_len - strlen("; c=bogus"));
}

static void test_numbers(void **state)
{
    (void)state;
    ok_with("l", "0");
    assert_true(sig.has_l);
    assert_int_equal(sig.l, 0);
    ok_with("l", "18446744073709551615");
    assert_true(sig.l == UINT64_MAX);
    char digits[80];
    memset(digits, '0', 76);
    memcpy(digits + 74, "12", 3); /* 76 digits, the most RFC 6376 allows */
    ok_with("l", digits);
    assert_int_equal(sig.l, 12);
    fail_with("l", "18446744073709551616", DKD_REASON_SIG_SYNTAX,
              "tag l: bad body length '18446744073709551616'");
    memset(digits, '0', 77);
    memcpy(digits + 75, "12", 3);
    fail_with("l", digits, DKD_REASON_SIG_SYNTAX, NULL); /* 77 digits */
    fail_with("l", "-1", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("l", "1 2", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("l", "", DKD_REASON_SIG_SYNTAX, NULL);
    fail_with("l", "0x10", DKD_REASON_SIG_SYNTAX, NULL);

    ok_with("t", "1700000000");
    assert_true(sig.has_t && !sig.has_x);
    assert_int_equal(sig.t, 1700000000);
    ok_with("x", "99999999999999999999999");
    assert_true(sig.has_x && sig.x == UINT64_MAX);
    fail_with("t", "17e8", DKD_REASON_SIG_SYNTAX, "tag t: bad timestamp '17e8'");
    fail_with("x", "", DKD_REASON_SIG_SYNTAX, "tag x: bad expiry ''");

    build("t", "1700000000");
    strcat(text, "; x=1699999999");
    text_len = strlen(text);
    expect_fail(parse_text(), DKD_REASON_BAD_TIMESTAMP,
                "tag x: expiry 1699999999 is before signing time t=1700000000");
    build("t", "1700000000");
    strcat(text, "; x=1700000000");
    text_len = strlen(text);
    assert_true(parse_text());
    build("t", "1700000000");
    strcat(text, "; x=1700086400");
    text_len = strlen(text);
    assert_true(parse_text());
    assert_int_equal(sig.x, 1700086400);
}

static void test_unknown_tags(void **state)
{
    (void)state;
    ok_with("z", "anything: goes = here");
    ok_with("zz_9", "");
    ok_with("x1", "\xf0\x9f\x98\x80");
}

static void test_arena_exhausted(void **state)
{
    (void)state;
    dkd_arena tiny;
    dkd__arena_init(&tiny, 0);
    build(NULL, NULL);
    const uint8_t *g = guard_copy(text, text_len);
    assert_false(dkd__sig_parse(dkd__span(g, text_len), &sig, &tiny, &err));
    assert_int_equal(err.reason, DKD_REASON_INTERNAL);
    dkd__arena_destroy(&tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base),
        cmocka_unit_test(test_rfc6376_a2),
        cmocka_unit_test(test_rfc8463_a3),
        cmocka_unit_test(test_taglist_errors),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_algorithm),
        cmocka_unit_test(test_canon),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_domain_valid),
        cmocka_unit_test(test_domain_tags),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_identity_utf8),
        cmocka_unit_test(test_b_and_bh),
        cmocka_unit_test(test_b_range),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_unknown_tags),
        cmocka_unit_test(test_arena_exhausted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
