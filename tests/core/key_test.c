/*
 * key_test.c - unit tests for engine/core/key.c: every key record rule of RFC 6376 3.6.1,
 * RFC 8301 and RFC 8463 as key.c implements them, with real keys (the RFC 6376 C.2 and
 * RFC 8463 A.2 keys, the go-msgauth PKCS#1 key, and RSA/ed25519 keys generated here and
 * compared with the parsed result), malformed DER, failures and reference counting.
 * Records sit against a guard page so an over-read crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "b64.h"
#include "guard.h"
#include "key.h"

/* RFC 6376 Appendix C.2 (SubjectPublicKeyInfo, 1024 bits). */
static const char rfc6376_p[] =
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOC"
    "KG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGj"
    "aNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB";
/* go-msgauth dnsRawRSAPublicKey: a bare PKCS#1 RSAPublicKey (1024 bits). */
static const char pkcs1_p[] =
    "MIGJAoGBALVI635dLK4cJJAH3Lx6upo3X/Lm1tQz3mezcWTA3BUBnyIsdnRf57aD5BtNmhPrYYDlWlzw3UgnKisIxktk"
    "k5+iMQMlFtAS10JB8L3YadXNJY+JBcbeSi5TgJe4WFzNgW95FWDAuSTRXSWZfA/8xjflbTLDx0euFZOM7C4T0GwL"
    "AgMBAAE=";
/* RFC 8463 A.2 ed25519 key. */
static const char ed_p[] = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
/* mail-dkim's invalid._domainkey.wander.science: an ed25519 SPKI (44 bytes), not raw. */
static const char ed_spki_p[] = "MCowBQYDK2VwAyEA3SUqa9UbfciWkk7tlcJ9P1VD5pXAasg0JUn/OgjVbKE=";

static dkd_key *parse(const char *rec)
{
    size_t n = strlen(rec);
    dkd_key *k = dkd_key_from_record(guard_copy(rec, n), n);
    assert_non_null(k);
    return k;
}

/* expect parses rec and checks reason and that detail contains want (may be NULL). */
static void expect(const char *rec, enum dkd_reason reason, const char *want)
{
    dkd_key *k = parse(rec);
    if (dkd_key_reason(k) != reason) {
        fail_msg("'%.80s': reason %s (%s), want %s", rec, dkd_reason_code(dkd_key_reason(k)),
                 dkd_key_detail(k), dkd_reason_code(reason));
    }
    if (want != NULL && strstr(dkd_key_detail(k), want) == NULL) {
        fail_msg("'%.80s': detail '%s' lacks '%s'", rec, dkd_key_detail(k), want);
    }
    if (reason != DKD_REASON_OK) {
        assert_null(k->pkey);
        assert_int_equal(dkd_key_bits(k), 0);
    }
    dkd_key_unref(k);
}

__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    static char out[8192];
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, sizeof out, f, ap);
    va_end(ap);
    return out;
}

/* b64 of der into a static buffer. */
static const char *b64(const uint8_t *der, size_t len)
{
    static char out[4096];
    assert_true(4 * ((len + 2) / 3) < sizeof out);
    out[dkd__b64_encode(der, len, out)] = '\0';
    return out;
}

static size_t spki_der(EVP_PKEY *pk, uint8_t *out, size_t cap)
{
    int n = i2d_PUBKEY(pk, NULL);
    assert_true(n > 0 && (size_t)n <= cap);
    uint8_t *p = out;
    assert_int_equal(i2d_PUBKEY(pk, &p), n);
    return (size_t)n;
}

static size_t pkcs1_der(EVP_PKEY *pk, uint8_t *out, size_t cap)
{
    /* For RSA, i2d_PublicKey writes the PKCS#1 RSAPublicKey. */
    int n = i2d_PublicKey(pk, NULL);
    assert_true(n > 0 && (size_t)n <= cap);
    uint8_t *p = out;
    assert_int_equal(i2d_PublicKey(pk, &p), n);
    return (size_t)n;
}

