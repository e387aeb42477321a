/*
 * canon_test.c - unit tests for RFC 6376 canonicalization (engine/core/canon.c).
 *
 * Three layers: explicit expected bytes for each rule (including the RFC 6376 3.4.5
 * examples and the well-known empty-body hashes), here; a deliberately naive reference,
 * written from the RFC text over the whole buffer (normalize line ends, split into
 * lines, transform, join), also here, that the streaming code is compared with on
 * thousands of random inputs, random l= and random chunk splits in
 * canon_random_test.c; and the same comparison on the fuzz corpus via canon_fuzz.c.
 * Those and canon_simd_test.c include the reference part of this file with
 * CANON_REF_ONLY defined (one reference, several users).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "canon.h"
#include "sha256.h"

/* ---- the naive reference ---- */

typedef struct ref_buf {
    uint8_t *p;
    size_t len, cap;
} ref_buf;

static void rb_put(ref_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) {
            cap *= 2;
        }
        b->p = realloc(b->p, cap);
        if (b->p == NULL) {
            abort();
        }
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->len, p, n);
    }
    b->len += n;
}

static void rb_byte(ref_buf *b, uint8_t c)
{
    rb_put(b, &c, 1);
}

static void rb_free(ref_buf *b)
{
    free(b->p);
    *b = (ref_buf){0};
}

/* The sink used with the real code: it collects what it is given, and counts calls. */
typedef struct collect {
    ref_buf out;
    size_t calls;
    size_t max_call;
} collect;

static void collect_sink(void *arg, const uint8_t *p, size_t n)
{
    collect *c = arg;
    rb_put(&c->out, p, n);
    c->calls++;
    if (n > c->max_call) {
        c->max_call = n;
    }
}

static bool ref_is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Step 0 for both: a bare LF is a line end, so write it as CRLF. A CR not followed by
 * LF stays as it is (it is not a line end). */
static ref_buf ref_normalize_eol(const uint8_t *p, size_t n)
{
    ref_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            rb_byte(&b, '\r');
        }
        rb_byte(&b, p[i]);
    }
    return b;
}

/* Reduce every run of WSP to one SP. */
static ref_buf ref_squeeze_wsp(const uint8_t *p, size_t n)
{
    ref_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (ref_is_wsp(p[i])) {
            if (i == 0 || !ref_is_wsp(p[i - 1])) {
                rb_byte(&b, ' ');
            }
        } else {
            rb_byte(&b, p[i]);
        }
    }
    return b;
}

typedef struct ref_line {
    ref_buf text;
} ref_line;

/* ref_body: RFC 6376 3.4.3 (simple) and 3.4.4 (relaxed, with erratum 3758) over the
 * whole body at once. Returns the full canonical body (l= is applied by the caller). */
static ref_buf ref_body(enum dkd_canon canon, const uint8_t *p, size_t n)
{
    ref_buf norm = ref_normalize_eol(p, n);

    /* Split into lines at CRLF; text after the last CRLF is a last line without one. */
    ref_line *lines = calloc(norm.len + 1, sizeof *lines);
    if (lines == NULL) {
        abort();
    }
    size_t nlines = 0, start = 0;
    for (size_t i = 0; i + 1 < norm.len; i++) {
        if (norm.p[i] == '\r' && norm.p[i + 1] == '\n') {
            rb_put(&lines[nlines++].text, norm.p + start, i - start);
            start = i + 2;
            i++;
        }
    }
    if (start < norm.len) {
        /* "If the body is non-empty but does not end with a CRLF, a CRLF is added." */
        rb_put(&lines[nlines++].text, norm.p + start, norm.len - start);
    }

    if (canon == DKD_CANON_RELAXED) {
        for (size_t i = 0; i < nlines; i++) {
            /* "Reduce all sequences of WSP within a line to a single SP character." */
            ref_buf sq = ref_squeeze_wsp(lines[i].text.p, lines[i].text.len);
            /* "Ignore all whitespace at the end of lines." */
            while (sq.len > 0 && sq.p[sq.len - 1] == ' ') {
                sq.len--;
            }
            rb_free(&lines[i].text);
            lines[i].text = sq;
        }
    }

    /* "Ignore all empty lines at the end of the message body." */
    while (nlines > 0 && lines[nlines - 1].text.len == 0) {
        rb_free(&lines[--nlines].text);
    }

    ref_buf out = {0};
    for (size_t i = 0; i < nlines; i++) {
        rb_put(&out, lines[i].text.p, lines[i].text.len);
        rb_put(&out, "\r\n", 2);
        rb_free(&lines[i].text);
    }
    /* simple: "If there is no body ... a CRLF is added". relaxed: empty stays empty. */
    if (canon == DKD_CANON_SIMPLE && out.len == 0) {
        rb_put(&out, "\r\n", 2);
    }
    free(lines);
    rb_free(&norm);
    return out;
}

