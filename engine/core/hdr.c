/*
 * hdr.c - splitting a message's header block into fields, zero-copy (see hdr.h).
 *
 * Workload: every message passes through here once, before any signature is looked
 * at; a typical block is 2-10 KiB with 20-60 fields, some folded over many lines.
 * The parser records spans into the caller's array; it never copies or allocates, in
 * the manner of picohttpparser's parse_headers. Each byte is looked at once: the name
 * is checked up to its colon and the rest of each line skipped to its LF, 16 bytes at
 * a time with SSE2 on x86-64 (lines average ~70 bytes, so a libc memchr call per line
 * cost more in its set-up than in its scan). The caller
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

#if defined(__SSE2__)
#define DKD_HDR_SSE2 1
#include <emmintrin.h>
#endif

/* A name byte is printable US-ASCII without the colon (RFC 5322 ftext). */
static inline bool is_ftext(uint8_t c)
{
    return c >= 0x21 && c <= 0x7e && c != ':';
}

#ifdef DKD_HDR_SSE2
static inline __m128i load16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* Bit k set where byte k of v is not ftext: a signed compare puts the 8-bit bytes,
 * negative as int8, below 0x21 with the controls and SP. */
static inline unsigned not_ftext_mask(__m128i v)
{
    __m128i ok = _mm_cmpgt_epi8(v, _mm_set1_epi8(0x20));
    __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)),
                               _mm_cmpeq_epi8(v, _mm_set1_epi8(':')));
    return (unsigned)_mm_movemask_epi8(_mm_andnot_si128(ok, _mm_set1_epi8(-1))) |
           (unsigned)_mm_movemask_epi8(bad);
}
#endif

/* name_end returns the first i' >= i with line[i'] not ftext, or rest. */
static inline size_t name_end(const uint8_t *line, size_t i, size_t rest)
{
#ifdef DKD_HDR_SSE2
    while (rest - i >= 16) {
        unsigned m = not_ftext_mask(load16(line + i));
        if (m != 0) {
            return i + (size_t)__builtin_ctz(m);
        }
        i += 16;
    }
#endif
    while (i < rest && is_ftext(line[i])) {
        i++;
    }
    return i;
}

/* find_lf returns the first LF in p[0..n), or NULL. */
static inline const uint8_t *find_lf(const uint8_t *p, size_t n)
{
#ifdef DKD_HDR_SSE2
    const __m128i lf = _mm_set1_epi8('\n');
    size_t i = 0;
    while (n - i >= 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(load16(p + i), lf));
        if (m != 0) {
            return p + i + __builtin_ctz(m);
        }
        i += 16;
    }
    if (i < n && n >= 16) {
        /* The last bytes as one block ending at n, the ones already seen masked off. */
        unsigned m =
            (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(load16(p + n - 16), lf)) >> (16 - (n - i));
        return m != 0 ? p + i + __builtin_ctz(m) : NULL;
    }
    for (; i < n; i++) {
        if (p[i] == '\n') {
            return p + i;
        }
    }
    return NULL;
#else
    return memchr(p, '\n', n);
#endif
}

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
            size_t i = name_end(line, 0, rest);
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
        const uint8_t *lf = from < rest ? find_lf(line + from, rest - from) : NULL;
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