static void test_rfc_keys(void **state)
{
    (void)state;
    dkd_key *k = parse(fmt("v=DKIM1; p=%s", rfc6376_p));
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_string_equal(dkd_key_detail(k), "");
    assert_int_equal(dkd_key_type(k), DKD_KEY_RSA);
    assert_int_equal(dkd_key_bits(k), 1024);
    assert_int_equal(dkd_key_flags(k), 0);
    assert_int_equal(k->hashes, DKD_KEY_HASH_SHA1 | DKD_KEY_HASH_SHA256);
    assert_true(k->service_email);
    assert_non_null(k->pkey);
    assert_int_equal(EVP_PKEY_get_bits(k->pkey), 1024);
    dkd_key_unref(k);

    k = parse(fmt("v=DKIM1; p=%s", pkcs1_p));
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(k), 1024);
    assert_true(EVP_PKEY_is_a(k->pkey, "RSA"));
    dkd_key_unref(k);

    k = parse(fmt("v=DKIM1; k=ed25519; p=%s", ed_p));
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_type(k), DKD_KEY_ED25519);
    assert_int_equal(dkd_key_bits(k), 256);
    uint8_t raw[32], want[40];
    size_t rawlen = sizeof raw, wantlen;
    assert_true(EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen));
    assert_true(dkd__b64_decode(dkd__span_str(ed_p), want, sizeof want, &wantlen));
    assert_int_equal(rawlen, 32);
    assert_int_equal(wantlen, 32);
    assert_memory_equal(raw, want, 32);
    dkd_key_unref(k);

    /* k= is case-insensitive (RFC 5234 literals); FWS may fold inside p=. */
    expect(fmt("v=DKIM1; k=ED25519; p=%.20s \r\n\t%s", ed_p, ed_p + 20), DKD_REASON_OK, NULL);
    /* mail-dkim test2: spaces around '=', trailing "; " */
    expect(fmt("v=DKIM1; s=email:web:fine; x1 = extra ; t = y:n:extra; h=md5:sha1; p=%s ; ",
               rfc6376_p),
           DKD_REASON_OK, NULL);
}

/* Generated keys: the parsed key must be the same key, in both encodings. */
static void check_generated_rsa(unsigned bits)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    assert_non_null(pk);
    uint8_t der[2048];
    for (int form = 0; form < 2; form++) {
        size_t n = form == 0 ? spki_der(pk, der, sizeof der) : pkcs1_der(pk, der, sizeof der);
        dkd_key *k = parse(fmt("k=rsa; p=%s", b64(der, n)));
        if (dkd_key_reason(k) != DKD_REASON_OK) {
            fail_msg("%u bits form %d: %s", bits, form, dkd_key_detail(k));
        }
        assert_int_equal(dkd_key_bits(k), bits);
        assert_int_equal(EVP_PKEY_eq(k->pkey, pk), 1);
        dkd_key_unref(k);
    }
    EVP_PKEY_free(pk);
}

static void test_generated_rsa(void **state)
{
    (void)state;
    /* 1025 and 1100 check the bit count of a modulus whose top byte is not full. */
    check_generated_rsa(1024);
    check_generated_rsa(1025);
    check_generated_rsa(1100);
    check_generated_rsa(2048);
}

static void test_generated_ed25519(void **state)
{
    (void)state;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(pk);
    uint8_t raw[32];
    size_t len = sizeof raw;
    assert_true(EVP_PKEY_get_raw_public_key(pk, raw, &len));
    dkd_key *k = parse(fmt("v=DKIM1; k=ed25519; p=%s", b64(raw, len)));
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(EVP_PKEY_eq(k->pkey, pk), 1);
    dkd_key_unref(k);

    /* The SPKI form of an ed25519 key is not RFC 8463's raw form. */
    uint8_t der[128];
    size_t n = spki_der(pk, der, sizeof der);
    expect(fmt("k=ed25519; p=%s", b64(der, n)), DKD_REASON_KEY_SYNTAX,
           "tag p: ed25519 key must be 32 bytes, got 44");
    /* ... and with k=rsa (the default) it is the wrong key type. */
    expect(fmt("p=%s", b64(der, n)), DKD_REASON_KEY_TYPE, "tag p");
    EVP_PKEY_free(pk);

    expect(fmt("v=DKIM1; k=ed25519; p=%s", ed_spki_p), DKD_REASON_KEY_SYNTAX,
           "ed25519 key must be 32 bytes, got 44");
    expect("k=ed25519; p=AAAA", DKD_REASON_KEY_SYNTAX, "got 3");
    /* A 1024-bit RSA key under k=ed25519. */
    expect(fmt("k=ed25519; p=%s", rfc6376_p), DKD_REASON_KEY_SYNTAX, "got 162");
}

static void test_ec_key_is_wrong_type(void **state)
{
    (void)state;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(pk);
    uint8_t der[256];
    size_t n = spki_der(pk, der, sizeof der);
    expect(fmt("k=rsa; p=%s", b64(der, n)), DKD_REASON_KEY_TYPE, "not an RSA key");
    EVP_PKEY_free(pk);
}

