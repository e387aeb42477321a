/*
 * key_fuzz.c - libFuzzer target for engine/core/key.c: dkd_key_from_record on any bytes.
 *
 * Properties checked on every input:
 *  - a key always comes back, with a reason a key record can produce;
 *  - reason OK <=> a pkey, and then bits > 0 and agreeing with OpenSSL's view of the key
 *    (256 for ed25519); otherwise bits == 0;
 *  - the detail is NUL-terminated printable ASCII, empty exactly when the key is usable;
 *  - round trip: a usable RSA key re-encoded as SubjectPublicKeyInfo and parsed again
 *    is the same key with the same size, and a usable ed25519 key re-encoded raw too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "b64.h"
#include "key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool record_reason(enum dkd_reason r)
{
    return r == DKD_REASON_OK || r == DKD_REASON_KEY_SYNTAX || r == DKD_REASON_KEY_VERSION ||
           r == DKD_REASON_KEY_TYPE || r == DKD_REASON_KEY_SERVICE || r == DKD_REASON_KEY_REVOKED;
}

static void check_detail(const dkd_key *k)
{
    const char *d = dkd_key_detail(k);
    size_t n = strnlen(d, sizeof k->detail);
    CHECK(n < sizeof k->detail);
    for (size_t i = 0; i < n; i++) {
        CHECK(d[i] >= 0x20 && d[i] < 0x7f);
    }
    CHECK((n == 0) == (dkd_key_reason(k) == DKD_REASON_OK));
}

/* reparse builds "k=TYPE; p=<b64 of der>" and checks it gives the same key. */
static void reparse(const dkd_key *k, const char *type, const uint8_t *der, size_t len)
{
    size_t cap = 32 + 4 * ((len + 2) / 3);
    char *rec = malloc(cap);
    CHECK(rec != NULL);
    size_t off = (size_t)snprintf(rec, cap, "k=%s; p=", type);
    off += dkd__b64_encode(der, len, rec + off);
    dkd_key *again = dkd_key_from_record((const uint8_t *)rec, off);
    CHECK(again != NULL);
    CHECK(dkd_key_reason(again) == DKD_REASON_OK);
    CHECK(dkd_key_bits(again) == dkd_key_bits(k));
    CHECK(EVP_PKEY_eq(again->pkey, k->pkey) == 1);
    dkd_key_unref(again);
    free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dkd_key *k = dkd_key_from_record(data, size);
    CHECK(k != NULL);
    enum dkd_reason r = dkd_key_reason(k);
    CHECK(record_reason(r));
    check_detail(k);
    CHECK(dkd_key_type(k) == DKD_KEY_RSA || dkd_key_type(k) == DKD_KEY_ED25519);
    CHECK((k->hashes & ~(unsigned)(DKD_KEY_HASH_SHA1 | DKD_KEY_HASH_SHA256)) == 0);
    CHECK((dkd_key_flags(k) & ~(unsigned)(DKD_KEY_TESTING | DKD_KEY_STRICT)) == 0);
    if (r != DKD_REASON_OK) {
        CHECK(k->pkey == NULL);
        CHECK(dkd_key_bits(k) == 0);
        dkd_key_unref(k);
        return 0;
    }
    CHECK(k->pkey != NULL);
    CHECK(dkd_key_bits(k) > 0);
    CHECK(k->service_email);
    if (dkd_key_type(k) == DKD_KEY_ED25519) {
        CHECK(dkd_key_bits(k) == 256);
        CHECK(EVP_PKEY_is_a(k->pkey, "ED25519"));
        uint8_t raw[32];
        size_t len = sizeof raw;
        CHECK(EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) == 1 && len == 32);
        reparse(k, "ed25519", raw, len);
    } else {
        CHECK(EVP_PKEY_is_a(k->pkey, "RSA"));
        CHECK((unsigned)EVP_PKEY_get_bits(k->pkey) == dkd_key_bits(k));
        uint8_t *der = NULL;
        int len = i2d_PUBKEY(k->pkey, &der);
        CHECK(len > 0);
        reparse(k, "rsa", der, (size_t)len);
        OPENSSL_free(der);
    }
    /* A reference taken and dropped leaves the key alive for the final unref. */
    dkd_key_unref(dkd_key_ref(k));
    dkd_key_unref(k);
    return 0;
}
