/*
 * authres.h - RFC 8601 Authentication-Results formatting for DKIM verdicts.
 */
#ifndef DKD_AUTHRES_H
#define DKD_AUTHRES_H

#include <stddef.h>

#include <dkimd/engine.h>

#include "arena.h"

/*
 * dkd__authres_format builds "Authentication-Results: ID;\r\n\tdkim=..." for the n
 * results (dkim=none when n == 0), without a final CRLF, in arena. NULL on allocation
 * failure.
 */
char *dkd__authres_format(dkd_arena *arena, const char *authserv_id,
                          const dkd_sig_result *results, size_t n);

#endif
