/*
 * scan.c - the body scanners for x86-64 (SSE2, AVX2) and their scalar reference (see
 * scan.h for the contract).
 *
 * Workload: message bodies are mostly ordinary text and base64 — lines of 60-100 bytes
 * ending in CRLF, single spaces between words — and that text is already in canonical
 * form. The scanner classifies 64 bytes per step (4 x 16 with SSE2, 2 x 32 with AVX2) with
 * no branch per byte: three unaligned loads (the block, and the block shifted by one
 * byte either way) give each byte lane its neighbours, so "SP followed by WSP" or "LF
 * not after CR" is a few compares and ANDs, and one test per 64 bytes says whether
 * anything needs the state machine. Ordinary text scans at ~20 GB/s (AVX2), against
 * SHA-256's ~1.65 GB/s, which is what bounds the body hash.
 *
 * Every load lies inside [i - 1, n): a block is scanned only when the byte after it is
 * in the chunk too, since the caller's chunk has no padding. The chunk's last bytes are
 * scanned by one more block that ends at the last byte but one, overlapping the blocks
 * before it; only the last byte (whose fate may depend on the next chunk) is left to
 * canon.c.
 *
 * AVX-512BW was tried (compares into mask registers, a masked-load tail) and measured
 * slower than AVX2 on the AMD EPYC (Zen 4) build machine: 11 against 14-20 GB/s.
 *
 * The NEON twins are in scan_neon.c; the scalar reference below is what every one of
 * them must return, byte for byte.
 */
#include "scan.h"

#include <stdbool.h>

/* ---- the reference ---- */

/* ref_stops: whether byte k stops the scan (scan.h); reads p[k - 1 .. k + 1]. */
static bool ref_stops(const uint8_t *p, size_t k, bool relaxed)
{
    uint8_t c = p[k], pv = p[k - 1], nx = p[k + 1];
    if (c == '\n' && pv != '\r') {
        return true; /* bare LF */
    }
    if (c == '\r' && nx != '\n') {
        return true; /* CR not followed by LF */
    }
    return relaxed && (c == '\t' || (c == ' ' && dkd__is_wsp_eol(nx)));
}

/* The SIMD scanners leave chunks of under 17 bytes (one block and the byte after it) to
 * the state machine, and the reference does the same so that all return the same e. */
static size_t ref_scan(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    if (n - i < 17) {
        return i;
    }
    for (size_t k = i; k < n - 1; k++) {
        if (ref_stops(p, k, relaxed)) {
            return k;
        }
    }
    /* the cut must not fall after a CR or (relaxed) a SP: the next byte decides */
    size_t e = n - 1;
    if (p[e - 1] == '\r' || (relaxed && p[e - 1] == ' ')) {
        e--;
    }
    return e;
}

size_t dkd__scan_body_simple_scalar(const uint8_t *p, size_t i, size_t n)
{
    return ref_scan(p, i, n, false);
}

size_t dkd__scan_body_relaxed_scalar(const uint8_t *p, size_t i, size_t n)
{
    return ref_scan(p, i, n, true);
}

#ifdef DKD_SCAN_HAVE_X86

#include <immintrin.h>

/* The cut after the last whole block may fall between CR and LF, or after a SP whose
 * fate depends on the next byte; step back one byte (the byte before such a CR or SP
 * is never another CR or SP, or the scanner would have stopped there). */
static inline size_t back_off(const uint8_t *p, size_t i, size_t e, bool relaxed)
{
    if (e > i && (p[e - 1] == '\r' || (relaxed && p[e - 1] == ' '))) {
        e--;
    }
    return e;
}

/* ---- SSE2 (every x86-64) ---- */

/* SSE2, like AVX2 below, evaluates the rules per byte lane with the neighbours from
 * unaligned loads at p - 1 and p + 1, and takes one movemask per 64 bytes. */
static inline __m128i bad_sse2(const uint8_t *q, bool relaxed)
{
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    __m128i c = dkd__scan_load16(q);
    __m128i nx = dkd__scan_load16(q + 1);
    __m128i pv = dkd__scan_load16(q - 1);
    __m128i c_cr = _mm_cmpeq_epi8(c, cr);
    __m128i nx_cr = _mm_cmpeq_epi8(nx, cr), nx_lf = _mm_cmpeq_epi8(nx, lf);
    __m128i bare_lf = _mm_andnot_si128(_mm_cmpeq_epi8(pv, cr), _mm_cmpeq_epi8(c, lf));
    __m128i bad = _mm_or_si128(bare_lf, _mm_andnot_si128(nx_lf, c_cr));
    if (relaxed) {
        const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t');
        __m128i nx_ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(nx, sp), _mm_cmpeq_epi8(nx, tab)),
                                     _mm_or_si128(nx_cr, nx_lf));
        bad = _mm_or_si128(
            bad, _mm_or_si128(_mm_cmpeq_epi8(c, tab), _mm_and_si128(_mm_cmpeq_epi8(c, sp), nx_ws)));
    }
    return bad;
}

