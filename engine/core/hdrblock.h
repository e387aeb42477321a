/*
 * hdrblock.h - where a message's header block ends: the one rule the engine, the signer
 * and libdkimd all use.
 *
 * The block ends with the first empty line, either line end being CRLF or a bare LF;
 * a message that opens with an empty line has no header fields. This module is pure
 * (no allocation, no I/O, libc's memchr only) and is compiled into libdkimd as well as
 * the core, so a client cuts a message exactly where the daemon does.
 */
#ifndef DKD_HDRBLOCK_H
#define DKD_HDRBLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "span.h"

/*
 * dkd__hdr_block_blank returns the length of the empty line at the start of p[0..len):
 * 1 for a bare LF, 2 for CRLF, 0 when p does not start with an empty line. Inline: the
 * header parser asks it at the start of every line.
 */
static inline size_t dkd__hdr_block_blank(const uint8_t *p, size_t len)
{
    if (len >= 1 && p[0] == '\n') {
        return 1;
    }
    if (len >= 2 && p[0] == '\r' && p[1] == '\n') {
        return 2;
    }
    return 0;
}

/* dkd__hdr_block_len returns the header block length of a message, through the empty
 * line (CRLF CRLF, LF LF or mixed), or the whole input when there is none. */
size_t dkd__hdr_block_len(dkd_span msg);

#endif
