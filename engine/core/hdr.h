/*
 * hdr.h - splitting a header block into fields, zero-copy.
 *
 * A field is a name, a colon and a value that continues over folded lines (a line
 * starting with SP or HTAB). Line ends may be CRLF or bare LF. 8-bit bytes are kept
 * as they are. The parser never copies: each field is a span into the caller's block.
 */
#ifndef DKD_HDR_H
#define DKD_HDR_H

#include <stdbool.h>
#include <stddef.h>

#include "hdrblock.h" /* dkd__hdr_block_len, where the block ends */
#include "span.h"

typedef struct dkd_field {
    dkd_span raw;   /* the whole field: name through the last line end (CRLF or LF) */
    dkd_span name;  /* field name, without the WSP that may precede the colon */
    dkd_span value; /* after the colon, through the end of the field without the last line end */
} dkd_field;

typedef enum dkd_hdr_status {
    DKD_HDR_OK = 0,
    DKD_HDR_TOO_MANY,  /* more fields than max */
    DKD_HDR_MALFORMED, /* a line that is neither a field nor a continuation; err_off says where */
} dkd_hdr_status;

/*
 * dkd__hdr_parse splits block (a header block, with or without its terminating empty
 * line; a last field without a line end is accepted) into at most max fields.
 * *count gets the number of fields found. A line without a colon, or a continuation
 * line before any field, is DKD_HDR_MALFORMED; verification treats such lines as
 * unusable rather than rejecting the message (see verify.c).
 */
dkd_hdr_status dkd__hdr_parse(dkd_span block, dkd_field *fields, size_t max, size_t *count,
                              size_t *err_off);

/*
 * dkd__hdr_index is dkd__hdr_parse as verification and signing use it: a line that is
 * neither a field nor a fold (an mbox "From " line, garbage) is skipped and the fields
 * around it are kept, because it cannot be a signed header and refusing the message over
 * it would turn a cosmetic defect into a failure. Returns DKD_HDR_OK or DKD_HDR_TOO_MANY.
 */
dkd_hdr_status dkd__hdr_index(dkd_span block, dkd_field *fields, size_t max, size_t *count);

/*
 * dkd__hdr_index_more is dkd__hdr_index resumable: it starts at byte *pos of block with
 * *count fields already in fields[], and on DKD_HDR_TOO_MANY leaves *pos at the field
 * that did not fit, so the caller can give it a larger array (the *count fields found
 * so far copied over) and call again. One pass over the block in all.
 */
dkd_hdr_status dkd__hdr_index_more(dkd_span block, size_t *pos, dkd_field *fields, size_t max,
                                   size_t *count);

#endif
