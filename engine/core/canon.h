/*
 * canon.h - RFC 6376 section 3.4 canonicalization, fed straight into a hash.
 *
 * Header fields are canonicalized one at a time into the header hash. The body is a
 * stream: dkd__body_update may be called with chunks split anywhere (inside a CRLF,
 * inside a whitespace run, inside trailing blank lines) and the canonical bytes hashed
 * are the same as for the whole body at once. dkd__body_update_scalar is the reference;
 * dkd__body_update runs the implementation the body was started with (the fastest this
 * CPU has, or the one the engine's configuration names), which must produce the same
 * bytes.
 *
 * Line ends: a bare LF is taken as CRLF; a CR not followed by LF is an ordinary byte.
 */
#ifndef DKD_CANON_H
#define DKD_CANON_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <dkimd/engine.h>

#include "sha256.h"
#include "sig.h"
#include "span.h"

/*
 * The sink receives canonical bytes in order. A call may be of any length: canon code
 * batches small pieces (a few KiB per call), and the body path may also pass a long run
 * of bytes straight from the caller's chunk (no copy) when the input is already
 * canonical there. p is valid only during the call; n > 0.
 */
typedef void (*dkd_canon_sink_fn)(void *sink_arg, const uint8_t *p, size_t n);

/*
 * dkd__canon_header writes the canonical form of one header field (raw = name through
 * its line end, as dkd_field.raw) to sink. With with_crlf false the final CRLF is left
 * out (the DKIM-Signature field itself). skip_off/skip_end (relative to raw.ptr) is a
 * byte range to leave out (the b= value); pass 0, 0 for none.
 */
void dkd__canon_header(enum dkd_canon canon, dkd_span raw, size_t skip_off, size_t skip_end,
                       bool with_crlf, dkd_canon_sink_fn sink, void *sink_arg);

/* Body canonicalization implementations: enum dkd_canon_impl in <dkimd/engine.h> (the
 * engine's configuration chooses one); AUTO is the best this CPU runs. */

/* Body canonicalization state; plain data, no allocation. */
typedef struct dkd_body_canon {
    enum dkd_canon canon;
    enum dkd_canon_impl impl; /* never AUTO once initialised */
    bool cr_pending;          /* last byte seen was CR; LF may follow in the next chunk */
    bool wsp_pending;         /* relaxed: WSP seen on this line, not yet emitted */
    bool line_has_data;       /* current line has emitted content */
    uint64_t blank_lines;     /* empty lines held back: they count only if text follows */
    uint64_t limit;           /* l=, or UINT64_MAX */
    uint64_t emitted;         /* canonical bytes produced (counted past the limit too) */
    dkd_canon_sink_fn sink;
    void *sink_arg;
    dkd_sha256 *sha; /* fused: canonical bytes go into this SHA-256, not to sink; or NULL */
    size_t buf_len;
    uint8_t buf[4096];
} dkd_body_canon;

/* dkd__body_init starts a body with the best implementation for this CPU
 * (dkd__canon_impl_best, asked on each call; any thread may call). */
void dkd__body_init(dkd_body_canon *bc, enum dkd_canon canon, uint64_t limit,
                    dkd_canon_sink_fn sink, void *sink_arg);
/* dkd__body_init_impl starts a body with impl, which the caller has resolved (not AUTO)
 * and checked with dkd__canon_impl_supported: the engine does both once, at
 * dkd_engine_new, so no message asks the CPU again. */
void dkd__body_init_impl(dkd_body_canon *bc, enum dkd_canon canon, uint64_t limit,
                         enum dkd_canon_impl impl, dkd_canon_sink_fn sink, void *sink_arg);
/* dkd__body_set_impl forces one implementation (tests, benchmarks) right after init;
 * false, and bc unchanged, when this CPU or build cannot run it. */
bool dkd__body_set_impl(dkd_body_canon *bc, enum dkd_canon_impl impl);
/* dkd__body_set_sha256 makes the body hash itself (right after init): the canonical
 * bytes go into sha (initialised by the caller, who finalises it after dkd__body_final)
 * instead of to the sink, and the relaxed block rewriter compresses its output as it
 * writes it (canon_simd.c). False, and bc unchanged, without SHA-NI
 * (dkd__sha256_available); sha is borrowed until dkd__body_final returns. */
bool dkd__body_set_sha256(dkd_body_canon *bc, dkd_sha256 *sha);
/* dkd__body_use_sha256 is dkd__body_set_sha256 for a caller that knows the CPU runs
 * SHA-NI (the engine, which asked once at dkd_engine_new): no check, no CPUID. */
void dkd__body_use_sha256(dkd_body_canon *bc, dkd_sha256 *sha);
/* dkd__canon_impl_supported is true when this CPU and build run impl (AUTO: false);
 * dkd__canon_impl_best is what AUTO resolves to here; both ask the CPU on each call and
 * keep no state. dkd__canon_impl_name names one ("?" for an unknown value). */
bool dkd__canon_impl_supported(enum dkd_canon_impl impl);
enum dkd_canon_impl dkd__canon_impl_best(void);
const char *dkd__canon_impl_name(enum dkd_canon_impl impl);

/* dkd__body_update feeds the next chunk (n may be 0). Only bytes [p, p + n) are read:
 * chunks need no padding. */
void dkd__body_update(dkd_body_canon *bc, const uint8_t *p, size_t n);
/* dkd__body_update_scalar is the reference byte-at-a-time state machine (the spec). */
void dkd__body_update_scalar(dkd_body_canon *bc, const uint8_t *p, size_t n);
/* dkd__body_final flushes; afterwards bc->emitted is the full canonical length and
 * min(emitted, limit) bytes went to the sink. */
void dkd__body_final(dkd_body_canon *bc);

#endif
