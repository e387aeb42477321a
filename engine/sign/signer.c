/*
 * signer.c - the DKIM signer (RFC 6376 section 5, RFC 8463): builds the h= list, hashes
 * the body and header as the verifier will, signs with RSA or Ed25519 and writes the
 * folded DKIM-Signature field; and dkd_from_domain, the From domain a message is
 * signed for.
 *
 * Workload: command-line use and tests - one message at a time. So nothing here is
 * tuned: each call fetches what it needs and frees it. What matters is that the signer
 * reuses the verifier's pieces (hdr.c splits the header, canon.c canonicalizes, b64.c
 * encodes) so a signature we make is hashed exactly as dkimd will hash it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "b64.h"
#include "canon.h"
#include "hdr.h"
#include "key.h"
#include "sig.h"
#include "buf.h" /* the byte builder: appends never fail visibly, checked once */
#include "signkey.h"
#include "span.h"

/* ---- the signature header, folded ---- */

enum { FOLD_WIDTH = 78 };

/* folder: appends tag=value items, breaking lines (CRLF TAB) before an item that would
 * pass FOLD_WIDTH; long values break inside where FWS is allowed. */
typedef struct folder {
    dkd_buf *b;
    size_t col;
} folder;

static void fold_break(folder *f)
{
    dkd__buf_put_str(f->b, "\r\n\t");
    f->col = 8;
}

static void fold_text(folder *f, const char *s, size_t n)
{
    dkd__buf_append(f->b, s, n);
    f->col += n;
}

/* fold_tag writes " name=value;" as one unit, starting a new line when it does not fit. */
static void fold_tag(folder *f, const char *name, const char *value, bool last)
{
    size_t need = 1 + strlen(name) + 1 + strlen(value) + (last ? 0 : 1);
    if (f->col + need > FOLD_WIDTH) {
        fold_break(f);
    } else {
        fold_text(f, " ", 1);
    }
    fold_text(f, name, strlen(name));
    fold_text(f, "=", 1);
    fold_text(f, value, strlen(value));
    if (!last) {
        fold_text(f, ";", 1);
    }
}

/* fold_list writes " h=a:b:c;" breaking before a ':' (h= allows FWS around colons). */
static void fold_list(folder *f, const char *name, const char *list)
{
    size_t first_len = strcspn(list, ":");
    if (f->col + 1 + strlen(name) + 1 + first_len + 1 > FOLD_WIDTH) {
        fold_break(f);
    } else {
        fold_text(f, " ", 1);
    }
    fold_text(f, name, strlen(name));
    fold_text(f, "=", 1);
    const char *p = list;
    bool first = true;
    while (*p) {
        size_t n = strcspn(p, ":");
        if (!first) {
            if (f->col + 1 + n + 1 > FOLD_WIDTH) {
                fold_break(f);
            }
            fold_text(f, ":", 1);
        }
        fold_text(f, p, n);
        first = false;
        p += n;
        if (*p == ':') {
            p++;
        }
    }
    fold_text(f, ";", 1);
}

/* fold_b64 writes " name=" then the base64 text, breaking it at the line width (base64
 * tag values allow FWS anywhere, RFC 6376 3.5). */
static void fold_b64(folder *f, const char *name, const char *b64, bool last)
{
    if (f->col + 1 + strlen(name) + 1 + 8 > FOLD_WIDTH) {
        fold_break(f);
    } else {
        fold_text(f, " ", 1);
    }
    fold_text(f, name, strlen(name));
    fold_text(f, "=", 1);
    size_t n = strlen(b64);
    while (n > 0) {
        size_t room = f->col < FOLD_WIDTH ? FOLD_WIDTH - f->col : 0;
        if (room == 0) {
            fold_break(f);
            continue;
        }
        size_t take = n < room ? n : room;
        fold_text(f, b64, take);
        b64 += take;
        n -= take;
    }
    if (!last) {
        fold_text(f, ";", 1);
    }
}

/* ---- signing ---- */

