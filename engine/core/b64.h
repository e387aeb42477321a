/*
 * b64.h - base64 decoding for DKIM tag values (b=, bh=, p=).
 */
#ifndef DKD_B64_H
#define DKD_B64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

/*
 * dkd__b64_decode decodes in into out (capacity out_cap; in.len / 4 * 3 + 3 is always
 * enough), skipping FWS anywhere (RFC 6376 section 3.5 allows FWS inside b= and bh=).
 * Padding is optional at the end only; anything after padding, a character outside the
 * alphabet, or a dangling single character fails. Returns false on any error, and then
 * *out_len is unspecified.
 */
bool dkd__b64_decode(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len);

/* dkd__b64_decode without the SIMD path: the reference the tests compare it with. */
bool dkd__b64_decode_scalar(dkd_span in, uint8_t *out, size_t out_cap, size_t *out_len);

/*
 * dkd__b64_encode writes the padded base64 of in (4 * ((len + 2) / 3) bytes) into out,
 * which must have that room, and returns the number of bytes written. Used by the
 * signer and by tests.
 */
size_t dkd__b64_encode(const uint8_t *in, size_t len, char *out);

#endif
