/*
 * canon_fuzz.c - fuzz target for canonicalization: on any input, the streaming body
 * code fed in fuzzer-chosen chunks, with a fuzzer-chosen l=, produces exactly the
 * bytes (and the emitted count) of the naive whole-buffer reference in canon_test.c,
 * with every body implementation this CPU runs (scalar, SSE2, AVX2, AVX-512: SIMD ==
 * scalar == reference); the same bodies hashed on SHA-NI through the fused path
 * (dkd__body_set_sha256: the block rewriters compressing as they write) give OpenSSL's
 * SHA-256 of the reference's bytes within l=; and the header code, with a fuzzer-chosen
 * skip range, matches the reference too.
 *
 * Input layout: byte 0 = flags (bit 0 relaxed, bit 1 with_crlf, bit 2 use l=),
 * byte 1 = l= (taken relative to the body length), byte 2 = skip start, byte 3 = skip
 * length, byte 4 = number of chunk lengths k (mod 8), then k chunk lengths, then the
 * data, used both as a body and as one header field.
 */
#define CANON_REF_ONLY
#include "canon_test.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) {
        return 0;
    }
    uint8_t flags = data[0];
    enum dkd_canon canon = (flags & 1) ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
    bool with_crlf = (flags & 2) != 0;
    bool use_limit = (flags & 4) != 0;
    uint8_t lbyte = data[1], skip_a = data[2], skip_b = data[3];
    size_t nchunks = data[4] % 8;
    data += 5;
    size -= 5;
    if (size < nchunks) {
        nchunks = size;
    }
    size_t chunks[8];
    bool any = false;
    for (size_t k = 0; k < nchunks; k++) {
        chunks[k] = data[k];
        any = any || chunks[k] != 0;
    }
    if (!any) {
        nchunks = 0; /* whole input at once */
    }
    data += nchunks;
    size -= nchunks;

    uint64_t limit = use_limit ? (uint64_t)lbyte * (size + 3) / 255 : UINT64_MAX;
    if (!check_body_against_ref(canon, limit, data, size, chunks, nchunks)) {
        abort();
    }

    size_t skip_off = (size_t)skip_a * size / 255;
    size_t skip_end = skip_off + (size_t)skip_b * (size - skip_off) / 255;
    if (!check_header_against_ref(canon, data, size, skip_off, skip_end, with_crlf)) {
        abort();
    }
    return 0;
}
