/*
 * authres.c - the Authentication-Results header field (RFC 8601) for DKIM verdicts.
 *
 * One resinfo per signature, top-down, each on its own folded line so operators can
 * read them:
 *
 *   Authentication-Results: mx.example.net;
 *   	dkim=pass (2048-bit key) header.d=example.com header.i=@example.com
 *   	 header.s=sel header.a=rsa-sha256 header.b=AbCdEfGh
 *
 * Values are written bare when RFC 8601's grammar allows it (a token, or
 * local-part@domain for header.i) and as quoted-strings otherwise, so a hostile d= such as
 * "example.com;dkim=pass" can never forge a second result.
 *
 * dkd__authres_servid_is reads the other way: whether a field that arrived with the
 * message claims our authserv-id, one call per Authentication-Results field of each
 * inbound message (a few at most), so it is a plain byte walk with no copy.
 */
#include "authres.h"

#include "buf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The field is built in the message's arena by the byte builder (buf.h): appends never
 * fail visibly, and dkd__buf_cstr reports once at the end. */
static void *arena_alloc(void *arena, size_t n)
{
    return dkd__arena_alloc(arena, n);
}

/* MIME token characters (RFC 2045): printable ASCII minus tspecials. UTF-8 bytes are
 * allowed as RFC 8616 permits them in these values. */
static bool is_token_char(unsigned char c)
{
    if (c >= 0x80) {
        return true;
    }
    if (c <= 0x20 || c == 0x7f) {
        return false;
    }
    return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* atext (RFC 5322) plus '.', for the local-part@domain form of header.i. */
static bool is_pvalue_char(unsigned char c)
{
    if (c >= 0x80) {
        return true;
    }
    if (c <= 0x20 || c == 0x7f) {
        return false;
    }
    return strchr("()<>,;:\\\"[]", c) == NULL;
}

static void put_value(dkd_buf *b, const char *v, bool address_form)
{
    bool bare = v[0] != '\0';
    size_t ats = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (address_form && *p == '@') {
            ats++;
        }
        bool ok = address_form ? is_pvalue_char(*p) : is_token_char(*p);
        if (!ok) {
            bare = false;
        }
    }
    if (ats > 1) {
        bare = false;
    }
    if (bare) {
        dkd__buf_put_str(b, v);
        return;
    }
    dkd__buf_append(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            dkd__buf_append(b, "\\", 1);
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            continue; /* never write control bytes into a header */
        }
        dkd__buf_append(b, p, 1);
    }
    dkd__buf_append(b, "\"", 1);
}

static void put_comment_text(dkd_buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '(' || *p == ')' || *p == '\\') {
            dkd__buf_append(b, "\\", 1);
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            continue;
        }
        dkd__buf_append(b, p, 1);
    }
}

static void put_prop(dkd_buf *b, const char *name, const char *value, bool address_form)
{
    if (value == NULL || value[0] == '\0') {
        return;
    }
    dkd__buf_put_str(b, " ");
    dkd__buf_put_str(b, name);
    dkd__buf_put_str(b, "=");
    put_value(b, value, address_form);
}

static void put_resinfo(dkd_buf *b, const dkd_sig_result *r)
{
    dkd__buf_put_str(b, "dkim=");
    dkd__buf_put_str(b, dkd_result_name(r->result));

    /* The comment: the reason code (omitted on pass), then key facts. */
    char parts[4][48];
    size_t nparts = 0;
    if (r->result != DKD_RESULT_PASS) {
        snprintf(parts[nparts++], sizeof parts[0], "%s", dkd_reason_code(r->reason));
    }
    if (r->key_bits > 0) {
        snprintf(parts[nparts++], sizeof parts[0], "%u-bit key", r->key_bits);
    }
    if (r->key_bits > 0 && r->dnssec_secure) {
        snprintf(parts[nparts++], sizeof parts[0], "dnssec secure");
    }
    if (r->key_bits > 0 && r->key_stale) {
        snprintf(parts[nparts++], sizeof parts[0], "stale key");
    }
    if (nparts > 0) {
        dkd__buf_put_str(b, " (");
        for (size_t i = 0; i < nparts; i++) {
            if (i > 0) {
                dkd__buf_put_str(b, "; ");
            }
            put_comment_text(b, parts[i]);
        }
        dkd__buf_put_str(b, ")");
    }
    put_prop(b, "header.d", r->d, false);
    put_prop(b, "header.i", r->i, true);
    put_prop(b, "header.s", r->s, false);
    put_prop(b, "header.a", r->a, false);
    put_prop(b, "header.b", r->b_prefix, false);
}

