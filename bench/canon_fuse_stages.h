/*
 * canon_fuse_stages.h - C wrappers for bench_canon_simd.cc: body canonicalization hashed
 * with our SHA-NI SHA-256 (the fused path verify.c takes for sha256), implementation
 * forced. canon.h is C only (see stages.h), hence this file.
 */
#ifndef DKD_BENCH_CANON_FUSE_STAGES_H
#define DKD_BENCH_CANON_FUSE_STAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cfs_supported is true when this CPU runs impl (numbered as canon_simd_stages.h) and has
 * SHA-NI. */
bool cfs_supported(int impl);

/* cfs_body_sha256 canonicalizes body (whole, one update) with impl, hashing it on SHA-NI
 * (dkd__body_set_sha256), and writes the digest to out; returns the canonical length.
 * Only when cfs_supported(impl). */
uint64_t cfs_body_sha256(const uint8_t *body, size_t len, bool relaxed, int impl, uint8_t out[32]);

#ifdef __cplusplus
}
#endif

#endif
