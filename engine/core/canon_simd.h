/*
 * canon_simd.h - the SIMD scanners behind dkd__body_update (internal to canon.c).
 *
 * A scanner finds how far the body chunk is already canonical: from position i, in the
 * clean state (no CR or WSP pending, no blank lines held back), the bytes [i, e) it
 * returns are exactly the canonical bytes the reference would produce for them, so
 * canon.c passes them to the sink as they are. It stops before the first byte that
 * needs the state machine:
 *   both:    a bare LF, a CR not followed by LF;
 *   relaxed: any HTAB, and a SP followed by SP, HTAB, CR or LF (runs, WSP at line end).
 * Blank lines (CRLF right after LF) do not stop it: they are canonical as they stand if
 * content follows; canon.c steps back over blank lines that end a run, whose fate is
 * not known yet. The cut e is never just after a CR or (relaxed) a SP, so the state
 * after [i, e) is clean again: at the start of a line when p[e - 1] is LF, in one
 * otherwise. p[i - 1] stands for the state at i: LF at a line start, else not CR.
 *
 * Contract: 1 <= i < n; reads only p[i - 1] .. p[n - 1] (whole blocks that end inside
 * the chunk, so an unpadded chunk against a guard page is safe); returns e in [i, n).
 */
#ifndef DKD_CANON_SIMD_H
#define DKD_CANON_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DKD_CANON_HAVE_X86 1

size_t dkd__canon_scan_simple_sse2(const uint8_t *p, size_t i, size_t n);
size_t dkd__canon_scan_relaxed_sse2(const uint8_t *p, size_t i, size_t n);
size_t dkd__canon_scan_simple_avx2(const uint8_t *p, size_t i, size_t n);
size_t dkd__canon_scan_relaxed_avx2(const uint8_t *p, size_t i, size_t n);

/*
 * dkd__canon_relaxed_blocks_avx2 goes further than the relaxed scanner: from i, in the
 * clean state, it rewrites whole 64-byte blocks without stopping at the fixes relaxed
 * makes on ordinary text (WSP runs to one SP, HTAB to SP, WSP before a line end dropped,
 * a bare LF to CRLF), writing the canonical bytes to out[*out_len ..] (bytes that need
 * no change may be held back: see the return). It ends before anything else: a lone
 * CR, a WSP run filling a whole block, blank lines with no content after them in the
 * block, the chunk's last 64 bytes, less than 400 bytes of room in out. Every cut lies
 * after an LF or after a content byte (never after CR or WSP).
 *
 * Contract: 1 <= i, p[i - 1] is neither CR nor WSP, *line_has_data is the state at i
 * (and no blank lines are held back unless it is true); reads p[i] .. p[n - 1].
 * Returns e in [i, n): the bytes [i, e) are written (at most 2 output bytes per input
 * byte), *line_has_data is the state at e.
 */
size_t dkd__canon_relaxed_blocks_avx2(const uint8_t *p, size_t i, size_t n, bool *line_has_data,
                                      uint8_t *out, size_t *out_len, size_t out_cap);
/* The same with AVX-512BW compares and VBMI2's VPCOMPRESSB. */
size_t dkd__canon_relaxed_blocks_avx512(const uint8_t *p, size_t i, size_t n, bool *line_has_data,
                                        uint8_t *out, size_t *out_len, size_t out_cap);

/*
 * dkd__canon_relaxed_blocks_*_sha: the same, fused with SHA-256 on SHA-NI (only when
 * dkd__sha256_available()): out is scratch (the caller's empty batch, *out_len == 0 on
 * entry), every byte written goes into sha (after the bytes sha already holds), and
 * *out_len is set to how many were written. The hash runs inside the rewrite loop, block
 * by block, so the two overlap in the CPU. Unchanged blocks are not handed back to the
 * scanner (that saves a copy, but here the rewrite is hidden under the hash anyway), so
 * these also take text that is canonical as it stands.
 */
size_t dkd__canon_relaxed_blocks_avx2_sha(const uint8_t *p, size_t i, size_t n,
                                          bool *line_has_data, uint8_t *out, size_t *out_len,
                                          size_t out_cap, dkd_sha256 *sha);
size_t dkd__canon_relaxed_blocks_avx512_sha(const uint8_t *p, size_t i, size_t n,
                                            bool *line_has_data, uint8_t *out, size_t *out_len,
                                            size_t out_cap, dkd_sha256 *sha);
/* dkd__canon_simple_blocks_*: the same contracts for simple canonicalization, whose
 * only fix is a bare LF to CRLF (every other byte goes out as it is). */
size_t dkd__canon_simple_blocks_avx2(const uint8_t *p, size_t i, size_t n, bool *line_has_data,
                                     uint8_t *out, size_t *out_len, size_t out_cap);
size_t dkd__canon_simple_blocks_avx512(const uint8_t *p, size_t i, size_t n, bool *line_has_data,
                                       uint8_t *out, size_t *out_len, size_t out_cap);
size_t dkd__canon_simple_blocks_avx2_sha(const uint8_t *p, size_t i, size_t n,
                                         bool *line_has_data, uint8_t *out, size_t *out_len,
                                         size_t out_cap, dkd_sha256 *sha);
size_t dkd__canon_simple_blocks_avx512_sha(const uint8_t *p, size_t i, size_t n,
                                           bool *line_has_data, uint8_t *out, size_t *out_len,
                                           size_t out_cap, dkd_sha256 *sha);
/* dkd__cpu_has_avx2 is true when the CPU and the OS (YMM state saved) run AVX2. */
bool dkd__cpu_has_avx2(void);
/* dkd__cpu_has_avx512_vbmi2: AVX-512BW and VBMI2, with the OS saving ZMM state. */
bool dkd__cpu_has_avx512_vbmi2(void);
#endif

#endif
