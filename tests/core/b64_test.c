/*
 * b64_test.c - unit tests for engine/core/b64.c: RFC 4648 vectors, FWS anywhere, padding
 * rules, rejection of bad input, capacity limits, and an encode/decode round trip
 * over random data, and the SIMD path against the scalar reference (every byte value at
 * every place of a block; random mixes of alphabet, FWS, padding and bad bytes). Inputs
 * sit against a guard page so an over-read crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "b64.h"
#include "guard.h"

/* decode_str decodes s (placed at a guard page) into out; returns the length or -1. */
static long decode_str(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s);
    size_t len = 0;
    if (!dkd__b64_decode(dkd__span(guard_copy(s, n), n), out, cap, &len)) {
        return -1;
    }
    return (long)len;
}

static void check_decodes(const char *in, const char *want)
{
    uint8_t out[256];
    long n = decode_str(in, out, sizeof out);
    assert_int_equal(n, (long)strlen(want));
    assert_memory_equal(out, want, strlen(want));
}

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    check_decodes("", "");
    check_decodes("Zg==", "f");
    check_decodes("Zm8=", "fo");
    check_decodes("Zm9v", "foo");
    check_decodes("Zm9vYg==", "foob");
    check_decodes("Zm9vYmE=", "fooba");
    check_decodes("Zm9vYmFy", "foobar");
}

static void test_padding_optional(void **state)
{
    (void)state;
    check_decodes("Zg", "f");
    check_decodes("Zm8", "fo");
    check_decodes("Zm9vYg", "foob");
}

static void test_fws_anywhere(void **state)
{
    (void)state;
    check_decodes(" Zm9v\r\n\tYmFy ", "foobar");
    check_decodes("Z m 9 v Y g = =", "foob");
    check_decodes("Zm9vYg=\r\n =", "foob");
    check_decodes("Zm9vYg==\r\n  \t", "foob");
    check_decodes("\n\n\n", "");
}

static void test_rejects(void **state)
{
    (void)state;
    uint8_t out[64];
    assert_int_equal(decode_str("Zm9v!mFy", out, sizeof out), -1); /* bad char */
    assert_int_equal(decode_str("Zm9v-mFy", out, sizeof out), -1); /* base64url */
    assert_int_equal(decode_str("Zm9vY", out, sizeof out), -1);    /* dangling char */
    assert_int_equal(decode_str("Zg==Zg==", out, sizeof out), -1); /* data after pad */
    assert_int_equal(decode_str("Zg=a", out, sizeof out), -1);
    assert_int_equal(decode_str("Zm9v=", out, sizeof out), -1); /* pad after full */
    assert_int_equal(decode_str("Zg=", out, sizeof out), -1);   /* short padding */
    assert_int_equal(decode_str("Zm8==", out, sizeof out), -1); /* long padding */
    assert_int_equal(decode_str("Z===", out, sizeof out), -1);
    assert_int_equal(decode_str("====", out, sizeof out), -1);
    assert_int_equal(decode_str("=", out, sizeof out), -1);
    assert_int_equal(decode_str("Zm9v\x01", out, sizeof out), -1);     /* control byte */
    assert_int_equal(decode_str("Zm9v\xc3\xa9", out, sizeof out), -1); /* non-ASCII */
}

static void test_trailing_bits_accepted(void **state)
{
    (void)state;
    /* "Zh==" carries non-zero bits below the byte; accepted like other verifiers do. */
    check_decodes("Zh==", "f");
}

static void test_capacity(void **state)
{
    (void)state;
    uint8_t out[8];
    assert_int_equal(decode_str("Zm9vYmFy", out, 6), 6);
    assert_int_equal(decode_str("Zm9vYmFy", out, 5), -1);
    assert_int_equal(decode_str("Zm9vYmE=", out, 4), -1);
    assert_int_equal(decode_str("Zm9vYg==", out, 3), -1);
    assert_int_equal(decode_str("Zm9vYg==", out, 4), 4);
    assert_int_equal(decode_str("", out, 0), 0);
}

static void test_encode_vectors(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        char out[16];
        size_t n = dkd__b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out);
        assert_int_equal(n, strlen(coded[i]));
        assert_memory_equal(out, coded[i], n);
    }
}

static void test_round_trip_random(void **state)
{
    (void)state;
    srand(12345);
    uint8_t in[300], back[300 + 3];
    char enc[4 * 101];
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = (size_t)rand() % sizeof in;
        for (size_t i = 0; i < len; i++) {
            in[i] = (uint8_t)rand();
        }
        size_t n = dkd__b64_encode(in, len, enc);
        assert_int_equal(n, 4 * ((len + 2) / 3));
        size_t got = 0;
        const uint8_t *g = guard_copy(enc, n);
        assert_true(dkd__b64_decode(dkd__span(g, n), back, len / 3 * 3 + 3, &got));
        assert_int_equal(got, len);
        assert_memory_equal(back, in, len);
    }
}

