/*
 * canon_neon.h - the NEON (AArch64) scanners behind dkd__body_update (internal to canon.c).
 *
 * Same contract as the x86 scanners in canon_simd.h, and the same return value as
 * dkd__canon_scan_*_sse2 for every input: from position i, in the clean state, return e
 * in [i, n) such that [i, e) is canonical as it stands; stop before a bare LF or a CR not
 * followed by LF (both), an HTAB or a SP followed by SP, HTAB, CR or LF (relaxed).
 * Requires 1 <= i < n; reads only p[i - 1] .. p[n - 1], so an unpadded chunk against a
 * guard page is safe. Pure functions: any thread may call them.
 */
#ifndef DKD_CANON_NEON_H
#define DKD_CANON_NEON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define DKD_CANON_HAVE_NEON 1

/* dkd__canon_scan_simple_neon: the scanner for simple canonicalization. */
size_t dkd__canon_scan_simple_neon(const uint8_t *p, size_t i, size_t n);
/* dkd__canon_scan_relaxed_neon: the scanner for relaxed canonicalization. */
size_t dkd__canon_scan_relaxed_neon(const uint8_t *p, size_t i, size_t n);
#endif

#ifdef __cplusplus
}
#endif

#endif
