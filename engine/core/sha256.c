/*
 * sha256.c - SHA-256 (FIPS 180-4) on the x86 SHA extensions: the streaming context of
 * sha256.h around the one-block compression inlined from it.
 *
 * Workload: message bodies, 2 KB to megabytes, fed by canon.c as long runs straight
 * from the caller's chunk (whole blocks compressed in place, no copy) and as batches
 * of a few KiB; the relaxed rewriter compresses most of its output itself
 * (canon_simd.c) and hands only block tails to this context. Header hashes stay on
 * OpenSSL: they are short and their cost is the calls, not the blocks.
 *
 * Written from FIPS 180-4 (padding, constants, initial value) and Intel's description
 * of SHA256RNDS2 / SHA256MSG1 / SHA256MSG2; checked against OpenSSL in
 * tests/core/canon_random_test.c and tests/core/sha256_test.c.
 */
#include "sha256.h"

#include <string.h>

#ifdef DKD_SHA256_SHANI

#include <cpuid.h>

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube roots of the
 * first 64 primes. */
__attribute__((aligned(16))) const uint32_t dkd__sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the square roots of
 * the first 8 primes. */
static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* CPUID leaf 7 EBX bit 29 is SHA; leaf 1 ECX bit 19 is SSE4.1 (PBLENDW, which the state
 * shuffles use; SSSE3's PSHUFB and PALIGNR come with it on every CPU that has SHA). No OS
 * support check is needed: the code uses only XMM registers. CPUID itself, not
 * __builtin_cpu_supports: clang 14 has no "sha" feature name. */
bool dkd__sha256_available(void)
{
    unsigned a, b, c, d;
    bool sha = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) != 0;
    bool sse41 = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) != 0;
    return sha && sse41;
}

void dkd__sha256_init(dkd_sha256 *s)
{
    memcpy(s->h, initial, sizeof s->h);
    s->total = 0;
    s->len = 0;
}

/* blocks compresses nblocks whole blocks from p, the state in registers throughout. */
DKD_SHA_TARGET static void blocks(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    __m128i abef, cdgh;
    dkd__sha256_load(h, &abef, &cdgh);
    for (size_t k = 0; k < nblocks; k++) {
        dkd__sha256_block(&abef, &cdgh, p + 64 * k);
    }
    dkd__sha256_store(h, abef, cdgh);
}

/* Not inline into the AVX fused loops, whatever LTO may think of it: sha256.h says why. */
__attribute__((noinline)) DKD_SHA_TARGET void dkd__sha256_compress(__m128i st[2], const uint8_t *p,
                                                                   size_t nblocks)
{
    __m128i abef = st[0], cdgh = st[1];
    for (size_t k = 0; k < nblocks; k++) {
        dkd__sha256_block(&abef, &cdgh, p + 64 * k);
    }
    st[0] = abef;
    st[1] = cdgh;
}

void dkd__sha256_update(dkd_sha256 *s, const uint8_t *p, size_t n)
{
    s->total += n;
    if (s->len > 0) {
        size_t take = 64 - s->len < n ? 64 - s->len : n;
        memcpy(s->blk + s->len, p, take);
        s->len += take;
        p += take;
        n -= take;
        if (s->len < 64) {
            return;
        }
        blocks(s->h, s->blk, 1);
        s->len = 0;
    }
    if (n >= 64) {
        blocks(s->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    if (n > 0) {
        memcpy(s->blk, p, n);
        s->len = n;
    }
}

void dkd__sha256_final(dkd_sha256 *s, uint8_t out[DKD_SHA256_LEN])
{
    /* FIPS 180-4 5.1.1: a 1 bit, zeros up to 56 mod 64 bytes, the length in bits as a
     * 64-bit big-endian number. */
    uint64_t bits = s->total * 8;
    size_t len = s->len;
    s->blk[len++] = 0x80;
    if (len > 56) {
        memset(s->blk + len, 0, 64 - len);
        blocks(s->h, s->blk, 1);
        len = 0;
    }
    memset(s->blk + len, 0, 56 - len);
    for (int k = 0; k < 8; k++) {
        s->blk[56 + k] = (uint8_t)(bits >> (56 - 8 * k));
    }
    blocks(s->h, s->blk, 1);
    for (int k = 0; k < 8; k++) {
        out[4 * k] = (uint8_t)(s->h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(s->h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(s->h[k] >> 8);
        out[4 * k + 3] = (uint8_t)s->h[k];
    }
}

#else

/* No SHA-NI code on this architecture: callers hash with OpenSSL. */
bool dkd__sha256_available(void)
{
    return false;
}

#endif
