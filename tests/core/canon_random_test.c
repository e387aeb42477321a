/*
 * canon_random_test.c - RFC 6376 canonicalization (engine/core/canon.c) against the
 * naive whole-buffer reference of canon_test.c on random input: bodies and header
 * fields drawn from alphabets weighted toward what canonicalization cares about, with
 * random l= and random chunk splits, every body implementation this CPU runs; and the
 * fused path (canonical bytes hashed on SHA-NI) against OpenSSL's SHA-256 of the
 * reference's bytes on mail-like text bodies up to 60 KB.
 *
 * Workload: some 70000 random cases in a few seconds. Set DKD_CANON_SEED to replay a
 * particular random run; the seed is printed on failure.
 */
#define CANON_REF_ONLY
#include "canon_test.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "guard.h"

/* ---- randomized: streaming == reference ---- */

/* Bytes drawn from an alphabet weighted toward what canonicalization cares about. */
static size_t random_input(uint8_t *p, size_t cap, const char *alpha, size_t alpha_len)
{
    size_t n;
    switch (rng_below(10)) {
    case 0:
        n = 0;
        break;
    case 1:
        n = rng_below(cap); /* long: crosses the 4 KiB batch */
        break;
    default:
        n = rng_below(80);
        break;
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)alpha[rng_below(alpha_len)];
    }
    return n;
}

static const char body_alpha[] = "    \t\t\r\r\r\n\n\n\naaaa\x80\0";
static const char hdr_alpha[] = "   \t\t\r\r\n\n\naAZ::\x80\0";

static void test_random_body(void **state)
{
    uint64_t seed = seed_from_env();
    rng_state = seed | 1;
    enum { CAP = 9000, ITER = 20000 };
    uint8_t *p = malloc(CAP);
    assert_non_null(p);
    for (int it = 0; it < ITER; it++) {
        size_t n = random_input(p, CAP, body_alpha, sizeof body_alpha - 1);
        enum dkd_canon canon = rng_below(2) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        uint64_t limit = rng_below(2) ? UINT64_MAX : (uint64_t)rng_below(n + 12);
        size_t chunks[6];
        size_t nchunks = rng_below(7);
        for (size_t k = 0; k < nchunks; k++) {
            chunks[k] = rng_below(k == 0 ? 5 : 40);
        }
        if (nchunks > 0 && chunks[0] == 0 && nchunks == 1) {
            chunks[0] = 1; /* all-empty chunks would never advance */
        }
        bool all_zero = nchunks > 0;
        for (size_t k = 0; k < nchunks; k++) {
            all_zero = all_zero && chunks[k] == 0;
        }
        if (all_zero) {
            chunks[0] = 1;
        }
        if (!check_body_against_ref(canon, limit, p, n, chunks, nchunks)) {
            fprintf(stderr, "body mismatch: seed %#llx iteration %d (canon %d, l=%llu, n=%zu)\n",
                    (unsigned long long)seed, it, canon, (unsigned long long)limit, n);
            fail();
        }
    }
    free(p);
}

static void test_random_header(void **state)
{
    uint64_t seed = seed_from_env();
    rng_state = (seed ^ 0x9e3779b97f4a7c15ULL) | 1;
    enum { CAP = 600, ITER = 20000 };
    uint8_t buf[CAP];
    for (int it = 0; it < ITER; it++) {
        size_t n = random_input(buf, CAP, hdr_alpha, sizeof hdr_alpha - 1);
        if (rng_below(2) && n > 0) {
            memcpy(buf, "Ab", n < 2 ? n : 2); /* mostly look like a field name */
        }
        const uint8_t *raw = guard_copy(buf, n);
        enum dkd_canon canon = rng_below(2) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        size_t skip_off = 0, skip_end = 0;
        if (rng_below(2)) {
            skip_off = rng_below(n + 1);
            skip_end = skip_off + rng_below(n - skip_off + 1);
        }
        bool with_crlf = rng_below(2);
        if (!check_header_against_ref(canon, raw, n, skip_off, skip_end, with_crlf)) {
            fprintf(stderr, "header mismatch: seed %#llx iteration %d\n", (unsigned long long)seed,
                    it);
            fail();
        }
    }
}

/* Header fields that look like real ones: long runs of ordinary bytes with single SPs
 * and, at a density chosen per field, HTAB, doubled WSP, CR, LF, folds and colons, so
 * the SSE2 run finders of the header path meet every stop at every place of a block
 * and at the end of each part around a skipped range. */
static void test_random_header_sparse(void **state)
{
    (void)state;
    uint64_t seed = seed_from_env();
    rng_state = (seed ^ 0x243f6a8885a308d3ULL) | 1;
    static const char rare[] = "  \t\r\n\r\n \r\n\t:\x80\r";
    enum { CAP = 400, ITER = 30000 };
    uint8_t buf[CAP];
    for (int it = 0; it < ITER; it++) {
        size_t n = rng_below(CAP);
        size_t odd = 2 + rng_below(60); /* one rare byte in ~odd */
        for (size_t i = 0; i < n; i++) {
            if (rng_below(odd) == 0) {
                buf[i] = (uint8_t)rare[rng_below(sizeof rare - 1)];
            } else if (rng_below(6) == 0) {
                buf[i] = ' ';
            } else {
                buf[i] = (uint8_t)('a' + rng_below(26));
            }
        }
        if (n > 3 && rng_below(4) != 0) {
            memcpy(buf, "Ab:", 3);
        }
        const uint8_t *raw = guard_copy(buf, n);
        enum dkd_canon canon = rng_below(2) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        size_t skip_off = 0, skip_end = 0;
        if (rng_below(2)) {
            skip_off = rng_below(n + 1);
            skip_end = skip_off + rng_below(n - skip_off + 1);
        }
        bool with_crlf = rng_below(2);
        if (!check_header_against_ref(canon, raw, n, skip_off, skip_end, with_crlf)) {
            fprintf(stderr, "header mismatch: seed %#llx iteration %d\n",
                    (unsigned long long)seed, it);
            fail();
        }
    }
}

