/*
 * canon_simd_stages.c - the C side of bench_canon_simd.cc (see canon_simd_stages.h):
 * one body canonicalization per call, with the implementation forced.
 */
#include "canon_simd_stages.h"

#include <stdlib.h>

#include "canon.h"

bool bcs_supported(int impl)
{
    dkd_body_canon bc;
    dkd__body_init(&bc, DKD_CANON_SIMPLE, UINT64_MAX, NULL, NULL);
    return dkd__body_set_impl(&bc, (enum dkd_canon_impl)impl);
}

static void md_sink(void *arg, const uint8_t *p, size_t n)
{
    EVP_DigestUpdate(arg, p, n);
}

static void count_sink(void *arg, const uint8_t *p, size_t n)
{
    (void)p;
    *(uint64_t *)arg += n;
}

uint64_t bcs_body_hash(const uint8_t *body, size_t len, bool relaxed, int impl, EVP_MD_CTX *md)
{
    dkd_body_canon bc;
    uint64_t counted = 0;
    enum dkd_canon canon = relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
    if (md != NULL) {
        dkd__body_init(&bc, canon, UINT64_MAX, md_sink, md);
    } else {
        dkd__body_init(&bc, canon, UINT64_MAX, count_sink, &counted);
    }
    if (!dkd__body_set_impl(&bc, (enum dkd_canon_impl)impl)) {
        abort(); /* the benchmark checks bcs_supported first */
    }
    dkd__body_update(&bc, body, len);
    dkd__body_final(&bc);
    return bc.emitted;
}
