/*
 * canon_simd.c - SSE2 and AVX2 scanners for body canonicalization (see canon_simd.h).
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
 * in the chunk too, since the caller's chunk has no padding. The last bytes (less than
 * a block and one) are left to canon.c.
 *
 * AVX-512BW was tried (compares into mask registers, a masked-load tail) and measured
 * slower than AVX2 on the AMD EPYC (Zen 4) build machine: 11 against 14-20 GB/s.
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
    __m128i c = _mm_loadu_si128((const __m128i *)q);
    __m128i nx = _mm_loadu_si128((const __m128i *)(q + 1));
    __m128i pv = _mm_loadu_si128((const __m128i *)(q - 1));
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
         * byte itself; any other byte (and any byte >= 0x80, which PSHUFB maps to 0)
         * does not match its entry. */
        const __m256i special =
            _mm256_setr_epi8(' ', 1, 1, 1, 1, 1, 1, 1, 1, '\t', '\n', 1, 1, '\r', 1, 1, ' ', 1, 1,
                             1, 1, 1, 1, 1, 1, '\t', '\n', 1, 1, '\r', 1, 1);
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
