/*
 * b64.c - base64 for DKIM tag values (RFC 6376 sections 3.5 and 3.6.1: b=, bh=, p=).
 *
 * Workload: one b= (a few hundred bytes), one bh= (44 bytes) per signature and one p=
 * per key miss. The decoder is table-driven and takes four characters at a time while
 * they are all in the alphabet; on x86-64 with SSSE3 it first tries 16 at a time
 * (Mula's PSHUFB range check and pack), which at 2 KB messages matters: b= decoding
 * was ~4.6 k instructions of the ~25 k dkimd spends per message outside libcrypto.
 * FWS may appear anywhere in the value (folded header lines, TXT strings split by the
 * publisher) and is skipped by the byte loop, which stays the specification; a block
 * holding FWS or padding is simply left to the narrower paths.
 */
#include "b64.h"

#include <string.h>

#include "check.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DKD_B64_HAVE_SSSE3 1
#include <immintrin.h>
#include <stdatomic.h>
#endif

/* Decode table: value + 1 for the alphabet, so that the zero default of every byte
 * not listed means "not base64" without a GNU range initializer. */
enum { B64_BAD = 0, B64_FWS = 65, B64_PAD = 66 };

/* Packed rows read better than the columns clang-format would make. */
// clang-format off
static const uint8_t b64_table[256] = {
    [' '] = B64_FWS, ['\t'] = B64_FWS, ['\r'] = B64_FWS, ['\n'] = B64_FWS, ['='] = B64_PAD,
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15,
    ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
    ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29,
    ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36,
    ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43,
    ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50,
    ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
    ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};
// clang-format on

#ifdef DKD_B64_HAVE_SSSE3
/*
 * decode16_ssse3 decodes in[0..16) into out[0..12) when all 16 bytes are in the
 * alphabet and returns true; otherwise it returns false and out is unspecified (the
 * caller leaves those bytes to the scalar paths, which write them again). It stores 16
 * bytes, so out needs 16 bytes of room. The nibble tables are W. Mula's: a byte is in
 * the alphabet exactly when lut_lo[low nibble] & lut_hi[high nibble] is zero (bytes
 * >= 0x80 have a high nibble whose entry 0x10 every lut_lo entry shares), and
 * lut_roll[high nibble, or 1 less for '/'] is what to add to get its 6-bit value.
 */
__attribute__((target("ssse3"))) static bool decode16_ssse3(const uint8_t *in, uint8_t *out)
{
    const __m128i lut_lo = _mm_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                         0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    const __m128i lut_hi = _mm_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10,
                                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    const __m128i lut_roll =
        _mm_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i nib = _mm_set1_epi8(0x0f);

    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)in);
    __m128i hi = _mm_and_si128(_mm_srli_epi32(v, 4), nib);
    __m128i lo = _mm_and_si128(v, nib);
    __m128i bad = _mm_and_si128(_mm_shuffle_epi8(lut_lo, lo), _mm_shuffle_epi8(lut_hi, hi));
    if (_mm_movemask_epi8(_mm_cmpgt_epi8(bad, _mm_setzero_si128())) != 0) {
        return false;
    }
    __m128i slash = _mm_cmpeq_epi8(v, _mm_set1_epi8('/'));
    __m128i vals = _mm_add_epi8(v, _mm_shuffle_epi8(lut_roll, _mm_add_epi8(slash, hi)));
    /* Pack: pairs of 6-bit values into 12 bits, pairs of those into 24, then the three
     * bytes of each 32-bit lane in big-endian order to the front. */
    __m128i w12 = _mm_maddubs_epi16(vals, _mm_set1_epi32(0x01400140));
    __m128i w24 = _mm_madd_epi16(w12, _mm_set1_epi32(0x00011000));
    __m128i packed = _mm_shuffle_epi8(
        w24, _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1));
    _mm_storeu_si128((__m128i *)(void *)out, packed);
    return true;
}

/* have_ssse3 asks the CPU once per process (0 = not asked yet, 1 = yes, 2 = no); a
 * race only asks twice and gets the same answer. */
static bool have_ssse3(void)
{
    static atomic_int state;
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (s == 0) {
        __builtin_cpu_init();
        s = __builtin_cpu_supports("ssse3") != 0 ? 1 : 2;
        atomic_store_explicit(&state, s, memory_order_relaxed);
    }
    return s == 1;
}
#endif

