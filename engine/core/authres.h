/*
 * authres.h - RFC 8601 Authentication-Results formatting for DKIM verdicts, and
 * recognizing a received field that claims our authserv-id (so the milter can remove
 * forged ones, RFC 8601 section 5).
 */
#ifndef DKD_AUTHRES_H
#define DKD_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include <dkimd/engine.h>

#include "arena.h"
#include "span.h"

/*
 * dkd__authres_format builds "Authentication-Results: ID;\r\n\tdkim=..." for the n
 * results (dkim=none when n == 0), without a final CRLF, in arena. NULL on allocation
 * failure.
 */
char *dkd__authres_format(dkd_arena *arena, const char *authserv_id,
                          const dkd_sig_result *results, size_t n);

/*
 * dkd__authres_servid_is tells whether the value of an Authentication-Results field
 * (the text after the colon, folded or not, CRLF or bare LF) names authserv-id id,
 * compared ASCII-case-insensitively. RFC 8601 2.2: CFWS (nested comments, quoted-pairs
 * inside) may come first; the authserv-id is a value (an RFC 2045 token, or a
 * quoted-string whose quoted-pairs are compared unescaped); then CFWS, an optional
 * authres-version (after CFWS only), and ';' or the end. A value that cannot be parsed
 * is not ours (false), and an empty id matches nothing. Reads value only within its
 * span; pure, any thread.
 */
bool dkd__authres_servid_is(dkd_span value, dkd_span id);

#endif
