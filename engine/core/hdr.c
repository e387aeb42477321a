/*
 * hdr.c - splitting a message's header block into fields, zero-copy (see hdr.h).
 *
 * Workload: every message passes through here once, before any signature is looked
 * at; a typical block is 2-10 KiB with 20-60 fields, some folded over many lines.
 * The parser records spans into the caller's array; it never copies or allocates, in
 * the manner of picohttpparser's parse_headers. Each byte is looked at once: the name
 * is checked up to its colon and the rest of each line skipped to its LF, 16 bytes at
 * a time by scan.h's run scanners (SSE2, NEON; lines average ~70 bytes, so a libc memchr
 * call per line cost more in its set-up than in its scan). The caller
 * sizes nothing in advance: dkd__hdr_index_more stops when the array is full and
 * resumes where it stopped, so the verifier grows its index instead of counting lines
 * in a pass of its own.
 *
 * Decisions beyond RFC 5322's grammar, because real mail is not always well formed:
 *  - a bare LF ends a line like CRLF does; a CR not followed by LF is a value byte;
 *  - WSP between the field name and the colon is allowed (obs-fields, RFC 5322 4.5.1)
 *    and is not part of the name;
 *  - 8-bit bytes in values are kept; in names they make the line malformed, since
 *    header names are matched against h= and a name we cannot compare is useless.
 */
#include "hdr.h"

#include <string.h>

#include "scan.h"

/*
 * parse_from is dkd__hdr_parse starting at *pos with n fields already in fields[]; it
 * leaves *pos at the line where it stopped (the offending line on MALFORMED, the field
 * that did not fit on TOO_MANY, the end of the block or its empty line on OK).
 */
static dkd_hdr_status parse_from(dkd_span block, size_t *pos_io, dkd_field *fields, size_t max,
                                 size_t *n_io)
{
    const uint8_t *p = block.ptr;
    const size_t len = block.len;
    size_t pos = *pos_io;
    size_t n = *n_io;
    dkd_field *cur = NULL;
    dkd_hdr_status st = DKD_HDR_OK;

    while (pos < len) {
        const uint8_t *line = p + pos;
        size_t rest = len - pos;
        uint8_t c0 = line[0];
        if (dkd__hdr_block_blank(line, rest) != 0) {
            break; /* the empty line that ends the header block */
        }
        size_t from; /* where the search for the line end starts */
        if (dkd__is_wsp(c0)) {
            if (cur == NULL) {
                st = DKD_HDR_MALFORMED; /* a continuation with nothing to continue */
                break;
            }
            from = 1;
        } else {
            /* name = ftext+, then optional WSP, then the colon; anything else (no colon
             * on the line, a control or 8-bit byte before it) makes the line malformed. */
            size_t i = dkd__scan_ftext(line, 0, rest);
            size_t name_len = i;
            while (i < rest && dkd__is_wsp(line[i])) {
                i++;
            }
            if (name_len == 0 || i == rest || line[i] != ':') {
                st = DKD_HDR_MALFORMED;
                break;
            }
            if (n == max) {
                st = DKD_HDR_TOO_MANY;
                break;
            }
            cur = &fields[n++];
            cur->name = dkd__span(line, name_len);
            cur->value.ptr = line + i + 1;
            cur->raw.ptr = line;
            cur->raw.len = 0;
            from = i + 1;
        }
        size_t lf_at = dkd__scan_lf(line, from, rest);
        const uint8_t *lf = lf_at < rest ? line + lf_at : NULL;
        /* line_len includes the line end; text excludes it. A last line without a line
         * end runs to the end of the block. */
        size_t line_len = lf != NULL ? (size_t)(lf - line) + 1 : rest;
        size_t text = line_len;
        if (lf != NULL) {
            text--;
            if (text > 0 && line[text - 1] == '\r') {
                text--;
            }
        }
        /* The value ends at the text end of the field's last line so far; the colon is
         * within the first line's text, so this never runs backwards. */
        cur->value.len = (size_t)(line + text - cur->value.ptr);
        cur->raw.len += line_len;
        pos += line_len;
    }

    *pos_io = pos;
    *n_io = n;
    return st;
}

dkd_hdr_status dkd__hdr_parse(dkd_span block, dkd_field *fields, size_t max, size_t *count,
                              size_t *err_off)
{
    size_t pos = 0, n = 0;
    dkd_hdr_status st = parse_from(block, &pos, fields, max, &n);
    *count = n;
    if (st != DKD_HDR_OK && err_off != NULL) {
        *err_off = pos; /* the start of the offending line */
    }
    return st;
}

dkd_hdr_status dkd__hdr_index_more(dkd_span block, size_t *pos, dkd_field *fields, size_t max,
                                   size_t *count)
{
    for (;;) {
        dkd_hdr_status st = parse_from(block, pos, fields, max, count);
        if (st != DKD_HDR_MALFORMED) {
            return st;
        }
        /* Skip the malformed line and go on with the fields after it. */
        const uint8_t *nl = memchr(block.ptr + *pos, '\n', block.len - *pos);
        if (nl == NULL) {
            *pos = block.len;
            return DKD_HDR_OK;
        }
        *pos = (size_t)(nl - block.ptr) + 1;
    }
}

dkd_hdr_status dkd__hdr_index(dkd_span block, dkd_field *fields, size_t max, size_t *count)
{
    size_t pos = 0;
    *count = 0;
    return dkd__hdr_index_more(block, &pos, fields, max, count);
}
