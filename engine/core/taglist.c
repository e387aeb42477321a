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

#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* VALCHAR (%x21-3A / %x3C-7E), bytes >= 0x80 (RFC 8616 UTF-8), or FWS. */
static inline bool is_value_byte(uint8_t c)
{
    return (c >= 0x21 && c != ';' && c != 0x7F) || dkd__is_fws(c);
}

/*
 * value_end returns the offset of the first byte at or after i that is not a value byte
 * (the ';' that ends the value, a control byte, or len). Values are 300-800 bytes of
 * ordinary text for b= and h=, so with SSE2 (every x86-64) 16 bytes are checked at once
 * and only the rare FWS control bytes (CR, LF, HTAB inside a fold) and the end drop to
 * the byte check; the byte loop is the specification and the only path elsewhere.
 */
static size_t value_end(const uint8_t *p, size_t len, size_t i)
{
#ifdef __SSE2__
    const __m128i lo = _mm_set1_epi8(0x21);
    const __m128i semi = _mm_set1_epi8(';');
    const __m128i del = _mm_set1_epi8(0x7F);
    while (len - i >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        /* x >= 0x21 unsigned (8-bit bytes are value bytes) is max(x, 0x21) == x. */
        __m128i ok = _mm_cmpeq_epi8(_mm_max_epu8(x, lo), x);
        __m128i stop = _mm_or_si128(_mm_cmpeq_epi8(x, semi), _mm_cmpeq_epi8(x, del));
        __m128i bad = _mm_or_si128(_mm_andnot_si128(ok, _mm_set1_epi8(-1)), stop);
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask == 0) {
            i += 16;
            continue;
        }
        i += (size_t)__builtin_ctz(mask);
        if (!dkd__is_fws(p[i])) {
            return i;
        }
        i++;
    }
#endif
    while (i < len && is_value_byte(p[i])) {
        i++;
    }
    return i;
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
        i = value_end(p, len, i);
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
