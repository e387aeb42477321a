/*
 * canon_simd_test.c - the SIMD body canonicalization paths (engine/core/canon_simd.c and the
 * fast loop in canon.c) against the naive reference of canon_test.c and against the
 * scalar state machine, with every implementation forced in turn (scalar, SSE2, AVX2; one
 * this CPU lacks is reported and skipped).
 *
 * The scanners work in 16/32/64-byte blocks with a byte of look-behind and look-ahead, so
 * the inputs here are long runs of ordinary text (which the fast path takes) with odd
 * bytes planted at every offset around block and chunk boundaries: WSP runs, HTAB, WSP
 * before CRLF, bare LF, lone CR, blank lines, NUL, 8-bit. Every chunk is placed right
 * before a PROT_NONE page, so a load past the chunk end crashes the test.
 *
 * Set DKD_CANON_SEED to replay a random run; the seed is printed on failure.
 */
#define CANON_REF_ONLY
#include "canon_test.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "guard.h"

/* run_guarded canonicalizes p[0..n) with impl, split at the given cut points (sorted,
 * each chunk copied against the guard page), and returns the sink's bytes. */
static ref_buf run_guarded(enum dkd_canon canon, enum dkd_canon_impl impl, uint64_t limit,
                           const uint8_t *p, size_t n, const size_t *cuts, size_t ncuts,
                           uint64_t *emitted)
{
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, canon, limit, collect_sink, &c);
    assert_true(dkd__body_set_impl(&bc, impl));
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        if (end < pos) {
            end = pos;
        }
        if (end > n) {
            end = n;
        }
        dkd__body_update(&bc, guard_copy(p + pos, end - pos), end - pos);
        pos = end;
    }
    dkd__body_final(&bc);
    *emitted = bc.emitted;
    return c.out;
}

static enum dkd_canon_impl impls[NIMPLS];
static size_t nimpls;

static int find_impls(void **state)
{
    (void)state;
    nimpls = 0;
    for (size_t k = 0; k < NIMPLS; k++) {
        dkd_body_canon bc;
        dkd__body_init(&bc, DKD_CANON_SIMPLE, UINT64_MAX, collect_sink, NULL);
        if (dkd__body_set_impl(&bc, all_impls[k])) {
            impls[nimpls++] = all_impls[k];
        } else {
            fprintf(stderr, "note: this CPU cannot run %s; not tested\n",
                    dkd__canon_impl_name(all_impls[k]));
        }
    }
    return 0;
}

/* expect_all: every implementation, with these cuts, gives the reference's bytes. */
static void expect_all(enum dkd_canon canon, uint64_t limit, const uint8_t *p, size_t n,
                       const size_t *cuts, size_t ncuts)
{
    ref_buf want = ref_body(canon, p, n);
    size_t want_sent = want.len < limit ? want.len : (size_t)limit;
    for (size_t k = 0; k < nimpls; k++) {
        uint64_t emitted = 0;
        ref_buf got = run_guarded(canon, impls[k], limit, p, n, cuts, ncuts, &emitted);
        if (emitted != want.len || got.len != want_sent ||
            (want_sent > 0 && memcmp(got.p, want.p, want_sent) != 0)) {
            fprintf(stderr, "%s %s differs: n=%zu ncuts=%zu l=%llu\n",
                    canon == DKD_CANON_RELAXED ? "relaxed" : "simple",
                    dkd__canon_impl_name(impls[k]), n, ncuts, (unsigned long long)limit);
            fail();
        }
        rb_free(&got);
    }
    rb_free(&want);
}

static void test_impl_selection(void **state)
{
    (void)state;
    dkd_body_canon bc;
    dkd__body_init(&bc, DKD_CANON_RELAXED, UINT64_MAX, collect_sink, NULL);
    assert_int_not_equal(bc.impl, DKD_CANON_IMPL_AUTO);
    assert_int_equal(bc.impl, dkd__canon_impl_best());
    assert_true(dkd__body_set_impl(&bc, DKD_CANON_IMPL_SCALAR));
    assert_int_equal(bc.impl, DKD_CANON_IMPL_SCALAR);
    assert_true(dkd__body_set_impl(&bc, DKD_CANON_IMPL_AUTO));
    assert_int_equal(bc.impl, dkd__canon_impl_best());
#if defined(__x86_64__)
    /* SSE2 is part of x86-64: it must always be there. */
    assert_true(dkd__body_set_impl(&bc, DKD_CANON_IMPL_SSE2));
    assert_int_not_equal(dkd__canon_impl_best(), DKD_CANON_IMPL_SCALAR);
    assert_false(dkd__body_set_impl(&bc, DKD_CANON_IMPL_NEON));
#endif
#if defined(__aarch64__)
    /* NEON is part of AArch64: always chosen there. */
    assert_true(dkd__body_set_impl(&bc, DKD_CANON_IMPL_NEON));
    assert_int_equal(dkd__canon_impl_best(), DKD_CANON_IMPL_NEON);
#endif
    assert_false(dkd__body_set_impl(&bc, (enum dkd_canon_impl)99));
}