/* ref_header: RFC 6376 3.4.1 (simple) and 3.4.2 (relaxed) for one field, with the
 * bytes [skip_off, skip_end) removed first. */
static ref_buf ref_header(enum dkd_canon canon, const uint8_t *raw, size_t n, size_t skip_off,
                          size_t skip_end, bool with_crlf)
{
    ref_buf cat = {0};
    rb_put(&cat, raw, skip_off);
    rb_put(&cat, raw + skip_end, n - skip_end);
    ref_buf norm = ref_normalize_eol(cat.p, cat.len);
    rb_free(&cat);
    ref_buf out = {0};

    if (canon == DKD_CANON_SIMPLE) {
        /* Unchanged, except the field's own line end, which the caller chooses. */
        size_t len = norm.len;
        if (len >= 2 && norm.p[len - 2] == '\r' && norm.p[len - 1] == '\n') {
            len -= 2;
        }
        rb_put(&out, norm.p, len);
    } else {
        /* Unfold: delete every CRLF (folds and the final one). */
        ref_buf unf = {0};
        for (size_t i = 0; i < norm.len; i++) {
            if (norm.p[i] == '\r' && i + 1 < norm.len && norm.p[i + 1] == '\n') {
                i++;
                continue;
            }
            rb_byte(&unf, norm.p[i]);
        }
        /* Lowercase the name (everything before the first colon). */
        size_t colon = unf.len;
        for (size_t i = 0; i < unf.len; i++) {
            if (unf.p[i] == ':') {
                colon = i;
                break;
            }
        }
        for (size_t i = 0; i < colon; i++) {
            if (unf.p[i] >= 'A' && unf.p[i] <= 'Z') {
                unf.p[i] = (uint8_t)(unf.p[i] + 32);
            }
        }
        /* WSP runs to one SP; then no SP before or after the colon or at the end. */
        ref_buf sq = ref_squeeze_wsp(unf.p, unf.len);
        rb_free(&unf);
        size_t c2 = sq.len;
        for (size_t i = 0; i < sq.len; i++) {
            if (sq.p[i] == ':') {
                c2 = i;
                break;
            }
        }
        size_t name_end = c2;
        while (name_end > 0 && sq.p[name_end - 1] == ' ') {
            name_end--;
        }
        rb_put(&out, sq.p, name_end);
        if (c2 < sq.len) {
            size_t vs = c2 + 1, ve = sq.len;
            while (vs < ve && sq.p[vs] == ' ') {
                vs++;
            }
            while (ve > vs && sq.p[ve - 1] == ' ') {
                ve--;
            }
            rb_byte(&out, ':');
            rb_put(&out, sq.p + vs, ve - vs);
        }
        rb_free(&sq);
    }
    if (with_crlf) {
        rb_put(&out, "\r\n", 2);
    }
    rb_free(&norm);
    return out;
}

/* ---- running the real code ---- */

/* The body implementations every comparison runs; those this CPU lacks are skipped
 * (dkd__body_set_impl says so), the rest must all equal the reference. */
static const enum dkd_canon_impl all_impls[] = {DKD_CANON_IMPL_SCALAR, DKD_CANON_IMPL_SSE2,
                                                DKD_CANON_IMPL_AVX2,   DKD_CANON_IMPL_AVX512,
                                                DKD_CANON_IMPL_NEON};
enum { NIMPLS = sizeof all_impls / sizeof all_impls[0] };

/* stream_body runs the streaming code (implementation impl) over chunks of the given
 * lengths (cycled; a 0 length is an empty update) and returns the sink's bytes and the
 * emitted count. *ran is false when this CPU cannot run impl. */
static ref_buf stream_body(enum dkd_canon canon, enum dkd_canon_impl impl, uint64_t limit,
                           const uint8_t *p, size_t n, const size_t *chunks, size_t nchunks,
                           uint64_t *emitted, size_t *max_call, bool *ran)
{
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, canon, limit, collect_sink, &c);
    *ran = dkd__body_set_impl(&bc, impl);
    size_t pos = 0, k = 0;
    while (pos < n) {
        size_t len = nchunks ? chunks[k++ % nchunks] : n;
        if (len > n - pos) {
            len = n - pos;
        }
        dkd__body_update(&bc, p + pos, len);
        pos += len;
    }
    dkd__body_final(&bc);
    *emitted = bc.emitted;
    if (max_call != NULL) {
        *max_call = c.max_call;
    }
    return c.out;
}

