/*
 * hdrblock.c - the end of a message's header block (see hdrblock.h).
 *
 * Workload: once per whole message, in dkd_split_message, the signer, the daemon's
 * whole-message requests and libdkimd's streaming of large messages. Lines are found
 * with memchr: the block is walked once and only up to its end, so the rest of a large
 * message is never touched.
 */
#include "hdrblock.h"

#include <string.h>

size_t dkd__hdr_block_len(dkd_span msg)
{
    const uint8_t *p = msg.ptr;
    size_t len = msg.len;

    /* A message that opens with an empty line has no header fields: the block is
     * that line alone, and everything after it is body. */
    size_t blank = dkd__hdr_block_blank(p, len);
    if (blank != 0) {
        return blank;
    }

    /* Otherwise the block ends at the first line end followed by an empty line. */
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *lf = memchr(p + pos, '\n', len - pos);
        if (lf == NULL) {
            break;
        }
        size_t next = (size_t)(lf - p) + 1;
        blank = dkd__hdr_block_blank(p + next, len - next);
        if (blank != 0) {
            return next + blank;
        }
        pos = next;
    }
    return len;
}