static const char *const default_headers[] = {
    "from",         "to",           "cc",         "subject",
    "date",         "message-id",   "reply-to",   "in-reply-to",
    "references",   "mime-version", "content-type", "content-transfer-encoding",
    "list-id",
};

void dkd_sign_opts_init(dkd_sign_opts *o)
{
    memset(o, 0, sizeof *o);
    o->header_relaxed = true;
    o->body_relaxed = true;
    o->timestamp = -1;
}

static void md_sink(void *arg, const uint8_t *p, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)arg, p, n);
}

/* parse_fields indexes the header block exactly as the verifier does (dkd__hdr_index). */
static int parse_fields(dkd_span block, dkd_field **out, size_t *count)
{
    size_t max = 1000;
    dkd_field *fields = calloc(max, sizeof *fields);
    if (fields == NULL) {
        return DKD_ERR_NOMEM;
    }
    size_t n = 0;
    if (dkd__hdr_index(block, fields, max, &n) != DKD_HDR_OK) {
        free(fields);
        return DKD_ERR_TOO_LARGE;
    }
    *out = fields;
    *count = n;
    return 0;
}

static size_t count_named(const dkd_field *fields, size_t n, dkd_span name)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c += dkd__span_eq_nocase(fields[i].name, name);
    }
    return c;
}

/* build_h makes the h= list: the caller's (checked), or the default one. */
static bool build_h(const dkd_sign_opts *o, const dkd_field *fields, size_t n, dkd_buf *h,
                    char *err, size_t err_len)
{
    if (o->headers != NULL) {
        dkd_span list = dkd__span_str(o->headers), item;
        bool from = false;
        while (dkd__span_get_item(&list, ':', &item)) {
            item = dkd__span_trim_fws(item);
            if (item.len == 0) {
                dkd__sign_err(err, err_len, "empty name in the header list '%s'", o->headers);
                return false;
            }
            for (size_t i = 0; i < item.len; i++) {
                /* RFC 5322 field names: printable ASCII but the colon. */
                if (item.ptr[i] <= 0x20 || item.ptr[i] >= 0x7f) {
                    dkd__sign_err(err, err_len, "invalid header name in '%s'", o->headers);
                    return false;
                }
            }
            from |= dkd__span_eq_str_nocase(item, "from");
            if (h->len > 0) {
                dkd__buf_append(h, ":", 1);
            }
            dkd__buf_append(h, item.ptr, item.len);
        }
        if (!from) {
            dkd__sign_err(err, err_len, "the header list must include From (RFC 6376 5.4)");
            return false;
        }
        return true;
    }
    for (size_t d = 0; d < sizeof default_headers / sizeof default_headers[0]; d++) {
        size_t c = count_named(fields, n, dkd__span_str(default_headers[d]));
        /* Each present instance is signed; From once more, so a From added later
         * breaks the signature instead of being shown to the reader unsigned. */
        if (d == 0) {
            c++;
        }
        for (size_t i = 0; i < c; i++) {
            if (h->len > 0) {
                dkd__buf_append(h, ":", 1);
            }
            dkd__buf_put_str(h, default_headers[d]);
        }
    }
    return true;
}

static bool name_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && dkd__domain_valid(dkd__span_str(s));
}

/* ---- the streaming signer ---- */

/*
 * A signer holds what the signature needs between the header and the end of the body:
 * the header block's copy (the fields point into it), the h= list, copies of the option
 * strings, and the body canonicalizer feeding the body hash. Nothing grows with the
 * body: dkd__body_update hashes as it goes and keeps only its fixed 4 KiB batch.
 */
struct dkd_signer {
    const dkd_signkey *key; /* borrowed; the caller keeps it until dkd_signer_free */
    char *domain, *selector, *identity;
    enum dkd_canon hc, bcanon;
    bool body_length, done;
    int64_t timestamp;
    uint64_t expire_after;
    uint8_t *hdr; /* the header block copy */
    dkd_field *fields;
    size_t nfields;
    dkd_buf h; /* the h= list, colon-separated */
    EVP_MD *sha256;
    EVP_MD_CTX *md; /* the body hash while streaming; the header hash at the end */
    dkd_body_canon bc;
};