static void test_syntax(void **state)
{
    (void)state;
    expect("", DKD_REASON_KEY_SYNTAX, "missing tag p=");
    /* mail-dkim testbad2: a tag without '=' */
    expect(fmt("k=rsa; t; p=%s", rfc6376_p), DKD_REASON_KEY_SYNTAX,
           "key record syntax error at byte 8: missing");
    /* mail-dkim 2023-05-ed25519-empty: the record is two quote characters */
    expect("\"\"", DKD_REASON_KEY_SYNTAX, "key record syntax error at byte 0");
    expect(fmt("p=%s; k=rsa; p=%s", rfc6376_p, rfc6376_p), DKD_REASON_KEY_SYNTAX, "repeats tag p=");
    expect(fmt("k=rsa;; p=%s", rfc6376_p), DKD_REASON_KEY_SYNTAX, "syntax error");
    expect("v=DKIM1; k=rsa", DKD_REASON_KEY_SYNTAX, "missing tag p=");
    expect("v=DKIM1", DKD_REASON_KEY_SYNTAX, "missing tag p=");
}

static void test_version(void **state)
{
    (void)state;
    expect(fmt("v=DKIM1; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("v=DKIM3; t=y; p=%s", rfc6376_p), DKD_REASON_KEY_VERSION, "'DKIM3'");
    expect(fmt("v=dkim1; p=%s", rfc6376_p), DKD_REASON_KEY_VERSION, "tag v");
    /* dkimpy badversion: "v=DKIM1:" makes the value "DKIM1: g=*" */
    expect(fmt("v=DKIM1: g=*; k=rsa; p=%s", rfc6376_p), DKD_REASON_KEY_VERSION, "tag v");
    expect(fmt("k=rsa; v=DKIM1; p=%s", rfc6376_p), DKD_REASON_KEY_VERSION, "first tag");
    expect(fmt("v=; p=%s", rfc6376_p), DKD_REASON_KEY_VERSION, "tag v");
}

static void test_key_type(void **state)
{
    (void)state;
    expect(fmt("k=rsa; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("k=foobar; t=y; p=%s", rfc6376_p), DKD_REASON_KEY_TYPE,
           "tag k: unknown key type 'foobar'");
    expect(fmt("v=DKIM1; g=*; k=ed25519-sha256; p=%s", rfc6376_p), DKD_REASON_KEY_TYPE,
           "'ed25519-sha256'");
    expect(fmt("k=; p=%s", rfc6376_p), DKD_REASON_KEY_TYPE, "tag k");
    /* A non-printable byte in the value is not echoed raw into the detail. */
    expect(fmt("k=r\x80sa; p=%s", rfc6376_p), DKD_REASON_KEY_TYPE, "'r?sa'");
    /* A key of the other type under k=ed25519 is rejected, not misread. */
    expect(fmt("k=ed25519; p=%s", pkcs1_p), DKD_REASON_KEY_SYNTAX, "32 bytes");
}

static unsigned hashes_of(const char *rec)
{
    dkd_key *k = parse(rec);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    unsigned h = k->hashes;
    dkd_key_unref(k);
    return h;
}

static void test_hashes(void **state)
{
    (void)state;
    enum { S1 = DKD_KEY_HASH_SHA1, S256 = DKD_KEY_HASH_SHA256 };
    assert_int_equal(hashes_of(fmt("p=%s", rfc6376_p)), S1 | S256);
    assert_int_equal(hashes_of(fmt("h=sha256; p=%s", rfc6376_p)), S256);
    assert_int_equal(hashes_of(fmt("h=md5:sha1; p=%s", rfc6376_p)), S1);
    assert_int_equal(hashes_of(fmt("h=sha1:sha256:sha512; p=%s", rfc6376_p)), S1 | S256);
    assert_int_equal(hashes_of(fmt("h=sha1 : SHA256; p=%s", rfc6376_p)), S1 | S256);
    /* mail-dkim testbad7: no known hash; the verifier turns this into key-hash. */
    assert_int_equal(hashes_of(fmt("v=DKIM1; h=bad; p=%s", rfc6376_p)), 0);
    assert_int_equal(hashes_of(fmt("h=; p=%s", rfc6376_p)), 0);
}

static void test_service(void **state)
{
    (void)state;
    expect(fmt("s=email; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("s=*; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("s=email:web:fine; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("s=web : email; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
    expect(fmt("s=chat; p=%s", rfc6376_p), DKD_REASON_KEY_SERVICE, "tag s: service 'chat'");
    expect(fmt("s=tlsrpt; p=%s", rfc6376_p), DKD_REASON_KEY_SERVICE, "tag s");
    expect(fmt("s=; p=%s", rfc6376_p), DKD_REASON_KEY_SERVICE, "tag s");
    expect(fmt("s=emails; p=%s", rfc6376_p), DKD_REASON_KEY_SERVICE, "tag s");
}

static unsigned flags_of(const char *rec)
{
    dkd_key *k = parse(rec);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    unsigned f = dkd_key_flags(k);
    dkd_key_unref(k);
    return f;
}

static void test_flags(void **state)
{
    (void)state;
    assert_int_equal(flags_of(fmt("t=y; p=%s", rfc6376_p)), DKD_KEY_TESTING);
    assert_int_equal(flags_of(fmt("t=s; p=%s", rfc6376_p)), DKD_KEY_STRICT);
    assert_int_equal(flags_of(fmt("t=y:s; p=%s", rfc6376_p)), DKD_KEY_TESTING | DKD_KEY_STRICT);
    assert_int_equal(flags_of(fmt("t = y:n:extra; p=%s", rfc6376_p)), DKD_KEY_TESTING);
    assert_int_equal(flags_of(fmt("t=n:yes; p=%s", rfc6376_p)), 0);
    assert_int_equal(flags_of(fmt("t=; p=%s", rfc6376_p)), 0);
    /* Flags are kept on failed keys too (a revoked key in testing mode). */
    dkd_key *k = parse("k=rsa; t=y; p=");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_REVOKED);
    assert_int_equal(dkd_key_flags(k), DKD_KEY_TESTING);
    dkd_key_unref(k);
}

static void test_p(void **state)
{
    (void)state;
    expect("k=rsa; t=y; p=", DKD_REASON_KEY_REVOKED, "tag p");
    expect("v=DKIM1; p= ;", DKD_REASON_KEY_REVOKED, NULL);
    expect("v=DKIM1; p=", DKD_REASON_KEY_REVOKED, NULL);
    expect("p=MIGf!A0G", DKD_REASON_KEY_SYNTAX, "tag p: invalid base64");
    expect("p=MIG", DKD_REASON_KEY_SYNTAX, NULL);
    expect("p=A", DKD_REASON_KEY_SYNTAX, "tag p: invalid base64");
    expect("p=AAAA", DKD_REASON_KEY_SYNTAX, "tag p: not an RSA public key");
    expect("p=aGVsbG8gd29ybGQ=", DKD_REASON_KEY_SYNTAX, "tag p: not an RSA public key");
    /* dkimpy test_catch_bad_key: one character dropped from the OID, which leaves the
     * base64 with a dangling group. */
    expect("k=rsa; p=MFwwDQYJKoZIhvNAQEBBQADSwAwSAJBANmBe10IgY+u7h3enWTukkqtUD5PR52Tb/mPfjC0QJT"
           "ocVBq6Za/PlzfV+Py92VaCak19F4WrbVTK5Gg5tW220MCAwEAAQ==",
           DKD_REASON_KEY_SYNTAX, "tag p: invalid base64");
    /* Unknown tags are ignored. */
    expect(fmt("v=DKIM1; g=*; n=send%%20comments; x1=extra; p=%s", rfc6376_p), DKD_REASON_OK, NULL);
}

/* Every prefix of a good DER key, and the key plus a trailing byte, must fail cleanly. */
static void test_truncated_der(void **state)
{
    (void)state;
    uint8_t der[512], buf[520];
    size_t n;
    assert_true(dkd__b64_decode(dkd__span_str(rfc6376_p), der, sizeof der, &n));
    for (size_t len = 0; len < n; len++) {
        memcpy(buf, der, len);
        if (len == 0) {
            continue; /* empty p= is the revocation, tested above */
        }
        dkd_key *k = parse(fmt("p=%s", b64(buf, len)));
        assert_int_not_equal(dkd_key_reason(k), DKD_REASON_OK);
        assert_null(k->pkey);
        dkd_key_unref(k);
    }
    memcpy(buf, der, n);
    buf[n] = 0;
    expect(fmt("p=%s", b64(buf, n + 1)), DKD_REASON_KEY_SYNTAX, "not an RSA public key");

    /* PKCS#1 with a negative modulus (high bit set, no leading zero). */
    static const uint8_t neg[] = {0x30, 0x08, 0x02, 0x03, 0x80, 0x00, 0x01, 0x02, 0x01, 0x03};
    expect(fmt("p=%s", b64(neg, sizeof neg)), DKD_REASON_KEY_SYNTAX, "not an RSA");
    /* A zero modulus. */
    static const uint8_t zero[] = {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03};
    expect(fmt("p=%s", b64(zero, sizeof zero)), DKD_REASON_KEY_SYNTAX, "not an RSA");
    /* Indefinite length (BER, not DER). */
    static const uint8_t indef[] = {0x30, 0x80, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0, 0};
    expect(fmt("p=%s", b64(indef, sizeof indef)), DKD_REASON_KEY_SYNTAX, "not an RSA");
    /* A length far beyond the input. */
    static const uint8_t huge[] = {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x05};
    expect(fmt("p=%s", b64(huge, sizeof huge)), DKD_REASON_KEY_SYNTAX, "not an RSA");
    /* A tiny but well-formed PKCS#1 key is a key: size policy is the verifier's. */
    static const uint8_t tiny[] = {0x30, 0x06, 0x02, 0x01, 0x21, 0x02, 0x01, 0x03};
    dkd_key *k = parse(fmt("p=%s", b64(tiny, sizeof tiny)));
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(k), 6);
    dkd_key_unref(k);
}

static void test_failure(void **state)
{
    (void)state;
    dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_ERROR, "SERVFAIL for x._domainkey.y");
    assert_non_null(k);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_DNS_ERROR);
    assert_string_equal(dkd_key_detail(k), "SERVFAIL for x._domainkey.y");
    assert_int_equal(dkd_key_bits(k), 0);
    assert_null(k->pkey);
    assert_false(dkd_key_dnssec_secure(k));
    dkd_key_set_dnssec_secure(k, true);
    assert_true(dkd_key_dnssec_secure(k));
    dkd_key_unref(k);

    k = dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, NULL);
    assert_string_equal(dkd_key_detail(k), "");
    dkd_key_unref(k);

    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    k = dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, big);
    assert_int_equal(strlen(dkd_key_detail(k)), sizeof k->detail - 1);
    dkd_key_unref(k);

    /* OK without a key would break "OK implies pkey". */
    k = dkd_key_from_failure(DKD_REASON_OK, "oops");
    assert_int_equal(dkd_key_reason(k), DKD_REASON_INTERNAL);
    dkd_key_unref(k);
}