char *dkd__authres_format(dkd_arena *arena, const char *authserv_id, const dkd_sig_result *results,
                          size_t n)
{
    dkd_buf b;
    dkd__buf_init_alloc(&b, arena_alloc, arena);
    dkd__buf_put_str(&b, "Authentication-Results: ");
    put_value(&b, authserv_id && authserv_id[0] ? authserv_id : "localhost", false);
    dkd__buf_put_str(&b, ";");
    if (n == 0) {
        dkd__buf_put_str(&b, "\r\n\tdkim=none (message not signed)");
    }
    for (size_t i = 0; i < n; i++) {
        dkd__buf_put_str(&b, i == 0 ? "\r\n\t" : ";\r\n\t");
        put_resinfo(&b, &results[i]);
    }
    return dkd__buf_cstr(&b);
}

/* ---- recognizing our own field (RFC 8601 5: a received field that claims our
 * authserv-id is forged, and the milter removes it) ----
 *
 * Erring towards "ours" is the safe direction here: a field we wrongly take as ours is
 * removed, one we wrongly take as someone else's reaches the reader as our verdict. So
 * line ends count as folding wherever FWS may be (CRLF, bare LF or a lone CR), and only
 * what no reader could take for an authserv-id - an unterminated comment or
 * quoted-string, a quoted-pair of a control byte - is refused outright. */

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* is_quotable: the byte after a backslash (RFC 5322 quoted-pair: VCHAR or WSP; 8-bit
 * as RFC 6532 allows). A quoted line end or control byte unfolds to nothing sensible. */
static bool is_quotable(uint8_t c)
{
    return c == ' ' || c == '\t' || (c > 0x20 && c != 0x7f);
}

/* get_comment consumes a comment, nested ones and quoted-pairs inside; *s starts at its
 * '('. False (*s unchanged) when it does not end. */
static bool get_comment(dkd_span *s)
{
    dkd_span t = *s;
    size_t depth = 0;
    do {
        uint8_t c, q;
        if (!dkd__span_get_u8(&t, &c)) {
            return false;
        }
        if (c == '\\' && (!dkd__span_get_u8(&t, &q) || !is_quotable(q))) {
            return false;
        }
        depth += c == '(';
        depth -= c == ')';
    } while (depth > 0);
    *s = t;
    return true;
}

/* get_cfws consumes any CFWS; *any says whether there was some. False (*s unchanged) on
 * a comment that does not end. */
static bool get_cfws(dkd_span *s, bool *any)
{
    dkd_span t = *s;
    *any = false;
    while (t.len > 0) {
        if (t.ptr[0] == '(') {
            if (!get_comment(&t)) {
                return false;
            }
        } else if (dkd__is_fws(t.ptr[0])) {
            dkd__span_skip(&t, 1);
        } else {
            break;
        }
        *any = true;
    }
    *s = t;
    return true;
}

/* get_quoted_eq consumes a quoted-string (*s at its '"') and sets *eq to whether its
 * content, quoted-pairs unescaped and folding line ends removed, equals id
 * case-insensitively. Compared as it is read, so nothing is copied. */
static bool get_quoted_eq(dkd_span *s, dkd_span id, bool *eq)
{
    dkd_span t = *s;
    size_t k = 0;
    bool same = true;
    dkd__span_skip(&t, 1);
    for (;;) {
        uint8_t c;
        if (!dkd__span_get_u8(&t, &c)) {
            return false;
        }
        if (c == '"') {
            break;
        }
        if (c == '\r' || c == '\n') {
            continue; /* unfolding: the WSP after the line end stays */
        }
        if (c == '\\' && (!dkd__span_get_u8(&t, &c) || !is_quotable(c))) {
            return false;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
        same = same && k < id.len && dkd__lower(c) == dkd__lower(id.ptr[k]);
        k++;
    }
    *eq = same && k == id.len;
    *s = t;
    return true;
}

/* get_token consumes a non-empty RFC 2045 token into *out. */
static bool get_token(dkd_span *s, dkd_span *out)
{
    size_t n = 0;
    while (n < s->len && is_token_char(s->ptr[n])) {
        n++;
    }
    return n > 0 && dkd__span_get_bytes(s, n, out);
}

bool dkd__authres_servid_is(dkd_span value, dkd_span id)
{
    if (id.len == 0) {
        return false; /* an empty id names no server */
    }
    dkd_span s = value, tok;
    bool sep, eq;
    if (!get_cfws(&s, &sep)) {
        return false;
    }
    if (s.len > 0 && s.ptr[0] == '"') {
        if (!get_quoted_eq(&s, id, &eq)) {
            return false;
        }
    } else {
        if (!get_token(&s, &tok)) {
            return false;
        }
        eq = dkd__span_eq_nocase(tok, id);
    }
    if (!eq || !get_cfws(&s, &sep)) {
        return false;
    }
    /* authres-version is [CFWS authres-version]: without CFWS before it, '"mx"1' is an
     * id followed by junk, not version 1. */
    if (sep && s.len > 0 && is_digit(s.ptr[0])) {
        while (s.len > 0 && is_digit(s.ptr[0])) {
            dkd__span_skip(&s, 1);
        }
        if (!get_cfws(&s, &sep)) {
            return false;
        }
    }
    return s.len == 0 || s.ptr[0] == ';';
}