static inline size_t scan_sse2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    while (n - e >= 65) {
        __m128i b0 = bad_sse2(p + e, relaxed), b1 = bad_sse2(p + e + 16, relaxed);
        __m128i b2 = bad_sse2(p + e + 32, relaxed), b3 = bad_sse2(p + e + 48, relaxed);
        __m128i any = _mm_or_si128(_mm_or_si128(b0, b1), _mm_or_si128(b2, b3));
        if (_mm_movemask_epi8(any) != 0) {
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(b0) |
                         (uint64_t)(unsigned)_mm_movemask_epi8(b1) << 16 |
                         (uint64_t)(unsigned)_mm_movemask_epi8(b2) << 32 |
                         (uint64_t)(unsigned)_mm_movemask_epi8(b3) << 48;
            return e + (size_t)__builtin_ctzll(m);
        }
        e += 64;
    }
    /* block [e, e + 16) and the byte after it */
    while (n - e >= 17) {
        unsigned m = (unsigned)_mm_movemask_epi8(bad_sse2(p + e, relaxed));
        if (m != 0) {
            return e + (size_t)__builtin_ctz(m);
        }
        e += 16;
    }
    /* The last bytes but one: a block ending there, overlapping what was scanned (its
     * lanes before e are known good). Small bodies would otherwise leave up to 16 bytes
     * to the scalar code. */
    if (n - i >= 17 && e < n - 1) {
        size_t b = n - 17;
        unsigned m = (unsigned)_mm_movemask_epi8(bad_sse2(p + b, relaxed)) & (~0u << (e - b));
        if (m != 0) {
            return b + (size_t)__builtin_ctz(m);
        }
        e = n - 1;
    }
    return back_off(p, i, e, relaxed);
}

size_t dkd__scan_body_simple_sse2(const uint8_t *p, size_t i, size_t n)
{
    return scan_sse2(p, i, n, false);
}

size_t dkd__scan_body_relaxed_sse2(const uint8_t *p, size_t i, size_t n)
{
    return scan_sse2(p, i, n, true);
}

/* ---- AVX2 ---- */

#define AVX2 __attribute__((target("avx2")))

/*
 * AVX2 works in the vector domain instead of on bit masks: movemask is the scarce
 * instruction (one per cycle on the machines we measured), so each byte's neighbours
 * come from two more unaligned loads (p - 1 and p + 1), the rules are evaluated per
 * byte lane, and one VPTEST per 64 bytes says "all ordinary"; movemask runs only on
 * the block where the run stops.
 */
AVX2 static inline __m256i bad_avx2(const uint8_t *q, bool relaxed)
{
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    __m256i c = _mm256_loadu_si256((const __m256i *)q);
    __m256i nx = _mm256_loadu_si256((const __m256i *)(q + 1));
    __m256i pv = _mm256_loadu_si256((const __m256i *)(q - 1));
    __m256i c_cr = _mm256_cmpeq_epi8(c, cr);
    __m256i nx_lf = _mm256_cmpeq_epi8(nx, lf);
    __m256i bare_lf = _mm256_andnot_si256(_mm256_cmpeq_epi8(pv, cr), _mm256_cmpeq_epi8(c, lf));
    __m256i bad = _mm256_or_si256(bare_lf, _mm256_andnot_si256(nx_lf, c_cr));
    if (relaxed) {
        /* nx is SP, HTAB, CR or LF: the table holds, at each of their low nibbles, the
         * byte itself, and -128 (0x80) elsewhere, which no byte below 0x80 equals; a byte
         * >= 0x80 makes PSHUFB give 0, which it does not equal either. (A filler of 1
         * made SP followed by 0x01 a stop: harmless, but not the SSE2 scanner's rule.) */
        const char o = -128;
        const __m256i special =
            _mm256_setr_epi8(' ', o, o, o, o, o, o, o, o, '\t', '\n', o, o, '\r', o, o, ' ', o, o,
                             o, o, o, o, o, o, '\t', '\n', o, o, '\r', o, o);
        __m256i nx_ws = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(special, nx), nx);
        __m256i c_sp = _mm256_cmpeq_epi8(c, _mm256_set1_epi8(' '));
        __m256i c_tab = _mm256_cmpeq_epi8(c, _mm256_set1_epi8('\t'));
        bad = _mm256_or_si256(bad, _mm256_or_si256(c_tab, _mm256_and_si256(c_sp, nx_ws)));
    }
    return bad;
}

AVX2 static inline size_t scan_avx2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    /* 64 bytes per step while they fit (one branch per 64 bytes), then 32; each block
     * needs the byte after it too. */
    while (n - e >= 65) {
        __m256i b0 = bad_avx2(p + e, relaxed);
        __m256i b1 = bad_avx2(p + e + 32, relaxed);
        __m256i any = _mm256_or_si256(b0, b1);
        if (!_mm256_testz_si256(any, any)) {
            uint64_t m = (uint64_t)(uint32_t)_mm256_movemask_epi8(b0) |
                         (uint64_t)(uint32_t)_mm256_movemask_epi8(b1) << 32;
            return e + (size_t)__builtin_ctzll(m);
        }
        e += 64;
    }
    while (n - e >= 33) {
        uint32_t m = (uint32_t)_mm256_movemask_epi8(bad_avx2(p + e, relaxed));
        if (m != 0) {
            return e + (size_t)__builtin_ctz(m);
        }
        e += 32;
    }
    /* the last bytes but one, as in scan_sse2 */
    if (n - i >= 33 && e < n - 1) {
        size_t b = n - 33;
        uint32_t m = (uint32_t)_mm256_movemask_epi8(bad_avx2(p + b, relaxed)) & (~0u << (e - b));
        if (m != 0) {
            return b + (size_t)__builtin_ctz(m);
        }
        e = n - 1;
    }
    return back_off(p, i, e, relaxed);
}

AVX2 size_t dkd__scan_body_simple_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, false);
}

AVX2 size_t dkd__scan_body_relaxed_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, true);
}

#endif /* DKD_SCAN_HAVE_X86 */
