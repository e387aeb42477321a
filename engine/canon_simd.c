/*
 * canon_simd.c - SSE2 and AVX2 scanners for body canonicalization (see canon_simd.h).
 *
 * Workload: message bodies are mostly ordinary text and base64 — lines of 60-100 bytes
 * ending in CRLF, single spaces between words — and that text is already in canonical
 * form. The scanner classifies 16 (SSE2) or 32 (AVX2) bytes per step with no branch per
 * byte: three unaligned loads (the block, and the block shifted by one byte either way)
 * give each byte its neighbours, so "SP followed by WSP" or "LF not after CR" is a few
 * compares and ANDs, and one movemask says whether the block holds anything that needs
 * the state machine. Ordinary text runs at tens of GB/s, far above SHA-256.
 *
 * Only blocks wholly inside [i - 1, n) are loaded: the caller's chunk has no padding,
 * and the last < 2 blocks are left to the scalar reference in canon.c.
 *
 * NEON: not written; it cannot be compiled or tested on the x86-64 build machines. Other
 * architectures run the scalar reference.
 */
#include <stdbool.h>

#include "canon_simd.h"

#ifdef DKD_CANON_HAVE_X86

#include <immintrin.h>

/* The cut after the last whole block may fall between CR and LF, or after a SP whose
 * fate depends on the next byte; step back one byte (the byte before such a CR or SP
 * is never another CR or SP, or the scanner would have stopped there). */
static size_t back_off(const uint8_t *p, size_t i, size_t e, bool relaxed)
{
    if (e > i && (p[e - 1] == '\r' || (relaxed && p[e - 1] == ' '))) {
        e--;
    }
    return e;
}

/* ---- SSE2 (every x86-64) ---- */

static inline unsigned bad_sse2(const uint8_t *q, bool relaxed)
{
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    __m128i c = _mm_loadu_si128((const __m128i *)q);
    __m128i nx = _mm_loadu_si128((const __m128i *)(q + 1));
    __m128i pv = _mm_loadu_si128((const __m128i *)(q - 1));
    __m128i c_cr = _mm_cmpeq_epi8(c, cr), c_lf = _mm_cmpeq_epi8(c, lf);
    __m128i nx_cr = _mm_cmpeq_epi8(nx, cr), nx_lf = _mm_cmpeq_epi8(nx, lf);
    __m128i pv_cr = _mm_cmpeq_epi8(pv, cr), pv_lf = _mm_cmpeq_epi8(pv, lf);
    /* bare LF | lone CR | CR opening a blank line */
    __m128i bad = _mm_or_si128(_mm_andnot_si128(pv_cr, c_lf),
                               _mm_or_si128(_mm_andnot_si128(nx_lf, c_cr), _mm_and_si128(c_cr, pv_lf)));
    if (relaxed) {
        const __m128i sp = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t');
        __m128i nx_ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(nx, sp), _mm_cmpeq_epi8(nx, tab)),
                                     _mm_or_si128(nx_cr, nx_lf));
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_cmpeq_epi8(c, tab),
                                             _mm_and_si128(_mm_cmpeq_epi8(c, sp), nx_ws)));
    }
    return (unsigned)_mm_movemask_epi8(bad);
}

static inline size_t scan_sse2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    /* block [e, e + 16) plus its neighbours p[e - 1] and p[e + 16] */
    while (n - e >= 17) {
        unsigned m = bad_sse2(p + e, relaxed);
        if (m != 0) {
            return e + (size_t)__builtin_ctz(m);
        }
        e += 16;
    }
    return back_off(p, i, e, relaxed);
}

size_t dkd__canon_scan_simple_sse2(const uint8_t *p, size_t i, size_t n)
{
    return scan_sse2(p, i, n, false);
}

size_t dkd__canon_scan_relaxed_sse2(const uint8_t *p, size_t i, size_t n)
{
    return scan_sse2(p, i, n, true);
}

/* ---- AVX2 ---- */

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline uint32_t bad_avx2(const uint8_t *q, bool relaxed)
{
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    __m256i c = _mm256_loadu_si256((const __m256i *)q);
    __m256i nx = _mm256_loadu_si256((const __m256i *)(q + 1));
    __m256i pv = _mm256_loadu_si256((const __m256i *)(q - 1));
    __m256i c_cr = _mm256_cmpeq_epi8(c, cr), c_lf = _mm256_cmpeq_epi8(c, lf);
    __m256i nx_cr = _mm256_cmpeq_epi8(nx, cr), nx_lf = _mm256_cmpeq_epi8(nx, lf);
    __m256i pv_cr = _mm256_cmpeq_epi8(pv, cr), pv_lf = _mm256_cmpeq_epi8(pv, lf);
    __m256i bad = _mm256_or_si256(
        _mm256_andnot_si256(pv_cr, c_lf),
        _mm256_or_si256(_mm256_andnot_si256(nx_lf, c_cr), _mm256_and_si256(c_cr, pv_lf)));
    if (relaxed) {
        const __m256i sp = _mm256_set1_epi8(' '), tab = _mm256_set1_epi8('\t');
        __m256i nx_ws =
            _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(nx, sp), _mm256_cmpeq_epi8(nx, tab)),
                            _mm256_or_si256(nx_cr, nx_lf));
        bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpeq_epi8(c, tab),
                                                   _mm256_and_si256(_mm256_cmpeq_epi8(c, sp), nx_ws)));
    }
    return (uint32_t)_mm256_movemask_epi8(bad);
}

AVX2 static inline size_t scan_avx2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    /* Two blocks per step while they fit: one branch per 64 bytes of ordinary text. */
    while (n - e >= 65) {
        uint32_t m0 = bad_avx2(p + e, relaxed);
        uint32_t m1 = bad_avx2(p + e + 32, relaxed);
        if ((m0 | m1) != 0) {
            uint64_t m = (uint64_t)m0 | ((uint64_t)m1 << 32);
            return e + (size_t)__builtin_ctzll(m);
        }
        e += 64;
    }
    while (n - e >= 33) {
        uint32_t m = bad_avx2(p + e, relaxed);
        if (m != 0) {
            return e + (size_t)__builtin_ctz(m);
        }
        e += 32;
    }
    return back_off(p, i, e, relaxed);
}

AVX2 size_t dkd__canon_scan_simple_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, false);
}

AVX2 size_t dkd__canon_scan_relaxed_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, true);
}

bool dkd__cpu_has_avx2(void)
{
    /* GCC and clang check the OS saves YMM state (XGETBV) before reporting AVX2. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}

#endif /* DKD_CANON_HAVE_X86 */