/* The engine takes its implementations from its configuration, resolved once at
 * dkd_engine_new: AUTO becomes what this CPU runs best, a choice it cannot run falls
 * back to that, and the getters never say AUTO. */
static void test_engine_impl_choice(void **state)
{
    (void)state;
    dkd_config cfg;
    dkd_config_init(&cfg);
    assert_int_equal(cfg.canon_impl, DKD_CANON_IMPL_AUTO);
    assert_int_equal(cfg.sha256_impl, DKD_SHA256_IMPL_AUTO);
    dkd_engine *eng = dkd_engine_new(&cfg);
    assert_int_equal(dkd_engine_canon_impl(eng), dkd__canon_impl_best());
    assert_int_equal(dkd_engine_sha256_impl(eng), dkd__sha256_available()
                                                      ? DKD_SHA256_IMPL_SHANI
                                                      : DKD_SHA256_IMPL_OPENSSL);
    dkd_engine_free(eng);

    cfg.canon_impl = DKD_CANON_IMPL_SCALAR;
    cfg.sha256_impl = DKD_SHA256_IMPL_OPENSSL;
    eng = dkd_engine_new(&cfg);
    assert_int_equal(dkd_engine_canon_impl(eng), DKD_CANON_IMPL_SCALAR);
    assert_int_equal(dkd_engine_sha256_impl(eng), DKD_SHA256_IMPL_OPENSSL);
    assert_int_equal(dkd_engine_config(eng)->canon_impl, DKD_CANON_IMPL_SCALAR);
    dkd_engine_free(eng);

    /* one this build never runs: x86 has no NEON, AArch64 no AVX2 or SHA-NI */
#if defined(__x86_64__)
    cfg.canon_impl = DKD_CANON_IMPL_NEON;
#else
    cfg.canon_impl = DKD_CANON_IMPL_AVX2;
#endif
    cfg.sha256_impl = DKD_SHA256_IMPL_SHANI;
    eng = dkd_engine_new(&cfg);
    assert_int_equal(dkd_engine_canon_impl(eng), dkd__canon_impl_best());
    assert_int_not_equal(dkd_engine_sha256_impl(eng), DKD_SHA256_IMPL_AUTO);
    dkd_engine_free(eng);

    assert_string_equal(dkd_canon_impl_name(DKD_CANON_IMPL_AVX512), "avx512");
    assert_string_equal(dkd_canon_impl_name((enum dkd_canon_impl)99), "?");
    assert_string_equal(dkd_sha256_impl_name(DKD_SHA256_IMPL_OPENSSL), "openssl");
    assert_string_equal(dkd_sha256_impl_name(DKD_SHA256_IMPL_SHANI), "shani");
}

/* Ordinary text: words of letters and digits, single spaces, CRLF line ends, lines of
 * 20-90 bytes; what the fast path is for. */
static size_t ordinary_text(uint8_t *p, size_t n)
{
    size_t i = 0, col = 0, line = 20 + (size_t)(rng() % 70);
    while (i < n) {
        if (col >= line && i + 2 <= n && p[i - 1] != ' ') {
            p[i++] = '\r';
            p[i++] = '\n';
            col = 0;
            line = 20 + (size_t)(rng() % 70);
            continue;
        }
        bool space = col > 0 && p[i - 1] != ' ' && rng() % 6 == 0;
        p[i++] = space ? ' ' : (uint8_t)("abcdefghijklmnopqrstuvwxyz0123456789"[rng() % 36]);
        col++;
    }
    /* never end on a SP or CR: the plant below decides what the edge looks like */
    if (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\r')) {
        p[n - 1] = 'z';
    }
    return n;
}

static const char *const plants[] = {
    "  ",        "\t",     " \t ",   " \r\n", "\t\r\n",           "\n",  "\r",
    "\r\n\r\n",  "\n\n",   "\r\r\n", "\0",    "\x80\xff",         " \r", "\r ",
    "\r\n \r\n", "\r\n\t", "\n ",    " \n",   "\r\n\r\n\r\n\r\n",
};

