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
