/*
 * sig.h - parsing one DKIM-Signature header field value into its tags.
 *
 * The parser checks syntax and everything that needs no key and no clock: required
 * tags, v=1, known a= and c=, q= containing dns/txt, d= and s= domain syntax, i= within
 * d=, From in h=, x= not before t=. Policy that depends on configuration (rsa-sha1,
 * expiry against the clock) is the verifier's.
 */
#ifndef DKD_SIG_H
#define DKD_SIG_H

#include <stdbool.h>
#include <stdint.h>

#include <dkimd/reason.h>

#include "arena.h"
#include "span.h"

enum dkd_sig_alg { DKD_ALG_RSA_SHA1 = 1, DKD_ALG_RSA_SHA256, DKD_ALG_ED25519_SHA256 };
enum dkd_hash { DKD_HASH_SHA1 = 1, DKD_HASH_SHA256 };
enum dkd_canon { DKD_CANON_SIMPLE = 0, DKD_CANON_RELAXED = 1 };

enum { DKD_SIG_MAX_H = 128 }; /* more h= entries than this is a syntax error */
enum { DKD_SIG_MAX_B = 1024 }; /* decoded b= bytes: room for RSA-8192 */

typedef struct dkd_sig {
    enum dkd_sig_alg alg;
    enum dkd_hash hash;
    enum dkd_canon canon_header, canon_body;
    /* Raw tag values, borrowed from the header block. a/d/s/i hold the text as written
     * (i= not yet decoded) for reports; "" spans when absent. */
    dkd_span a, d, s, i_raw, b_raw;
    /* i= after dkim-quoted-printable decoding (arena); defaults to "@" d. */
    dkd_span identity;
    dkd_span h_names[DKD_SIG_MAX_H];
    size_t h_count;
    uint8_t b[DKD_SIG_MAX_B];
    size_t b_len;
    uint8_t bh[64];
    size_t bh_len;
    bool has_l, has_t, has_x;
    uint64_t l, t, x;
    /* The b= value's byte range within the field value, to be emptied for hashing. */
    size_t b_value_off, b_value_end;
} dkd_sig;

typedef struct dkd_sig_error {
    enum dkd_reason reason; /* DKD_REASON_OK when the signature parsed */
    char detail[160];       /* "tag c: unknown canonicalization 'foobar'" */
} dkd_sig_error;

/*
 * dkd__sig_parse parses the value of a DKIM-Signature field (the bytes after the
 * colon, folding included). Returns true on success; on failure err says why and sig
 * holds whatever tags were read (a, d, s for the report). Allocates only from arena.
 */
bool dkd__sig_parse(dkd_span value, dkd_sig *sig, dkd_arena *arena, dkd_sig_error *err);

/* dkd__domain_valid checks a d=/s= style name: dot-separated labels of letters,
 * digits, '-', '_' (selectors) or bytes >= 0x80 (RFC 8616 U-labels); no empty labels. */
bool dkd__domain_valid(dkd_span name);

#endif
