/*
 * scan.h - the byte-class scanners: every SIMD loop that looks for a class of bytes in
 * the engine, with the scalar reference beside each one.
 *
 * Two kinds:
 *  - run scanners, inline below, for the short runs of header indexing (hdr.c), tag
 *    lists (taglist.c) and header canonicalization (canon.c): "the first byte at or after
 *    i that is in class C", 16 bytes at a time with SSE2 (every x86-64) or NEON (every
 *    AArch64). Lines and values are 30-800 bytes, so these are inlined into the parsers'
 *    loops; a call per line cost more than the scan (see hdr.c).
 *  - body scanners, out of line in scan.c (SSE2, AVX2) and scan_neon.c (NEON), behind
 *    the body canonicalizer's dispatch (canon.c): how far a body chunk is canonical as
 *    it stands. The fused block rewriters that also change bytes are not scanners; they
 *    stay in canon_simd.c.
 *
 * One vector layer serves both instruction sets: dkd__scan_load16 (the one 16-byte load),
 * byte compares, and dkd__v16_mask, a bit mask of the lanes set with DKD__SCAN_LANE_BITS
 * bits per lane (SSE2's PMOVMSKB gives 1; NEON has no movemask, so SHRN narrows each lane
 * to 4 bits, the idiom Arm recommends). A scanner written once over it runs on both, and
 * dkd__v16_first turns a mask into a lane number.
 *
 * Contract of every run scanner: 0 <= i <= n; reads only p[0] .. p[n - 1] (no padding is
 * assumed, so input against a guard page is safe: tests/core/scan_test.c); returns the
 * same index as its _scalar reference for every input. Pure functions: any thread.
 */
#ifndef DKD_SCAN_H
#define DKD_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h" /* dkd__is_fws */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the vector layer ---- */

#if defined(__SSE2__)
#define DKD_SCAN_SIMD 1
#include <emmintrin.h>

typedef __m128i dkd__v16;
enum { DKD__SCAN_LANE_BITS = 1 };

static inline dkd__v16 dkd__scan_load16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* lanes equal to c */
static inline dkd__v16 dkd__v16_eq(dkd__v16 v, uint8_t c)
{
    return _mm_cmpeq_epi8(v, _mm_set1_epi8((char)c));
}

static inline dkd__v16 dkd__v16_or(dkd__v16 a, dkd__v16 b)
{
    return _mm_or_si128(a, b);
}

static inline dkd__v16 dkd__v16_and(dkd__v16 a, dkd__v16 b)
{
    return _mm_and_si128(a, b);
}

/* a & ~b */
static inline dkd__v16 dkd__v16_andnot(dkd__v16 a, dkd__v16 b)
{
    return _mm_andnot_si128(b, a);
}

static inline dkd__v16 dkd__v16_not(dkd__v16 a)
{
    return _mm_andnot_si128(a, _mm_set1_epi8(-1));
}

/* lanes > c as signed bytes (so 0x80-0xff are below every ASCII byte) */
static inline dkd__v16 dkd__v16_gt_s(dkd__v16 v, int8_t c)
{
    return _mm_cmpgt_epi8(v, _mm_set1_epi8(c));
}

/* lanes >= c as unsigned bytes: max(v, c) == v */
static inline dkd__v16 dkd__v16_ge_u(dkd__v16 v, uint8_t c)
{
    return _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8((char)c)), v);
}

static inline uint64_t dkd__v16_mask(dkd__v16 v)
{
    return (unsigned)_mm_movemask_epi8(v);
}