/* stream_body_sha256 is stream_body with the body hashing itself on SHA-NI
 * (dkd__body_set_sha256, the fused path verify.c takes for sha256): it writes the digest
 * and the emitted count, and is false (*ran false) when this CPU cannot run impl or has
 * no SHA-NI. The sink must never be called then: false if it was. */
__attribute__((unused)) static bool stream_body_sha256(enum dkd_canon canon,
                                                       enum dkd_canon_impl impl, uint64_t limit,
                                                       const uint8_t *p, size_t n,
                                                       const size_t *chunks, size_t nchunks,
                                                       uint8_t digest[32], uint64_t *emitted,
                                                       bool *ran)
{
    *ran = false;
#ifdef DKD_SHA256_SHANI
    collect c = {0};
    dkd_body_canon bc;
    dkd_sha256 sha;
    dkd__sha256_init(&sha);
    dkd__body_init(&bc, canon, limit, collect_sink, &c);
    if (!dkd__body_set_impl(&bc, impl) || !dkd__body_set_sha256(&bc, &sha)) {
        return true;
    }
    *ran = true;
    size_t pos = 0, k = 0;
    while (pos < n) {
        size_t len = nchunks ? chunks[k++ % nchunks] : n;
        if (len > n - pos) {
            len = n - pos;
        }
        dkd__body_update(&bc, p + pos, len);
        pos += len;
    }
    dkd__body_final(&bc);
    dkd__sha256_final(&sha, digest);
    *emitted = bc.emitted;
    bool quiet = c.calls == 0;
    rb_free(&c.out);
    return quiet;
#else
    (void)canon, (void)impl, (void)limit, (void)p, (void)n, (void)chunks, (void)nchunks;
    (void)digest, (void)emitted;
    return true;
#endif
}

/* check_fused_against_ref: for every implementation, the fused path's digest is OpenSSL's
 * SHA-256 of the reference's canonical bytes (want, of which want_sent fall within l=) and
 * its emitted count is the reference's. True when there is no SHA-NI. */
__attribute__((unused)) static bool check_fused_against_ref(enum dkd_canon canon, uint64_t limit,
                                                            const uint8_t *p, size_t n,
                                                            const size_t *chunks, size_t nchunks,
                                                            const ref_buf *want, size_t want_sent)
{
    uint8_t md[32];
    unsigned mdlen = 0;
    if (EVP_Digest(want_sent ? want->p : (const uint8_t *)"", want_sent, md, &mdlen, EVP_sha256(),
                   NULL) != 1) {
        return false;
    }
    bool ok = true;
    for (size_t k = 0; k < NIMPLS && ok; k++) {
        uint8_t got[32];
        uint64_t emitted = 0;
        bool ran = false;
        ok = stream_body_sha256(canon, all_impls[k], limit, p, n, chunks, nchunks, got, &emitted,
                                &ran);
        if (ran) {
            ok = ok && emitted == want->len && memcmp(got, md, 32) == 0;
        }
        if (!ok) {
            fprintf(stderr, "implementation %s fused with SHA-256 differs from the reference\n",
                    dkd__canon_impl_name(all_impls[k]));
        }
    }
    return ok;
}

/* (unused attributes: each includer of the reference part uses only some of it) */
/* check_body_against_ref returns true when streaming == reference for this input, for
 * every implementation this CPU runs. */
__attribute__((unused)) static bool check_body_against_ref(enum dkd_canon canon, uint64_t limit,
                                                           const uint8_t *p, size_t n,
                                                           const size_t *chunks, size_t nchunks)
{
    ref_buf want = ref_body(canon, p, n);
    size_t want_sent = want.len < limit ? want.len : (size_t)limit;
    bool ok = true;
    for (size_t k = 0; k < NIMPLS && ok; k++) {
        uint64_t emitted = 0;
        size_t max_call = 0;
        bool ran = false;
        ref_buf got = stream_body(canon, all_impls[k], limit, p, n, chunks, nchunks, &emitted,
                                  &max_call, &ran);
        ok = emitted == want.len && got.len == want_sent &&
             (want_sent == 0 || memcmp(got.p, want.p, want_sent) == 0);
        /* The scalar reference only ever hands the sink its batch; the SIMD paths may
         * pass longer runs straight from the input. */
        if (all_impls[k] == DKD_CANON_IMPL_SCALAR) {
            ok = ok && max_call <= sizeof((dkd_body_canon *)0)->buf;
        }
        if (!ok) {
            fprintf(stderr, "implementation %s differs from the reference\n",
                    dkd__canon_impl_name(all_impls[k]));
        }
        rb_free(&got);
    }
    ok = ok && check_fused_against_ref(canon, limit, p, n, chunks, nchunks, &want, want_sent);
    rb_free(&want);
    return ok;
}

