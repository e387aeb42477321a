/*
 * lint.c - the key record linter behind `dkimctl check-record` (dkd_record_lint): reads
 * a DKIM key record tag by tag and reports every finding - syntax, unknown or obsolete
 * tags, revoked or weak keys, flags that make verifiers fail - with its byte offset.
 *
 * Workload: one record per call, typed or pasted by a person; a few hundred bytes. What
 * matters is that the linter reads records with the same tag-list parser and key parser
 * the verifier uses, so it never disagrees with dkimd about what a record means.
 *
 * Beyond the RFC, it names the publishing mistakes seen in the wild, each with a fix a
 * domain administrator can act on: literal quotes around the text (consoles that add
 * their own), an SPF or DMARC record under _domainkey, PEM armour or a private key in
 * p=, spaces and line breaks in p=, a k= that does not match the key p= holds, and a key
 * cut short (most often at a 255-byte TXT string). A quoted record is linted again with
 * its quotes removed, so the findings after "quoted" are about what was meant.
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
    char msg[512], tagbuf[32];
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

/* span_has reports whether needle occurs in v, ASCII case-insensitively. */
static bool span_has(dkd_span v, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= v.len && i <= v.len - n; i++) {
        if (dkd__span_eq_str_nocase(dkd__span(v.ptr + i, n), needle)) {
            return true;
        }
    }
    return false;
}

/*
 * der_outer reads the header of the DER value at the front of der: *want is the whole
 * encoding's length as its header declares it. False when der does not open with a
 * definite-length SEQUENCE (then it is no SubjectPublicKeyInfo or RSAPublicKey at all).
 */
static bool der_outer(dkd_span der, size_t *want)
{
    uint8_t tag, len;
    if (!dkd__span_get_u8(&der, &tag) || tag != 0x30 || !dkd__span_get_u8(&der, &len)) {
        return false;
    }
    size_t hdr = 2, body = len;
    if (len & 0x80) {
        uint64_t v;
        size_t n = len & 0x7f;
        if (n == 0 || n > 4 || !dkd__span_get_be(&der, n, &v)) {
            return false;
        }
        hdr += n;
        body = (size_t)v;
    }
    *want = hdr + body;
    return true;
}

/* The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes. */
static const uint8_t ed25519_spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                         0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
/* The rsaEncryption OID's DER (1.2.840.113549.1.1.1). */
static const uint8_t rsa_oid[11] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                    0xf7, 0x0d, 0x01, 0x01, 0x01};

static bool has_bytes(const uint8_t *p, size_t n, const uint8_t *what, size_t wn)
{
    for (size_t i = 0; wn <= n && i <= n - wn; i++) {
        if (memcmp(p + i, what, wn) == 0) {
            return true;
        }
    }
    return false;
}

/* rsa_bits_of reads p= as an RSA key (as k=rsa would) and returns its size, 0 if none. */
static unsigned rsa_bits_of(dkd_span p)
{
    static const char pre[] = "k=rsa; p=";
    char *rec = malloc(sizeof pre + p.len);
    if (rec == NULL) {
        return 0;
    }
    memcpy(rec, pre, sizeof pre - 1);
    memcpy(rec + sizeof pre - 1, p.ptr, p.len);
    dkd_key *k = dkd_key_from_record((const uint8_t *)rec, sizeof pre - 1 + p.len);
    free(rec);
    unsigned bits = k != NULL && k->reason == DKD_REASON_OK ? k->bits : 0;
    dkd_key_unref(k);
    return bits;
}

/*
 * lint_key_shape checks the decoded p= against k= before the key parser does, because
 * the parser's words ("not an RSA public key", "must be 32 bytes") do not say which of
 * the two tags is wrong. Returns true when it reported an error.
 */
