/*
 * sign.c - the DKIM signer (RFC 6376 section 5, RFC 8463), signing keys, and the key
 * record linter behind `dkimctl check-record`.
 *
 * Workload: command-line use and tests - one message at a time, a few keys. So nothing
 * here is tuned: each call fetches what it needs and frees it. What matters is that the
 * signer reuses the verifier's pieces (hdr.c splits the header, canon.c canonicalizes,
 * b64.c encodes) so a signature we make is hashed exactly as dkimd will hash it, and
 * that the linter reads records with the same tag-list parser the key parser uses.
 */
#include <dkimd/sign.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "b64.h"
#include "canon.h"
#include "hdr.h"
#include "key.h"
#include "sig.h"
#include "span.h"
#include "taglist.h"

struct dkd_signkey {
    EVP_PKEY *pkey;
    enum dkd_key_type type;
    unsigned bits;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t err_len,
                                                          const char *fmt, ...)
{
    if (err == NULL || err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- keys ---- */

static dkd_signkey *wrap(EVP_PKEY *pkey, char *err, size_t err_len)
{
    enum dkd_key_type type;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        type = DKD_KEY_RSA;
    } else if (EVP_PKEY_is_a(pkey, "ED25519")) {
        type = DKD_KEY_ED25519;
    } else {
        set_err(err, err_len, "not an RSA or Ed25519 key (%s)", EVP_PKEY_get0_type_name(pkey));
        EVP_PKEY_free(pkey);
        return NULL;
    }
    dkd_signkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        set_err(err, err_len, "out of memory");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    k->type = type;
    k->bits = type == DKD_KEY_RSA ? (unsigned)EVP_PKEY_get_bits(pkey) : 256;
    return k;
}

dkd_signkey *dkd_signkey_generate(enum dkd_key_type type, unsigned bits, char *err,
                                  size_t err_len)
{
    EVP_PKEY *pkey = NULL;
    if (type == DKD_KEY_RSA) {
        /* RFC 8301 3.2: verifiers must accept 1024..4096 and signers must use >= 1024;
         * 8192 is the most dkimd accepts by default. */
        if (bits < 1024 || bits > 8192) {
            set_err(err, err_len, "RSA key size %u out of range 1024..8192", bits);
            return NULL;
        }
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else if (type == DKD_KEY_ED25519) {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    } else {
        set_err(err, err_len, "unknown key type");
        return NULL;
    }
    if (pkey == NULL) {
        set_err(err, err_len, "key generation failed in OpenSSL");
        return NULL;
    }
    return wrap(pkey, err, err_len);
}

dkd_signkey *dkd_signkey_load(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        set_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (pkey == NULL) {
        set_err(err, err_len, "%s: no PEM private key in this file", path);
        return NULL;
    }
    char inner[160] = "";
    dkd_signkey *k = wrap(pkey, inner, sizeof inner);
    if (k == NULL) {
        set_err(err, err_len, "%s: %s", path, inner);
    }
    return k;
}

void dkd_signkey_free(dkd_signkey *key)
{
    if (key != NULL) {
        EVP_PKEY_free(key->pkey);
        free(key);
    }
}

enum dkd_key_type dkd_signkey_type(const dkd_signkey *key)
{
    return key->type;
}

unsigned dkd_signkey_bits(const dkd_signkey *key)
{
    return key->bits;
}

int dkd_signkey_write_pem(const dkd_signkey *key, const char *path)
{
    /* O_EXCL: a key file is never replaced, so a second keygen cannot destroy the key
     * a live selector signs with. 0600 because it is a private key. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -errno;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int e = errno;
        close(fd);
        unlink(path);
        return -e;
    }
    bool ok = PEM_write_PrivateKey(f, key->pkey, NULL, NULL, 0, NULL, NULL) == 1;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fd) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        unlink(path);
        return -EIO;
    }
    return 0;
}

char *dkd_signkey_record(const dkd_signkey *key)
{
    /* RSA publishes the SubjectPublicKeyInfo DER (RFC 6376 3.6.1); Ed25519 the raw
     * 32-byte key (RFC 8463 section 4). */
    uint8_t raw[32];
    uint8_t *der = NULL;
    size_t der_len = 0;
    if (key->type == DKD_KEY_ED25519) {
        der_len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &der_len) != 1) {
            return NULL;
        }
        der = raw;
    } else {
        int n = i2d_PUBKEY(key->pkey, &der);
        if (n <= 0) {
            return NULL;
        }
        der_len = (size_t)n;
    }
    const char *k = key->type == DKD_KEY_ED25519 ? "ed25519" : "rsa";
    size_t b64_len = 4 * ((der_len + 2) / 3);
    size_t cap = 32 + b64_len;
    char *out = malloc(cap);
    if (out != NULL) {
        int n = snprintf(out, cap, "v=DKIM1; k=%s; p=", k);
        size_t w = dkd__b64_encode(der, der_len, out + n);
        out[(size_t)n + w] = '\0';
    }
    if (der != raw) {
        OPENSSL_free(der);
    }
    return out;
}