__attribute__((unused)) static bool check_header_against_ref(enum dkd_canon canon,
                                                             const uint8_t *raw, size_t n,
                                                             size_t skip_off, size_t skip_end,
                                                             bool with_crlf)
{
    ref_buf want = ref_header(canon, raw, n, skip_off, skip_end, with_crlf);
    collect c = {0};
    dkd__canon_header(canon, dkd__span(raw, n), skip_off, skip_end, with_crlf, collect_sink, &c);
    bool ok = c.out.len == want.len && (want.len == 0 || memcmp(c.out.p, want.p, want.len) == 0);
    rb_free(&want);
    rb_free(&c.out);
    return ok;
}

/* ---- random inputs (shared with canon_simd_test.c) ---- */

static uint64_t rng_state;

__attribute__((unused)) static uint64_t rng(void)
{
    /* xorshift64*: small, fast, reproducible from the printed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

__attribute__((unused)) static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

__attribute__((unused)) static uint64_t seed_from_env(void)
{
    const char *s = getenv("DKD_CANON_SEED");
    return s ? strtoull(s, NULL, 0) : 0x5eed0dcafULL;
}

#ifndef CANON_REF_ONLY

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "guard.h"

/* ---- explicit expected bytes ---- */

static ref_buf hdr(enum dkd_canon canon, const char *raw, size_t skip_off, size_t skip_end,
                   bool with_crlf)
{
    size_t n = strlen(raw);
    const uint8_t *g = guard_copy(raw, n);
    collect c = {0};
    dkd__canon_header(canon, dkd__span(g, n), skip_off, skip_end, with_crlf, collect_sink, &c);
    return c.out;
}

static void assert_buf(ref_buf b, const char *want, size_t want_len)
{
    if (b.len != want_len || (want_len > 0 && memcmp(b.p, want, want_len) != 0)) {
        fprintf(stderr, "got (%zu): ", b.len);
        for (size_t i = 0; i < b.len; i++) {
            fprintf(stderr, b.p[i] >= 0x20 && b.p[i] < 0x7f ? "%c" : "\\x%02x", b.p[i]);
        }
        fprintf(stderr, "\n");
    }
    assert_int_equal(b.len, want_len);
    if (want_len > 0) {
        assert_memory_equal(b.p, want, want_len);
    }
}

static void expect_hdr(enum dkd_canon canon, const char *raw, bool with_crlf, const char *want)
{
    ref_buf b = hdr(canon, raw, 0, 0, with_crlf);
    assert_buf(b, want, strlen(want));
    rb_free(&b);
}

static void test_header_simple(void **state)
{
    /* RFC 6376 3.4.5: simple leaves the header fields alone. */
    expect_hdr(DKD_CANON_SIMPLE, "A: X\r\n", true, "A: X\r\n");
    expect_hdr(DKD_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", true, "B : Y\t\r\n\tZ  \r\n");
    /* without the final CRLF: nothing after the last line's content */
    expect_hdr(DKD_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", false, "B : Y\t\r\n\tZ  ");
    /* bare LF written as CRLF, the final one too */
    expect_hdr(DKD_CANON_SIMPLE, "S: a\n b\n", true, "S: a\r\n b\r\n");
    expect_hdr(DKD_CANON_SIMPLE, "S: a\n b\n", false, "S: a\r\n b");
    /* no line end in raw: one is added only when asked */
    expect_hdr(DKD_CANON_SIMPLE, "A: 1", true, "A: 1\r\n");
    expect_hdr(DKD_CANON_SIMPLE, "A: 1", false, "A: 1");
    /* a lone CR is content; so is a CR right before the final CRLF */
    expect_hdr(DKD_CANON_SIMPLE, "A: 1\r2\r\r\n", true, "A: 1\r2\r\r\n");
    expect_hdr(DKD_CANON_SIMPLE, "A: 1\r", false, "A: 1\r");
    expect_hdr(DKD_CANON_SIMPLE, "A: \x80\xff\r\n", true, "A: \x80\xff\r\n");
}

static void test_header_relaxed(void **state)
{
    /* RFC 6376 3.4.5 */
    expect_hdr(DKD_CANON_RELAXED, "A: X\r\n", true, "a:X\r\n");
    expect_hdr(DKD_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", true, "b:Y Z\r\n");
    expect_hdr(DKD_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", false, "b:Y Z");
    expect_hdr(DKD_CANON_RELAXED, "SUBJECT:  Hello \t World \r\n", true, "subject:Hello World\r\n");
    /* only the name is lowercased; later colons are value bytes */
    expect_hdr(DKD_CANON_RELAXED, "X-Mixed-Case: Value:With \t:Colons\r\n", true,
               "x-mixed-case:Value:With :Colons\r\n");
    /* folds with bare LF, and a fold with nothing else on the line */
    expect_hdr(DKD_CANON_RELAXED, "To: a,\n  b,\n\t\n c\n", true, "to:a, b, c\r\n");
    /* empty and all-WSP values */
    expect_hdr(DKD_CANON_RELAXED, "A:\r\n", true, "a:\r\n");
    expect_hdr(DKD_CANON_RELAXED, "A: \t \r\n \r\n", true, "a:\r\n");
    /* lone CR is content, not WSP, and not a line end */
    expect_hdr(DKD_CANON_RELAXED, "A: x \r y\r\n", true, "a:x \r y\r\n");
    expect_hdr(DKD_CANON_RELAXED, "A: x \r", true, "a:x \r\r\n");
    /* 8-bit bytes kept as they are, not lowercased */
    expect_hdr(DKD_CANON_RELAXED, "\xc3\x89: \xc3\x89\r\n", true, "\xc3\x89:\xc3\x89\r\n");
    /* no final line end */
    expect_hdr(DKD_CANON_RELAXED, "Abc : d ", true, "abc:d\r\n");
}

static void test_header_skip(void **state)
{
    const char *sig = "DKIM-Signature: a=1; b=abc; c=2\r\n";
    const char *b = strstr(sig, "abc");
    size_t off = (size_t)(b - sig);
    ref_buf r = hdr(DKD_CANON_SIMPLE, sig, off, off + 3, false);
    assert_buf(r, "DKIM-Signature: a=1; b=; c=2", 28);
    rb_free(&r);
    r = hdr(DKD_CANON_RELAXED, sig, off, off + 3, false);
    assert_buf(r, "dkim-signature:a=1; b=; c=2", 27);
    rb_free(&r);

    /* b= value folded over lines and running to the end of the field */
    const char *sig2 = "DKIM-Signature: v=1; b=ab\r\n  cd\r\n";
    off = (size_t)(strstr(sig2, "ab") - sig2);
    r = hdr(DKD_CANON_RELAXED, sig2, off, off + 8, false);
    assert_buf(r, "dkim-signature:v=1; b=", 22);
    rb_free(&r);
    r = hdr(DKD_CANON_SIMPLE, sig2, off, off + 8, false);
    assert_buf(r, "DKIM-Signature: v=1; b=", 23);
    rb_free(&r);

    /* WSP on both sides of the gap is one run */
    r = hdr(DKD_CANON_RELAXED, "H: a  XX\t b\r\n", 6, 8, true);
    assert_buf(r, "h:a b\r\n", 7);
    rb_free(&r);
    /* a gap between CR and LF still makes a CRLF */
    r = hdr(DKD_CANON_SIMPLE, "H: a\rXX\n", 5, 7, true);
    assert_buf(r, "H: a\r\n", 6);
    rb_free(&r);
    /* out-of-range skips are clamped, not trusted */
    r = hdr(DKD_CANON_SIMPLE, "H: a\r\n", 3, 100, true);
    assert_buf(r, "H: \r\n", 5);
    rb_free(&r);
    r = hdr(DKD_CANON_SIMPLE, "H: a\r\n", 5, 2, true);
    assert_buf(r, "H: a\r\n", 6);
    rb_free(&r);
}

static void test_header_batches_large_field(void **state)
{
    /* A 5000-byte field goes to the sink in a few calls, and intact. */
    size_t n = 5000;
    char *raw = malloc(n + 1);
    assert_non_null(raw);
    memcpy(raw, "X: ", 3);
    memset(raw + 3, 'v', n - 5);
    memcpy(raw + n - 2, "\r\n", 3);
    const uint8_t *g = guard_copy(raw, n);
    collect c = {0};
    dkd__canon_header(DKD_CANON_SIMPLE, dkd__span(g, n), 0, 0, true, collect_sink, &c);
    assert_int_equal(c.out.len, n);
    assert_memory_equal(c.out.p, raw, n);
    assert_true(c.calls < 50);
    rb_free(&c.out);
    free(raw);
}

/* body runs the streaming code with one update per element of parts (each put against
 * the guard page on its own), then final. */
static ref_buf body_parts(enum dkd_canon canon, uint64_t limit, const char *const *parts,
                          size_t nparts, uint64_t *emitted)
{
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, canon, limit, collect_sink, &c);
    for (size_t i = 0; i < nparts; i++) {
        size_t n = strlen(parts[i]);
        dkd__body_update(&bc, guard_copy(parts[i], n), n);
    }
    dkd__body_final(&bc);
    *emitted = bc.emitted;
    return c.out;
}

static void expect_body(enum dkd_canon canon, const char *body, const char *want)
{
    uint64_t emitted = 0;
    ref_buf b = body_parts(canon, UINT64_MAX, &body, 1, &emitted);
    assert_buf(b, want, strlen(want));
    assert_int_equal(emitted, strlen(want));
    rb_free(&b);
    /* and byte by byte: every possible split point at once */
    size_t n = strlen(body);
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, canon, UINT64_MAX, collect_sink, &c);
    for (size_t i = 0; i < n; i++) {
        dkd__body_update(&bc, guard_copy(body + i, 1), 1);
    }
    dkd__body_final(&bc);
    assert_buf(c.out, want, strlen(want));
    rb_free(&c.out);
}

/* RFC 6376 3.4.5's example body: " C \r\nD \t E\r\n\r\n\r\n" */
static const char rfc_body[] = " C \r\nD \t E\r\n\r\n\r\n";

static void test_body_simple(void **state)
{
    expect_body(DKD_CANON_SIMPLE, rfc_body, " C \r\nD \t E\r\n");
    expect_body(DKD_CANON_SIMPLE, "", "\r\n");
    expect_body(DKD_CANON_SIMPLE, "\r\n", "\r\n");
    expect_body(DKD_CANON_SIMPLE, "\r\n\r\n\n\n\r\n", "\r\n");
    expect_body(DKD_CANON_SIMPLE, "abc", "abc\r\n");
    expect_body(DKD_CANON_SIMPLE, "abc\r\n\r\nx", "abc\r\n\r\nx\r\n");
    expect_body(DKD_CANON_SIMPLE, "\r\n\r\nabc\r\n\r\n", "\r\n\r\nabc\r\n");
    expect_body(DKD_CANON_SIMPLE, "a\nb\n\n", "a\r\nb\r\n");
    /* WSP is content in simple: a line of spaces is not empty */
    expect_body(DKD_CANON_SIMPLE, "a  \r\n  \r\n\r\n", "a  \r\n  \r\n");
    expect_body(DKD_CANON_SIMPLE, " \t", " \t\r\n");
    /* lone CR */
    expect_body(DKD_CANON_SIMPLE, "a\rb\r\n", "a\rb\r\n");
    expect_body(DKD_CANON_SIMPLE, "a\r", "a\r\r\n");
    expect_body(DKD_CANON_SIMPLE, "\r", "\r\r\n");
    expect_body(DKD_CANON_SIMPLE, "\r\r\n\r\n", "\r\r\n");
    expect_body(DKD_CANON_SIMPLE, "\n\r\r", "\r\n\r\r\r\n");
    /* 8-bit and NUL bytes are content */
    expect_body(DKD_CANON_SIMPLE, "\x80\xff", "\x80\xff\r\n");
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, DKD_CANON_SIMPLE, UINT64_MAX, collect_sink, &c);
    dkd__body_update(&bc, (const uint8_t *)"a\0b", 3);
    dkd__body_final(&bc);
    assert_buf(c.out, "a\0b\r\n", 5);
    rb_free(&c.out);
}

static void test_body_relaxed(void **state)
{
    expect_body(DKD_CANON_RELAXED, rfc_body, " C\r\nD E\r\n");
    /* erratum 3758: the empty body and a body of blank lines are empty */
    expect_body(DKD_CANON_RELAXED, "", "");
    expect_body(DKD_CANON_RELAXED, "\r\n", "");
    expect_body(DKD_CANON_RELAXED, "\r\n\r\n\n", "");
    expect_body(DKD_CANON_RELAXED, " \t\r\n \r\n\t", "");
    expect_body(DKD_CANON_RELAXED, "abc", "abc\r\n");
    expect_body(DKD_CANON_RELAXED, "abc \t ", "abc\r\n");
    expect_body(DKD_CANON_RELAXED, "abc\r\n   ", "abc\r\n");
    expect_body(DKD_CANON_RELAXED, "abc\r\n  x", "abc\r\n x\r\n");
    /* blank lines inside the body are kept; WSP-only lines become blank */
    expect_body(DKD_CANON_RELAXED, "a\r\n\r\n \t \r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n");
    expect_body(DKD_CANON_RELAXED, "\t\ta  \t b \r\n", " a b\r\n");
    expect_body(DKD_CANON_RELAXED, "a\nb \n\n", "a\r\nb\r\n");
    /* lone CR: content, not WSP */
    expect_body(DKD_CANON_RELAXED, "a \r b\r\n", "a \r b\r\n");
    expect_body(DKD_CANON_RELAXED, "a\r", "a\r\r\n");
    expect_body(DKD_CANON_RELAXED, " \r \r\n", " \r\r\n");
    expect_body(DKD_CANON_RELAXED, "\x80 \xff", "\x80 \xff\r\n");
}

static void test_body_cr_lf_split(void **state)
{
    uint64_t emitted = 0;
    const char *p1[] = {"abc\r", "\ndef\r", "\n"};
    ref_buf b = body_parts(DKD_CANON_SIMPLE, UINT64_MAX, p1, 3, &emitted);
    assert_buf(b, "abc\r\ndef\r\n", 10);
    rb_free(&b);
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, p1, 3, &emitted);
    assert_buf(b, "abc\r\ndef\r\n", 10);
    rb_free(&b);

    /* a CR ending a chunk and followed by content is content */
    const char *p2[] = {"abc\r", "x"};
    b = body_parts(DKD_CANON_SIMPLE, UINT64_MAX, p2, 2, &emitted);
    assert_buf(b, "abc\rx\r\n", 7);
    rb_free(&b);
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, p2, 2, &emitted);
    assert_buf(b, "abc\rx\r\n", 7);
    rb_free(&b);

    /* trailing blank lines split across chunks, with empty updates in between */
    const char *p3[] = {"x \r", "", "\n \r", "\n\r", "\n"};
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, p3, 5, &emitted);
    assert_buf(b, "x\r\n", 3);
    rb_free(&b);
    b = body_parts(DKD_CANON_SIMPLE, UINT64_MAX, p3, 5, &emitted);
    assert_buf(b, "x \r\n \r\n", 7);
    rb_free(&b);

    /* blank lines held back across chunks, then text */
    const char *p4[] = {"a\r\n\r", "\n", "\r\nb"};
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, p4, 3, &emitted);
    assert_buf(b, "a\r\n\r\n\r\nb\r\n", 10);
    rb_free(&b);
    assert_int_equal(emitted, 10);

    /* a WSP run across a chunk boundary is one SP */
    const char *p5[] = {"a  ", "\t ", " b"};
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, p5, 3, &emitted);
    assert_buf(b, "a b\r\n", 5);
    rb_free(&b);
}

