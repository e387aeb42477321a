/*
 * canon_fuse_stages.c - the C side of bench_canon_simd.cc's fused rows (see
 * canon_fuse_stages.h): one body canonicalization into our SHA-256 per call.
 */
#include "canon_fuse_stages.h"

#include <stdlib.h>

#include "canon.h"
#include "sha256.h"

bool cfs_supported(int impl)
{
    dkd_body_canon bc;
    dkd__body_init(&bc, DKD_CANON_SIMPLE, UINT64_MAX, NULL, NULL);
    return dkd__sha256_available() && dkd__body_set_impl(&bc, (enum dkd_canon_impl)impl);
}

uint64_t cfs_body_sha256(const uint8_t *body, size_t len, bool relaxed, int impl, uint8_t out[32])
{
#ifdef DKD_SHA256_SHANI
    dkd_body_canon bc;
    dkd_sha256 sha;
    dkd__sha256_init(&sha);
    dkd__body_init(&bc, relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE, UINT64_MAX, NULL, NULL);
    if (!dkd__body_set_impl(&bc, (enum dkd_canon_impl)impl) || !dkd__body_set_sha256(&bc, &sha)) {
        abort(); /* the benchmark checks cfs_supported first */
    }
    dkd__body_update(&bc, body, len);
    dkd__body_final(&bc);
    dkd__sha256_final(&sha, out);
    return bc.emitted;
#else
    (void)body, (void)len, (void)relaxed, (void)impl, (void)out;
    abort(); /* cfs_supported is false here */
#endif
}
