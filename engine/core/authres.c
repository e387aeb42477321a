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
 */
#include "authres.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A growable string in the arena with a sticky error: appends never fail visibly. */
typedef struct sbuf {
    dkd_arena *arena;
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + more + 1) {
        cap *= 2;
    }
    char *p = dkd__arena_alloc(b->arena, cap);
    if (p == NULL) {
        b->failed = true;
        return;
    }
    if (b->len > 0) {
        memcpy(p, b->p, b->len);
    }
    b->p = p;
    b->cap = cap;
}

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->failed) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
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

static void put_value(sbuf *b, const char *v, bool address_form)
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
        sb_puts(b, v);
        return;
    }
    sb_putn(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            sb_putn(b, "\\", 1);
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            continue; /* never write control bytes into a header */
        }
        sb_putn(b, p, 1);
    }
    sb_putn(b, "\"", 1);
}

static void put_comment_text(sbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '(' || *p == ')' || *p == '\\') {
            sb_putn(b, "\\", 1);
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            continue;
        }
        sb_putn(b, p, 1);
    }
}

static void put_prop(sbuf *b, const char *name, const char *value, bool address_form)
{
    if (value == NULL || value[0] == '\0') {
        return;
    }
    sb_puts(b, " ");
    sb_puts(b, name);
    sb_puts(b, "=");
    put_value(b, value, address_form);
}

static void put_resinfo(sbuf *b, const dkd_sig_result *r)
{
    sb_puts(b, "dkim=");
    sb_puts(b, dkd_result_name(r->result));

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
        sb_puts(b, " (");
        for (size_t i = 0; i < nparts; i++) {
            if (i > 0) {
                sb_puts(b, "; ");
            }
            put_comment_text(b, parts[i]);
        }
        sb_puts(b, ")");
    }
    put_prop(b, "header.d", r->d, false);
    put_prop(b, "header.i", r->i, true);
    put_prop(b, "header.s", r->s, false);
    put_prop(b, "header.a", r->a, false);
    put_prop(b, "header.b", r->b_prefix, false);
}

char *dkd__authres_format(dkd_arena *arena, const char *authserv_id,
                          const dkd_sig_result *results, size_t n)
{
    sbuf b = {.arena = arena};
    sb_puts(&b, "Authentication-Results: ");
    put_value(&b, authserv_id && authserv_id[0] ? authserv_id : "localhost", false);
    sb_puts(&b, ";");
    if (n == 0) {
        sb_puts(&b, "\r\n\tdkim=none (message not signed)");
    }
    for (size_t i = 0; i < n; i++) {
        sb_puts(&b, i == 0 ? "\r\n\t" : ";\r\n\t");
        put_resinfo(&b, &results[i]);
    }
    return b.failed ? NULL : b.p;
}