/* Every plant at every offset in [0, 100) of a 200-byte text (so across the first
 * blocks of both widths), whole and cut just before, inside and after the plant. */
static void test_plants_at_every_offset(void **state)
{
    (void)state;
    rng_state = 0x51dULL;
    uint8_t base[200], buf[260];
    ordinary_text(base, sizeof base);
    for (size_t pl = 0; pl < sizeof plants / sizeof plants[0]; pl++) {
        const char *s = plants[pl];
        size_t slen = s[0] == '\0' ? 1 : strlen(s);
        for (size_t off = 0; off < 100; off++) {
            memcpy(buf, base, off);
            memcpy(buf + off, s, slen);
            memcpy(buf + off + slen, base + off, sizeof base - off);
            size_t n = sizeof base + slen;
            for (int canon = 0; canon < 2; canon++) {
                enum dkd_canon c = canon ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
                expect_all(c, UINT64_MAX, buf, n, NULL, 0);
                for (size_t d = 0; d < slen + 3; d++) {
                    size_t cut = off + d >= 1 ? off + d - 1 : 0;
                    expect_all(c, UINT64_MAX, buf, n, &cut, 1);
                }
                /* and with l= ending inside the plant */
                expect_all(c, off + 1, buf, n, NULL, 0);
            }
        }
    }
}

/* The same plants at the very end of a chunk of every length 60..140 (the scalar tail
 * and the last whole block meet there), with the rest of the text in the next chunk. */
static void test_plants_at_chunk_end(void **state)
{
    (void)state;
    rng_state = 0xc4a7ULL;
    uint8_t base[300], buf[360];
    ordinary_text(base, sizeof base);
    for (size_t pl = 0; pl < sizeof plants / sizeof plants[0]; pl++) {
        const char *s = plants[pl];
        size_t slen = s[0] == '\0' ? 1 : strlen(s);
        for (size_t end = 60; end < 140; end++) {
            size_t off = end - slen;
            memcpy(buf, base, off);
            memcpy(buf + off, s, slen);
            memcpy(buf + end, base + off, sizeof base - off);
            size_t n = sizeof base + slen;
            size_t cuts[2] = {end, end + 70};
            expect_all(DKD_CANON_RELAXED, UINT64_MAX, buf, n, cuts, 2);
            expect_all(DKD_CANON_SIMPLE, UINT64_MAX, buf, n, cuts, 2);
        }
    }
}

/* Long WSP runs (longer than a block), long blank-line runs and a lone-CR storm inside
 * otherwise ordinary text, every length 1..80. */
static void test_long_runs(void **state)
{
    (void)state;
    rng_state = 0x10a6ULL;
    uint8_t base[400], buf[600];
    ordinary_text(base, sizeof base);
    const char fill[] = " \t\r\n";
    for (size_t f = 0; f < sizeof fill - 1; f++) {
        for (size_t len = 1; len <= 80; len++) {
            size_t off = 37;
            memcpy(buf, base, off);
            memset(buf + off, fill[f], len);
            memcpy(buf + off + len, base + off, sizeof base - off);
            size_t n = sizeof base + len;
            size_t cut = off + len / 2;
            expect_all(DKD_CANON_RELAXED, UINT64_MAX, buf, n, NULL, 0);
            expect_all(DKD_CANON_SIMPLE, UINT64_MAX, buf, n, NULL, 0);
            expect_all(DKD_CANON_RELAXED, UINT64_MAX, buf, n, &cut, 1);
            expect_all(DKD_CANON_SIMPLE, UINT64_MAX, buf, n, &cut, 1);
        }
    }
    /* a body that is all WSP then text, and all text then WSP and blank lines */
    memset(buf, ' ', 300);
    memcpy(buf + 300, "x\r\n", 3);
    expect_all(DKD_CANON_RELAXED, UINT64_MAX, buf, 303, NULL, 0);
    memcpy(buf, base, 200);
    memset(buf + 200, ' ', 100);
    memcpy(buf + 300, "\r\n\r\n\n\r\n", 7);
    expect_all(DKD_CANON_RELAXED, UINT64_MAX, buf, 307, NULL, 0);
    expect_all(DKD_CANON_SIMPLE, UINT64_MAX, buf, 307, NULL, 0);
}