/* Folded values: FWS runs of 1-3 bytes (as in a folded b= header) inserted at random
 * places, so they land at every offset within a quantum; the decoder's four-at-a-time
 * path must carry a quantum split by them exactly as the byte loop does. */
static void test_round_trip_folded(void **state)
{
    (void)state;
    srand(777);
    static const char fws[] = " \t\r\n";
    uint8_t in[300], back[300 + 3];
    char enc[4 * 101], folded[4 * 101 * 4];
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = (size_t)rand() % sizeof in;
        for (size_t i = 0; i < len; i++) {
            in[i] = (uint8_t)rand();
        }
        size_t n = dkd__b64_encode(in, len, enc);
        size_t f = 0;
        for (size_t i = 0; i < n; i++) {
            if (rand() % 8 == 0) {
                for (int k = 1 + rand() % 3; k > 0; k--) {
                    folded[f++] = fws[rand() % 4];
                }
            }
            folded[f++] = enc[i];
        }
        size_t got = 0;
        const uint8_t *g = guard_copy(folded, f);
        assert_true(dkd__b64_decode(dkd__span(g, f), back, len / 3 * 3 + 3, &got));
        assert_int_equal(got, len);
        assert_memory_equal(back, in, len);
    }
}

/* same_as_scalar checks dkd__b64_decode against dkd__b64_decode_scalar on in[0..n) (put
 * at a guard page) with output capacity cap: same verdict, and on success the same
 * bytes. */
static void same_as_scalar(const uint8_t *in, size_t n, size_t cap)
{
    uint8_t fast[1200], ref[1200];
    assert_true(cap <= sizeof fast);
    const uint8_t *g = guard_copy(in, n);
    size_t fast_len = 0, ref_len = 0;
    bool fast_ok = dkd__b64_decode(dkd__span(g, n), fast, cap, &fast_len);
    bool ref_ok = dkd__b64_decode_scalar(dkd__span(g, n), ref, cap, &ref_len);
    assert_int_equal(fast_ok, ref_ok);
    if (ref_ok) {
        assert_int_equal(fast_len, ref_len);
        assert_memory_equal(fast, ref, ref_len);
    }
}

/* Every byte value at every place of the first two 16-character blocks of a valid
 * value: the SIMD range check must accept exactly the alphabet and decode it as the
 * table does. */
static void test_simd_every_byte(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t in[48];
    for (size_t i = 0; i < sizeof in; i++) {
        in[i] = (uint8_t)alphabet[(i * 7) % 64];
    }
    for (size_t pos = 0; pos < 32; pos++) {
        uint8_t keep = in[pos];
        for (int c = 0; c < 256; c++) {
            in[pos] = (uint8_t)c;
            same_as_scalar(in, sizeof in, sizeof in);
        }
        in[pos] = keep;
    }
}

/* Random values built from a weighted mix (mostly alphabet, some FWS, padding, bad and
 * 8-bit bytes), random lengths and capacities, including capacities too small. */
static void test_simd_random(void **state)
{
    (void)state;
    srand(4242);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char fws[] = " \t\r\n";
    uint8_t in[800];
    for (int iter = 0; iter < 40000; iter++) {
        size_t len = (size_t)rand() % sizeof in;
        int odd = 1 + rand() % 400; /* one non-alphabet byte in ~odd */
        for (size_t i = 0; i < len; i++) {
            int r = rand();
            if (r % odd != 0) {
                in[i] = (uint8_t)alphabet[(r >> 8) % 64];
            } else if ((r >> 8) % 4 == 0) {
                in[i] = '=';
            } else if ((r >> 8) % 4 == 1) {
                in[i] = (uint8_t)(r >> 12);
            } else {
                in[i] = (uint8_t)fws[(r >> 12) % 4];
            }
        }
        size_t cap = len / 4 * 3 + 3;
        if (rand() % 4 == 0) {
            cap = (size_t)rand() % (cap + 1);
        } else if (rand() % 4 == 0) {
            cap += 16;
        }
        same_as_scalar(in, len, cap);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),        cmocka_unit_test(test_padding_optional),
        cmocka_unit_test(test_fws_anywhere),           cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_trailing_bits_accepted), cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_encode_vectors),         cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_round_trip_folded),      cmocka_unit_test(test_simd_every_byte),
        cmocka_unit_test(test_simd_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
