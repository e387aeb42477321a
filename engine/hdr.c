/*
 * hdr.c - splitting a message's header block into fields, zero-copy (see hdr.h).
 *
 * Workload: every message passes through here once, before any signature is looked
 * at; a typical block is 2-10 KiB with 20-60 fields, some folded over many lines.
 * The parser walks the block line by line with memchr (the libc version is
 * vectorised) and records spans into the caller's array; it never copies or
 * allocates, in the manner of picohttpparser's parse_headers.
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

/* A name is printable US-ASCII without the colon (RFC 5322 ftext). */
static bool name_valid(const uint8_t *p, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ':') {
            return false;
        }
    }
    return true;
}

dkd_hdr_status dkd__hdr_parse(dkd_span block, dkd_field *fields, size_t max, size_t *count,
                              size_t *err_off)
{
    size_t n = 0;
    size_t pos = 0;
    dkd_field *cur = NULL;
    dkd_hdr_status st = DKD_HDR_OK;

    while (pos < block.len) {
        const uint8_t *line = block.ptr + pos;
        size_t rest = block.len - pos;
        const uint8_t *lf = memchr(line, '\n', rest);
        /* line_len includes the line end; text excludes it. A last line without a
         * line end runs to the end of the block. */
        size_t line_len = lf != NULL ? (size_t)(lf - line) + 1 : rest;
        size_t text = line_len;
        if (lf != NULL) {
            text--;
            if (text > 0 && line[text - 1] == '\r') {
                text--;
            }
        }
        if (lf != NULL && text == 0) {
            break; /* the empty line that ends the header block */
        }

        if (dkd__is_wsp(line[0])) {
            if (cur == NULL) {
                st = DKD_HDR_MALFORMED; /* a continuation with nothing to continue */
                break;
            }
            cur->raw.len += line_len;
            cur->value.len = (size_t)(line + text - cur->value.ptr);
            pos += line_len;
            continue;
        }

        const uint8_t *colon = memchr(line, ':', text);
        if (colon == NULL) {
            st = DKD_HDR_MALFORMED;
            break;
        }
        size_t name_len = (size_t)(colon - line);
        while (name_len > 0 && dkd__is_wsp(line[name_len - 1])) {
            name_len--;
        }
        if (!name_valid(line, name_len)) {
            st = DKD_HDR_MALFORMED;
            break;
        }
        if (n == max) {
            st = DKD_HDR_TOO_MANY;
            break;
        }
        cur = &fields[n++];
        cur->raw = dkd__span(line, line_len);
        cur->name = dkd__span(line, name_len);
        cur->value = dkd__span(colon + 1, (size_t)(line + text - (colon + 1)));
        pos += line_len;
    }

    *count = n;
    if (st != DKD_HDR_OK && err_off != NULL) {
        *err_off = pos; /* the start of the offending line */
    }
    return st;
}

size_t dkd__hdr_block_len(dkd_span msg)
{
    const uint8_t *p = msg.ptr;
    size_t len = msg.len;

    /* A message that opens with an empty line has no header fields: the block is
     * that line alone, and everything after it is body. */
    if (len >= 1 && p[0] == '\n') {
        return 1;
    }
    if (len >= 2 && p[0] == '\r' && p[1] == '\n') {
        return 2;
    }

    /* Otherwise the block ends at the first line end followed by an empty line, with
     * either line end being CRLF or bare LF. */
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *lf = memchr(p + pos, '\n', len - pos);
        if (lf == NULL) {
            break;
        }
        size_t next = (size_t)(lf - p) + 1;
        if (next < len && p[next] == '\n') {
            return next + 1;
        }
        if (next + 1 < len && p[next] == '\r' && p[next + 1] == '\n') {
            return next + 2;
        }
        pos = next;
    }
    return len;
}

dkd_hdr_status dkd__hdr_index(dkd_span block, dkd_field *fields, size_t max, size_t *count)
{
    size_t n = 0;
    dkd_span rest = block;
    for (;;) {
        size_t got = 0, err_off = 0;
        dkd_hdr_status st = dkd__hdr_parse(rest, fields + n, max - n, &got, &err_off);
        n += got;
        if (st != DKD_HDR_MALFORMED) {
            *count = n;
            return st;
        }
        const uint8_t *nl =
            err_off < rest.len ? memchr(rest.ptr + err_off, '\n', rest.len - err_off) : NULL;
        if (nl == NULL) {
            *count = n;
            return DKD_HDR_OK;
        }
        size_t skip = (size_t)(nl - rest.ptr) + 1;
        rest.ptr += skip;
        rest.len -= skip;
    }
}