#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
/* The run scanners need the SHRN mask to put lane k at bits 4k..4k+3, which holds on
 * little-endian only; big-endian AArch64 runs their scalar loops (the body scanner in
 * scan_neon.c does not depend on the byte order). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DKD_SCAN_SIMD 1
#endif

typedef uint8x16_t dkd__v16;
enum { DKD__SCAN_LANE_BITS = 4 };

static inline dkd__v16 dkd__scan_load16(const uint8_t *p)
{
    return vld1q_u8(p);
}

static inline dkd__v16 dkd__v16_eq(dkd__v16 v, uint8_t c)
{
    return vceqq_u8(v, vdupq_n_u8(c));
}

static inline dkd__v16 dkd__v16_or(dkd__v16 a, dkd__v16 b)
{
    return vorrq_u8(a, b);
}

static inline dkd__v16 dkd__v16_and(dkd__v16 a, dkd__v16 b)
{
    return vandq_u8(a, b);
}

static inline dkd__v16 dkd__v16_andnot(dkd__v16 a, dkd__v16 b)
{
    return vbicq_u8(a, b);
}

static inline dkd__v16 dkd__v16_not(dkd__v16 a)
{
    return vmvnq_u8(a);
}

static inline dkd__v16 dkd__v16_gt_s(dkd__v16 v, int8_t c)
{
    return vcgtq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(c));
}

static inline dkd__v16 dkd__v16_ge_u(dkd__v16 v, uint8_t c)
{
    return vcgeq_u8(v, vdupq_n_u8(c));
}

static inline uint64_t dkd__v16_mask(dkd__v16 v)
{
    uint8x8_t narrow = vshrn_n_u16(vreinterpretq_u16_u8(v), 4);
    return vget_lane_u64(vreinterpret_u64_u8(narrow), 0);
}
#endif

#ifdef DKD_SCAN_SIMD
/* dkd__v16_first: the lane number of the lowest lane set in a nonzero mask. */
static inline size_t dkd__v16_first(uint64_t m)
{
    return (size_t)__builtin_ctzll(m) / DKD__SCAN_LANE_BITS;
}

/* dkd__v16_tail_mask: the mask of the block p[n - 16 .. n), shifted so that bit 0 is lane
 * n - (n - i) = i: for the last n - i < 16 bytes of a range, scanned as one block ending
 * at n that overlaps bytes already seen. Needs n >= 16 (the block lies in p[0 .. n)). */
static inline uint64_t dkd__v16_tail_mask(uint64_t m, size_t i, size_t n)
{
    return m >> (DKD__SCAN_LANE_BITS * (16 - (n - i)));
}
#endif

/* ---- run scanners ---- */

/* dkd__scan_lf: the first LF in p[i .. n), or n. */
static inline size_t dkd__scan_lf_scalar(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && p[i] != '\n') {
        i++;
    }
    return i;
}

static inline size_t dkd__scan_lf(const uint8_t *p, size_t i, size_t n)
{
#ifdef DKD_SCAN_SIMD
    while (n - i >= 16) {
        uint64_t m = dkd__v16_mask(dkd__v16_eq(dkd__scan_load16(p + i), '\n'));
        if (m != 0) {
            return i + dkd__v16_first(m);
        }
        i += 16;
    }
    if (i < n && n >= 16) {
        uint64_t m = dkd__v16_tail_mask(
            dkd__v16_mask(dkd__v16_eq(dkd__scan_load16(p + n - 16), '\n')), i, n);
        return m != 0 ? i + dkd__v16_first(m) : n;
    }
#endif
    return dkd__scan_lf_scalar(p, i, n);
}

/* dkd__scan_eol: the first CR or LF in p[i .. n), or n (a simple header's runs). */
static inline size_t dkd__scan_eol_scalar(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && p[i] != '\r' && p[i] != '\n') {
        i++;
    }
    return i;
}

#ifdef DKD_SCAN_SIMD
static inline dkd__v16 dkd__v16_eol(dkd__v16 v)
{
    return dkd__v16_or(dkd__v16_eq(v, '\r'), dkd__v16_eq(v, '\n'));
}
#endif

