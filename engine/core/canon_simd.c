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
 * in the chunk too, since the caller's chunk has no padding. The chunk's last bytes are
 * scanned by one more block that ends at the last byte but one, overlapping the blocks
 * before it; only the last byte (whose fate may depend on the next chunk) is left to
 * canon.c.
 *
 * AVX-512BW was tried (compares into mask registers, a masked-load tail) and measured
 * slower than AVX2 on the AMD EPYC (Zen 4) build machine: 11 against 14-20 GB/s.
 *
 * NEON: not written; it cannot be compiled or tested on the x86-64 build machines. Other
 * architectures run the scalar reference.
 */
#include <stdbool.h>
#include <string.h>

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

AVX2 size_t dkd__canon_scan_simple_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, false);
}

AVX2 size_t dkd__canon_scan_relaxed_avx2(const uint8_t *p, size_t i, size_t n)
{
    return scan_avx2(p, i, n, true);
}

/* ---- relaxed blocks rewritten in place of the scanner's stops ---- */

/*
 * The block rewriters (dkd__canon_relaxed_blocks_*, see canon_simd.h) take the body 64
 * bytes at a time as bit masks (bit k = byte k of the block) and decide with a few
 * integer operations, no branch per stop, which bytes go out: the first byte of each WSP
 * run as SP, the rest of the run dropped, runs before a line end dropped whole, a CR
 * added before each bare LF. Text that relaxed has to change (a doubled space or
 * trailing WSP every line or two, Unix line ends, indented markup) then costs the same
 * per block as clean text instead of a scanner restart per fix. The output goes to the
 * caller's batch: AVX2 moves the kept bytes 8 at a time with PSHUFB (keep_shuf), AVX-512
 * VBMI2 with one VPCOMPRESSB per 64 bytes.
 */

/* keep_shuf[m] moves the bytes of an 8-byte group whose bits are set in m to the front:
 * byte k (from the low end) is the index of the k-th set bit of m, and 0x80 (PSHUFB gives
 * 0) past the last. A constant, so nothing fills it at run time and any thread may read
 * it; a wrong entry would show in every rewriter's property test against the scalar
 * reference (tests/core/canon_test.c). Generated by:
 *   for m in range(256): idx = [b for b in range(8) if m >> b & 1]; pad with 0x80 to 8;
 *   keep_shuf[m] = sum(idx[k] << 8 * k) */