static void test_body_limit(void **state)
{
    uint64_t emitted = 0;
    const char *p[] = {"hello\r\nworld\r\n"};
    ref_buf b = body_parts(DKD_CANON_SIMPLE, 7, p, 1, &emitted);
    assert_buf(b, "hello\r\n", 7);
    assert_int_equal(emitted, 14);
    rb_free(&b);
    b = body_parts(DKD_CANON_SIMPLE, 0, p, 1, &emitted);
    assert_buf(b, "", 0);
    assert_int_equal(emitted, 14);
    rb_free(&b);
    /* the limit falls inside a CRLF */
    b = body_parts(DKD_CANON_SIMPLE, 6, p, 1, &emitted);
    assert_buf(b, "hello\r", 6);
    rb_free(&b);

    /* l= ending inside held-back blank lines that text later releases */
    const char *q[] = {"a\r\n\r\n\r\nb\r\n"};
    b = body_parts(DKD_CANON_RELAXED, 5, q, 1, &emitted);
    assert_buf(b, "a\r\n\r\n", 5);
    assert_int_equal(emitted, 10);
    rb_free(&b);
    /* l= counts canonical bytes, not input bytes */
    const char *r[] = {"a   b \r\n"};
    b = body_parts(DKD_CANON_RELAXED, 4, r, 1, &emitted);
    assert_buf(b, "a b\r", 4);
    assert_int_equal(emitted, 5);
    rb_free(&b);

    /* the CRLF of an empty simple body counts like any other bytes */
    const char *e[] = {""};
    b = body_parts(DKD_CANON_SIMPLE, 0, e, 1, &emitted);
    assert_buf(b, "", 0);
    assert_int_equal(emitted, 2);
    rb_free(&b);
    b = body_parts(DKD_CANON_SIMPLE, 1, e, 1, &emitted);
    assert_buf(b, "\r", 1);
    rb_free(&b);
}