static inline size_t dkd__scan_eol(const uint8_t *p, size_t i, size_t n)
{
#ifdef DKD_SCAN_SIMD
    while (n - i >= 16) {
        uint64_t m = dkd__v16_mask(dkd__v16_eol(dkd__scan_load16(p + i)));
        if (m != 0) {
            return i + dkd__v16_first(m);
        }
        i += 16;
    }
    if (i < n && n >= 16) {
        uint64_t m =
            dkd__v16_tail_mask(dkd__v16_mask(dkd__v16_eol(dkd__scan_load16(p + n - 16))), i, n);
        return m != 0 ? i + dkd__v16_first(m) : n;
    }
#endif
    return dkd__scan_eol_scalar(p, i, n);
}

/* dkd__scan_ftext: the first byte in p[i .. n) that is not ftext (printable US-ASCII
 * other than the colon, RFC 5322 field names), or n. */
static inline bool dkd__is_ftext(uint8_t c)
{
    return c >= 0x21 && c <= 0x7e && c != ':';
}

static inline size_t dkd__scan_ftext_scalar(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && dkd__is_ftext(p[i])) {
        i++;
    }
    return i;
}

static inline size_t dkd__scan_ftext(const uint8_t *p, size_t i, size_t n)
{
#ifdef DKD_SCAN_SIMD
    while (n - i >= 16) {
        dkd__v16 v = dkd__scan_load16(p + i);
        /* A signed compare puts the 8-bit bytes, negative as int8, below 0x21 with the
         * controls and SP; 0x7f and ':' are the two stops above it. */
        dkd__v16 bad = dkd__v16_or(dkd__v16_not(dkd__v16_gt_s(v, 0x20)),
                                   dkd__v16_or(dkd__v16_eq(v, 0x7f), dkd__v16_eq(v, ':')));
        uint64_t m = dkd__v16_mask(bad);
        if (m != 0) {
            return i + dkd__v16_first(m);
        }
        i += 16;
    }
#endif
    return dkd__scan_ftext_scalar(p, i, n);
}

/*
 * dkd__scan_tag_value: the first byte in p[i .. n) that is not a tag-value byte (RFC
 * 6376 3.2: VALCHAR %x21-3A / %x3C-7E, bytes >= 0x80 for RFC 8616 UTF-8, or FWS), so the
 * ';' that ends the value, a control byte, or n. The SIMD loop stops at every byte below
 * 0x21 and steps over the FWS ones (folds are rare) itself.
 */
static inline bool dkd__is_tag_value(uint8_t c)
{
    return (c >= 0x21 && c != ';' && c != 0x7F) || dkd__is_fws(c);
}

static inline size_t dkd__scan_tag_value_scalar(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && dkd__is_tag_value(p[i])) {
        i++;
    }
    return i;
}

static inline size_t dkd__scan_tag_value(const uint8_t *p, size_t i, size_t n)
{
#ifdef DKD_SCAN_SIMD
    while (n - i >= 16) {
        dkd__v16 v = dkd__scan_load16(p + i);
        dkd__v16 bad = dkd__v16_or(dkd__v16_not(dkd__v16_ge_u(v, 0x21)),
                                   dkd__v16_or(dkd__v16_eq(v, ';'), dkd__v16_eq(v, 0x7F)));
        uint64_t m = dkd__v16_mask(bad);
        if (m == 0) {
            i += 16;
            continue;
        }
        i += dkd__v16_first(m);
        if (!dkd__is_fws(p[i])) {
            return i;
        }
        i++;
    }
#endif
    return dkd__scan_tag_value_scalar(p, i, n);
}

/*
 * dkd__scan_relaxed_run: the end of the run from i on that relaxed header
 * canonicalization leaves as it is once a value has started: bytes other than WSP and
 * line ends, and a single SP with such a byte right after it. It stops at HTAB, CR, LF,
 * at a SP followed by WSP or a line end, and at a SP that is the last byte (what comes
 * next decides it).
 */