static const uint64_t keep_shuf[256] = {
    0x8080808080808080, 0x8080808080808000, 0x8080808080808001, 0x8080808080800100,
    0x8080808080808002, 0x8080808080800200, 0x8080808080800201, 0x8080808080020100,
    0x8080808080808003, 0x8080808080800300, 0x8080808080800301, 0x8080808080030100,
    0x8080808080800302, 0x8080808080030200, 0x8080808080030201, 0x8080808003020100,
    0x8080808080808004, 0x8080808080800400, 0x8080808080800401, 0x8080808080040100,
    0x8080808080800402, 0x8080808080040200, 0x8080808080040201, 0x8080808004020100,
    0x8080808080800403, 0x8080808080040300, 0x8080808080040301, 0x8080808004030100,
    0x8080808080040302, 0x8080808004030200, 0x8080808004030201, 0x8080800403020100,
    0x8080808080808005, 0x8080808080800500, 0x8080808080800501, 0x8080808080050100,
    0x8080808080800502, 0x8080808080050200, 0x8080808080050201, 0x8080808005020100,
    0x8080808080800503, 0x8080808080050300, 0x8080808080050301, 0x8080808005030100,
    0x8080808080050302, 0x8080808005030200, 0x8080808005030201, 0x8080800503020100,
    0x8080808080800504, 0x8080808080050400, 0x8080808080050401, 0x8080808005040100,
    0x8080808080050402, 0x8080808005040200, 0x8080808005040201, 0x8080800504020100,
    0x8080808080050403, 0x8080808005040300, 0x8080808005040301, 0x8080800504030100,
    0x8080808005040302, 0x8080800504030200, 0x8080800504030201, 0x8080050403020100,
    0x8080808080808006, 0x8080808080800600, 0x8080808080800601, 0x8080808080060100,
    0x8080808080800602, 0x8080808080060200, 0x8080808080060201, 0x8080808006020100,
    0x8080808080800603, 0x8080808080060300, 0x8080808080060301, 0x8080808006030100,
    0x8080808080060302, 0x8080808006030200, 0x8080808006030201, 0x8080800603020100,
    0x8080808080800604, 0x8080808080060400, 0x8080808080060401, 0x8080808006040100,
    0x8080808080060402, 0x8080808006040200, 0x8080808006040201, 0x8080800604020100,
    0x8080808080060403, 0x8080808006040300, 0x8080808006040301, 0x8080800604030100,
    0x8080808006040302, 0x8080800604030200, 0x8080800604030201, 0x8080060403020100,
    0x8080808080800605, 0x8080808080060500, 0x8080808080060501, 0x8080808006050100,
    0x8080808080060502, 0x8080808006050200, 0x8080808006050201, 0x8080800605020100,
    0x8080808080060503, 0x8080808006050300, 0x8080808006050301, 0x8080800605030100,
    0x8080808006050302, 0x8080800605030200, 0x8080800605030201, 0x8080060503020100,
    0x8080808080060504, 0x8080808006050400, 0x8080808006050401, 0x8080800605040100,
    0x8080808006050402, 0x8080800605040200, 0x8080800605040201, 0x8080060504020100,
    0x8080808006050403, 0x8080800605040300, 0x8080800605040301, 0x8080060504030100,
    0x8080800605040302, 0x8080060504030200, 0x8080060504030201, 0x8006050403020100,
    0x8080808080808007, 0x8080808080800700, 0x8080808080800701, 0x8080808080070100,
    0x8080808080800702, 0x8080808080070200, 0x8080808080070201, 0x8080808007020100,
    0x8080808080800703, 0x8080808080070300, 0x8080808080070301, 0x8080808007030100,
    0x8080808080070302, 0x8080808007030200, 0x8080808007030201, 0x8080800703020100,
    0x8080808080800704, 0x8080808080070400, 0x8080808080070401, 0x8080808007040100,
    0x8080808080070402, 0x8080808007040200, 0x8080808007040201, 0x8080800704020100,
    0x8080808080070403, 0x8080808007040300, 0x8080808007040301, 0x8080800704030100,
    0x8080808007040302, 0x8080800704030200, 0x8080800704030201, 0x8080070403020100,
    0x8080808080800705, 0x8080808080070500, 0x8080808080070501, 0x8080808007050100,
    0x8080808080070502, 0x8080808007050200, 0x8080808007050201, 0x8080800705020100,
    0x8080808080070503, 0x8080808007050300, 0x8080808007050301, 0x8080800705030100,
    0x8080808007050302, 0x8080800705030200, 0x8080800705030201, 0x8080070503020100,
    0x8080808080070504, 0x8080808007050400, 0x8080808007050401, 0x8080800705040100,
    0x8080808007050402, 0x8080800705040200, 0x8080800705040201, 0x8080070504020100,
    0x8080808007050403, 0x8080800705040300, 0x8080800705040301, 0x8080070504030100,
    0x8080800705040302, 0x8080070504030200, 0x8080070504030201, 0x8007050403020100,
    0x8080808080800706, 0x8080808080070600, 0x8080808080070601, 0x8080808007060100,
    0x8080808080070602, 0x8080808007060200, 0x8080808007060201, 0x8080800706020100,
    0x8080808080070603, 0x8080808007060300, 0x8080808007060301, 0x8080800706030100,
    0x8080808007060302, 0x8080800706030200, 0x8080800706030201, 0x8080070603020100,
    0x8080808080070604, 0x8080808007060400, 0x8080808007060401, 0x8080800706040100,
    0x8080808007060402, 0x8080800706040200, 0x8080800706040201, 0x8080070604020100,
    0x8080808007060403, 0x8080800706040300, 0x8080800706040301, 0x8080070604030100,
    0x8080800706040302, 0x8080070604030200, 0x8080070604030201, 0x8007060403020100,
    0x8080808080070605, 0x8080808007060500, 0x8080808007060501, 0x8080800706050100,
    0x8080808007060502, 0x8080800706050200, 0x8080800706050201, 0x8080070605020100,
    0x8080808007060503, 0x8080800706050300, 0x8080800706050301, 0x8080070605030100,
    0x8080800706050302, 0x8080070605030200, 0x8080070605030201, 0x8007060503020100,
    0x8080808007060504, 0x8080800706050400, 0x8080800706050401, 0x8080070605040100,
    0x8080800706050402, 0x8080070605040200, 0x8080070605040201, 0x8007060504020100,
    0x8080800706050403, 0x8080070605040300, 0x8080070605040301, 0x8007060504030100,
    0x8080070605040302, 0x8007060504030200, 0x8007060504030201, 0x0706050403020100,
};

