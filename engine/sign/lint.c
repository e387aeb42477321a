/*
 * lint.c - the key record linter behind `dkimctl check-record` (dkd_record_lint): reads
 * a DKIM key record tag by tag and reports every finding - syntax, unknown or obsolete
 * tags, revoked or weak keys, flags that make verifiers fail - with its byte offset.
 *
 * Workload: one record per call, typed or pasted by a person; a few hundred bytes. What
 * matters is that the linter reads records with the same tag-list parser and key parser
 * the verifier uses, so it never disagrees with dkimd about what a record means.
 */
#include <dkimd/sign.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "key.h"
#include "span.h"
#include "taglist.h"

typedef struct lint {
    dkd_lint_fn fn;
    void *arg;
    int worst;
} lint;

__attribute__((format(printf, 6, 7))) static void report(lint *l, enum dkd_lint_level level,
                                                         const char *code, dkd_span tag,
                                                         size_t off, const char *fmt, ...)
{
    char msg[256], tagbuf[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t tn = tag.len < sizeof tagbuf - 1 ? tag.len : sizeof tagbuf - 1;
    for (size_t i = 0; i < tn; i++) {
        tagbuf[i] = tag.ptr[i] >= 0x20 && tag.ptr[i] < 0x7f ? (char)tag.ptr[i] : '?';
    }
    tagbuf[tn] = '\0';
    dkd_lint_finding f = {level, code, tagbuf, off, msg};
    if ((int)level > l->worst) {
        l->worst = (int)level;
    }
    l->fn(l->arg, &f);
}

/* shown copies a value for a message, replacing unprintable bytes. */
static const char *shown(dkd_span v, char *buf, size_t cap)
{
    size_t n = v.len < cap - 4 ? v.len : cap - 4;
    for (size_t i = 0; i < n; i++) {
        buf[i] = v.ptr[i] >= 0x20 && v.ptr[i] < 0x7f ? (char)v.ptr[i] : '?';
    }
    strcpy(buf + n, n < v.len ? "..." : "");
    return buf;
}

typedef struct lint_tag {
    dkd_span name, value;
    size_t off;  /* of the tag-spec's first byte in the record */
    size_t voff; /* of the value */
} lint_tag;

static const lint_tag *find_tag(const lint_tag *tags, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (dkd__span_eq_str(tags[i].name, name)) {
            return &tags[i];
        }
    }
    return NULL;
}

static bool next_item(dkd_span *list, dkd_span *item)
{
    if (!dkd__span_get_item(list, ':', item)) {
        return false;
    }
    *item = dkd__span_trim_fws(*item);
    return true;
}

/* leading_name guesses the tag name of a tag-spec that failed to parse, for the report. */
static dkd_span leading_name(dkd_span seg)
{
    seg = dkd__span_trim_fws(seg);
    size_t n = 0;
    while (n < seg.len && seg.ptr[n] != '=' && !dkd__is_fws(seg.ptr[n]) && n < 16) {
        n++;
    }
    return dkd__span(seg.ptr, n);
}