/* Random text with random plants, random cut points, random l=. */
static void test_random_text(void **state)
{
    (void)state;
    uint64_t seed = seed_from_env();
    rng_state = (seed ^ 0x5d5d5d5dULL) | 1;
    enum { CAP = 6000, ITER = 3000 };
    uint8_t *p = malloc(CAP);
    assert_non_null(p);
    for (int it = 0; it < ITER; it++) {
        size_t n = 1 + rng_below(rng_below(4) == 0 ? CAP : 700);
        ordinary_text(p, n);
        size_t nplants = rng_below(8);
        for (size_t k = 0; k < nplants; k++) {
            const char *s = plants[rng_below(sizeof plants / sizeof plants[0])];
            size_t slen = s[0] == '\0' ? 1 : strlen(s);
            size_t at = rng_below(n);
            for (size_t j = 0; j < slen && at + j < n; j++) {
                p[at + j] = (uint8_t)s[j];
            }
        }
        size_t cuts[5];
        size_t ncuts = rng_below(6);
        for (size_t k = 0; k < ncuts; k++) {
            cuts[k] = rng_below(n + 1);
        }
        for (size_t a = 0; a < ncuts; a++) { /* sort: chunks go in order */
            for (size_t b = a + 1; b < ncuts; b++) {
                if (cuts[b] < cuts[a]) {
                    size_t t = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = t;
                }
            }
        }
        enum dkd_canon canon = rng_below(2) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        uint64_t limit = rng_below(3) ? UINT64_MAX : (uint64_t)rng_below(n + 12);
        ref_buf want = ref_body(canon, p, n);
        for (size_t k = 0; k < nimpls; k++) {
            uint64_t emitted = 0;
            ref_buf got = run_guarded(canon, impls[k], limit, p, n, cuts, ncuts, &emitted);
            size_t want_sent = want.len < limit ? want.len : (size_t)limit;
            if (emitted != want.len || got.len != want_sent ||
                (want_sent > 0 && memcmp(got.p, want.p, want_sent) != 0)) {
                fprintf(stderr, "mismatch: seed %#llx iteration %d impl %s\n",
                        (unsigned long long)seed, it, dkd__canon_impl_name(impls[k]));
                fail();
            }
            rb_free(&got);
        }
        rb_free(&want);
    }
    free(p);
}

/* dirty_text fills p[0..n) with text that relaxed has to change on most lines, the
 * shapes the block rewriter takes whole: leading WSP runs (markup indentation, up to 70
 * bytes, SP and HTAB mixed), words apart by 1-3 WSP, trailing WSP (up to 70 bytes), CRLF
 * or bare LF line ends, blank and WSP-only lines; now and then a lone CR, NUL or 8-bit
 * byte. Long runs cross the 64-byte blocks; every line end may sit at any offset. */
static void dirty_text(uint8_t *p, size_t n)
{
    size_t i = 0;
    bool lf_only = rng_below(3) == 0;
    while (i < n) {
        size_t lead = rng_below(4) == 0 ? rng_below(rng_below(5) == 0 ? 70 : 12) : 0;
        size_t width = 10 + rng_below(90);
        size_t end = i + lead + width;
        for (; i < n && i < end; i++) {
            size_t r = rng_below(100);
            if (i < end - width) {
                p[i] = rng_below(3) == 0 ? '\t' : ' ';
            } else if (r < 12) {
                p[i] = ' ';
                for (size_t k = rng_below(3); k > 0 && i + 1 < n; k--) {
                    p[++i] = rng_below(4) == 0 ? '\t' : ' ';
                }
            } else if (r == 12 && rng_below(20) == 0) {
                p[i] = (uint8_t) "\r\0\x80\xff"[rng_below(4)];
            } else {
                p[i] = (uint8_t)("abcdefghijklmnopqrstuvwxyz0123456789<>=\"/"[rng_below(41)]);
            }
        }
        size_t trail = rng_below(5) == 0 ? rng_below(rng_below(5) == 0 ? 70 : 4) + 1 : 0;
        for (; i < n && trail > 0; trail--) {
            p[i++] = rng_below(2) ? ' ' : '\t';
        }
        size_t blank = rng_below(6) == 0 ? rng_below(4) + 1 : 1;
        for (; blank > 0; blank--) {
            bool lf = lf_only ? rng_below(20) != 0 : rng_below(20) == 0;
            if (!lf && i < n) {
                p[i++] = '\r';
            }
            if (i < n) {
                p[i++] = '\n';
            }
            if (blank > 1 && rng_below(3) == 0 && i < n) {
                p[i++] = ' '; /* a WSP-only line */
            }
        }
    }
}

/* Dirty text of 64 bytes to 40 KB (past the 4 KiB batch the rewriter writes into),
 * whole and split at random points, with random l=: every implementation gives the
 * reference's bytes. */