static void test_body_large(void **state)
{
    /* A million bytes of text in one update: batched through bc->buf, a few KiB per
     * sink call. */
    size_t n = 1 << 20;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        p[i] = (i % 100 == 99) ? '\n' : (uint8_t)('a' + i % 26);
    }
    collect c = {0};
    dkd_body_canon bc;
    dkd__body_init(&bc, DKD_CANON_SIMPLE, UINT64_MAX, collect_sink, &c);
    dkd__body_update(&bc, p, n);
    dkd__body_final(&bc);
    ref_buf want = ref_body(DKD_CANON_SIMPLE, p, n);
    assert_int_equal(c.out.len, want.len);
    assert_memory_equal(c.out.p, want.p, want.len);
    assert_true(c.max_call <= sizeof bc.buf);
    assert_true(c.calls <= want.len / 2048 + 2);
    rb_free(&c.out);
    rb_free(&want);

    /* A million blank lines then text, with a small l=: counted, not all written. */
    memset(p, '\n', n);
    p[n - 1] = 'x';
    collect d = {0};
    dkd__body_init(&bc, DKD_CANON_RELAXED, 10, collect_sink, &d);
    dkd__body_update(&bc, p, n);
    dkd__body_final(&bc);
    assert_int_equal(bc.emitted, 2 * (uint64_t)(n - 1) + 3);
    assert_buf(d.out, "\r\n\r\n\r\n\r\n\r\n", 10);
    rb_free(&d.out);

    /* ... and all of them when there is no limit and nothing follows: nothing */
    memset(p, '\n', n);
    collect e = {0};
    dkd__body_init(&bc, DKD_CANON_RELAXED, UINT64_MAX, collect_sink, &e);
    dkd__body_update(&bc, p, n);
    dkd__body_final(&bc);
    assert_int_equal(bc.emitted, 0);
    assert_int_equal(e.out.len, 0);
    free(p);
}