static inline bool dkd__is_wsp_eol(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline size_t dkd__scan_relaxed_run_scalar(const uint8_t *p, size_t i, size_t n)
{
    while (i < n) {
        if (dkd__is_wsp_eol(p[i])) {
            if (p[i] == ' ' && i + 1 < n && !dkd__is_wsp_eol(p[i + 1])) {
                i += 2;
                continue;
            }
            break;
        }
        i++;
    }
    return i;
}

#ifdef DKD_SCAN_SIMD
static inline dkd__v16 dkd__v16_wsp_eol(dkd__v16 v)
{
    return dkd__v16_or(dkd__v16_or(dkd__v16_eq(v, ' '), dkd__v16_eq(v, '\t')), dkd__v16_eol(v));
}
#endif

static inline size_t dkd__scan_relaxed_run(const uint8_t *p, size_t i, size_t n)
{
#ifdef DKD_SCAN_SIMD
    /* each block needs the byte after it */
    while (n - i >= 17) {
        dkd__v16 v = dkd__scan_load16(p + i);
        dkd__v16 sp = dkd__v16_eq(v, ' ');
        dkd__v16 next = dkd__v16_wsp_eol(dkd__scan_load16(p + i + 1));
        dkd__v16 stop =
            dkd__v16_or(dkd__v16_andnot(dkd__v16_wsp_eol(v), sp), dkd__v16_and(sp, next));
        uint64_t m = dkd__v16_mask(stop);
        if (m != 0) {
            return i + dkd__v16_first(m);
        }
        i += 16;
    }
#endif
    return dkd__scan_relaxed_run_scalar(p, i, n);
}

/* ---- body scanners (scan.c, scan_neon.c) ---- */

/*
 * A body scanner finds how far a body chunk is already canonical: from position i, in
 * the clean state (no CR or WSP pending, no blank lines held back), the bytes [i, e) it
 * returns are exactly the canonical bytes the reference would produce for them, so
 * canon.c passes them to the sink as they are. It stops before the first byte that
 * needs the state machine:
 *   both:    a bare LF, a CR not followed by LF;
 *   relaxed: any HTAB, and a SP followed by SP, HTAB, CR or LF (runs, WSP at line end).
 * Blank lines (CRLF right after LF) do not stop it: they are canonical as they stand if
 * content follows; canon.c steps back over blank lines that end a run, whose fate is
 * not known yet. The cut e is never just after a CR or (relaxed) a SP, so the state
 * after [i, e) is clean again: at the start of a line when p[e - 1] is LF, in one
 * otherwise. p[i - 1] stands for the state at i: LF at a line start, else not CR.
 *
 * Contract: 1 <= i < n; reads only p[i - 1] .. p[n - 1] (whole blocks that end inside
 * the chunk, so an unpadded chunk against a guard page is safe); returns e in [i, n).
 * Every implementation returns the same e for every input (dkd__scan_body_*_scalar is
 * the reference; tests/core/scan_test.c and tests/cross/canon_neon_test.c hold the SIMD
 * ones to it).
 */
size_t dkd__scan_body_simple_scalar(const uint8_t *p, size_t i, size_t n);
size_t dkd__scan_body_relaxed_scalar(const uint8_t *p, size_t i, size_t n);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DKD_SCAN_HAVE_X86 1
size_t dkd__scan_body_simple_sse2(const uint8_t *p, size_t i, size_t n);
size_t dkd__scan_body_relaxed_sse2(const uint8_t *p, size_t i, size_t n);
size_t dkd__scan_body_simple_avx2(const uint8_t *p, size_t i, size_t n);
size_t dkd__scan_body_relaxed_avx2(const uint8_t *p, size_t i, size_t n);
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define DKD_SCAN_HAVE_NEON 1
size_t dkd__scan_body_simple_neon(const uint8_t *p, size_t i, size_t n);
size_t dkd__scan_body_relaxed_neon(const uint8_t *p, size_t i, size_t n);
#endif

#ifdef __cplusplus
}
#endif

#endif
