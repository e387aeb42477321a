/*
 * canon_simd_stages.h - C wrappers for bench_canon_simd.cc: body canonicalization with
 * a forced implementation (the engine's canon.h is C only, like stages.h explains).
 */
#ifndef DKD_BENCH_CANON_SIMD_STAGES_H
#define DKD_BENCH_CANON_SIMD_STAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Implementations, as canon.h numbers them: 1 scalar, 2 SSE2, 3 AVX2. */
enum { BCS_SCALAR = 1, BCS_SSE2 = 2, BCS_AVX2 = 3, BCS_AVX512 = 4 };

/* bcs_supported is true when this CPU runs impl. */
bool bcs_supported(int impl);

/* bcs_body_hash canonicalizes body (whole, one update) with impl into md, which the
 * caller has initialised. With md NULL the canonical bytes go to a sink that only
 * counts them (the canonicalization cost alone); returns the canonical length. */
uint64_t bcs_body_hash(const uint8_t *body, size_t len, bool relaxed, int impl, EVP_MD_CTX *md);

#ifdef __cplusplus
}
#endif

#endif