/* ---- the fused path (sha256.c's own tests are in sha256_test.c) ---- */

/* text_body fills p[0..n) with mail-like text that relaxed rewrites and the fused loop
 * hashes: words apart by 1-3 WSP, indented and WSP-trailed lines, CRLF or bare LF,
 * blank and WSP-only lines, stretches of already canonical lines (which the rewriter
 * hands back to the scanner after 4 whole blocks, so hashing must not run ahead of
 * them), and now and then a lone CR, NUL or 8-bit byte. */
static void text_body(uint8_t *p, size_t n)
{
    size_t i = 0;
    bool lf_only = rng_below(4) == 0;
    while (i < n) {
        bool clean = rng_below(3) == 0; /* a canonical stretch of a few lines */
        for (size_t lines = clean ? 1 + rng_below(12) : 1; lines > 0 && i < n; lines--) {
            size_t lead = !clean && rng_below(4) == 0 ? rng_below(rng_below(5) ? 12 : 90) : 0;
            for (; lead > 0 && i < n; lead--) {
                p[i++] = rng_below(3) ? ' ' : '\t';
            }
            size_t end = i + 1 + rng_below(rng_below(8) ? 90 : 300);
            while (i < n && i < end) {
                size_t r = rng_below(100);
                if (r < 14 && i > 0 && p[i - 1] != ' ') {
                    p[i++] = ' ';
                    for (size_t k = clean ? 0 : rng_below(3); k > 0 && i < n; k--) {
                        p[i++] = rng_below(3) ? ' ' : '\t';
                    }
                } else if (!clean && r == 14 && rng_below(10) == 0) {
                    p[i++] = (uint8_t) "\r\0\x80\xff"[rng_below(4)];
                } else {
                    p[i++] = (uint8_t)("abcdefghijklmnopqrstuvwxyz0123456789<>=\"/"[rng_below(41)]);
                }
            }
            if (i > 0 && p[i - 1] == ' ' && clean) {
                p[i - 1] = 'x';
            }
            for (size_t t = !clean && rng_below(5) == 0 ? 1 + rng_below(6) : 0; t > 0 && i < n;
                 t--) {
                p[i++] = rng_below(2) ? ' ' : '\t';
            }
            for (size_t b = rng_below(7) == 0 ? 2 + rng_below(3) : 1; b > 0; b--) {
                if (!(lf_only && !clean) && i < n) {
                    p[i++] = '\r';
                }
                if (i < n) {
                    p[i++] = '\n';
                }
                if (!clean && b > 1 && rng_below(3) == 0 && i < n) {
                    p[i++] = ' ';
                }
            }
        }
    }
}

/* The fused path (canonical bytes hashed on SHA-NI, the rewriter compressing as it
 * writes) against OpenSSL's SHA-256 of the reference's bytes: text bodies of 64 bytes
 * to 60 KB, every implementation, whole and in random chunks, without and with l=
 * (anywhere in the body, and just past or short of its end). check_body_against_ref
 * (test_random_body, the fuzz target) covers the byte-level random inputs. */
static void test_fused_text(void **state)
{
    if (!dkd__sha256_available()) {
        skip();
    }
    uint64_t seed = seed_from_env();
    rng_state = (seed ^ 0xf05edULL) | 1;
    enum { CAP = 60000, ITER = 600 };
    uint8_t *p = malloc(CAP);
    assert_non_null(p);
    for (int it = 0; it < ITER; it++) {
        size_t n = 64 + rng_below(rng_below(4) == 0 ? CAP - 64 : 5000);
        text_body(p, n);
        size_t chunks[6];
        size_t nchunks = rng_below(7);
        for (size_t k = 0; k < nchunks; k++) {
            chunks[k] = 1 + rng_below(rng_below(2) ? 100 : 9000);
        }
        enum dkd_canon canon = rng_below(5) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        ref_buf want = ref_body(canon, p, n);
        uint64_t limit = UINT64_MAX;
        switch (rng_below(6)) {
        case 0:
            limit = rng_below(want.len + 1);
            break;
        case 1:
            limit = want.len + rng_below(3) - (want.len > 0 ? 1 : 0);
            break;
        default:
            break;
        }
        size_t want_sent = want.len < limit ? want.len : (size_t)limit;
        if (!check_fused_against_ref(canon, limit, p, n, chunks, nchunks, &want, want_sent)) {
            fprintf(stderr, "fused mismatch: seed %#llx iteration %d (canon %d, l=%llu, n=%zu)\n",
                    (unsigned long long)seed, it, canon, (unsigned long long)limit, n);
            fail();
        }
        rb_free(&want);
    }
    free(p);
}
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_body),
        cmocka_unit_test(test_random_header),
        cmocka_unit_test(test_random_header_sparse),
        cmocka_unit_test(test_fused_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
