/*
 * taglist.c - RFC 6376 section 3.2 tag=value lists (see taglist.h for the grammar).
 *
 * Workload: one DKIM-Signature value (typically 300-800 bytes, 10-14 tags) per
 * signature, one key record per key-cache miss. The parser makes one pass over the
 * input, never allocates, and hands back spans into the caller's buffer. FWS is taken as any run of
 * SP, HTAB, CR and LF: messages reach us with CRLF, bare LF (Unix MTAs) or mixed line endings, and
 * key records carry none, so checking the exact CRLF WSP shape of a fold here would only reject
 * mail that other verifiers accept. Unfolding for hashing is canonicalization's job, not ours.
 */
#include "taglist.h"

#include <string.h>

#include "scan.h"

/* Byte classes, as comparisons rather than a table: the compiler turns these into a
 * few range checks, and there is no table to initialize or share between threads. */
static inline bool is_alpha(uint8_t c)
{
    return (uint8_t)((c | 0x20) - 'a') < 26;
}

static inline bool is_name(uint8_t c)
{
    return is_alpha(c) || (uint8_t)(c - '0') < 10 || c == '_';
}

static dkd_taglist_status fail(dkd_taglist *tl, size_t off, const char *why)
{
    tl->err_off = off;
    tl->err = why;
    return DKD_TAGLIST_SYNTAX;
}

dkd_taglist_status dkd__taglist_parse(dkd_span in, dkd_taglist *tl)
{
    tl->count = 0;
    tl->err_off = 0;
    tl->err = NULL;
    tl->dup = dkd__span(NULL, 0);
    bool have_dup = false;
    uint32_t seen_letters = 0; /* bit k: the one-letter name 'a' + k is in tags[] */

    const uint8_t *p = in.ptr;
    size_t len = in.len;
    size_t i = 0;
    for (;;) {
        while (i < len && dkd__is_fws(p[i])) {
            i++;
        }
        if (i == len) {
            /* End of input: either nothing at all, or only FWS after the final ";",
             * which RFC 6376 allows ("[;]" and the trailing [FWS] of the last spec).
             * An empty list is not a syntax error here: the caller reports which
             * required tags are missing, which tells an operator more. */
            break;
        }
        if (p[i] == ';') {
            return fail(tl, i, "empty tag-spec");
        }
        if (!is_alpha(p[i])) {
            return fail(tl, i, "tag-name must start with a letter");
        }
        size_t name_off = i;
        while (i < len && is_name(p[i])) {
            i++;
        }
        dkd_span name = dkd__span(p + name_off, i - name_off);
        while (i < len && dkd__is_fws(p[i])) {
            i++;
        }
        if (i == len || p[i] != '=') {
            return fail(tl, i,
                        (i < len && p[i] != ';') ? "bad character in tag-name"
                                                 : "missing '=' after tag-name");
        }
        i++;
        size_t value_off = i;
        /* The value runs to the next ';'. Every byte must be VALCHAR or FWS. */
        /* Values are 300-800 bytes of ordinary text for b= and h=: scan.h's run scanner
         * takes them 16 bytes at a time and drops to the byte check only at FWS. */
        i = dkd__scan_tag_value(p, i, len);
        if (i < len && p[i] != ';') {
            return fail(tl, i, "control character in tag-value");
        }
        size_t value_end = i;

        /* Duplicates: most names are one lowercase letter (b, d, s, h, ...), so those
         * are looked up in a bit set; only longer names (bh, and rare others) are
         * compared with the earlier ones. */
        bool dup = false;
        uint8_t letter = (uint8_t)(name.ptr[0] - 'a');
        if (name.len == 1 && letter < 26) {
            dup = (seen_letters >> letter & 1u) != 0;
            seen_letters |= 1u << letter;
        } else {
            for (size_t t = 0; t < tl->count; t++) {
                if (tl->tags[t].name.len == name.len &&
                    memcmp(tl->tags[t].name.ptr, name.ptr, name.len) == 0) {
                    dup = true;
                    break;
                }
            }
        }
        if (dup) {
            /* Keep going: a later syntax error is the more basic fault, and the tags
             * after the duplicate (d=, s=) still help the report. The second occurrence
             * is dropped so find() returns the first. */
            if (!have_dup) {
                tl->dup = name;
                have_dup = true;
            }
        } else {
            if (tl->count == DKD_TAGLIST_MAX) {
                return fail(tl, name_off, "too many tags");
            }
            dkd_tag *t = &tl->tags[tl->count++];
            t->name = name;
            t->value = dkd__span_trim_fws(dkd__span(p + value_off, value_end - value_off));
            t->value_off = value_off;
            t->value_end = value_end;
        }
        if (i == len) {
            break;
        }
        i++; /* the ';' */
    }
    return have_dup ? DKD_TAGLIST_DUPLICATE : DKD_TAGLIST_OK;
}

const dkd_tag *dkd__taglist_find(const dkd_taglist *tl, const char *name)
{
    size_t n = strlen(name);
    for (size_t t = 0; t < tl->count; t++) {
        if (tl->tags[t].name.len == n && memcmp(tl->tags[t].name.ptr, name, n) == 0) {
            return &tl->tags[t];
        }
    }
    return NULL;
}