static void test_refcount(void **state)
{
    (void)state;
    dkd_key *k = parse(fmt("p=%s", rfc6376_p));
    assert_int_equal(atomic_load(&k->refs), 1);
    assert_ptr_equal(dkd_key_ref(k), k);
    assert_ptr_equal(dkd_key_ref(k), k);
    assert_int_equal(atomic_load(&k->refs), 3);
    dkd_key_unref(k);
    dkd_key_unref(k);
    assert_int_equal(atomic_load(&k->refs), 1);
    dkd_key_unref(k); /* frees; ASan builds catch a leak or double free */
    dkd_key_unref(NULL);
    assert_null(dkd_key_ref(NULL));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A rough comparison, printed and not asserted (timing is not a unit-test property):
 * key.c's DER reader + EVP_PKEY_fromdata against OpenSSL's generic d2i_PUBKEY.
 */
static void test_timing(void **state)
{
    (void)state;
    enum { N = 1000 };
    char *rec = strdup(fmt("v=DKIM1; k=rsa; p=%s", rfc6376_p));
    size_t len = strlen(rec);
    uint8_t der[512];
    size_t n;
    assert_true(dkd__b64_decode(dkd__span_str(rfc6376_p), der, sizeof der, &n));

    double t0 = now();
    for (int i = 0; i < N; i++) {
        dkd_key *k = dkd_key_from_record((const uint8_t *)rec, len);
        assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
        dkd_key_unref(k);
    }
    double t1 = now();
    for (int i = 0; i < N; i++) {
        const uint8_t *p = der;
        EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)n);
        assert_non_null(pk);
        EVP_PKEY_free(pk);
    }
    double t2 = now();
    printf("# key record parse (whole record, own DER + fromdata): %.1f us/key\n",
           (t1 - t0) * 1e6 / N);
    printf("# d2i_PUBKEY alone (OSSL_DECODER):                     %.1f us/key\n",
           (t2 - t1) * 1e6 / N);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_keys),
        cmocka_unit_test(test_generated_rsa),
        cmocka_unit_test(test_generated_ed25519),
        cmocka_unit_test(test_ec_key_is_wrong_type),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_key_type),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_service),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_p),
        cmocka_unit_test(test_truncated_der),
        cmocka_unit_test(test_failure),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