static bool lint_key_shape(lint *l, const lint_tag *t, bool ed, bool k_given,
                           const uint8_t *der, size_t der_len, size_t rec_len)
{
    size_t want;
    bool seq = der_outer(dkd__span(der, der_len), &want);
    if (seq && want > der_len && !(ed && der_len == 32)) {
        if (rec_len % 255 == 0) {
            report(l, DKD_LINT_ERROR, "truncated", t->name, t->voff,
                   "the record looks cut at 255 characters: publish it as several quoted "
                   "strings in one TXT record (one string holds at most 255 characters; "
                   "dkimctl keygen prints the record so). The key needs %zu bytes but p= "
                   "holds %zu", want, der_len);
        } else {
            report(l, DKD_LINT_ERROR, "truncated", t->name, t->voff,
                   "p= is cut short: the key needs %zu bytes but p= holds %zu; copy the "
                   "whole key again (dkimctl keygen prints the full record)", want, der_len);
        }
        return true;
    }
    bool ed_spki = der_len == sizeof ed25519_spki + 32 &&
                   memcmp(der, ed25519_spki, sizeof ed25519_spki) == 0;
    if (ed && !ed_spki && der_len != 32 && seq) {
        unsigned bits = rsa_bits_of(t->value);
        if (bits > 0 || has_bytes(der, der_len, rsa_oid, sizeof rsa_oid)) {
            report(l, DKD_LINT_ERROR, "k-mismatch", t->name, t->voff,
                   "k=ed25519 but p= holds an RSA key (%u bits): change k= to k=rsa (or "
                   "publish the Ed25519 key this selector is meant to have)", bits);
            return true;
        }
    }
    if (ed && ed_spki) {
        report(l, DKD_LINT_ERROR, "ed25519-spki", t->name, t->voff,
               "p= holds the Ed25519 key wrapped in SubjectPublicKeyInfo (44 bytes, as "
               "openssl prints it); RFC 8463 wants only the 32 key bytes: publish the "
               "record dkimctl keygen --type ed25519 prints");
        return true;
    }
    if (!ed && ed_spki) {
        report(l, DKD_LINT_ERROR, "k-mismatch", t->name, t->voff,
               "p= holds an Ed25519 key but k= is %s: set k=ed25519 and publish only "
               "the 32 key bytes (dkimctl keygen --type ed25519 prints the record)",
               k_given ? "rsa" : "missing (which means rsa)");
        return true;
    }
    if (!ed && der_len == 32) {
        report(l, DKD_LINT_ERROR, "k-mismatch", t->name, t->voff,
               "p= holds 32 bytes, the size of an Ed25519 key, but k= is %s: add k=ed25519",
               k_given ? "rsa" : "missing (which means rsa)");
        return true;
    }
    return false;
}

/*
 * p_lenient decodes p= dropping up to 3 trailing characters, so that a value cut in the
 * middle of a base64 quantum still shows how much key it holds. False if that fails too.
 */
