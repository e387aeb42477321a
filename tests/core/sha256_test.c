/*
 * sha256_test.c - unit tests for the SHA-NI SHA-256 (engine/core/sha256.c): the FIPS 180-4
 * examples, and OpenSSL's SHA-256 as the oracle for every length 0..300 split at every
 * point into update calls, and for random lengths in random pieces up to 3 MB, each
 * input against a guard page. On a CPU without SHA-NI the tests skip (the engine then
 * hashes bodies with OpenSSL). The fused path (canonicalization feeding this hash) is
 * tested with the canonicalizer in canon_test.c.
 *
 * Set DKD_SHA256_SEED to replay a particular random run; the seed is printed on failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "guard.h"
#include "sha256.h"

#ifdef DKD_SHA256_SHANI
static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

static void evp_sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;
    assert_int_equal(EVP_Digest(n ? p : (const uint8_t *)"", n, out, &len, EVP_sha256(), NULL),
                     1);
    assert_int_equal(len, 32);
}

/* ours hashes p in pieces: the update lengths cycle through parts (0 = an empty update). */
static void ours(const uint8_t *p, size_t n, const size_t *parts, size_t nparts, uint8_t out[32])
{
    dkd_sha256 s;
    dkd__sha256_init(&s);
    size_t pos = 0, k = 0;
    while (pos < n) {
        size_t len = nparts ? parts[k++ % nparts] : n;
        len = len < n - pos ? len : n - pos;
        dkd__sha256_update(&s, p + pos, len);
        pos += len;
    }
    dkd__sha256_final(&s, out);
}

static void expect_hex(const uint8_t md[32], const char *hex)
{
    char got[65];
    for (int k = 0; k < 32; k++) {
        snprintf(got + 2 * k, 3, "%02x", md[k]);
    }
    assert_string_equal(got, hex);
}

/* FIPS 180-4's examples (NIST's SHA256.pdf and SHA2_Additional): one block, two blocks
 * (padding in a block of its own), 896 bits, and a million 'a' in pieces. */
static void test_sha256_vectors(void **state)
{
    if (!dkd__sha256_available()) {
        skip();
    }
    uint8_t md[32];
    ours((const uint8_t *)"abc", 3, NULL, 0, md);
    expect_hex(md, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ours((const uint8_t *)"", 0, NULL, 0, md);
    expect_hex(md, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ours((const uint8_t *)two, strlen(two), NULL, 0, md);
    expect_hex(md, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *long_msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                           "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    ours((const uint8_t *)long_msg, strlen(long_msg), NULL, 0, md);
    expect_hex(md, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    uint8_t *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    const size_t parts[] = {1, 63, 64, 65, 1000, 4096};
    ours(a, 1000000, parts, 6, md);
    expect_hex(md, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* Against OpenSSL: every length 0..300 split at every point into two updates (and at
 * two points into three, for lengths around the block and padding boundaries), random
 * lengths in random pieces up to a few MB, each input placed against a guard page. */
static void test_sha256_against_openssl(void **state)
{
    if (!dkd__sha256_available()) {
        skip();
    }
    const char *env = getenv("DKD_SHA256_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5a2560dcafULL;
    rng_state = seed | 1;
    enum { BIG = 3 << 20 };
    uint8_t *buf = malloc(BIG);
    assert_non_null(buf);
    for (size_t i = 0; i < BIG; i++) {
        buf[i] = (uint8_t)rng();
    }
    uint8_t want[32], got[32];
    for (size_t n = 0; n <= 300; n++) {
        const uint8_t *g = guard_copy(buf, n);
        evp_sha256(g, n, want);
        for (size_t a = 0; a <= n; a++) {
            dkd_sha256 s;
            dkd__sha256_init(&s);
            dkd__sha256_update(&s, g, a);
            dkd__sha256_update(&s, g + a, n - a);
            dkd__sha256_final(&s, got);
            assert_memory_equal(got, want, 32);
        }
        bool edge = (n >= 50 && n <= 70) || (n >= 115 && n <= 135) || n == 300;
        for (size_t a = 0; edge && a <= n; a++) {
            for (size_t b = a; b <= n; b++) {
                dkd_sha256 s;
                dkd__sha256_init(&s);
                dkd__sha256_update(&s, g, a);
                dkd__sha256_update(&s, g + a, b - a);
                dkd__sha256_update(&s, g + b, n - b);
                dkd__sha256_final(&s, got);
                assert_memory_equal(got, want, 32);
            }
        }
    }
    for (int it = 0; it < 40; it++) {
        size_t n = it < 4 ? BIG - rng_below(200) : rng_below(it < 20 ? 70000 : BIG);
        size_t parts[5];
        size_t nparts = rng_below(6);
        for (size_t k = 0; k < nparts; k++) {
            parts[k] = 1 + rng_below(k % 2 ? 200 : 9000);
        }
        evp_sha256(buf, n, want);
        ours(buf, n, parts, nparts, got);
        if (memcmp(got, want, 32) != 0) {
            fprintf(stderr, "sha256 mismatch: seed %#llx iteration %d n=%zu\n",
                    (unsigned long long)seed, it, n);
            fail();
        }
    }
    free(buf);
}
#else
static void test_sha256_vectors(void **state)
{
    skip();
}

static void test_sha256_against_openssl(void **state)
{
    skip();
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_against_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