static inline uint64_t below(unsigned c)
{
    return c >= 64 ? ~0ULL : (1ULL << c) - 1;
}

/* The WSP run holding bit c - 1 of w starts here (c itself when bit c - 1 is not WSP). */
static inline unsigned run_start(uint64_t w, unsigned c)
{
    uint64_t non = ~w & below(c);
    if (c == 0 || !(w >> (c - 1) & 1)) {
        return c;
    }
    return non == 0 ? 0 : 64u - (unsigned)__builtin_clzll(non);
}

/* What one block's rewrite does: bytes [0, c) are taken (c == 0: none, stop here), keep
 * says which of them go out, ins where a CR goes in (before those bytes), and verbatim
 * says they go out unchanged. */
typedef struct block_plan {
    unsigned c;
    uint64_t keep, ins;
    bool verbatim;
} block_plan;

/* plan_block: w = SP or HTAB, tab = HTAB, crm = CR, lfm = LF, nlf = the next byte is LF
 * (bit 63: byte 64); data = the current line has content. p[-1] is neither CR nor WSP
 * (every cut keeps it so), so bit 0 has no neighbour to look back at. */
static inline block_plan plan_block(uint64_t w, uint64_t tab, uint64_t crm, uint64_t lfm,
                                    uint64_t nlf, bool data)
{
    block_plan pl;
    uint64_t crlf_cr = crm & nlf;
    uint64_t eol = crlf_cr | lfm;         /* where a line end starts */
    uint64_t bare_lf = lfm & ~(crm << 1); /* becomes CRLF */
    uint64_t lone_cr = crm & ~nlf;        /* content, but left to the scalar code */
    uint64_t bad = lone_cr;
    /* trail: WSP whose run ends right before a line end, grown back one byte a step
     * over the run (most blocks have none; most runs are 1 or 2 bytes) */
    uint64_t trail = w & eol >> 1;
    if (trail != 0) {
        uint64_t grown;
        while ((grown = trail | (w & trail >> 1)) != trail) {
            trail = grown;
        }
    }
    uint64_t del = (w & w << 1) | trail;
    uint64_t content = ~w & ~lfm & ~crlf_cr;

    unsigned c = 64;
    if ((bad | (~content & 1ULL << 63)) == 0) {
        /* the common block: ends in content, so it splits no run, CRLF or blank lines */
        pl.c = 64;
        pl.keep = ~del;
        pl.ins = bare_lf;
        pl.verbatim = (del | bare_lf | tab) == 0;
        return pl;
    }
    if (bad != 0) {
        c = (unsigned)__builtin_ctzll(bad);
    }
    if (crlf_cr >> 63) {
        c = c < 63 ? c : 63; /* never split a CRLF */
    }
    c = run_start(w, c); /* never split a WSP run: what follows it decides its fate */
    /* Blank lines are written only when content follows them: end the block after the
     * line end of its last content line. */
    uint64_t cc = content & below(c);
    if (cc == 0 && !data) {
        c = 0;
    } else {
        uint64_t after = cc != 0 ? ~below(64u - (unsigned)__builtin_clzll(cc)) : ~0ULL;
        uint64_t l = lfm & after & below(c);
        if (l != 0) {
            c = (unsigned)__builtin_ctzll(l) + 1;
        }
    }
    uint64_t in = below(c);
    pl.c = c;
    pl.keep = ~del & in;
    pl.ins = bare_lf & in;
    pl.verbatim = c == 64 && (del | bare_lf | tab) == 0;
    return pl;
}

