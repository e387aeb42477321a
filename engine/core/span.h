/*
 * span.h - borrowed byte ranges and the consuming getters that read them.
 *
 * A span is {ptr, len} passed by value, never NUL-terminated. Getters consume from the
 * front and return bool; on failure the span is left as it was (BoringSSL CBS style),
 * so a parser can try one form and then another without saving state.
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

/* dkd__span_skip consumes n bytes; false (span unchanged) if fewer remain. */
static inline bool dkd__span_skip(dkd_span *s, size_t n)
{
    if (s->len < n) {
        return false;
    }
    s->ptr += n;
    s->len -= n;
    return true;
}

/*
 * dkd__span_get_until consumes everything before the first sep into *out and the sep
 * itself. Without a sep it returns false and leaves *s unchanged.
 */
static inline bool dkd__span_get_until(dkd_span *s, uint8_t sep, dkd_span *out)
{
    const uint8_t *p = s->len ? memchr(s->ptr, sep, s->len) : NULL;
    if (p == NULL) {
        return false;
    }
    size_t n = (size_t)(p - s->ptr);
    *out = (dkd_span){s->ptr, n};
    s->ptr += n + 1;
    s->len -= n + 1;
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
        s->ptr += s->len;
        s->len = 0;
    }
    return true;
}

/* dkd__span_get_u64 parses 1-20 decimal digits (the whole span); false on overflow. */
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