static void lint_values(lint *l, const lint_tag *tags, size_t n, const uint8_t *txt, size_t len,
                        bool syntax_ok)
{
    char buf[64];
    const lint_tag *t = find_tag(tags, n, "v");
    if (t != NULL && t != &tags[0]) {
        report(l, DKD_LINT_ERROR, "v-not-first", t->name, t->off,
               "v= must be the first tag (RFC 6376 3.6.1); verifiers reject this record");
    }
    if (t != NULL && !dkd__span_eq_str(t->value, "DKIM1")) {
        report(l, DKD_LINT_ERROR, "v-value", t->name, t->voff,
               "v=%s: the only version is DKIM1", shown(t->value, buf, sizeof buf));
    }
    bool ed = false;
    t = find_tag(tags, n, "k");
    if (t == NULL && syntax_ok) {
        report(l, DKD_LINT_INFO, "k-default", dkd__span_str(""), 0,
               "no k=: the key type defaults to rsa");
    } else if (t == NULL) {
        /* k= itself may be the broken tag: reported above as a syntax error. */
    } else if (dkd__span_eq_str_nocase(t->value, "ed25519")) {
        ed = true;
    } else if (!dkd__span_eq_str_nocase(t->value, "rsa")) {
        report(l, DKD_LINT_ERROR, "unknown-k", t->name, t->voff,
               "k=%s is not a key type verifiers know: use k=rsa or k=ed25519",
               shown(t->value, buf, sizeof buf));
    }
    t = find_tag(tags, n, "h");
    if (t != NULL) {
        bool sha1 = false, sha256 = false;
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            if (dkd__span_eq_str_nocase(item, "sha1")) {
                sha1 = true;
            } else if (dkd__span_eq_str_nocase(item, "sha256")) {
                sha256 = true;
            } else {
                report(l, DKD_LINT_WARNING, "unknown-h", t->name,
                       (size_t)(item.ptr - txt), "h= lists unknown hash '%s' (ignored)",
                       shown(item, buf, sizeof buf));
            }
        }
        if (sha1 && !sha256) {
            report(l, DKD_LINT_ERROR, "sha1-only", t->name, t->voff,
                   "h=sha1 only: rsa-sha256 signatures fail, and RFC 8301 forbids sha1; "
                   "use h=sha256 or remove h=");
        } else if (!sha256) {
            report(l, DKD_LINT_ERROR, "h-no-known-hash", t->name, t->voff,
                   "h= allows no hash verifiers know: every signature fails; remove h=");
        }
    }
    t = find_tag(tags, n, "s");
    if (t != NULL) {
        bool email = false;
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            email |= dkd__span_eq_str(item, "*") || dkd__span_eq_str_nocase(item, "email");
        }
        if (!email) {
            report(l, DKD_LINT_ERROR, "service", t->name, t->voff,
                   "s=%s excludes email: mail signatures cannot use this key; "
                   "use s=email, s=* or remove s=", shown(t->value, buf, sizeof buf));
        }
    }
    t = find_tag(tags, n, "t");
    if (t != NULL) {
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            if (dkd__span_eq_str_nocase(item, "y")) {
                report(l, DKD_LINT_WARNING, "testing", t->name, (size_t)(item.ptr - txt),
                       "t=y: testing mode, receivers may ignore failures; remove it once "
                       "signatures verify");
            } else if (dkd__span_eq_str_nocase(item, "s")) {
                report(l, DKD_LINT_INFO, "strict", t->name, (size_t)(item.ptr - txt),
                       "t=s: i= must be exactly in d=, not a subdomain");
            } else {
                report(l, DKD_LINT_WARNING, "unknown-flag", t->name,
                       (size_t)(item.ptr - txt), "t= flag '%s' is unknown (ignored)",
                       shown(item, buf, sizeof buf));
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        static const char *const known[] = {"v", "k", "h", "s", "t", "p", "n"};
        bool is_known = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
            is_known |= dkd__span_eq_str(tags[i].name, known[k]);
        }
        if (dkd__span_eq_str(tags[i].name, "g")) {
            report(l, DKD_LINT_INFO, "obsolete-g", tags[i].name, tags[i].off,
                   "g= was removed by RFC 6376 and is ignored");
        } else if (!is_known) {
            report(l, DKD_LINT_INFO, "unknown-tag", tags[i].name, tags[i].off,
                   "unknown tag '%s' (ignored)", shown(tags[i].name, buf, sizeof buf));
        }
    }
    t = find_tag(tags, n, "p");
    if (t == NULL) {
        if (syntax_ok) {
            report(l, DKD_LINT_ERROR, "missing-p", dkd__span_str(""), len,
                   "no p= tag: a key record must carry the public key");
        }
        return;
    }
    size_t cap = t->value.len / 4 * 3 + 3, der_len = 0;
    uint8_t *der = malloc(cap);
    if (der == NULL) {
        return;
    }
    bool b64_ok = dkd__b64_decode(t->value, der, cap, &der_len);
    free(der);
    if (t->value.len == 0 || (b64_ok && der_len == 0)) {
        report(l, DKD_LINT_ERROR, "revoked", t->name, t->voff,
               "p= is empty: the key is revoked and every signature with it fails");
        return;
    }
    if (!b64_ok) {
        report(l, DKD_LINT_ERROR, "p-base64", t->name, t->voff,
               "p= is not valid base64: copy-paste the key, do not retype it");
        return;
    }
    if (!syntax_ok) {
        return; /* the key parser would stop at the syntax error first */
    }
    /* The key itself, as the verifier reads it. */
    dkd_key *key = dkd_key_from_record(txt, len);
    if (key == NULL) {
        return;
    }
    if (key->reason == DKD_REASON_OK) {
        if (key->type == DKD_KEY_ED25519 || ed) {
            report(l, DKD_LINT_INFO, "key", t->name, t->voff,
                   "ed25519 key; some receivers verify only rsa-sha256, so sign with an RSA "
                   "key too");
        } else if (key->bits < 1024) {
            report(l, DKD_LINT_ERROR, "weak-key", t->name, t->voff,
                   "RSA key of %u bits: RFC 8301 verifiers must reject keys under 1024 bits; "
                   "re-key with 2048", key->bits);
        } else if (key->bits < 2048) {
            report(l, DKD_LINT_WARNING, "weak-key", t->name, t->voff,
                   "RSA key of %u bits: RFC 8301 says signers should use at least 2048",
                   key->bits);
        } else {
            report(l, DKD_LINT_INFO, "key", t->name, t->voff, "RSA key of %u bits", key->bits);
        }
    } else if (l->worst < DKD_LINT_ERROR) {
        report(l, DKD_LINT_ERROR, dkd_reason_code(key->reason), t->name, t->voff, "%s: %s",
               dkd_reason_explanation(key->reason), key->detail);
    }
    dkd_key_unref(key);
}

