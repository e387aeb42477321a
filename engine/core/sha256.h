/*
 * sha256.h - dkd_sha256, a streaming SHA-256 (FIPS 180-4) on the x86 SHA extensions
 * (SHA-NI), for the body hash, where it runs fused with relaxed canonicalization.
 *
 * Why our own: OpenSSL's SHA-256 is as fast per block, but it is called on batches of
 * canonical bytes, so the canonicalizer and the hash never overlap in the CPU. The
 * rounds (SHA256RNDS2) are one long latency chain that leaves most execution ports idle;
 * the block rewriter in canon_simd.c compresses output as it writes it (one or two blocks
 * per call of dkd__sha256_compress below) and the two run side by side.
 *
 * There is no portable version: dkd__sha256_available() is false without SHA-NI (and on
 * other architectures), and callers then hash with OpenSSL's EVP as before. The context
 * is plain data (no allocation, no globals beyond the round constants); any thread may
 * use its own contexts.
 *
 * Use: dkd__sha256_init, dkd__sha256_update any number of times (chunks split anywhere),
 * dkd__sha256_final. Only when dkd__sha256_available() is true.
 */
#ifndef DKD_SHA256_H
#define DKD_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { DKD_SHA256_LEN = 32 };

/* The streaming state: the chaining value h (FIPS 180-4 H0..H7, in that order), the
 * bytes of an unfinished block, and the total length fed so far. */
typedef struct dkd_sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes fed so far, those in blk included */
    size_t len;     /* bytes in blk, < 64 */
    uint8_t blk[64];
} dkd_sha256;

/* dkd__sha256_available is true when this CPU runs SHA-NI (with SSE4.1, which the code
 * needs too). It asks the CPU on every call (CPUID, which a hypervisor may trap: slow),
 * keeping no state; any thread may call. dkd_engine_new asks once and keeps the answer,
 * with dkd_config.sha256_impl, in the engine: the request path never calls this. */
bool dkd__sha256_available(void);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DKD_SHA256_SHANI 1

#include <immintrin.h>

/* dkd__sha256_init starts a hash. */
void dkd__sha256_init(dkd_sha256 *s);
/* dkd__sha256_update feeds n bytes (n may be 0); whole blocks are compressed straight
 * from p, without a copy. */
void dkd__sha256_update(dkd_sha256 *s, const uint8_t *p, size_t n);
/* dkd__sha256_final writes the 32-byte digest to out; s must be initialised again
 * before reuse. */
void dkd__sha256_final(dkd_sha256 *s, uint8_t out[DKD_SHA256_LEN]);

/* The round constants K0..K63 of FIPS 180-4, 16-byte aligned for the loads below. */
extern const uint32_t dkd__sha256_k[64];

#define DKD_SHA_TARGET __attribute__((target("sha,sse4.1")))

/*
 * SHA-NI keeps the eight working variables in two registers, {A,B,E,F} and {C,D,G,H}
 * (A in the top lane), not in FIPS order: dkd__sha256_load turns h[8] into that form and
 * dkd__sha256_store back, so a loop over many blocks shuffles only at its ends.
 */
DKD_SHA_TARGET static inline void dkd__sha256_load(const uint32_t h[8], __m128i *abef,
                                                   __m128i *cdgh)
{
    __m128i abcd = _mm_loadu_si128((const __m128i *)(const void *)h);       /* d c b a */
    __m128i efgh = _mm_loadu_si128((const __m128i *)(const void *)(h + 4)); /* h g f e */
    __m128i badc = _mm_shuffle_epi32(abcd, 0xb1);                           /* c d a b */
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1b);                           /* e f g h */
    *abef = _mm_alignr_epi8(badc, hgfe, 8);                                 /* a b e f */
    *cdgh = _mm_blend_epi16(hgfe, badc, 0xf0);                              /* c d g h */
}

DKD_SHA_TARGET static inline void dkd__sha256_store(uint32_t h[8], __m128i abef, __m128i cdgh)
{
    __m128i feba = _mm_shuffle_epi32(abef, 0x1b);     /* f e b a */
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xb1);     /* d c h g */
    __m128i abcd = _mm_blend_epi16(feba, dchg, 0xf0); /* d c b a */
    __m128i efgh = _mm_alignr_epi8(dchg, feba, 8);    /* h g f e */
    _mm_storeu_si128((__m128i *)(void *)h, abcd);
    _mm_storeu_si128((__m128i *)(void *)(h + 4), efgh);
}

/*
 * dkd__sha256_block compresses one 64-byte block into the state held as {A,B,E,F},
 * {C,D,G,H}. Each group of four rounds adds K to four schedule words and runs
 * SHA256RNDS2 twice (two rounds each, the second pair's words moved down by PSHUFD); the
 * schedule is kept as four registers of four words, W[t..t+3] made from the four before
 * it with SHA256MSG1 (sigma0 part), the words W[t-7..t-4] (PALIGNR) and SHA256MSG2
 * (sigma1 part), twelve groups ahead of their use, so it stays off the rounds' chain.
 * Inline, so a loop over blocks keeps the state in registers; do not inline it into code
 * compiled for AVX (see dkd__sha256_compress).
 */
DKD_SHA_TARGET static inline void dkd__sha256_block(__m128i *abef, __m128i *cdgh,
                                                    const uint8_t *blk)
{
    /* the message words are big-endian */
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i s0 = *abef, s1 = *cdgh;
    __m128i w[4];
    for (int k = 0; k < 4; k++) {
        w[k] =
            _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * k)), bswap);
    }
    for (int g = 0; g < 16; g++) {
        __m128i wk = _mm_add_epi32(
            w[g & 3], _mm_load_si128((const __m128i *)(const void *)(dkd__sha256_k + 4 * g)));
        /* SHA256RNDS2 takes {C,D,G,H} and {A,B,E,F} and returns the new {A,B,E,F}; the old
         * {A,B,E,F} is then the new {C,D,G,H}, so the two names swap roles each call. */
        s1 = _mm_sha256rnds2_epu32(s1, s0, wk);
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk, 0x0e));
        if (g < 12) {
            /* W[4g+16 ..] from W[4g ..], W[4g+4 ..], W[4g+8 ..] and W[4g+12 ..] */
            __m128i t = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
            t = _mm_add_epi32(t, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4));
            w[g & 3] = _mm_sha256msg2_epu32(t, w[(g + 3) & 3]);
        }
    }
    *abef = _mm_add_epi32(s0, *abef);
    *cdgh = _mm_add_epi32(s1, *cdgh);
}

/* dkd__sha256_compress compresses nblocks (may be 0) whole blocks from p into the state
 * held as st[0] = {A,B,E,F}, st[1] = {C,D,G,H}. For the fused loops in canon_simd.c,
 * which are compiled for AVX2/AVX-512: out of line and built without AVX, so the SHA
 * instructions (legacy SSE encodings only) never run among VEX code with dirty YMM
 * uppers, which on Intel costs a state transition each time (see canon_simd.c). */
void dkd__sha256_compress(__m128i st[2], const uint8_t *p, size_t nblocks);
#endif

#ifdef __cplusplus
}
#endif

#endif
