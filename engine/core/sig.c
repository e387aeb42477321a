/*
 * sig.c - one DKIM-Signature field value to a dkd_sig (RFC 6376 section 3.5, RFC 8301,
 * RFC 8463), and d=/s= name syntax.
 *
 * Workload: one call per signature, each on a field of a few hundred bytes; the cost is
 * the tag-list pass plus decoding b= and bh=. Everything is checked that needs neither
 * a key nor a clock, in a fixed order, and the first failure wins: its reason code is
 * what the operator sees, and its detail names the tag and the value as written so the
 * signer's configuration can be found from the report alone. Only i= needs memory of
 * its own (after dkim-quoted-printable decoding); it comes from the message arena.
 */
#include "sig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "taglist.h"

static const dkd_span empty_span = {(const uint8_t *)"", 0};

/* show renders a tag value for a detail string: at most 40 bytes, bytes outside
 * printable ASCII as \xHH (details end up in logs and JSON, which want valid text),
 * and "..." when cut. Returns buf. */
static const char *show(dkd_span v, char *buf, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t i = 0;
    for (; i < v.len && i < 40; i++) {
        uint8_t c = v.ptr[i];
        if (o + 5 >= cap) {
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    if (i < v.len && o + 4 <= cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

enum { SHOW_CAP = 4 * 40 + 4 };

__attribute__((format(printf, 3, 4))) static bool fail(dkd_sig_error *err, enum dkd_reason reason,
                                                       const char *fmt, ...)
{
    err->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return false;
}

/* fail_value is fail() for the common "tag X: what 'value'" shape. */
static bool fail_value(dkd_sig_error *err, enum dkd_reason reason, const char *tag,
                       const char *what, dkd_span value)
{
    char buf[SHOW_CAP];
    return fail(err, reason, "tag %s: %s '%s'", tag, what, show(value, buf, sizeof buf));
}

/* The tags a signature uses, found in one pass over the list: looking each one up by
 * name (strlen and a compare per tag, ~20 lookups per signature) was a measured cost. */
typedef struct sig_tags {
    const dkd_tag *v, *a, *b, *bh, *c, *d, *h, *i, *l, *q, *s, *t, *x;
} sig_tags;

static void index_tags(const dkd_taglist *list, sig_tags *tl)
{
    memset(tl, 0, sizeof *tl);
    /* Duplicates never reach tags[] (the parser keeps the first), so each slot is set
     * at most once; names are case-sensitive (RFC 6376 3.2). */
    for (size_t k = 0; k < list->count; k++) {
        const dkd_tag *t = &list->tags[k];
        const uint8_t *n = t->name.ptr;
        if (t->name.len == 2) {
            if (n[0] == 'b' && n[1] == 'h') {
                tl->bh = t;
            }
            continue;
        }
        if (t->name.len != 1) {
            continue;
        }
        switch (n[0]) {
        case 'v':
            tl->v = t;
            break;
        case 'a':
            tl->a = t;
            break;
        case 'b':
            tl->b = t;
            break;
        case 'c':
            tl->c = t;
            break;
        case 'd':
            tl->d = t;
            break;
        case 'h':
            tl->h = t;
            break;
        case 'i':
            tl->i = t;
            break;
        case 'l':
            tl->l = t;
            break;
        case 'q':
            tl->q = t;
            break;
        case 's':
            tl->s = t;
            break;
        case 't':
            tl->t = t;
            break;
        case 'x':
            tl->x = t;
            break;
        default:
            break;
        }
    }
}

static dkd_span tag_value(const dkd_tag *t)
{
    return t != NULL ? t->value : empty_span;
}

static bool is_label_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c >= 0x80;
}

bool dkd__domain_valid(dkd_span name)
{
    if (name.len == 0 || name.len > 253) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i < name.len; i++) {
        uint8_t c = name.ptr[i];
        if (c == '.') {
            /* Empty labels: leading dot, trailing dot (checked below) or "..". The DNS
             * root dot has no place in d=: RFC 6376 domain-name is sub-domains only. */
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!is_label_byte(c) || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

/* canon_word maps "simple" / "relaxed" (ASCII case ignored, as OpenDKIM and dkimpy
 * do) to its code. */
static bool canon_word(dkd_span w, enum dkd_canon *out)
{
    w = dkd__span_trim_fws(w);
    if (dkd__span_eq_str_nocase(w, "simple")) {
        *out = DKD_CANON_SIMPLE;
        return true;
    }
    if (dkd__span_eq_str_nocase(w, "relaxed")) {
        *out = DKD_CANON_RELAXED;
        return true;
    }
    return false;
}

/* next_item consumes the next ':'-separated item of *rest into *item, FWS-trimmed.
 * Unlike dkd__span_get_item it yields a final empty item after a trailing ':' (so
 * "from:" is seen to hold an empty name); *more turns false after the last item. */
static void next_item(dkd_span *rest, dkd_span *item, bool *more)
{
    if (!dkd__span_get_until(rest, ':', item)) {
        *item = *rest;
        *more = false;
    }
    *item = dkd__span_trim_fws(*item);
}

/* b64_decoded_len is the byte count dkd__b64_decode would produce for a well-formed
 * value; used to tell "too long" from "not base64" when decoding into a fixed buffer
 * fails. */
static size_t b64_decoded_len(dkd_span v)
{
    size_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (!dkd__is_fws(v.ptr[i]) && v.ptr[i] != '=') {
            n++;
        }
    }
    return n / 4 * 3 + (n % 4 == 3 ? 2 : n % 4 == 2 ? 1 : 0);
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = dkd__lower(c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* qp_decode decodes dkim-quoted-printable (RFC 6376 section 2.11) into out, which has
 * room for in.len bytes (decoding never grows). FWS is dropped: the grammar allows it
 * anywhere and it is not part of the value. Lower-case hex is accepted although the
 * grammar says upper case; rejecting it would help nobody. */
static bool qp_decode(dkd_span in, uint8_t *out, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        uint8_t c = in.ptr[i];
        if (dkd__is_fws(c)) {
            continue;
        }
        if (c == '=') {
            int hi = i + 1 < in.len ? hex_digit(in.ptr[i + 1]) : -1;
            int lo = i + 2 < in.len ? hex_digit(in.ptr[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return false;
            }
            out[n++] = (uint8_t)(hi << 4 | lo);
            i += 2;
            continue;
        }
        out[n++] = c;
    }
    *out_len = n;
    return true;
}

/* parse_number reads l=, t= and x=: 1*76DIGIT per RFC 6376. Values beyond uint64 are
 * clamped when clamp is set (a time that far out is "never"), refused otherwise. */
static bool parse_number(dkd_span v, bool clamp, uint64_t *out)
{
    if (v.len == 0 || v.len > 76) {
        return false;
    }
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') {
            return false;
        }
    }
    if (dkd__span_to_u64(v, out)) {
        return true;
    }
    if (clamp) {
        *out = UINT64_MAX;
        return true;
    }
    return false;
}

static bool parse_alg(dkd_span a, dkd_sig *sig, dkd_sig_error *err)
{
    if (dkd__span_eq_str_nocase(a, "rsa-sha256")) {
        sig->alg = DKD_ALG_RSA_SHA256;
        sig->hash = DKD_HASH_SHA256;
    } else if (dkd__span_eq_str_nocase(a, "ed25519-sha256")) {
        sig->alg = DKD_ALG_ED25519_SHA256;
        sig->hash = DKD_HASH_SHA256;
    } else if (dkd__span_eq_str_nocase(a, "rsa-sha1")) {
        /* Parsed, not refused: RFC 8301 makes rsa-sha1 a verifier policy decision. */
        sig->alg = DKD_ALG_RSA_SHA1;
        sig->hash = DKD_HASH_SHA1;
    } else {
        return fail_value(err, DKD_REASON_UNSUPPORTED_ALGORITHM, "a", "unknown algorithm", a);
    }
    return true;
}

static bool parse_canon(const sig_tags *tl, dkd_sig *sig, dkd_sig_error *err)
{
    sig->canon_header = DKD_CANON_SIMPLE;
    sig->canon_body = DKD_CANON_SIMPLE;
    const dkd_tag *c = tl->c;
    if (c == NULL) {
        return true;
    }
    dkd_span rest = c->value;
    dkd_span head;
    bool has_body = dkd__span_get_until(&rest, '/', &head);
    if (!has_body) {
        head = rest;
    }
    if (!canon_word(head, &sig->canon_header) ||
        (has_body && !canon_word(rest, &sig->canon_body))) {
        return fail_value(err, DKD_REASON_UNSUPPORTED_CANON, "c", "unknown canonicalization",
                          c->value);
    }
    return true;
}

static bool parse_query(const sig_tags *tl, dkd_sig_error *err)
{
    const dkd_tag *q = tl->q;
    if (q == NULL) {
        return true;
    }
    /* Unknown methods beside dns/txt are ignored (RFC 6376 3.5: verifiers try the
     * methods they know); empty items are just more unknown methods. */
    dkd_span rest = q->value;
    bool more = true;
    while (more) {
        dkd_span item;
        next_item(&rest, &item, &more);
        if (dkd__span_eq_str_nocase(item, "dns/txt")) {
            return true;
        }
    }
    return fail_value(err, DKD_REASON_UNSUPPORTED_QUERY, "q", "no dns/txt query method in",
                      q->value);
}

/* is_ftext: RFC 5322 field-name bytes, printable ASCII but ':' (the separator). */
static bool is_ftext(uint8_t c)
{
    return c >= 0x21 && c <= 0x7E && c != ':';
}

static bool parse_headers(dkd_span h, dkd_sig *sig, dkd_sig_error *err)
{
    dkd_span rest = h;
    bool more = true;
    bool from = false;
    while (more) {
        dkd_span item;
        next_item(&rest, &item, &more);
        if (item.len == 0) {
            return fail(err, DKD_REASON_SIG_SYNTAX, "tag h: empty header field name in item %zu",
                        sig->h_count + 1);
        }
        for (size_t i = 0; i < item.len; i++) {
            if (!is_ftext(item.ptr[i])) {
                return fail_value(err, DKD_REASON_SIG_SYNTAX, "h", "bad header field name", item);
            }
        }
        if (sig->h_count == DKD_SIG_MAX_H) {
            return fail(err, DKD_REASON_SIG_SYNTAX, "tag h: more than %d header fields",
                        (int)DKD_SIG_MAX_H);
        }
        sig->h_names[sig->h_count++] = item;
        from = from || dkd__span_eq_str_nocase(item, "from");
    }
    if (!from) {
        return fail_value(err, DKD_REASON_FROM_NOT_SIGNED, "h", "From is not among", h);
    }
    return true;
}

/* domain_within: a equals d or is a subdomain of it, ASCII case ignored. */
static bool domain_within(dkd_span a, dkd_span d)
{
    if (dkd__span_eq_nocase(a, d)) {
        return true;
    }
    if (a.len <= d.len + 1 || a.ptr[a.len - d.len - 1] != '.') {
        return false;
    }
    return dkd__span_eq_nocase(dkd__span(a.ptr + a.len - d.len, d.len), d);
}

static bool parse_identity(const sig_tags *tl, dkd_sig *sig, dkd_arena *arena, dkd_sig_error *err)
{
    const dkd_tag *i = tl->i;
    if (i == NULL) {
        /* RFC 6376 3.5: the default i= is "@" followed by d=. */
        uint8_t *id = dkd__arena_alloc(arena, sig->d.len + 1);
        if (id == NULL) {
            return fail(err, DKD_REASON_INTERNAL, "out of memory for i=");
        }
        id[0] = '@';
        memcpy(id + 1, sig->d.ptr, sig->d.len);
        sig->identity = dkd__span(id, sig->d.len + 1);
        return true;
    }
    uint8_t *id = dkd__arena_alloc(arena, i->value.len + 1);
    if (id == NULL) {
        return fail(err, DKD_REASON_INTERNAL, "out of memory for i=");
    }
    size_t n = 0;
    if (!qp_decode(i->value, id, &n)) {
        return fail_value(err, DKD_REASON_SIG_SYNTAX, "i", "bad quoted-printable in", i->value);
    }
    sig->identity = dkd__span(id, n);
    /* The last '@': a quoted local-part may itself hold one. */
    const uint8_t *at = NULL;
    for (size_t k = n; k > 0; k--) {
        if (id[k - 1] == '@') {
            at = id + k - 1;
            break;
        }
    }
    if (at == NULL) {
        return fail_value(err, DKD_REASON_SIG_SYNTAX, "i", "no '@' in identity", i->value);
    }
    dkd_span domain = dkd__span(at + 1, (size_t)(id + n - (at + 1)));
    if (!dkd__domain_valid(domain)) {
        return fail_value(err, DKD_REASON_SIG_SYNTAX, "i", "invalid domain in identity", i->value);
    }
    if (!domain_within(domain, sig->d)) {
        char ibuf[SHOW_CAP], dbuf[SHOW_CAP];
        return fail(err, DKD_REASON_DOMAIN_MISMATCH, "tag i: '%s' is not within d=%s",
                    show(i->value, ibuf, sizeof ibuf), show(sig->d, dbuf, sizeof dbuf));
    }
    return true;
}

static bool parse_hashes(const sig_tags *tl, dkd_sig *sig, dkd_sig_error *err)
{
    const dkd_tag *b = tl->b;
    if (b->value.len == 0) {
        return fail(err, DKD_REASON_SIG_SYNTAX, "tag b: empty signature");
    }
    if (!dkd__b64_decode(b->value, sig->b, sizeof sig->b, &sig->b_len)) {
        size_t want = b64_decoded_len(b->value);
        if (want > sizeof sig->b) {
            return fail(err, DKD_REASON_SIG_SYNTAX,
                        "tag b: signature of %zu bytes is longer than %zu", want, sizeof sig->b);
        }
        return fail_value(err, DKD_REASON_SIG_SYNTAX, "b", "bad base64", b->value);
    }
    dkd_span bh = tag_value(tl->bh);
    if (bh.len == 0) {
        return fail(err, DKD_REASON_SIG_SYNTAX, "tag bh: empty body hash");
    }
    /* A well-formed bh= of the wrong length is kept: the verifier compares it with the
     * digest and reports a body hash mismatch, which is what it is. */
    if (!dkd__b64_decode(bh, sig->bh, sizeof sig->bh, &sig->bh_len)) {
        size_t want = b64_decoded_len(bh);
        if (want > sizeof sig->bh) {
            return fail(err, DKD_REASON_SIG_SYNTAX,
                        "tag bh: body hash of %zu bytes is longer than %zu", want, sizeof sig->bh);
        }
        return fail_value(err, DKD_REASON_SIG_SYNTAX, "bh", "bad base64", bh);
    }
    return true;
}

static bool parse_numbers(const sig_tags *tl, dkd_sig *sig, dkd_sig_error *err)
{
    const dkd_tag *l = tl->l;
    if (l != NULL) {
        if (!parse_number(l->value, false, &sig->l)) {
            return fail_value(err, DKD_REASON_SIG_SYNTAX, "l", "bad body length", l->value);
        }
        sig->has_l = true;
    }
    const dkd_tag *t = tl->t;
    if (t != NULL) {
        if (!parse_number(t->value, true, &sig->t)) {
            return fail_value(err, DKD_REASON_SIG_SYNTAX, "t", "bad timestamp", t->value);
        }
        sig->has_t = true;
    }
    const dkd_tag *x = tl->x;
    if (x != NULL) {
        if (!parse_number(x->value, true, &sig->x)) {
            return fail_value(err, DKD_REASON_SIG_SYNTAX, "x", "bad expiry", x->value);
        }
        sig->has_x = true;
    }
    /* RFC 6376 says x= MUST be greater than t=; equal values are let through, as
     * dkimpy and Mail::DKIM do, since such a signature is simply already expired. */
    if (sig->has_t && sig->has_x && sig->x < sig->t) {
        return fail(err, DKD_REASON_BAD_TIMESTAMP,
                    "tag x: expiry %llu is before signing time t=%llu", (unsigned long long)sig->x,
                    (unsigned long long)sig->t);
    }
    return true;
}

bool dkd__sig_parse(dkd_span value, dkd_sig *sig, dkd_arena *arena, dkd_sig_error *err)
{
    memset(sig, 0, sizeof *sig);
    sig->a = sig->d = sig->s = sig->i_raw = sig->b_raw = sig->identity = empty_span;
    err->reason = DKD_REASON_OK;
    err->detail[0] = '\0';

    dkd_taglist list;
    dkd_taglist_status st = dkd__taglist_parse(value, &list);
    sig_tags tags;
    index_tags(&list, &tags);
    const sig_tags *tl = &tags;
    /* Whatever was read before a failure still names the signer in the report. */
    sig->a = tag_value(tl->a);
    sig->d = tag_value(tl->d);
    sig->s = tag_value(tl->s);
    sig->i_raw = tag_value(tl->i);
    const dkd_tag *b = tl->b;
    if (b != NULL) {
        sig->b_raw = b->value;
        sig->b_value_off = b->value_off;
        sig->b_value_end = b->value_end;
    }
    if (st == DKD_TAGLIST_SYNTAX) {
        return fail(err, DKD_REASON_SIG_SYNTAX, "tag list: %s at byte %zu", list.err, list.err_off);
    }
    if (st == DKD_TAGLIST_DUPLICATE) {
        char buf[SHOW_CAP];
        return fail(err, DKD_REASON_SIG_DUPLICATE_TAG, "tag %s= appears more than once",
                    show(list.dup, buf, sizeof buf));
    }

    const struct {
        const char *name;
        const dkd_tag *tag;
    } required[] = {{"v", tl->v}, {"a", tl->a}, {"b", tl->b}, {"bh", tl->bh},
                    {"d", tl->d}, {"h", tl->h}, {"s", tl->s}};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++) {
        if (required[k].tag == NULL) {
            return fail(err, DKD_REASON_SIG_MISSING_TAG, "missing tag %s=", required[k].name);
        }
    }
    dkd_span v = tag_value(tl->v);
    if (!dkd__span_eq_str(v, "1")) {
        return fail_value(err, DKD_REASON_SIG_VERSION, "v", "version is not 1:", v);
    }
    if (!parse_alg(sig->a, sig, err) || !parse_canon(tl, sig, err) || !parse_query(tl, err)) {
        return false;
    }
    if (!dkd__domain_valid(sig->d)) {
        return fail_value(err, DKD_REASON_BAD_DOMAIN, "d", "invalid domain", sig->d);
    }
    if (!dkd__domain_valid(sig->s)) {
        return fail_value(err, DKD_REASON_BAD_DOMAIN, "s", "invalid selector", sig->s);
    }
    return parse_headers(tag_value(tl->h), sig, err) && parse_identity(tl, sig, arena, err) &&
           parse_hashes(tl, sig, err) && parse_numbers(tl, sig, err);
}