/* check_opts refuses d=, s= and i= values before anything is allocated. */
static int check_opts(const dkd_sign_opts *o, char *err, size_t err_len)
{
    if (!name_ok(o->domain)) {
        dkd__sign_err(err, err_len, "d=: '%s' is not a valid domain name",
                      o->domain ? o->domain : "");
        return DKD_ERR_SYNTAX;
    }
    if (!name_ok(o->selector)) {
        dkd__sign_err(err, err_len, "s=: '%s' is not a valid selector",
                      o->selector ? o->selector : "");
        return DKD_ERR_SYNTAX;
    }
    if (o->identity != NULL) {
        for (const char *p = o->identity; *p; p++) {
            /* i= is dkim-quoted-printable; we write it as given, so refuse what would
             * need encoding rather than encode it silently. */
            if (*p <= ' ' || *p == ';' || *p == '=' || (unsigned char)*p >= 0x7f) {
                dkd__sign_err(err, err_len, "i=: '%s' needs characters we do not encode",
                              o->identity);
                return DKD_ERR_SYNTAX;
            }
        }
    }
    return 0;
}

/* check_block refuses a header block we could not sign so that it verifies. */
static int check_block(const uint8_t *hdr, size_t hlen, char *err, size_t err_len)
{
    if (hlen > 0 && dkd__is_wsp(hdr[0])) {
        /* A continuation line with no field before it would fold into the signature we
         * prepend and change it: refuse rather than sign what will not verify. */
        dkd__sign_err(err, err_len, "the message begins with a folded line, not a header field");
        return DKD_ERR_SYNTAX;
    }
    if (hlen > 0 && dkd__hdr_block_len(dkd__span(hdr, hlen)) != hlen) {
        /* Bytes past the empty line are body: taking them silently would leave them out
         * of the body hash of a caller who then passes the whole body to _body. */
        dkd__sign_err(err, err_len, "the header block goes on past its empty line");
        return DKD_ERR_SYNTAX;
    }
    return 0;
}