int dkd_record_lint(const uint8_t *txt, size_t len, dkd_lint_fn fn, void *arg)
{
    lint l = {fn, arg, -1};
    if (dkd__span_trim_fws(dkd__span(txt, len)).len == 0) {
        report(&l, DKD_LINT_ERROR, "empty", dkd__span_str(""), 0,
               "the record is empty: publish v=DKIM1; k=...; p=...");
        return l.worst;
    }
    /* Split at ';' (no tag value may contain one) and parse each tag-spec on its own with
     * the engine's parser, so every broken tag is reported, not just the first. */
    lint_tag tags[DKD_TAGLIST_MAX];
    size_t n = 0;
    bool syntax_ok = true;
    size_t pos = 0;
    while (pos <= len) {
        const uint8_t *semi = pos < len ? memchr(txt + pos, ';', len - pos) : NULL;
        size_t end = semi != NULL ? (size_t)(semi - txt) : len;
        dkd_span seg = dkd__span(txt + pos, end - pos);
        if (dkd__span_trim_fws(seg).len == 0) {
            if (semi != NULL && dkd__span_trim_fws(dkd__span(semi + 1, len - end - 1)).len > 0) {
                report(&l, DKD_LINT_ERROR, "syntax", dkd__span_str(""), end,
                       "empty tag-spec before ';' at byte %zu", end);
                syntax_ok = false;
            }
            /* Otherwise a trailing ';' or trailing whitespace: allowed. */
        } else {
            dkd_taglist tl;
            dkd_taglist_status st = dkd__taglist_parse(seg, &tl);
            if (st != DKD_TAGLIST_OK || tl.count != 1) {
                dkd_span name = leading_name(seg);
                char buf[40];
                report(&l, DKD_LINT_ERROR, "syntax", name, pos + tl.err_off,
                       "tag %s: syntax error at byte %zu: %s", shown(name, buf, sizeof buf),
                       pos + tl.err_off, tl.err != NULL ? tl.err : "malformed tag-spec");
                syntax_ok = false;
            } else if (n < DKD_TAGLIST_MAX) {
                const dkd_tag *t = &tl.tags[0];
                bool dup = false;
                for (size_t i = 0; i < n; i++) {
                    dup |= tags[i].name.len == t->name.len &&
                           memcmp(tags[i].name.ptr, t->name.ptr, t->name.len) == 0;
                }
                size_t toff = (size_t)(t->name.ptr - txt);
                if (dup) {
                    char buf[40];
                    report(&l, DKD_LINT_ERROR, "duplicate", t->name, toff,
                           "tag %s= appears twice: verifiers reject the record",
                           shown(t->name, buf, sizeof buf));
                    syntax_ok = false;
                } else {
                    tags[n++] = (lint_tag){t->name, t->value, toff,
                                           (size_t)(t->value.ptr - txt)};
                }
            }
        }
        if (semi == NULL) {
            break;
        }
        pos = end + 1;
    }
    lint_values(&l, tags, n, txt, len, syntax_ok);
    return l.worst;
}
