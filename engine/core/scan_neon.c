/*
 * scan_neon.c - the body scanners for AArch64 NEON (see scan.h for the contract).
 *
 * Workload: as for the x86 scanners in canon_simd.c, message bodies are mostly ordinary
 * text and base64 (CRLF lines of 60-100 bytes, single spaces) that is canonical as it
 * stands, so the scanner's job is to cross long clean runs fast and stop rarely. This is
 * the SSE2 scanner's logic (scan.c) with NEON intrinsics, kept lane for lane the same so that
 * both return the same e for every input (tests/cross/canon_neon_test.c checks that
 * against the scalar reference of scan.c under qemu, and the same file checks SSE2
 * against it on x86-64): three unaligned loads (the block, and the block shifted by one
 * byte either way) give each lane its neighbours, the rules are a few compares per 16
 * bytes, and one test per 64 bytes says whether anything needs the state machine.
 *
 * Why this shape on NEON: there is no movemask. The loop's test narrows the OR of the
 * four blocks to 64 bits (SHRN by 4, "4 bits per lane") and tests that as a scalar, the
 * idiom Arm's "Porting x86 vector bitmask optimizations to Arm NEON" (2022) recommends
 * over a reduction across lanes such as UMAXV. Only where the run stops is the
 * stop's position found, by one UMINV over "lane index, or 0xff where the lane is good":
 * this needs no bit mask and no reinterpretation between lane sizes, so it does not
 * depend on the byte order either. The relaxed "SP followed by WSP or line end" rule
 * looks the next byte up in a 16-entry TBL by its low nibble (one AND, one TBL, one
 * compare), as the AVX2 scanner does with PSHUFB, instead of four compares and three
 * ORs.
 *
 * Loads stay inside [i - 1, n): a block is scanned only when the byte after it is in the
 * chunk; the chunk's last bytes are scanned by one more block ending at the last byte but
 * one, overlapping the blocks before it; the last byte is left to canon.c.
 *
 * Speed: not measured. The build machines are x86-64 and qemu timings mean nothing; the
 * figures belong in PERFORMANCE.md once this runs on AArch64 hardware.
 *
 * On other architectures this file compiles to nothing (scan.h's guard).
 */
#include "scan.h"

#ifdef DKD_SCAN_HAVE_NEON

#include <arm_neon.h>
#include <stdbool.h>

/* The cut after the last whole block may fall between CR and LF, or after a SP whose
 * fate depends on the next byte; step back one byte (the byte before such a CR or SP is
 * never another CR or SP, or the scanner would have stopped there). As scan.c. */
static inline size_t back_off(const uint8_t *p, size_t i, size_t e, bool relaxed)
{
    if (e > i && (p[e - 1] == '\r' || (relaxed && p[e - 1] == ' '))) {
        e--;
    }
    return e;
}

/* bad_neon: 0xff in each lane of the 16 bytes at q that stops the scanner, else 0.
 * Reads q[-1] .. q[16]. */
static inline uint8x16_t bad_neon(const uint8_t *q, bool relaxed)
{
    const uint8x16_t cr = vdupq_n_u8('\r'), lf = vdupq_n_u8('\n');
    uint8x16_t c = dkd__scan_load16(q);
    uint8x16_t nx = dkd__scan_load16(q + 1);
    uint8x16_t pv = dkd__scan_load16(q - 1);
    uint8x16_t nx_lf = vceqq_u8(nx, lf);
    /* vbicq_u8(a, b) is a & ~b */
    uint8x16_t bare_lf = vbicq_u8(vceqq_u8(c, lf), vceqq_u8(pv, cr));
    uint8x16_t bad = vorrq_u8(bare_lf, vbicq_u8(vceqq_u8(c, cr), nx_lf));
    if (relaxed) {
        /* nx is SP, HTAB, LF or CR when the entry at its low nibble is nx itself; the
         * other entries are 0, which no byte with a nonzero low nibble equals. */
        static const uint8_t ws_by_nibble[16] = {[0] = ' ', [9] = '\t', [10] = '\n', [13] = '\r'};
        uint8x16_t nib = vandq_u8(nx, vdupq_n_u8(0x0f));
        uint8x16_t nx_ws = vceqq_u8(vqtbl1q_u8(vld1q_u8(ws_by_nibble), nib), nx);
        uint8x16_t c_sp = vceqq_u8(c, vdupq_n_u8(' '));
        uint8x16_t c_tab = vceqq_u8(c, vdupq_n_u8('\t'));
        bad = vorrq_u8(bad, vorrq_u8(c_tab, vandq_u8(c_sp, nx_ws)));
    }
    return bad;
}

/* any_set: whether any lane of v is nonzero, by narrowing to 64 bits (each lane keeps 4
 * of its bits) and testing that in a general register. */
static inline bool any_set(uint8x16_t v)
{
    uint8x8_t narrow = vshrn_n_u16(vreinterpretq_u16_u8(v), 4);
    return vget_lane_u64(vreinterpret_u64_u8(narrow), 0) != 0;
}

/* lane number of each byte lane */
static const uint8_t iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* lane_index: for each lane of bad, its index plus base where set, 0xff where not; the
 * first stop is then the minimum across lanes. */
static inline uint8x16_t lane_index(uint8x16_t bad, uint8_t base)
{
    uint8x16_t ix = vaddq_u8(vld1q_u8(iota), vdupq_n_u8(base));
    /* vornq_u8(a, b) is a | ~b: the index where bad is 0xff, 0xff where it is 0 */
    return vornq_u8(ix, bad);
}

static inline size_t scan_neon(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    size_t e = i;
    /* 64 bytes per step (one branch per 64 bytes) while the block and the byte after it
     * are in the chunk */
    while (n - e >= 65) {
        uint8x16_t b0 = bad_neon(p + e, relaxed), b1 = bad_neon(p + e + 16, relaxed);
        uint8x16_t b2 = bad_neon(p + e + 32, relaxed), b3 = bad_neon(p + e + 48, relaxed);
        if (any_set(vorrq_u8(vorrq_u8(b0, b1), vorrq_u8(b2, b3)))) {
            uint8x16_t m = vminq_u8(vminq_u8(lane_index(b0, 0), lane_index(b1, 16)),
                                    vminq_u8(lane_index(b2, 32), lane_index(b3, 48)));
            return e + vminvq_u8(m);
        }
        e += 64;
    }
    /* block [e, e + 16) and the byte after it */
    while (n - e >= 17) {
        uint8x16_t b = bad_neon(p + e, relaxed);
        if (any_set(b)) {
            return e + vminvq_u8(lane_index(b, 0));
        }
        e += 16;
    }
    /* The last bytes but one: a block ending there, overlapping what was scanned. Small
     * bodies would otherwise leave up to 16 bytes to the scalar code. Its lanes before e
     * need no mask (SSE2 masks them): b >= i, and each of them was scanned already with
     * the same neighbours and found good, so the first lane set is at e or later. */
    if (n - i >= 17 && e < n - 1) {
        size_t b = n - 17;
        uint8x16_t bad = bad_neon(p + b, relaxed);
        if (any_set(bad)) {
            return b + vminvq_u8(lane_index(bad, 0));
        }
        e = n - 1;
    }
    return back_off(p, i, e, relaxed);
}

size_t dkd__scan_body_simple_neon(const uint8_t *p, size_t i, size_t n)
{
    return scan_neon(p, i, n, false);
}

size_t dkd__scan_body_relaxed_neon(const uint8_t *p, size_t i, size_t n)
{
    return scan_neon(p, i, n, true);
}

#endif /* DKD_SCAN_HAVE_NEON */