static void test_dirty_text(void **state)
{
    (void)state;
    uint64_t seed = seed_from_env();
    rng_state = (seed ^ 0xd127ULL) | 1;
    enum { CAP = 40000, ITER = 400 };
    uint8_t *p = malloc(CAP);
    assert_non_null(p);
    for (int it = 0; it < ITER; it++) {
        size_t n = 64 + rng_below(rng_below(4) == 0 ? CAP - 64 : 3000);
        dirty_text(p, n);
        size_t cuts[5];
        size_t ncuts = rng_below(6);
        for (size_t k = 0; k < ncuts; k++) {
            cuts[k] = rng_below(n + 1);
        }
        for (size_t a = 0; a < ncuts; a++) {
            for (size_t b = a + 1; b < ncuts; b++) {
                if (cuts[b] < cuts[a]) {
                    size_t t = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = t;
                }
            }
        }
        enum dkd_canon canon = rng_below(4) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        uint64_t limit = rng_below(4) ? UINT64_MAX : (uint64_t)rng_below(n + 12);
        ref_buf want = ref_body(canon, p, n);
        size_t want_sent = want.len < limit ? want.len : (size_t)limit;
        for (size_t k = 0; k < nimpls; k++) {
            uint64_t emitted = 0;
            ref_buf got = run_guarded(canon, impls[k], limit, p, n, cuts, ncuts, &emitted);
            if (emitted != want.len || got.len != want_sent ||
                (want_sent > 0 && memcmp(got.p, want.p, want_sent) != 0)) {
                fprintf(stderr, "dirty text mismatch: seed %#llx iteration %d impl %s\n",
                        (unsigned long long)seed, it, dkd__canon_impl_name(impls[k]));
                fail();
            }
            rb_free(&got);
        }
        rb_free(&want);
    }
    free(p);
}

/* The point of the fast path: ordinary text reaches the sink straight from the input,
 * in long runs, not copied through the batch. The sink records how many of its bytes
 * came from inside the input buffer. */
typedef struct origin {
    collect c;
    const uint8_t *in;
    size_t in_len;
    size_t direct;
} origin;

static void origin_sink(void *arg, const uint8_t *p, size_t n)
{
    origin *o = arg;
    collect_sink(&o->c, p, n);
    if ((uintptr_t)p >= (uintptr_t)o->in && (uintptr_t)p < (uintptr_t)(o->in + o->in_len)) {
        o->direct += n;
    }
}

static void test_zero_copy(void **state)
{
    (void)state;
    rng_state = 0x2e20ULL;
    size_t n = 1 << 18;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    ordinary_text(p, n);
    /* paragraphs: a blank line every ~1 KiB, as in real mail */
    for (size_t i = 1000; i + 4 < n; i += 1000 + rng_below(200)) {
        memcpy(p + i, "\r\n\r\n", 4);
    }
    for (int canon = 0; canon < 2; canon++) {
        enum dkd_canon cn = canon ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
        ref_buf want = ref_body(cn, p, n);
        for (size_t k = 0; k < nimpls; k++) {
            origin o = {.in = p, .in_len = n};
            dkd_body_canon bc;
            dkd__body_init(&bc, cn, UINT64_MAX, origin_sink, &o);
            assert_true(dkd__body_set_impl(&bc, impls[k]));
            dkd__body_update(&bc, p, n);
            dkd__body_final(&bc);
            assert_int_equal(o.c.out.len, want.len);
            assert_memory_equal(o.c.out.p, want.p, want.len);
            fprintf(stderr, "%s %s: %zu of %zu bytes direct, %zu sink calls\n",
                    canon ? "relaxed" : "simple", dkd__canon_impl_name(impls[k]), o.direct,
                    o.c.out.len, o.c.calls);
            if (impls[k] == DKD_CANON_IMPL_SCALAR) {
                assert_int_equal(o.direct, 0);
            } else {
                /* all but the bytes around each blank line */
                assert_true(o.direct > want.len * 9 / 10);
                assert_true(o.c.calls < want.len / 500);
            }
            rb_free(&o.c.out);
        }
        rb_free(&want);
    }
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_impl_selection),
        cmocka_unit_test(test_engine_impl_choice),      cmocka_unit_test(test_plants_at_every_offset),
        cmocka_unit_test(test_plants_at_chunk_end), cmocka_unit_test(test_long_runs),
        cmocka_unit_test(test_random_text),         cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_dirty_text),
    };
    return cmocka_run_group_tests(tests, find_impls, NULL);
}
