/*
 * span.h - borrowed byte ranges and the consuming getters that read them.
 *
 * A span is {ptr, len} passed by value, never NUL-terminated. Getters consume from the
 * front and return bool; on failure the span is left as it was (BoringSSL CBS style),
 * so a parser can try one form and then another without saving state. The engine's
 * parsers and the wire codec (ipc/wire.c) read through this one set of getters; the
 * header is inline-only so that the codec, which links no engine library, can use it.
 */
#ifndef DKD_SPAN_H
#define DKD_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct dkd_span {
    const uint8_t *ptr;
    size_t len;
} dkd_span;

static inline dkd_span dkd__span(const void *ptr, size_t len)
{
    return (dkd_span){(const uint8_t *)ptr, len};
}

static inline dkd_span dkd__span_str(const char *s)
{
    return (dkd_span){(const uint8_t *)s, strlen(s)};
}

static inline bool dkd__is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* FWS bytes: WSP plus the CR and LF of a fold. */
static inline bool dkd__is_fws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static inline uint8_t dkd__lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* dkd__span_eq_nocase compares two spans ASCII-case-insensitively. */
static inline bool dkd__span_eq_nocase(dkd_span a, dkd_span b)
{
    if (a.len != b.len) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        if (dkd__lower(a.ptr[i]) != dkd__lower(b.ptr[i])) {
            return false;
        }
    }
    return true;
}

static inline bool dkd__span_eq_str(dkd_span a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && memcmp(a.ptr, s, n) == 0;
}

static inline bool dkd__span_eq_str_nocase(dkd_span a, const char *s)
{
    return dkd__span_eq_nocase(a, dkd__span_str(s));
}

/* dkd__span_trim_fws drops FWS bytes from both ends. */
static inline dkd_span dkd__span_trim_fws(dkd_span s)
{
    while (s.len > 0 && dkd__is_fws(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && dkd__is_fws(s.ptr[s.len - 1])) {
        s.len--;
    }
    return s;
}

/*
 * ---- the reader ----
 *
 * dkd__span_get is the one primitive under every consuming getter below, as cbs_get is
 * in BoringSSL's CBS: it is the only place that checks a length against what is left
 * and moves the front. The getters are built on it and keep its contract: they return
 * false and leave *s unchanged when the bytes are not there (the output arguments are
 * then unspecified). Integers are big-endian, the wire protocol's byte order.
 */

/* dkd__span_get consumes n bytes and points *out at them; false (*s unchanged) if fewer
 * than n remain. */
static inline bool dkd__span_get(dkd_span *s, const uint8_t **out, size_t n)
{
    if (s->len < n) {
        return false;
    }
    *out = s->ptr;
    s->ptr += n;
    s->len -= n;
    return true;
}

/* dkd__span_skip consumes n bytes; false (span unchanged) if fewer remain. */
static inline bool dkd__span_skip(dkd_span *s, size_t n)
{
    const uint8_t *p;
    return dkd__span_get(s, &p, n);
}

/* dkd__span_get_bytes consumes n bytes into *out, a span of them. */
static inline bool dkd__span_get_bytes(dkd_span *s, size_t n, dkd_span *out)
{
    const uint8_t *p;
    if (!dkd__span_get(s, &p, n)) {
        return false;
    }
    *out = (dkd_span){p, n};
    return true;
}

/* dkd__span_get_be consumes an n-byte (1 <= n <= 8) big-endian unsigned integer. */
static inline bool dkd__span_get_be(dkd_span *s, size_t n, uint64_t *out)
{
    const uint8_t *p;
    if (n > 8 || !dkd__span_get(s, &p, n)) {
        return false;
    }
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        v = v << 8 | p[k];
    }
    *out = v;
    return true;
}

static inline bool dkd__span_get_u8(dkd_span *s, uint8_t *out)
{
    uint64_t v;
    if (!dkd__span_get_be(s, 1, &v)) {
        return false;
    }
    *out = (uint8_t)v;
    return true;
}

static inline bool dkd__span_get_u16be(dkd_span *s, uint16_t *out)
{
    uint64_t v;
    if (!dkd__span_get_be(s, 2, &v)) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

static inline bool dkd__span_get_u32be(dkd_span *s, uint32_t *out)
{
    uint64_t v;
    if (!dkd__span_get_be(s, 4, &v)) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static inline bool dkd__span_get_u64be(dkd_span *s, uint64_t *out)
{
    return dkd__span_get_be(s, 8, out);
}

/*
 * dkd__span_get_prefixed consumes an n-byte big-endian length and that many bytes after
 * it into *out. When either is missing it returns false with *s unchanged: the length is
 * never consumed alone. The _u8/_u16/_u32 forms read the wire protocol's str8, str16
 * and blob32 fields.
 */
static inline bool dkd__span_get_prefixed(dkd_span *s, size_t n, dkd_span *out)
{
    dkd_span t = *s;
    uint64_t len;
    if (!dkd__span_get_be(&t, n, &len) || len > t.len ||
        !dkd__span_get_bytes(&t, (size_t)len, out)) {
        return false;
    }
    *s = t;
    return true;
}

static inline bool dkd__span_get_u8_prefixed(dkd_span *s, dkd_span *out)
{
    return dkd__span_get_prefixed(s, 1, out);
}

static inline bool dkd__span_get_u16_prefixed(dkd_span *s, dkd_span *out)
{
    return dkd__span_get_prefixed(s, 2, out);
}

static inline bool dkd__span_get_u32_prefixed(dkd_span *s, dkd_span *out)
{
    return dkd__span_get_prefixed(s, 4, out);
}

/*
 * dkd__span_get_until consumes everything before the first sep into *out and the sep
 * itself. Without a sep it returns false and leaves *s unchanged.
 */
static inline bool dkd__span_get_until(dkd_span *s, uint8_t sep, dkd_span *out)
{
    const uint8_t *p = s->len ? (const uint8_t *)memchr(s->ptr, sep, s->len) : NULL;
    if (p == NULL) {
        return false;
    }
    size_t n = (size_t)(p - s->ptr);
    *out = (dkd_span){s->ptr, n};
    dkd__span_skip(s, n + 1); /* cannot fail: the sep lies inside *s */
    return true;
}

/*
 * dkd__span_get_item consumes the next sep-separated item (all the rest if there is no
 * sep). Returns false only on an empty span. Used for colon lists (h=, q=, s=).
 */
static inline bool dkd__span_get_item(dkd_span *s, uint8_t sep, dkd_span *out)
{
    if (s->len == 0) {
        return false;
    }
    if (!dkd__span_get_until(s, sep, out)) {
        *out = *s;
        dkd__span_skip(s, s->len);
    }
    return true;
}

/* dkd__span_to_u64 parses 1-20 decimal digits (the whole span); false on overflow. */
static inline bool dkd__span_to_u64(dkd_span s, uint64_t *out)
{
    if (s.len == 0) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c < '0' || c > '9') {
            return false;
        }
        if (v > (UINT64_MAX - (uint64_t)(c - '0')) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return true;
}

#endif
