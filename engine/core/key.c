/*
 * key.c - DKIM key records (RFC 6376 section 3.6.1, RFC 8301, RFC 8463) parsed into
 * shared, immutable, reference-counted dkd_key objects.
 *
 * Workload: one parse per key-cache miss (a few per second on a busy host, bursts after
 * a restart), then many lookups of the same parsed key by all worker threads. A failed
 * record is still a dkd_key (reason != OK, with a detail naming the tag) so that the
 * cache keeps negative answers exactly like positive ones.
 *
 * Key policy (minimum and maximum RSA size, which hashes a signature may use) belongs to
 * the verifier; this file only reports what the record says.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "b64.h"
#include "key.h"
#include "span.h"
#include "taglist.h"

/* ---- helpers for the detail text ---- */

/* set_fail records why the key is unusable: the reason and a formatted detail. */
__attribute__((format(printf, 3, 4))) static void set_fail(dkd_key *key, enum dkd_reason reason,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key->detail, sizeof key->detail, fmt, ap);
    va_end(ap);
    key->reason = reason;
}

/*
 * printable copies a tag value into buf for quoting in a detail: the value comes from
 * DNS, so bytes outside printable ASCII become '?' (the detail ends up in an
 * Authentication-Results comment and in logs) and long values are cut with "...".
 */