static bool p_lenient(dkd_span v, uint8_t *der, size_t cap, size_t *der_len)
{
    /* Only a value of base64 characters was cut; one with a stray byte was mistyped. */
    for (size_t i = 0; i < v.len; i++) {
        uint8_t c = v.ptr[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
        if (!alpha && !dkd__is_fws(c)) {
            return false;
        }
    }
    for (size_t drop = 1; drop <= 3 && drop < v.len; drop++) {
        if (dkd__b64_decode(dkd__span(v.ptr, v.len - drop), der, cap, der_len)) {
            return true;
        }
    }
    return false;
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
    bool k_given = t != NULL;
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
    if (span_has(t->value, "-----") || span_has(t->value, "BEGIN ")) {
        if (span_has(t->value, "PRIVATE")) {
            report(l, DKD_LINT_ERROR, "private-key", t->name, t->voff,
                   "p= holds a PRIVATE key: anyone can read it in DNS and sign mail as you. "
                   "Remove this record now, make a new key pair (dkimctl keygen) and "
                   "publish only the record it prints");
        } else {
            report(l, DKD_LINT_ERROR, "pem-armour", t->name, t->voff,
                   "p= holds a PEM block (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC "
                   "KEY-----): publish only the base64 text between the two dashed lines, "
                   "joined on one line, without the dashes and the words");
        }
        return;
    }
    size_t cap = t->value.len / 4 * 3 + 3, der_len = 0;
    uint8_t *der = malloc(cap);
    if (der == NULL) {
        return;
    }
    bool b64_ok = dkd__b64_decode(t->value, der, cap, &der_len);
    if (t->value.len == 0 || (b64_ok && der_len == 0)) {
        free(der);
        report(l, DKD_LINT_ERROR, "revoked", t->name, t->voff,
               "p= is empty: the key is revoked and every signature with it fails");
        return;
    }
    bool shaped = (b64_ok || p_lenient(t->value, der, cap, &der_len)) &&
                  lint_key_shape(l, t, ed, k_given, der, der_len, len);
    free(der);
    if (shaped) {
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

/*
 * lint_other_record recognises records of other protocols published under _domainkey:
 * SPF (v=spf1 ...) and DMARC (v=DMARC1; ...). Their tags would only produce noise, so it
 * reports what the record is and where it belongs, and returns true.
 */
static bool lint_other_record(lint *l, const uint8_t *txt, size_t len)
{
    dkd_span all = dkd__span_trim_fws(dkd__span(txt, len));
    size_t off = (size_t)(all.ptr - txt);
    dkd_span spf = dkd__span_str("v=spf1"), dmarc = dkd__span_str("v=DMARC1");
    if (all.len >= spf.len && dkd__span_eq_nocase(dkd__span(all.ptr, spf.len), spf) &&
        (all.len == spf.len || dkd__is_fws(all.ptr[spf.len]))) {
        report(l, DKD_LINT_ERROR, "spf-record", dkd__span_str("v"), off,
               "this is an SPF record (v=spf1), not a DKIM key: SPF belongs in a TXT record "
               "at the domain itself. Move it there, and publish here the DKIM record your "
               "mail system or provider gives you (v=DKIM1; k=...; p=...)");
        return true;
    }
    if (all.len >= dmarc.len && dkd__span_eq_nocase(dkd__span(all.ptr, dmarc.len), dmarc) &&
        (all.len == dmarc.len || all.ptr[dmarc.len] == ';' || dkd__is_fws(all.ptr[dmarc.len]))) {
        report(l, DKD_LINT_ERROR, "dmarc-record", dkd__span_str("v"), off,
               "this is a DMARC record (v=DMARC1), not a DKIM key: DMARC belongs in a TXT "
               "record at _dmarc.<your domain>. Move it there, and publish here the DKIM "
               "record your mail system or provider gives you (v=DKIM1; k=...; p=...)");
        return true;
    }
    return false;
}

/*
 * lint_p_spaces reports blanks or line breaks inside p=. RFC 6376 allows FWS in the
 * base64 and dkimd reads through it, but keys pasted with their line ends break in
 * consoles and in some verifiers. parsed is false when the p= tag-spec did not parse at
 * all; then the blanks are reported as an error beside the syntax error.
 */
static void lint_p_spaces(lint *l, dkd_span seg, const uint8_t *txt, bool parsed)
{
    const uint8_t *eq = memchr(seg.ptr, '=', seg.len);
    if (eq == NULL) {
        return;
    }
    dkd_span v = dkd__span_trim_fws(dkd__span(eq + 1, seg.len - (size_t)(eq + 1 - seg.ptr)));
    if (span_has(v, "-----")) {
        return; /* PEM armour: its own finding (lint_values) says what to remove */
    }
    bool breaks = false, blanks = false;
    size_t at = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (dkd__is_fws(v.ptr[i]) && !blanks && !breaks) {
            at = (size_t)(v.ptr + i - txt);
        }
        breaks |= v.ptr[i] == '\r' || v.ptr[i] == '\n';
        blanks |= dkd__is_wsp(v.ptr[i]);
    }
    if (!breaks && !blanks) {
        return;
    }
    report(l, parsed ? DKD_LINT_WARNING : DKD_LINT_ERROR, "p-whitespace", dkd__span_str("p"),
           at, "p= contains %s (first at byte %zu)%s: publish the key as one unbroken line "
           "of base64 (splitting it into several quoted strings of one TXT record is fine)",
           breaks ? "line breaks" : "spaces", at,
           parsed ? "; dkimd reads through them, but some receivers and DNS consoles do not"
                  : ", which verifiers cannot read");
}

static void lint_record(lint *l, const uint8_t *txt, size_t len)
{
    if (dkd__span_trim_fws(dkd__span(txt, len)).len == 0) {
        report(l, DKD_LINT_ERROR, "empty", dkd__span_str(""), 0,
               "the record is empty: publish v=DKIM1; k=...; p=...");
        return;
    }
    if (lint_other_record(l, txt, len)) {
        return;
    }
    /* Split at ';' (no tag value may contain one) and parse each tag-spec on its own with
     * the engine's parser, so every broken tag is reported, not just the first. */
    lint_tag tags[DKD_TAGLIST_MAX];
    size_t n = 0;
    bool syntax_ok = true, p_parsed = false;
    dkd_span p_seg = {NULL, 0};
    size_t pos = 0;
    while (pos <= len) {
        const uint8_t *semi = pos < len ? memchr(txt + pos, ';', len - pos) : NULL;
        size_t end = semi != NULL ? (size_t)(semi - txt) : len;
        dkd_span seg = dkd__span(txt + pos, end - pos);
        if (dkd__span_trim_fws(seg).len == 0) {
            if (semi != NULL && dkd__span_trim_fws(dkd__span(semi + 1, len - end - 1)).len > 0) {
                report(l, DKD_LINT_ERROR, "syntax", dkd__span_str(""), end,
                       "empty tag-spec before ';' at byte %zu", end);
                syntax_ok = false;
            }
            /* Otherwise a trailing ';' or trailing whitespace: allowed. */
        } else {
            if (dkd__span_eq_str(leading_name(seg), "p")) {
                p_seg = seg;
            }
            dkd_taglist tl;
            dkd_taglist_status st = dkd__taglist_parse(seg, &tl);
            if (st != DKD_TAGLIST_OK || tl.count != 1) {
                dkd_span name = leading_name(seg);
                char buf[40];
                report(l, DKD_LINT_ERROR, "syntax", name, pos + tl.err_off,
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
                    report(l, DKD_LINT_ERROR, "duplicate", t->name, toff,
                           "tag %s= appears twice: verifiers reject the record",
                           shown(t->name, buf, sizeof buf));
                    syntax_ok = false;
                } else {
                    p_parsed |= dkd__span_eq_str(t->name, "p");
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
    if (p_seg.ptr != NULL) {
        lint_p_spaces(l, p_seg, txt, p_parsed);
    }
    lint_values(l, tags, n, txt, len, syntax_ok);
}

/*
 * unquote copies txt without the quote characters a console kept as data: a leading and
 * trailing '"' (or '\''), every '"' (and a backslash before it), and the blanks between
 * two quoted strings ("v=DKIM1; " "p=..."), which DNS would have joined. NULL on
 * allocation failure; the caller frees it.
 */
static uint8_t *unquote(const uint8_t *txt, size_t len, size_t *out_len)
{
    uint8_t *out = malloc(len + 1);
    if (out == NULL) {
        return NULL;
    }
    dkd_span all = dkd__span_trim_fws(dkd__span(txt, len));
    bool single = all.len >= 2 && all.ptr[0] == '\'' && all.ptr[all.len - 1] == '\'';
    if (single) {
        all = dkd__span(all.ptr + 1, all.len - 2);
    }
    size_t n = 0;
    for (size_t i = 0; i < all.len; i++) {
        uint8_t c = all.ptr[i];
        if (c == '\\' && i + 1 < all.len && all.ptr[i + 1] == '"') {
            continue;
        }
        if (c != '"') {
            out[n++] = c;
            continue;
        }
        /* A closing quote, blanks, an opening quote: the join of two strings. */
        size_t j = i + 1;
        while (j < all.len && dkd__is_fws(all.ptr[j])) {
            j++;
        }
        if (j > i + 1 && j < all.len && all.ptr[j] == '"') {
            i = j;
        }
    }
    *out_len = n;
    return out;
}

static bool is_quoted(const uint8_t *txt, size_t len)
{
    dkd_span all = dkd__span_trim_fws(dkd__span(txt, len));
    if (all.len >= 2 && all.ptr[0] == '\'' && all.ptr[all.len - 1] == '\'') {
        return true;
    }
    return memchr(txt, '"', len) != NULL;
}

int dkd_record_lint(const uint8_t *txt, size_t len, dkd_lint_fn fn, void *arg)
{
    lint l = {fn, arg, -1};
    if (len == 0 || !is_quoted(txt, len)) {
        lint_record(&l, txt, len);
        return l.worst;
    }
    size_t n = 0;
    uint8_t *plain = unquote(txt, len, &n);
    report(&l, DKD_LINT_ERROR, "quoted", dkd__span_str(""), 0,
           "the record contains literal quote characters: the DNS console adds its own "
           "quotes, so these became part of the record and verifiers cannot read it. "
           "Enter the text without quotes. Findings below are about the record without "
           "them (byte positions count in that text)");
    if (plain != NULL) {
        lint_record(&l, plain, n);
    }
    free(plain);
    return l.worst;
}