static char *copy_str(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* copy_header takes the block and indexes it; the field array is trimmed to what the
 * block holds, so a signer keeps no more than its header needs. */
static int copy_header(dkd_signer *s, const uint8_t *hdr, size_t hlen, char *err,
                       size_t err_len)
{
    s->hdr = malloc(hlen > 0 ? hlen : 1);
    if (s->hdr == NULL) {
        return DKD_ERR_NOMEM;
    }
    if (hlen > 0) {
        memcpy(s->hdr, hdr, hlen);
    }
    int rc = parse_fields(dkd__span(s->hdr, hlen), &s->fields, &s->nfields);
    if (rc != 0) {
        dkd__sign_err(err, err_len, "%s", dkd_strerror(rc));
        return rc;
    }
    dkd_field *small = realloc(s->fields, (s->nfields ? s->nfields : 1) * sizeof *small);
    if (small != NULL) {
        s->fields = small;
    }
    if (count_named(s->fields, s->nfields, dkd__span_str("from")) == 0) {
        dkd__sign_err(err, err_len, "the message has no From header: nothing to sign for");
        return DKD_ERR_SYNTAX;
    }
    return 0;
}

static int copy_opts(dkd_signer *s, const dkd_sign_opts *o)
{
    s->domain = copy_str(o->domain);
    s->selector = copy_str(o->selector);
    s->identity = copy_str(o->identity);
    s->hc = o->header_relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
    s->bcanon = o->body_relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
    s->body_length = o->body_length;
    s->timestamp = o->timestamp;
    s->expire_after = o->expire_after;
    bool ok = s->domain != NULL && s->selector != NULL &&
              (o->identity == NULL || s->identity != NULL);
    return ok ? 0 : DKD_ERR_NOMEM;
}

int dkd_signer_begin(const dkd_signkey *key, const dkd_sign_opts *o, const uint8_t *hdr,
                     size_t hlen, dkd_signer **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc = check_opts(o, err, err_len);
    if (rc == 0) {
        rc = check_block(hdr, hlen, err, err_len);
    }
    if (rc != 0) {
        return rc;
    }
    dkd_signer *s = calloc(1, sizeof *s);
    if (s == NULL) {
        dkd__sign_err(err, err_len, "out of memory");
        return DKD_ERR_NOMEM;
    }
    s->key = key;
    dkd__buf_init(&s->h);
    dkd__sign_err(err, err_len, "out of memory"); /* what the NOMEM returns below mean */
    rc = copy_opts(s, o);
    if (rc == 0) {
        rc = copy_header(s, hdr, hlen, err, err_len);
    }
    if (rc == 0 && !build_h(o, s->fields, s->nfields, &s->h, err, err_len)) {
        rc = DKD_ERR_SYNTAX;
    }
    if (rc == 0) {
        dkd__sign_err(err, err_len, "out of memory");
        s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        s->md = EVP_MD_CTX_new();
        bool ok = s->sha256 != NULL && s->md != NULL && !dkd__buf_failed(&s->h) &&
                  EVP_DigestInit_ex(s->md, s->sha256, NULL) == 1;
        rc = ok ? 0 : DKD_ERR_NOMEM;
    }
    if (rc != 0) {
        dkd_signer_free(s);
        return rc;
    }
    dkd__body_init(&s->bc, s->bcanon, UINT64_MAX, md_sink, s->md);
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
    *out = s;
    return 0;
}

int dkd_signer_body(dkd_signer *s, const uint8_t *chunk, size_t len)
{
    if (s == NULL || s->done) {
        return DKD_ERR_STATE;
    }
    /* The canonicalizer carries a CR, a WSP run or blank lines across chunks itself. */
    dkd__body_update(&s->bc, chunk, len);
    return 0;
}

/* body_hash ends the body and writes its hash, base64, into bh64. */
static void body_hash(dkd_signer *s, char *bh64)
{
    uint8_t bh[EVP_MAX_MD_SIZE];
    unsigned bh_len = 0;
    dkd__body_final(&s->bc);
    EVP_DigestFinal_ex(s->md, bh, &bh_len);
    bh64[dkd__b64_encode(bh, bh_len, bh64)] = '\0';
}

/* write_field writes the field up to "b=", folded; its canonical form is what is signed. */
static void write_field(dkd_signer *s, folder *f, const char *bh64)
{
    char num[32];
    fold_text(f, "DKIM-Signature:", strlen("DKIM-Signature:"));
    fold_tag(f, "v", "1", false);
    fold_tag(f, "a", s->key->type == DKD_KEY_ED25519 ? "ed25519-sha256" : "rsa-sha256", false);
    snprintf(num, sizeof num, "%s/%s", s->hc == DKD_CANON_RELAXED ? "relaxed" : "simple",
             s->bcanon == DKD_CANON_RELAXED ? "relaxed" : "simple");
    fold_tag(f, "c", num, false);
    fold_tag(f, "d", s->domain, false);
    fold_tag(f, "s", s->selector, false);
    if (s->identity != NULL) {
        fold_tag(f, "i", s->identity, false);
    }
    /* t= is when the signature is made, which is now, at the end of the body. */
    int64_t t = s->timestamp >= 0 ? s->timestamp : (int64_t)time(NULL);
    snprintf(num, sizeof num, "%lld", (long long)t);
    fold_tag(f, "t", num, false);
    if (s->expire_after > 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)((uint64_t)t + s->expire_after));
        fold_tag(f, "x", num, false);
    }
    if (s->body_length) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)s->bc.emitted);
        fold_tag(f, "l", num, false);
    }
    const char *h_list = dkd__buf_cstr(&s->h);
    fold_list(f, "h", h_list != NULL ? h_list : "");
    fold_b64(f, "bh", bh64, false);
    if (f->col + 1 + 2 + 8 > FOLD_WIDTH) {
        fold_break(f);
    } else {
        fold_text(f, " ", 1);
    }
    fold_text(f, "b=", 2);
}