/* Decode forcing the scalar paths, for tests that compare the two (see b64.h). */
static bool decode(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len, bool simd);

bool dkd__b64_decode(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len)
{
#ifdef DKD_B64_HAVE_SSSE3
    return decode(in, out, out_cap, out_len, in.len >= 16 && have_ssse3());
#else
    return decode(in, out, out_cap, out_len, false);
#endif
}

bool dkd__b64_decode_scalar(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len)
{
    return decode(in, out, out_cap, out_len, false);
}

static bool decode(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len, bool simd)
{
    uint32_t acc = 0; /* up to four 6-bit groups */
    size_t quad = 0;  /* groups held in acc */
    size_t n = 0;
    size_t pads = 0;
#ifndef DKD_B64_HAVE_SSSE3
    (void)simd;
#endif
    for (size_t i = 0; i < in.len; i++) {
#ifdef DKD_B64_HAVE_SSSE3
        /* 16 characters at a time while they are all alphabet; the first block with FWS
         * or padding in it falls through to four at a time, then to the byte loop. */
        if (simd) {
            while (quad == 0 && pads == 0 && in.len - i >= 16 && out_cap - n >= 16 &&
                   decode16_ssse3(in.ptr + i, out + n)) {
                n += 12;
                i += 16;
            }
        }
#endif
        /* Fast path: four alphabet characters starting a quantum decode at once with no
         * per-byte branch ((v - 1) & 0xC0 is zero only for the alphabet: BAD wraps to
         * 0xFF, FWS and PAD land on 64 and 65). FWS, padding and a quantum split by FWS
         * take the byte-at-a-time loop below, which is the specification. */
        while (quad == 0 && pads == 0 && in.len - i >= 4 && out_cap - n >= 3) {
            uint32_t a = (uint32_t)b64_table[in.ptr[i]] - 1;
            uint32_t b = (uint32_t)b64_table[in.ptr[i + 1]] - 1;
            uint32_t c = (uint32_t)b64_table[in.ptr[i + 2]] - 1;
            uint32_t d = (uint32_t)b64_table[in.ptr[i + 3]] - 1;
            if (((a | b | c | d) & ~(uint32_t)63) != 0) {
                break;
            }
            uint32_t v = a << 18 | b << 12 | c << 6 | d;
            out[n] = (uint8_t)(v >> 16);
            out[n + 1] = (uint8_t)(v >> 8);
            out[n + 2] = (uint8_t)v;
            n += 3;
            i += 4;
        }
        if (i == in.len) {
            break;
        }
        uint8_t v = b64_table[in.ptr[i]];
        if (v == B64_FWS) {
            continue;
        }
        if (v == B64_PAD) {
            pads++;
            continue;
        }
        if (v == B64_BAD || pads > 0) {
            /* After padding only FWS (and more padding, checked below) may follow. */
            return false;
        }
        acc = (acc << 6) | (uint32_t)(v - 1);
        if (++quad == 4) {
            if (out_cap - n < 3) {
                return false;
            }
            out[n++] = (uint8_t)(acc >> 16);
            out[n++] = (uint8_t)(acc >> 8);
            out[n++] = (uint8_t)acc;
            acc = 0;
            quad = 0;
        }
    }
    /* Padding is optional, but when present it must complete the last quantum exactly:
     * "xx==" or "xxx=", never "xxxx=" or "xx=". */
    if (pads > 0 && (quad < 2 || quad + pads != 4)) {
        return false;
    }
    switch (quad) {
    case 0:
        break;
    case 1:
        /* Six bits cannot make a byte: the input was cut short. */
        return false;
    case 2:
        if (out_cap - n < 1) {
            return false;
        }
        out[n++] = (uint8_t)(acc >> 4);
        break;
    default: /* 3 */
        if (out_cap - n < 2) {
            return false;
        }
        out[n++] = (uint8_t)(acc >> 10);
        out[n++] = (uint8_t)(acc >> 2);
        break;
    }
    /* Non-zero bits left over in the last group are accepted, as most verifiers do:
     * a strict check would reject signatures that every other receiver accepts. */
    /* Every write above checked its room first, so n never passed out_cap (and the
     * out_cap - n tests never wrapped). */
    DKD_ASSERT(n <= out_cap);
    *out_len = n;
    return true;
}

size_t dkd__b64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    size_t i = 0;
    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}