bool dkd_signkey_matches(const dkd_signkey *key, const dkd_key *pub)
{
    if (pub == NULL || pub->reason != DKD_REASON_OK || pub->pkey == NULL) {
        return false;
    }
    /* EVP_PKEY_eq compares the public components (n and e, or the Ed25519 point). */
    return EVP_PKEY_eq(key->pkey, pub->pkey) == 1;
}

/* ---- a growable string with a sticky failure ---- */

typedef struct sbuf {
    char *ptr;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const void *p, size_t n)
{
    if (b->failed) {
        return;
    }
    if (n + 1 > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *np = realloc(b->ptr, cap);
        if (np == NULL) {
            b->failed = true;
            return;
        }
        b->ptr = np;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* ---- the signature header, folded ---- */

enum { FOLD_WIDTH = 78 };

/* folder: appends tag=value items, breaking lines (CRLF TAB) before an item that would
 * pass FOLD_WIDTH; long values break inside where FWS is allowed. */
typedef struct folder {
    sbuf *b;
    size_t col;
} folder;

static void fold_break(folder *f)
{
    sb_str(f->b, "\r\n\t");
    f->col = 8;
}

static void fold_text(folder *f, const char *s, size_t n)
{
    sb_put(f->b, s, n);
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
static bool build_h(const dkd_sign_opts *o, const dkd_field *fields, size_t n, sbuf *h,
                    char *err, size_t err_len)
{
    if (o->headers != NULL) {
        dkd_span list = dkd__span_str(o->headers), item;
        bool from = false;
        while (dkd__span_get_item(&list, ':', &item)) {
            item = dkd__span_trim_fws(item);
            if (item.len == 0) {
                set_err(err, err_len, "empty name in the header list '%s'", o->headers);
                return false;
            }
            for (size_t i = 0; i < item.len; i++) {
                /* RFC 5322 field names: printable ASCII but the colon. */
                if (item.ptr[i] <= 0x20 || item.ptr[i] >= 0x7f) {
                    set_err(err, err_len, "invalid header name in '%s'", o->headers);
                    return false;
                }
            }
            from |= dkd__span_eq_str_nocase(item, "from");
            if (h->len > 0) {
                sb_put(h, ":", 1);
            }
            sb_put(h, item.ptr, item.len);
        }
        if (!from) {
            set_err(err, err_len, "the header list must include From (RFC 6376 5.4)");
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
                sb_put(h, ":", 1);
            }
            sb_str(h, default_headers[d]);
        }
    }
    return true;
}

static bool name_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && dkd__domain_valid(dkd__span_str(s));
}

int dkd_sign(const dkd_signkey *key, const dkd_sign_opts *o, const uint8_t *msg, size_t len,
             char **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!name_ok(o->domain)) {
        set_err(err, err_len, "d=: '%s' is not a valid domain name", o->domain ? o->domain : "");
        return DKD_ERR_SYNTAX;
    }
    if (!name_ok(o->selector)) {
        set_err(err, err_len, "s=: '%s' is not a valid selector",
                o->selector ? o->selector : "");
        return DKD_ERR_SYNTAX;
    }
    if (o->identity != NULL) {
        for (const char *p = o->identity; *p; p++) {
            /* i= is dkim-quoted-printable; we write it as given, so refuse what would
             * need encoding rather than encode it silently. */
            if (*p <= ' ' || *p == ';' || *p == '=' || (unsigned char)*p >= 0x7f) {
                set_err(err, err_len, "i=: '%s' needs characters we do not encode",
                        o->identity);
                return DKD_ERR_SYNTAX;
            }
        }
    }
    if (len > 0 && dkd__is_wsp(msg[0])) {
        /* A continuation line with no field before it would fold into the signature we
         * prepend and change it: refuse rather than sign what will not verify. */
        set_err(err, err_len, "the message begins with a folded line, not a header field");
        return DKD_ERR_SYNTAX;
    }
    dkd_span m = dkd__span(msg, len);
    size_t hlen = dkd__hdr_block_len(m);
    dkd_field *fields = NULL;
    size_t nfields = 0;
    int rc = parse_fields(dkd__span(msg, hlen), &fields, &nfields);
    if (rc != 0) {
        set_err(err, err_len, "%s", dkd_strerror(rc));
        return rc;
    }
    if (count_named(fields, nfields, dkd__span_str("from")) == 0) {
        free(fields);
        set_err(err, err_len, "the message has no From header: nothing to sign for");
        return DKD_ERR_SYNTAX;
    }

    sbuf h = {0}, b = {0};
    if (!build_h(o, fields, nfields, &h, err, err_len)) {
        free(fields);
        free(h.ptr);
        return DKD_ERR_SYNTAX;
    }
    enum dkd_canon hc = o->header_relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;
    enum dkd_canon bcanon = o->body_relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE;

    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    dkd_body_canon *bc = malloc(sizeof *bc);
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *ed = NULL;
    uint8_t *sigbytes = NULL;
    char *b64 = NULL;
    rc = DKD_ERR_NOMEM;
    set_err(err, err_len, "out of memory");
    if (sha256 == NULL || md == NULL || bc == NULL) {
        goto done;
    }

    /* Body hash over the canonical body (the part after the header block). */
    uint8_t bh[EVP_MAX_MD_SIZE];
    unsigned bh_len = 0;
    EVP_DigestInit_ex(md, sha256, NULL);
    dkd__body_init(bc, bcanon, UINT64_MAX, md_sink, md);
    dkd__body_update(bc, msg + hlen, len - hlen);
    dkd__body_final(bc);
    EVP_DigestFinal_ex(md, bh, &bh_len);
    char bh64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    bh64[dkd__b64_encode(bh, bh_len, bh64)] = '\0';

    /* The field up to "b=", folded; its canonical form is what is signed. */
    char num[32];
    folder f = {&b, 0};
    fold_text(&f, "DKIM-Signature:", strlen("DKIM-Signature:"));
    fold_tag(&f, "v", "1", false);
    fold_tag(&f, "a", key->type == DKD_KEY_ED25519 ? "ed25519-sha256" : "rsa-sha256", false);
    snprintf(num, sizeof num, "%s/%s", hc == DKD_CANON_RELAXED ? "relaxed" : "simple",
             bcanon == DKD_CANON_RELAXED ? "relaxed" : "simple");
    fold_tag(&f, "c", num, false);
    fold_tag(&f, "d", o->domain, false);
    fold_tag(&f, "s", o->selector, false);
    if (o->identity != NULL) {
        fold_tag(&f, "i", o->identity, false);
    }
    int64_t t = o->timestamp >= 0 ? o->timestamp : (int64_t)time(NULL);
    snprintf(num, sizeof num, "%lld", (long long)t);
    fold_tag(&f, "t", num, false);
    if (o->expire_after > 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)((uint64_t)t + o->expire_after));
        fold_tag(&f, "x", num, false);
    }
    if (o->body_length) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)bc->emitted);
        fold_tag(&f, "l", num, false);
    }
    fold_list(&f, "h", h.failed ? "" : h.ptr);
    fold_b64(&f, "bh", bh64, false);
    if (f.col + 1 + 2 + 8 > FOLD_WIDTH) {
        fold_break(&f);
    } else {
        fold_text(&f, " ", 1);
    }
    fold_text(&f, "b=", 2);
    if (b.failed || h.failed) {
        goto done;
    }

    /* Header hash: each h= name takes the last instance not yet used, bottom-up (RFC
     * 6376 5.4.2), exactly as verify.c's hash_headers reads it back. */
    bool *used = calloc(nfields ? nfields : 1, sizeof *used);
    if (used == NULL) {
        goto done;
    }
    EVP_DigestInit_ex(md, sha256, NULL);
    dkd_span list = dkd__span(h.ptr, h.len), item;
    while (dkd__span_get_item(&list, ':', &item)) {
        for (size_t i = nfields; i-- > 0;) {
            if (!used[i] && dkd__span_eq_nocase(fields[i].name, item)) {
                used[i] = true;
                dkd__canon_header(hc, fields[i].raw, 0, 0, true, md_sink, md);
                break;
            }
        }
    }
    free(used);
    dkd__canon_header(hc, dkd__span(b.ptr, b.len), 0, 0, false, md_sink, md);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned digest_len = 0;
    EVP_DigestFinal_ex(md, digest, &digest_len);

    size_t sig_len = 0;
    bool ok;
    if (key->type == DKD_KEY_ED25519) {
        /* RFC 8463 3: PureEdDSA over the SHA-256 of the header hash input. */
        ed = EVP_MD_CTX_new();
        sig_len = 64;
        sigbytes = malloc(sig_len);
        ok = ed != NULL && sigbytes != NULL &&
             EVP_DigestSignInit_ex(ed, NULL, NULL, NULL, NULL, key->pkey, NULL) == 1 &&
             EVP_DigestSign(ed, sigbytes, &sig_len, digest, digest_len) == 1;
    } else {
        pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
        ok = pctx != NULL && EVP_PKEY_sign_init(pctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(pctx, sha256) == 1 &&
             EVP_PKEY_sign(pctx, NULL, &sig_len, digest, digest_len) == 1;
        if (ok) {
            sigbytes = malloc(sig_len);
            ok = sigbytes != NULL &&
                 EVP_PKEY_sign(pctx, sigbytes, &sig_len, digest, digest_len) == 1;
        }
    }
    if (!ok) {
        rc = DKD_ERR_STATE;
        set_err(err, err_len, "signing failed in OpenSSL");
        goto done;
    }
    b64 = malloc(4 * ((sig_len + 2) / 3) + 1);
    if (b64 == NULL) {
        goto done;
    }
    b64[dkd__b64_encode(sigbytes, sig_len, b64)] = '\0';
    /* b= goes on straight after "b=" (no space): the verifier empties exactly the bytes
     * from '=' to the end, and what we hashed ended at '='. */
    size_t room = f.col < FOLD_WIDTH ? FOLD_WIDTH - f.col : 0;
    size_t n = strlen(b64), take = n < room ? n : room;
    fold_text(&f, b64, take);
    const char *rest = b64 + take;
    n -= take;
    while (n > 0) {
        fold_break(&f);
        take = n < FOLD_WIDTH - 8 ? n : FOLD_WIDTH - 8;
        fold_text(&f, rest, take);
        rest += take;
        n -= take;
    }
    sb_str(&b, "\r\n");
    if (b.failed) {
        goto done;
    }
    *out = b.ptr;
    b.ptr = NULL;
    rc = 0;
    if (err != NULL && err_len > 0) {
        err[0] = '\0';
    }
done:
    free(b64);
    free(sigbytes);
    EVP_MD_CTX_free(ed);
    EVP_PKEY_CTX_free(pctx);
    free(bc);
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha256);
    free(b.ptr);
    free(h.ptr);
    free(fields);
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

/* ---- key record lint ---- */

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