/* header_hash hashes the signed fields and the field written so far. Each h= name takes
 * the last instance not yet used, bottom-up (RFC 6376 5.4.2), exactly as verify.c's
 * hash_headers reads it back. False on allocation failure. */
static bool header_hash(dkd_signer *s, const dkd_buf *field, uint8_t *digest, unsigned *len)
{
    bool *used = calloc(s->nfields ? s->nfields : 1, sizeof *used);
    if (used == NULL) {
        return false;
    }
    EVP_DigestInit_ex(s->md, s->sha256, NULL);
    dkd_span list = dkd__span(s->h.ptr, s->h.len), item;
    while (dkd__span_get_item(&list, ':', &item)) {
        for (size_t i = s->nfields; i-- > 0;) {
            if (!used[i] && dkd__span_eq_nocase(s->fields[i].name, item)) {
                used[i] = true;
                dkd__canon_header(s->hc, s->fields[i].raw, 0, 0, true, md_sink, s->md);
                break;
            }
        }
    }
    free(used);
    dkd__canon_header(s->hc, dkd__span(field->ptr, field->len), 0, 0, false, md_sink, s->md);
    EVP_DigestFinal_ex(s->md, digest, len);
    return true;
}

/* sign_digest makes the signature bytes (malloc'd into *sig); false on any failure. */
static bool sign_digest(const dkd_signer *s, const uint8_t *digest, unsigned digest_len,
                        uint8_t **sig, size_t *sig_len)
{
    bool ok;
    if (s->key->type == DKD_KEY_ED25519) {
        /* RFC 8463 3: PureEdDSA over the SHA-256 of the header hash input. */
        EVP_MD_CTX *ed = EVP_MD_CTX_new();
        *sig_len = 64;
        *sig = malloc(*sig_len);
        ok = ed != NULL && *sig != NULL &&
             EVP_DigestSignInit_ex(ed, NULL, NULL, NULL, NULL, s->key->pkey, NULL) == 1 &&
             EVP_DigestSign(ed, *sig, sig_len, digest, digest_len) == 1;
        EVP_MD_CTX_free(ed);
        return ok;
    }
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, s->key->pkey, NULL);
    ok = pctx != NULL && EVP_PKEY_sign_init(pctx) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
         EVP_PKEY_CTX_set_signature_md(pctx, s->sha256) == 1 &&
         EVP_PKEY_sign(pctx, NULL, sig_len, digest, digest_len) == 1;
    if (ok) {
        *sig = malloc(*sig_len);
        ok = *sig != NULL && EVP_PKEY_sign(pctx, *sig, sig_len, digest, digest_len) == 1;
    }
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

/* write_b appends the b= value and the final CRLF. It goes on straight after "b=" (no
 * space): the verifier empties exactly the bytes from '=' to the end, and what we
 * hashed ended at '='. */
static void write_b(folder *f, const char *b64)
{
    size_t room = f->col < FOLD_WIDTH ? FOLD_WIDTH - f->col : 0;
    size_t n = strlen(b64), take = n < room ? n : room;
    fold_text(f, b64, take);
    const char *rest = b64 + take;
    n -= take;
    while (n > 0) {
        fold_break(f);
        take = n < FOLD_WIDTH - 8 ? n : FOLD_WIDTH - 8;
        fold_text(f, rest, take);
        rest += take;
        n -= take;
    }
    dkd__buf_put_str(f->b, "\r\n");
}

