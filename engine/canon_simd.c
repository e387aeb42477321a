/*
 * canon_simd.c - SSE2, AVX2 and AVX-512BW scanners for body canonicalization (see
 * canon_simd.h).
 *
 * Workload: message bodies are mostly ordinary text and base64 — lines of 60-100 bytes
 * ending in CRLF, single spaces between words — and that text is already in canonical
 * form. The scanner turns 16 (SSE2) or 64 (AVX2: 2 x 32; AVX-512BW) bytes at a time into
 * masks of CR, LF, SP and HTAB (a compare and a movemask each), then finds the bytes that
 * need the state machine with shifts and ANDs on the masks (simdjson's stage-1 style):
 * no branch per byte, one per block. Ordinary text runs at over 10 GB/s, far above
 * SHA-256, which is what bounds the body hash.
 *
 * Only blocks wholly inside the chunk are loaded, plus the one byte after each block
 * read on its own: the caller's chunk has no padding. The last bytes (less than a block
 * and one) are left to canon.c; AVX-512BW takes them with a masked load, which does not
 * touch the masked-off bytes.
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

/*
 * bad_bits: the bytes of one block (bit k = byte k; w bits) that stop the run, from the
 * block's CR, LF, SP and HTAB bit masks, the CR bit of the byte before the block and
 * the byte after it. Shifting a mask by one lines each byte up with its neighbour, so
 * the cross-byte rules cost a few integer operations per block, not per byte.
 */
static inline uint64_t bad_bits(uint64_t cr, uint64_t lf, uint64_t sp, uint64_t tab,
                                uint64_t pv_cr, uint8_t next, unsigned w, bool relaxed)
{
    uint64_t top = (uint64_t)1 << (w - 1);
    uint64_t nx_lf = (lf >> 1) | (next == '\n' ? top : 0);
    uint64_t bad = (lf & ~((cr << 1) | pv_cr)) /* bare LF */
                   | (cr & ~nx_lf);            /* lone CR */
    if (relaxed) {
        uint64_t ws = cr | lf | sp | tab;
        bool next_ws = next == ' ' || next == '\t' || next == '\r' || next == '\n';
        uint64_t nx_ws = (ws >> 1) | (next_ws ? top : 0);
        bad |= tab | (sp & nx_ws); /* HTAB; SP starting a run or ending a line */
    }
    return bad;
}

/* ---- SSE2 (every x86-64) ---- */

static inline uint64_t eq16(__m128i v, char c)
{
    return (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c)));
}

static inline size_t scan_sse2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    uint64_t pv_cr = p[i - 1] == '\r';
    /* block [e, e + 16) and the byte after it */
    while (n - e >= 17) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + e));
        uint64_t cr = eq16(v, '\r'), lf = eq16(v, '\n');
        uint64_t sp = relaxed ? eq16(v, ' ') : 0, tab = relaxed ? eq16(v, '\t') : 0;
        uint64_t bad = bad_bits(cr, lf, sp, tab, pv_cr, p[e + 16], 16, relaxed);
        if (bad != 0) {
            return e + (size_t)__builtin_ctzll(bad);
        }
        pv_cr = cr >> 15;
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

AVX2 static inline uint64_t eq32(__m256i v, char c)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(c)));
}

AVX2 static inline size_t scan_avx2(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    uint64_t pv_cr = p[i - 1] == '\r';
    /* 64 bytes per step while they fit (one branch and one mask test per 64 bytes),
     * then 32; each block needs the byte after it too. */
    while (n - e >= 65) {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(p + e));
        __m256i hi = _mm256_loadu_si256((const __m256i *)(p + e + 32));
        uint64_t cr = eq32(lo, '\r') | eq32(hi, '\r') << 32;
        uint64_t lf = eq32(lo, '\n') | eq32(hi, '\n') << 32;
        uint64_t sp = relaxed ? eq32(lo, ' ') | eq32(hi, ' ') << 32 : 0;
        uint64_t tab = relaxed ? eq32(lo, '\t') | eq32(hi, '\t') << 32 : 0;
        uint64_t bad = bad_bits(cr, lf, sp, tab, pv_cr, p[e + 64], 64, relaxed);
        if (bad != 0) {
            return e + (size_t)__builtin_ctzll(bad);
        }
        pv_cr = cr >> 63;
        e += 64;
    }
    while (n - e >= 33) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + e));
        uint64_t cr = eq32(v, '\r'), lf = eq32(v, '\n');
        uint64_t sp = relaxed ? eq32(v, ' ') : 0, tab = relaxed ? eq32(v, '\t') : 0;
        uint64_t bad = bad_bits(cr, lf, sp, tab, pv_cr, p[e + 32], 32, relaxed);
        if (bad != 0) {
            return e + (size_t)__builtin_ctzll(bad);
        }
        pv_cr = cr >> 31;
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

/* ---- AVX-512BW ---- */

/* Compares write straight into 64-bit mask registers: four compares per 64 bytes and
 * no movemask, about half the work of AVX2 per byte. */
#define AVX512 __attribute__((target("avx512bw")))

AVX512 static inline uint64_t eq64(__m512i v, char c)
{
    return (uint64_t)_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c));
}

AVX512 static inline size_t scan_avx512(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    uint64_t pv_cr = p[i - 1] == '\r';
    while (n - e >= 65) {
        __m512i v = _mm512_loadu_si512((const void *)(p + e));
        uint64_t cr = eq64(v, '\r'), lf = eq64(v, '\n');
        uint64_t sp = relaxed ? eq64(v, ' ') : 0, tab = relaxed ? eq64(v, '\t') : 0;
        uint64_t bad = bad_bits(cr, lf, sp, tab, pv_cr, p[e + 64], 64, relaxed);
        if (bad != 0) {
            return e + (size_t)__builtin_ctzll(bad);
        }
        pv_cr = cr >> 63;
        e += 64;
    }
    /* The rest, up to the last byte that has one after it, as one masked load: the
     * mask keeps the load inside the chunk (masked-off bytes are not accessed, so no
     * fault), and the masked-off lanes read as 0, which is in no class. */
    size_t left = n - e - 1;
    if (left > 0) {
        uint64_t keep = left >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << left) - 1;
        __m512i v = _mm512_maskz_loadu_epi8(keep, (const void *)(p + e));
        uint64_t cr = eq64(v, '\r'), lf = eq64(v, '\n');
        uint64_t sp = relaxed ? eq64(v, ' ') : 0, tab = relaxed ? eq64(v, '\t') : 0;
        /* a block of width left: its top bit looks at p[e + left] */
        uint64_t bad = bad_bits(cr, lf, sp, tab, pv_cr, p[e + left], (unsigned)left, relaxed);
        if (bad != 0) {
            return e + (size_t)__builtin_ctzll(bad);
        }
        e += left;
    }
    return back_off(p, i, e, relaxed);
}

AVX512 size_t dkd__canon_scan_simple_avx512(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx512(p, i, n, false);
}

AVX512 size_t dkd__canon_scan_relaxed_avx512(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx512(p, i, n, true);
}

bool dkd__cpu_has_avx512bw(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") != 0;
}

bool dkd__cpu_has_avx2(void)
{
    /* GCC and clang check the OS saves YMM state (XGETBV) before reporting AVX2. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}

#endif /* DKD_CANON_HAVE_X86 */