static void assert_sha256_b64(const uint8_t *p, size_t n, const char *want)
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_int_equal(EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL), 1);
    char b64[64];
    EVP_EncodeBlock((unsigned char *)b64, md, (int)mdlen);
    assert_string_equal(b64, want);
}

static void test_empty_body_hashes(void **state)
{
    /* The bh= values every DKIM implementation produces for an empty body. */
    uint64_t emitted = 0;
    const char *e[] = {"\r\n\r\n"};
    ref_buf b = body_parts(DKD_CANON_SIMPLE, UINT64_MAX, e, 1, &emitted);
    assert_sha256_b64(b.p, b.len, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    rb_free(&b);
    b = body_parts(DKD_CANON_RELAXED, UINT64_MAX, e, 1, &emitted);
    assert_sha256_b64(b.p, b.len, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    rb_free(&b);
}

/* ---- the reference against explicit bytes, so it cannot drift with the code ---- */

static void test_reference_itself(void **state)
{
    ref_buf b = ref_body(DKD_CANON_RELAXED, (const uint8_t *)rfc_body, strlen(rfc_body));
    assert_buf(b, " C\r\nD E\r\n", 9);
    rb_free(&b);
    b = ref_body(DKD_CANON_SIMPLE, (const uint8_t *)rfc_body, strlen(rfc_body));
    assert_buf(b, " C \r\nD \t E\r\n", 12);
    rb_free(&b);
    b = ref_body(DKD_CANON_SIMPLE, (const uint8_t *)"", 0);
    assert_buf(b, "\r\n", 2);
    rb_free(&b);
    b = ref_body(DKD_CANON_RELAXED, (const uint8_t *)"a\r", 2);
    assert_buf(b, "a\r\r\n", 4);
    rb_free(&b);
    const char *h = "B : Y\t\r\n\tZ  \r\n";
    b = ref_header(DKD_CANON_RELAXED, (const uint8_t *)h, strlen(h), 0, 0, true);
    assert_buf(b, "b:Y Z\r\n", 7);
    rb_free(&b);
    b = ref_header(DKD_CANON_SIMPLE, (const uint8_t *)h, strlen(h), 0, 0, false);
    assert_buf(b, "B : Y\t\r\n\tZ  ", 12);
    rb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_simple),    cmocka_unit_test(test_header_relaxed),
        cmocka_unit_test(test_header_skip),      cmocka_unit_test(test_header_batches_large_field),
        cmocka_unit_test(test_body_simple),      cmocka_unit_test(test_body_relaxed),
        cmocka_unit_test(test_body_cr_lf_split), cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_body_large),       cmocka_unit_test(test_empty_body_hashes),
        cmocka_unit_test(test_reference_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif /* CANON_REF_ONLY */