/* The loop both rewriters share; LOAD_MASKS(e) sets w, tab, crm, lfm and the SP-for-WSP
 * block, COMPACT(keep, dst) writes the kept bytes of it and yields their count. The
 * fused versions hash as they go: HASH_BEGIN before the loop, HASH_STEP at the top of
 * each iteration, HASH_END after it (empty for the plain ones; see HASH_STEP_SHA).
 * TAKE_BACK 1 hands runs of unchanged blocks back to the scanner (plain versions). */
#define BLOCKS_LOOP(LOAD_MASKS, COMPACT, HASH_BEGIN, HASH_STEP, HASH_END, TAKE_BACK)               \
    bool data = *line_has_data;                                                                    \
    size_t o = *out_len;                                                                           \
    size_t e = i;                                                                                  \
    size_t clean = 0; /* bytes of unchanged whole blocks just written */                           \
    HASH_BEGIN;                                                                                    \
    while (n - e >= 65 && out_cap - o >= 400) {                                                    \
        HASH_STEP;                                                                                 \
        uint64_t w, tab, crm, lfm;                                                                 \
        LOAD_MASKS(e);                                                                             \
        uint64_t nlf = lfm >> 1 | (uint64_t)(p[e + 64] == '\n') << 63;                             \
        block_plan pl = plan_block(w, tab, crm, lfm, nlf, data);                                   \
        if (pl.c == 0) {                                                                           \
            break;                                                                                 \
        }                                                                                          \
        /* each bare LF: the bytes before it, then CR (the LF itself starts the rest) */           \
        uint64_t rest = pl.keep;                                                                   \
        while (pl.ins != 0) {                                                                      \
            uint64_t before = pl.ins & (0 - pl.ins);                                               \
            pl.ins &= pl.ins - 1;                                                                  \
            o += COMPACT(rest & (before - 1), out + o);                                            \
            out[o++] = '\r';                                                                       \
            rest &= ~(before - 1);                                                                 \
        }                                                                                          \
        o += COMPACT(rest, out + o);                                                               \
        if (pl.c != 64) {                                                                          \
            /* A branch, not a data dependency: the next block's loads need not wait for           \
             * this block's cut (the common case is a whole block). The empty asm keeps            \
             * the compiler from making it a conditional move. */                                  \
            __asm__("" : "+r"(pl.c));                                                              \
            e += pl.c;                                                                             \
            data = p[e - 1] != '\n';                                                               \
            clean = 0;                                                                             \
            continue;                                                                              \
        }                                                                                          \
        e += 64;                                                                                   \
        /* every cut lies after an LF (line ended, no blank line held: see plan_block) or          \
         * after content, so the byte before says the line state */                                \
        data = p[e - 1] != '\n';                                                                   \
        /* Unchanged blocks are written like the others (a branch on them would be                 \
         * mispredicted on text with a fix every block or two); after 4 in a row they are          \
         * taken back and left to the caller's scanner, which passes such text on                  \
         * without a copy. */                                                                      \
        clean = TAKE_BACK ? (clean + 64) & (0 - (size_t)pl.verbatim) : 0;                          \
        if (clean >= 256) {                                                                        \
            e -= clean;                                                                            \
            o -= clean;                                                                            \
            data = p[e - 1] != '\n';                                                               \
            break;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    HASH_END;                                                                                      \
    *line_has_data = data;                                                                         \
    *out_len = o;                                                                                  \
    return e

#define NO_HASH ((void)0)

/*
 * Fused with SHA-256 (dkd__canon_relaxed_blocks_*_sha): the context's unfinished block
 * goes to the front of out, so output and hash input are one run, [h, o) not yet
 * hashed. At the top of each iteration up to two whole blocks of it are compressed,
 * enough to keep up with the at most 128 bytes an input block writes, and the rounds of
 * one block run beside the rewrite of the next (SHA256RNDS2 is a latency chain that
 * leaves the ports the rewrite uses idle). Only bytes written two iterations back or
 * more are hashed (o_lag): a SHA load of 16 bytes usually spans two of the overlapping
 * 64-byte compact stores, so it cannot be forwarded and waits until both stores have
 * retired and reached the cache; a store of the last iteration retires only after the
 * previous block's rounds, which put that whole chain in front of the next block's
 * message loads (measured: text 1.37 GB/s hashing one iteration back, 1.61 two back,
 * SHA-256 alone 1.66). The fused loops never take unchanged blocks back (TAKE_BACK 0),
 * so `clean` stays 0 there; it is kept in the bound so the rule holds if they ever do.
 *
 * The compression is a call (dkd__sha256_compress, in sha256.c, compiled without AVX),
 * not inline, because of Intel's SSE/AVX transitions. SHA256RNDS2/MSG1/MSG2 have only
 * legacy SSE encodings; inlined here they run between VEX instructions (the schedule's
 * VPADDD/VPALIGNR, the rewrite's YMM/ZMM code) while the upper halves of YMM0-15 are
 * dirty, and the Intel Xeon (AVX-512, VBMI2) we measured pays for every switch between
 * the two (~100 per block): a loop of blocks mixing VEX-128 with SHA-NI ran at 10 MB/s
 * with a dirty YMM upper, 1.6 GB/s clean or with legacy encodings only; the fused text
 * rows at 20 KB at 17-19 MB/s, corpus-bench rsa2048/20k at 944 msgs per CPU-second
 * against 31 705 with DKD_SHA256=openssl (PERFORMANCE.md, "Intel: the SSE/AVX
 * transition"). AMD has no such penalty, so the measurements on Zen 4 never showed it.
 * GCC and clang put a VZEROUPPER before every call out of AVX code (against this very
 * penalty in the callee), so the callee runs in clean SSE state throughout. A
 * _mm256_zeroupper() before the inline rounds was tried: as fast for relaxed, but the
 * compiler is free to schedule the reload of the clobbered YMM constants in among the
 * rounds, and in the simple AVX2 loop it did (0.39 GB/s); a call is a boundary it cannot
 * move code across. The cost: the state goes through st[] in memory once per call and
 * the constants are reloaded after it, which measured within noise of the inline version
 * (text 20 KB, this Xeon: AVX2 1.48-1.62 GB/s, AVX-512 1.41-1.57, SHA-256 alone
 * 1.61-1.81).
 */
#define HASH_BEGIN_SHA                                                                             \
    size_t o0 = sha->len;                                                                          \
    memcpy(out, sha->blk, o0);                                                                     \
    o = o0;                                                                                        \
    size_t h = 0;                                                                                  \
    size_t o_lag = o;                                                                              \
    __m128i st[2];                                                                                 \
    dkd__sha256_load(sha->h, &st[0], &st[1])

#define HASH_STEP_SHA                                                                              \
    {                                                                                              \
        size_t ready = o_lag < o - clean ? o_lag : o - clean;                                      \
        o_lag = o;                                                                                 \
        size_t nb = (ready - h) / 64;                                                              \
        if (nb != 0) {                                                                             \
            nb = nb < 2 ? nb : 2;                                                                  \
            dkd__sha256_compress(st, out + h, nb);                                                 \
            h += 64 * nb;                                                                          \
        }                                                                                          \
    }

#define HASH_END_SHA                                                                               \
    dkd__sha256_compress(st, out + h, (o - h) / 64);                                               \
    h += (o - h) & ~(size_t)63;                                                                    \
    dkd__sha256_store(sha->h, st[0], st[1]);                                                       \
    memcpy(sha->blk, out + h, o - h);                                                              \
    sha->len = o - h;                                                                              \
    sha->total += o - o0;                                                                          \
    o -= o0 /* what the caller is told: bytes written */

/* compact_avx2 writes the bytes of the 64 at blk whose bit is set in keep to out, 8 at
 * a time through keep_shuf; each store may write up to 7 bytes past the kept ones (the
 * next store overwrites them; out needs 8 bytes of slack). Returns how many it wrote. */
AVX2 static inline size_t compact_avx2(const uint8_t *blk, uint64_t keep, uint8_t *out)
{
    size_t o = 0;
    for (unsigned g = 0; g < 8; g++) {
        unsigned m = (unsigned)(keep >> (8 * g)) & 0xff;
        __m128i v = _mm_loadl_epi64((const __m128i *)(blk + 8 * g));
        __m128i ix = _mm_loadl_epi64((const __m128i *)(const void *)&keep_shuf[m]);
        _mm_storel_epi64((__m128i *)(out + o), _mm_shuffle_epi8(v, ix));
        o += (size_t)__builtin_popcount(m);
    }
    return o;
}

AVX2 static inline uint64_t mask64(__m256i lo, __m256i hi)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(lo) |
           (uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32;
}

#define LOAD_MASKS_AVX2(at)                                                                        \
    __m256i c0 = _mm256_loadu_si256((const __m256i *)(p + (at)));                                  \
    __m256i c1 = _mm256_loadu_si256((const __m256i *)(p + (at) + 32));                             \
    __m256i s0 = _mm256_cmpeq_epi8(c0, sp), s1 = _mm256_cmpeq_epi8(c1, sp);                        \
    __m256i t0 = _mm256_cmpeq_epi8(c0, ht), t1 = _mm256_cmpeq_epi8(c1, ht);                        \
    __m256i w0 = _mm256_or_si256(s0, t0), w1 = _mm256_or_si256(s1, t1);                            \
    w = mask64(w0, w1);                                                                            \
    tab = mask64(t0, t1);                                                                          \
    crm = mask64(_mm256_cmpeq_epi8(c0, cr), _mm256_cmpeq_epi8(c1, cr));                            \
    lfm = mask64(_mm256_cmpeq_epi8(c0, lf), _mm256_cmpeq_epi8(c1, lf));                            \
    /* kept WSP goes out as SP */                                                                  \
    _mm256_storeu_si256((__m256i *)blk, _mm256_blendv_epi8(c0, sp, w0));                           \
    _mm256_storeu_si256((__m256i *)(blk + 32), _mm256_blendv_epi8(c1, sp, w1))

#define COMPACT_AVX2(keep, dst) compact_avx2(blk, (keep), (dst))

AVX2 size_t dkd__canon_relaxed_blocks_avx2(const uint8_t *p, size_t i, size_t n,
                                           bool *line_has_data, uint8_t *out, size_t *out_len,
                                           size_t out_cap)
{
    const __m256i sp = _mm256_set1_epi8(' '), ht = _mm256_set1_epi8('\t');
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    uint8_t blk[64];
    BLOCKS_LOOP(LOAD_MASKS_AVX2, COMPACT_AVX2, NO_HASH, NO_HASH, NO_HASH, 1);
}

#define AVX2_SHA __attribute__((target("avx2,sha")))

AVX2_SHA size_t dkd__canon_relaxed_blocks_avx2_sha(const uint8_t *p, size_t i, size_t n,
                                                   bool *line_has_data, uint8_t *out,
                                                   size_t *out_len, size_t out_cap,
                                                   dkd_sha256 *sha)
{
    const __m256i sp = _mm256_set1_epi8(' '), ht = _mm256_set1_epi8('\t');
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    uint8_t blk[64];
    BLOCKS_LOOP(LOAD_MASKS_AVX2, COMPACT_AVX2, HASH_BEGIN_SHA, HASH_STEP_SHA, HASH_END_SHA, 0);
}

/* ---- AVX-512 VBMI2: the same with compares into mask registers and VPCOMPRESSB ---- */

#define AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vbmi2")))

#define LOAD_MASKS_AVX512(at)                                                                      \
    __m512i c = _mm512_loadu_si512((const void *)(p + (at)));                                      \
    __mmask64 ks = _mm512_cmpeq_epi8_mask(c, sp), kt = _mm512_cmpeq_epi8_mask(c, ht);              \
    w = _cvtmask64_u64(ks) | _cvtmask64_u64(kt);                                                   \
    tab = _cvtmask64_u64(kt);                                                                      \
    crm = _cvtmask64_u64(_mm512_cmpeq_epi8_mask(c, cr));                                           \
    lfm = _cvtmask64_u64(_mm512_cmpeq_epi8_mask(c, lf));                                           \
    /* kept WSP goes out as SP */                                                                  \
    blk = _mm512_mask_mov_epi8(c, _kor_mask64(ks, kt), sp)

/* The register form of VPCOMPRESSB, then a plain 64-byte store: the form that stores to
 * memory is microcoded and slow on Zen 4. out needs 64 bytes of room. */
#define COMPACT_AVX512(keep, dst)                                                                  \
    (_mm512_storeu_si512((void *)(dst), _mm512_maskz_compress_epi8(_cvtu64_mask64(keep), blk)),    \
     (size_t)__builtin_popcountll(keep))

AVX512 size_t dkd__canon_relaxed_blocks_avx512(const uint8_t *p, size_t i, size_t n,
                                               bool *line_has_data, uint8_t *out, size_t *out_len,
                                               size_t out_cap)
{
    const __m512i sp = _mm512_set1_epi8(' '), ht = _mm512_set1_epi8('\t');
    const __m512i cr = _mm512_set1_epi8('\r'), lf = _mm512_set1_epi8('\n');
    __m512i blk;
    BLOCKS_LOOP(LOAD_MASKS_AVX512, COMPACT_AVX512, NO_HASH, NO_HASH, NO_HASH, 1);
}

#define AVX512_SHA __attribute__((target("avx2,avx512f,avx512bw,avx512vbmi2,sha")))

AVX512_SHA size_t dkd__canon_relaxed_blocks_avx512_sha(const uint8_t *p, size_t i, size_t n,
                                                       bool *line_has_data, uint8_t *out,
                                                       size_t *out_len, size_t out_cap,
                                                       dkd_sha256 *sha)
{
    const __m512i sp = _mm512_set1_epi8(' '), ht = _mm512_set1_epi8('\t');
    const __m512i cr = _mm512_set1_epi8('\r'), lf = _mm512_set1_epi8('\n');
    __m512i blk;
    BLOCKS_LOOP(LOAD_MASKS_AVX512, COMPACT_AVX512, HASH_BEGIN_SHA, HASH_STEP_SHA, HASH_END_SHA, 0);
}

/* ---- simple: the same loops with no WSP rule, for the bare-LF fix ---- */

/*
 * Simple canonicalization changes only bare LFs (to CRLF) and holds back blank lines,
 * which is the relaxed plan with no WSP (w = 0): every byte is kept, a CR goes in
 * before each bare LF, and the cuts (lone CR, blank lines with nothing after them in
 * the block) are the same. Bodies handed over with Unix line ends then go 64 bytes a
 * step instead of one scanner stop per line.
 */
#define LOAD_MASKS_SIMPLE_AVX2(at)                                                                 \
    __m256i c0 = _mm256_loadu_si256((const __m256i *)(p + (at)));                                  \
    __m256i c1 = _mm256_loadu_si256((const __m256i *)(p + (at) + 32));                             \
    w = 0;                                                                                         \
    tab = 0;                                                                                       \
    crm = mask64(_mm256_cmpeq_epi8(c0, cr), _mm256_cmpeq_epi8(c1, cr));                            \
    lfm = mask64(_mm256_cmpeq_epi8(c0, lf), _mm256_cmpeq_epi8(c1, lf))

/* the bytes go out as they are: compact straight from the input block */
#define COMPACT_SIMPLE_AVX2(keep, dst) compact_avx2(p + e, (keep), (dst))

AVX2 size_t dkd__canon_simple_blocks_avx2(const uint8_t *p, size_t i, size_t n, bool *line_has_data,
                                          uint8_t *out, size_t *out_len, size_t out_cap)
{
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    BLOCKS_LOOP(LOAD_MASKS_SIMPLE_AVX2, COMPACT_SIMPLE_AVX2, NO_HASH, NO_HASH, NO_HASH, 1);
}

AVX2_SHA size_t dkd__canon_simple_blocks_avx2_sha(const uint8_t *p, size_t i, size_t n,
                                                  bool *line_has_data, uint8_t *out,
                                                  size_t *out_len, size_t out_cap, dkd_sha256 *sha)
{
    const __m256i cr = _mm256_set1_epi8('\r'), lf = _mm256_set1_epi8('\n');
    BLOCKS_LOOP(LOAD_MASKS_SIMPLE_AVX2, COMPACT_SIMPLE_AVX2, HASH_BEGIN_SHA, HASH_STEP_SHA,
                HASH_END_SHA, 0);
}

#define LOAD_MASKS_SIMPLE_AVX512(at)                                                               \
    __m512i c = _mm512_loadu_si512((const void *)(p + (at)));                                      \
    w = 0;                                                                                         \
    tab = 0;                                                                                       \
    crm = _cvtmask64_u64(_mm512_cmpeq_epi8_mask(c, cr));                                           \
    lfm = _cvtmask64_u64(_mm512_cmpeq_epi8_mask(c, lf));                                           \
    blk = c

AVX512 size_t dkd__canon_simple_blocks_avx512(const uint8_t *p, size_t i, size_t n,
                                              bool *line_has_data, uint8_t *out, size_t *out_len,
                                              size_t out_cap)
{
    const __m512i cr = _mm512_set1_epi8('\r'), lf = _mm512_set1_epi8('\n');
    __m512i blk;
    BLOCKS_LOOP(LOAD_MASKS_SIMPLE_AVX512, COMPACT_AVX512, NO_HASH, NO_HASH, NO_HASH, 1);
}

AVX512_SHA size_t dkd__canon_simple_blocks_avx512_sha(const uint8_t *p, size_t i, size_t n,
                                                      bool *line_has_data, uint8_t *out,
                                                      size_t *out_len, size_t out_cap,
                                                      dkd_sha256 *sha)
{
    const __m512i cr = _mm512_set1_epi8('\r'), lf = _mm512_set1_epi8('\n');
    __m512i blk;
    BLOCKS_LOOP(LOAD_MASKS_SIMPLE_AVX512, COMPACT_AVX512, HASH_BEGIN_SHA, HASH_STEP_SHA,
                HASH_END_SHA, 0);
}

bool dkd__cpu_has_avx512_vbmi2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") != 0 && __builtin_cpu_supports("avx512vbmi2") != 0;
}

bool dkd__cpu_has_avx2(void)
{
    /* GCC and clang check the OS saves YMM state (XGETBV) before reporting AVX2. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
}

#endif /* DKD_CANON_HAVE_X86 */