int dkd_signer_end(dkd_signer *s, char **out, char *err, size_t err_len)
{
    *out = NULL;
    if (s == NULL || s->done) {
        dkd__sign_err(err, err_len, "the signer has already ended");
        return DKD_ERR_STATE;
    }
    s->done = true; /* once, whatever happens below: the body hash is spent */
    char bh64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    body_hash(s, bh64);
    dkd_buf b;
    dkd__buf_init(&b);
    folder f = {&b, 0};
    write_field(s, &f, bh64);
    uint8_t digest[EVP_MAX_MD_SIZE], *sig = NULL;
    unsigned digest_len = 0;
    size_t sig_len = 0;
    char *b64 = NULL;
    int rc = DKD_ERR_NOMEM;
    dkd__sign_err(err, err_len, "out of memory");
    if (dkd__buf_failed(&b) || dkd__buf_failed(&s->h) ||
        !header_hash(s, &b, digest, &digest_len)) {
        goto done;
    }
    if (!sign_digest(s, digest, digest_len, &sig, &sig_len)) {
        rc = DKD_ERR_STATE;
        dkd__sign_err(err, err_len, "signing failed in OpenSSL");
        goto done;
    }
    b64 = malloc(4 * ((sig_len + 2) / 3) + 1);
    if (b64 == NULL) {
        goto done;
    }
    b64[dkd__b64_encode(sig, sig_len, b64)] = '\0';
    write_b(&f, b64);
    *out = dkd__buf_cstr(&b);
    if (*out == NULL) {
        goto done;
    }
    b = (dkd_buf){0}; /* *out owns the memory now */
    rc = 0;
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
done:
    free(b64);
    free(sig);
    dkd__buf_free(&b);
    return rc;
}

void dkd_signer_free(dkd_signer *s)
{
    if (s == NULL) {
        return;
    }
    EVP_MD_CTX_free(s->md);
    EVP_MD_free(s->sha256);
    dkd__buf_free(&s->h);
    free(s->fields);
    free(s->hdr);
    free(s->domain);
    free(s->selector);
    free(s->identity);
    free(s);
}

int dkd_sign(const dkd_signkey *key, const dkd_sign_opts *o, const uint8_t *msg, size_t len,
             char **out, char *err, size_t err_len)
{
    *out = NULL;
    size_t hlen = dkd__hdr_block_len(dkd__span(msg, len));
    dkd_signer *s = NULL;
    int rc = dkd_signer_begin(key, o, msg, hlen, &s, err, err_len);
    if (rc != 0) {
        return rc;
    }
    if (len > hlen) {
        rc = dkd_signer_body(s, msg + hlen, len - hlen);
    }
    if (rc == 0) {
        rc = dkd_signer_end(s, out, err, err_len);
    }
    dkd_signer_free(s);
    return rc;
}

size_t dkd_from_domain(const uint8_t *msg, size_t len, char *out, size_t cap)
{
    if (cap > 0) {
        out[0] = '\0';
    }
    size_t hlen = dkd__hdr_block_len(dkd__span(msg, len));
    dkd_field *fields = NULL;
    size_t n = 0, count = 0;
    if (parse_fields(dkd__span(msg, hlen), &fields, &n) != 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!dkd__span_eq_str_nocase(fields[i].name, "from")) {
            continue;
        }
        if (count++ > 0) {
            continue;
        }
        /* The address is inside <...> when there is a display name, else the value. */
        dkd_span v = fields[i].value, addr = v;
        const uint8_t *lt = v.len ? memchr(v.ptr, '<', v.len) : NULL;
        if (lt != NULL) {
            addr = dkd__span(lt + 1, v.len - (size_t)(lt + 1 - v.ptr));
            const uint8_t *gt = addr.len ? memchr(addr.ptr, '>', addr.len) : NULL;
            if (gt != NULL) {
                addr.len = (size_t)(gt - addr.ptr);
            }
        }
        addr = dkd__span_trim_fws(addr);
        const uint8_t *at = NULL;
        for (size_t k = 0; k < addr.len; k++) {
            if (addr.ptr[k] == '@') {
                at = addr.ptr + k;
            }
        }
        if (at == NULL) {
            continue;
        }
        dkd_span dom = dkd__span(at + 1, addr.len - (size_t)(at + 1 - addr.ptr));
        size_t w = 0;
        for (size_t k = 0; k < dom.len && w + 1 < cap; k++) {
            uint8_t c = dom.ptr[k];
            if (dkd__is_fws(c) || c == '>' || c == ',' || c == ';' || c == '(') {
                break;
            }
            out[w++] = (char)dkd__lower(c);
        }
        if (cap > 0) {
            out[w] = '\0';
        }
    }
    free(fields);
    return count;
}
