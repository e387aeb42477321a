/*
 * b64.c - base64 for DKIM tag values (RFC 6376 sections 3.5 and 3.6.1: b=, bh=, p=).
 *
 * Workload: one b= (a few hundred bytes), one bh= (44 bytes) per signature and one p=
 * per key miss. The decoder is table-driven and takes four characters at a time while
 * they are all in the alphabet; these values are short, so the cost that matters is
 * staying branch-light, not SIMD. FWS may appear anywhere in
 * the value (folded header lines, TXT strings split by the publisher) and is skipped.
 */
#include "b64.h"

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

bool dkd__b64_decode(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint32_t acc = 0; /* up to four 6-bit groups */
    size_t quad = 0;  /* groups held in acc */
    size_t n = 0;
    size_t pads = 0;
    for (size_t i = 0; i < in.len; i++) {
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