static const char *printable(dkd_span v, char *buf, size_t cap)
{
    size_t keep = v.len;
    bool cut = false;
    if (keep > cap - 1) {
        keep = cap - 4;
        cut = true;
    }
    for (size_t i = 0; i < keep; i++) {
        uint8_t c = v.ptr[i];
        buf[i] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (cut) {
        memcpy(buf + keep, "...", 3);
        keep += 3;
    }
    buf[keep] = '\0';
    return buf;
}

/* ---- a minimal DER reader for RSA public keys ---- */

/*
 * Why a hand-written DER reader: OpenSSL 3's d2i_PUBKEY goes through the generic
 * OSSL_DECODER machinery (provider look-ups, a decoder chain tried per call), and
 * d2i_RSAPublicKey/EVP_PKEY_assign_RSA are deprecated in 3.0. Reading the two INTEGERs
 * ourselves and handing them to EVP_PKEY_fromdata is exact (we accept precisely
 * SubjectPublicKeyInfo with rsaEncryption, or a bare PKCS#1 RSAPublicKey) and much
 * cheaper: on the development machine a whole 1024-bit key record (tag list, base64,
 * DER, EVP_PKEY_fromdata) takes ~6 us, d2i_PUBKEY alone ~110 us. key_test.c prints
 * both. Long-form lengths need not be minimal (BER leniency, as OpenSSL's d2i).
 */

/* der_get consumes one TLV with the given tag into *body; definite lengths only. */
static bool der_get(dkd_span *s, uint8_t tag, dkd_span *body)
{
    if (s->len < 2 || s->ptr[0] != tag) {
        return false;
    }
    size_t hdr = 2, len = s->ptr[1];
    if (len & 0x80) {
        size_t n = len & 0x7f;
        /* 0x80 is BER's indefinite length; more than 4 length bytes is no key. */
        if (n == 0 || n > 4 || s->len < 2 + n) {
            return false;
        }
        len = 0;
        for (size_t i = 0; i < n; i++) {
            len = (len << 8) | s->ptr[2 + i];
        }
        hdr += n;
    }
    if (len > s->len - hdr) {
        return false;
    }
    *body = dkd__span(s->ptr + hdr, len);
    s->ptr += hdr + len;
    s->len -= hdr + len;
    return true;
}

/* der_get_uint consumes a non-negative, non-zero INTEGER; *mag is its magnitude. */
static bool der_get_uint(dkd_span *s, dkd_span *mag)
{
    dkd_span save = *s, v;
    if (!der_get(s, 0x02, &v) || v.len == 0 || (v.ptr[0] & 0x80)) {
        *s = save;
        return false;
    }
    while (v.len > 0 && v.ptr[0] == 0) {
        v.ptr++;
        v.len--;
    }
    if (v.len == 0) {
        *s = save;
        return false;
    }
    *mag = v;
    return true;
}

/* parse_pkcs1 reads RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
 * filling all of der. */
static bool parse_pkcs1(dkd_span der, dkd_span *n, dkd_span *e)
{
    dkd_span seq;
    if (!der_get(&der, 0x30, &seq) || der.len != 0) {
        return false;
    }
    return der_get_uint(&seq, n) && der_get_uint(&seq, e) && seq.len == 0;
}

enum spki_status { SPKI_NOT, SPKI_RSA, SPKI_OTHER };

/*
 * parse_spki reads SubjectPublicKeyInfo. SPKI_OTHER: a well-formed SPKI whose algorithm
 * is not rsaEncryption (k=rsa with, say, an Ed25519 or EC key: a key-type error rather
 * than a syntax error). On SPKI_RSA, *inner is the RSAPublicKey DER.
 */
static enum spki_status parse_spki(dkd_span der, dkd_span *inner)
{
    static const uint8_t rsa_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
    dkd_span spki, alg, oid, bits;
    if (!der_get(&der, 0x30, &spki) || der.len != 0 || !der_get(&spki, 0x30, &alg) ||
        !der_get(&alg, 0x06, &oid) || !der_get(&spki, 0x03, &bits) || spki.len != 0) {
        return SPKI_NOT;
    }
    if (oid.len != sizeof rsa_oid || memcmp(oid.ptr, rsa_oid, sizeof rsa_oid) != 0) {
        return SPKI_OTHER;
    }
    /* rsaEncryption parameters are NULL (RFC 3279); some encoders omit them. */
    dkd_span null;
    if (alg.len != 0 && (!der_get(&alg, 0x05, &null) || null.len != 0 || alg.len != 0)) {
        return SPKI_NOT;
    }
    /* BIT STRING: first byte is the count of unused bits, 0 for a DER key. */
    if (bits.len < 1 || bits.ptr[0] != 0) {
        return SPKI_NOT;
    }
    *inner = dkd__span(bits.ptr + 1, bits.len - 1);
    return SPKI_RSA;
}

/* build_rsa makes an EVP_PKEY from big-endian n and e. NULL on failure. */
static EVP_PKEY *build_rsa(dkd_span n, dkd_span e)
{
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = BN_bin2bn(n.ptr, (int)n.len, NULL);
    BIGNUM *bn_e = BN_bin2bn(e.ptr, (int)e.len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (bn_n == NULL || bn_e == NULL || bld == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

static unsigned magnitude_bits(dkd_span mag)
{
    unsigned top = 0;
    for (uint8_t c = mag.ptr[0]; c != 0; c >>= 1) {
        top++;
    }
    return (unsigned)(mag.len - 1) * 8 + top;
}

/* Moduli this long cannot come from a TXT record of sane size; the cap only keeps
 * magnitude_bits and BN_bin2bn's int length far from overflow. */
enum { RSA_MAX_MODULUS_BYTES = 64 * 1024 };

static void load_rsa(dkd_key *key, dkd_span der)
{
    dkd_span inner, n, e;
    switch (parse_spki(der, &inner)) {
    case SPKI_OTHER:
        set_fail(key, DKD_REASON_KEY_TYPE, "tag p: key is not an RSA key but k= is rsa");
        return;
    case SPKI_RSA:
        if (!parse_pkcs1(inner, &n, &e)) {
            set_fail(key, DKD_REASON_KEY_SYNTAX, "tag p: not an RSA public key");
            return;
        }
        break;
    case SPKI_NOT:
        /* Bare PKCS#1 RSAPublicKey: published by some signers (go-msgauth, Mail::DKIM
         * accept it), so accept it too. */
        if (!parse_pkcs1(der, &n, &e)) {
            set_fail(key, DKD_REASON_KEY_SYNTAX, "tag p: not an RSA public key");
            return;
        }
        break;
    }
    if (n.len > RSA_MAX_MODULUS_BYTES || e.len > n.len) {
        set_fail(key, DKD_REASON_KEY_SYNTAX, "tag p: not an RSA public key");
        return;
    }
    key->pkey = build_rsa(n, e);
    if (key->pkey == NULL) {
        set_fail(key, DKD_REASON_INTERNAL, "tag p: OpenSSL could not build the RSA key");
        return;
    }
    key->bits = magnitude_bits(n);
}

static void load_ed25519(dkd_key *key, dkd_span raw)
{
    if (raw.len != 32) {
        set_fail(key, DKD_REASON_KEY_SYNTAX, "tag p: ed25519 key must be 32 bytes, got %zu",
                 raw.len);
        return;
    }
    key->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw.ptr, raw.len);
    if (key->pkey == NULL) {
        set_fail(key, DKD_REASON_INTERNAL, "tag p: OpenSSL could not build the ed25519 key");
        return;
    }
    key->bits = 256;
}

/* ---- the record ---- */

static dkd_key *key_alloc(void)
{
    dkd_key *key = calloc(1, sizeof *key);
    if (key == NULL) {
        return NULL;
    }
    atomic_init(&key->refs, 1);
    key->reason = DKD_REASON_OK;
    key->type = DKD_KEY_RSA;
    key->hashes = DKD_KEY_HASH_SHA1 | DKD_KEY_HASH_SHA256;
    key->service_email = true;
    return key;
}

/*
 * next_item consumes the next item of a colon list with its surrounding FWS removed
 * (RFC 6376 allows [FWS] ":" [FWS] between h=, s= and t= entries).
 */
static bool next_item(dkd_span *list, dkd_span *item)
{
    if (!dkd__span_get_item(list, ':', item)) {
        return false;
    }
    *item = dkd__span_trim_fws(*item);
    return true;
}

/* parse_tags applies every rule but p=; returns false once key->reason is set. */
static bool parse_tags(dkd_key *key, const dkd_taglist *tl)
{
    char buf[48];
    const dkd_tag *t = dkd__taglist_find(tl, "v");
    if (t != NULL) {
        /* RFC 6376 3.6.1: v= "MUST be the first tag in the record". */
        if (t != &tl->tags[0]) {
            set_fail(key, DKD_REASON_KEY_VERSION, "tag v: must be the first tag");
            return false;
        }
        if (!dkd__span_eq_str(t->value, "DKIM1")) {
            set_fail(key, DKD_REASON_KEY_VERSION, "tag v: unsupported version '%s'",
                     printable(t->value, buf, sizeof buf));
            return false;
        }
    }
    t = dkd__taglist_find(tl, "k");
    if (t != NULL) {
        if (dkd__span_eq_str_nocase(t->value, "rsa")) {
            key->type = DKD_KEY_RSA;
        } else if (dkd__span_eq_str_nocase(t->value, "ed25519")) {
            key->type = DKD_KEY_ED25519;
        } else {
            set_fail(key, DKD_REASON_KEY_TYPE, "tag k: unknown key type '%s'",
                     printable(t->value, buf, sizeof buf));
            return false;
        }
    }
    t = dkd__taglist_find(tl, "h");
    if (t != NULL) {
        /* Unknown hash names are ignored (3.6.1: "Unrecognized algorithms MUST be
         * ignored"); a list with none we know allows nothing, so every signature then
         * fails the verifier's hash check with key-hash. */
        key->hashes = 0;
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            if (dkd__span_eq_str_nocase(item, "sha1")) {
                key->hashes |= DKD_KEY_HASH_SHA1;
            } else if (dkd__span_eq_str_nocase(item, "sha256")) {
                key->hashes |= DKD_KEY_HASH_SHA256;
            }
        }
    }
    t = dkd__taglist_find(tl, "s");
    if (t != NULL) {
        key->service_email = false;
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            if (dkd__span_eq_str(item, "*") || dkd__span_eq_str_nocase(item, "email")) {
                key->service_email = true;
            }
        }
        if (!key->service_email) {
            set_fail(key, DKD_REASON_KEY_SERVICE, "tag s: service '%s' does not include email",
                     printable(t->value, buf, sizeof buf));
            return false;
        }
    }
    t = dkd__taglist_find(tl, "t");
    if (t != NULL) {
        dkd_span list = t->value, item;
        while (next_item(&list, &item)) {
            if (dkd__span_eq_str_nocase(item, "y")) {
                key->flags |= DKD_KEY_TESTING;
            } else if (dkd__span_eq_str_nocase(item, "s")) {
                key->flags |= DKD_KEY_STRICT;
            }
            /* 3.6.1: "Unrecognized flags MUST be ignored." */
        }
    }
    return true;
}

dkd_key *dkd_key_from_record(const uint8_t *txt, size_t len)
{
    dkd_key *key = key_alloc();
    if (key == NULL) {
        return NULL;
    }
    if (len == 0) {
        set_fail(key, DKD_REASON_KEY_SYNTAX, "missing tag p=");
        return key;
    }
    dkd_taglist tl;
    switch (dkd__taglist_parse(dkd__span(txt, len), &tl)) {
    case DKD_TAGLIST_OK:
        break;
    case DKD_TAGLIST_SYNTAX:
        set_fail(key, DKD_REASON_KEY_SYNTAX, "key record syntax error at byte %zu: %s", tl.err_off,
                 tl.err != NULL ? tl.err : "malformed tag list");
        return key;
    case DKD_TAGLIST_DUPLICATE: {
        char buf[48];
        set_fail(key, DKD_REASON_KEY_SYNTAX,
                 "key record repeats tag %s=", printable(tl.dup, buf, sizeof buf));
        return key;
    }
    default:
        set_fail(key, DKD_REASON_KEY_SYNTAX, "key record syntax error");
        return key;
    }
    if (!parse_tags(key, &tl)) {
        return key;
    }
    const dkd_tag *p = dkd__taglist_find(&tl, "p");
    if (p == NULL) {
        set_fail(key, DKD_REASON_KEY_SYNTAX, "missing tag p=");
        return key;
    }
    /* The taglist trims FWS around the value; FWS inside is skipped by the decoder, so
     * an empty value after trimming is the revocation of 3.6.1. */
    if (p->value.len == 0) {
        set_fail(key, DKD_REASON_KEY_REVOKED, "tag p: empty, key revoked");
        return key;
    }
    size_t cap = p->value.len / 4 * 3 + 3, der_len = 0;
    uint8_t *der = malloc(cap);
    if (der == NULL) {
        dkd_key_unref(key);
        return NULL;
    }
    if (!dkd__b64_decode(p->value, der, cap, &der_len)) {
        set_fail(key, DKD_REASON_KEY_SYNTAX, "tag p: invalid base64");
    } else if (der_len == 0) {
        /* Only FWS inside p=: as good as empty. */
        set_fail(key, DKD_REASON_KEY_REVOKED, "tag p: empty, key revoked");
    } else if (key->type == DKD_KEY_ED25519) {
        load_ed25519(key, dkd__span(der, der_len));
    } else {
        load_rsa(key, dkd__span(der, der_len));
    }
    free(der);
    return key;
}

dkd_key *dkd_key_from_failure(enum dkd_reason reason, const char *detail)
{
    dkd_key *key = key_alloc();
    if (key == NULL) {
        return NULL;
    }
    /* A failure that claims OK would be a usable key without a pkey: every reader
     * relies on "OK implies pkey", so take it as the caller's internal error. */
    if (reason == DKD_REASON_OK || (unsigned)reason >= DKD_REASON__COUNT) {
        reason = DKD_REASON_INTERNAL;
    }
    key->reason = reason;
    snprintf(key->detail, sizeof key->detail, "%s", detail != NULL ? detail : "");
    return key;
}

dkd_key *dkd_key_ref(dkd_key *key)
{
    if (key != NULL) {
        /* Taking a reference needs no ordering: the caller already holds one. */
        atomic_fetch_add_explicit(&key->refs, 1, memory_order_relaxed);
    }
    return key;
}

void dkd_key_unref(dkd_key *key)
{
    if (key == NULL) {
        return;
    }
    /* acq_rel: release orders this thread's reads of the key before the free; acquire
     * (on the last reference) orders the free after every other thread's. A release
     * decrement plus a standalone acquire fence is equivalent, but ThreadSanitizer does
     * not model standalone fences and reports it; the cost difference is nil on x86. */
    if (atomic_fetch_sub_explicit(&key->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    EVP_PKEY_free(key->pkey);
    free(key);
}

enum dkd_reason dkd_key_reason(const dkd_key *key)
{
    return key->reason;
}

const char *dkd_key_detail(const dkd_key *key)
{
    return key->detail;
}

unsigned dkd_key_bits(const dkd_key *key)
{
    return key->reason == DKD_REASON_OK ? key->bits : 0;
}

enum dkd_key_type dkd_key_type(const dkd_key *key)
{
    return key->type;
}

unsigned dkd_key_flags(const dkd_key *key)
{
    return key->flags;
}

bool dkd_key_dnssec_secure(const dkd_key *key)
{
    return key->dnssec_secure;
}

void dkd_key_set_dnssec_secure(dkd_key *key, bool secure)
{
    key->dnssec_secure = secure;
}

bool dkd_key_stale(const dkd_key *key)
{
    return key->stale;
}

dkd_key *dkd__key_stale_copy(const dkd_key *key)
{
    dkd_key *copy = malloc(sizeof *copy);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, key, sizeof *copy);
    atomic_init(&copy->refs, 1);
    copy->stale = true;
    if (copy->pkey != NULL && EVP_PKEY_up_ref(copy->pkey) != 1) {
        free(copy);
        return NULL;
    }
    return copy;
}

bool dkd__key_prefer(dkd_key **best, dkd_key *k)
{
    if (k->reason == DKD_REASON_OK) {
        dkd_key_unref(*best);
        *best = k;
        return true;
    }
    if (*best == NULL) {
        *best = k;
    } else {
        dkd_key_unref(k);
    }
    return false;
}
