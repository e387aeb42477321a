/*
 * signkey.c - signing keys for the DKIM signer: generating RSA and Ed25519 keys, loading
 * and writing them as PEM, and the public key record (v=DKIM1; k=...; p=...) that goes
 * with each.
 *
 * Workload: command-line use and tests - a few keys per run, each made or loaded once.
 * Nothing here is tuned; what matters is that a key file is never overwritten, that the
 * daemon refuses a key file others can read, and that the record we print is the one
 * the verifier's key parser reads back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "b64.h"
#include "key.h"
#include "signkey.h"

void dkd__sign_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static dkd_signkey *wrap(EVP_PKEY *pkey, char *err, size_t err_len)
{
    enum dkd_key_type type;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        type = DKD_KEY_RSA;
    } else if (EVP_PKEY_is_a(pkey, "ED25519")) {
        type = DKD_KEY_ED25519;
    } else {
        dkd__sign_err(err, err_len, "not an RSA or Ed25519 key (%s)",
                      EVP_PKEY_get0_type_name(pkey));
        EVP_PKEY_free(pkey);
        return NULL;
    }
    dkd_signkey *k = calloc(1, sizeof *k);
    if (k == NULL) {
        dkd__sign_err(err, err_len, "out of memory");
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
            dkd__sign_err(err, err_len, "RSA key size %u out of range 1024..8192", bits);
            return NULL;
        }
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else if (type == DKD_KEY_ED25519) {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    } else {
        dkd__sign_err(err, err_len, "unknown key type");
        return NULL;
    }
    if (pkey == NULL) {
        dkd__sign_err(err, err_len, "key generation failed in OpenSSL");
        return NULL;
    }
    return wrap(pkey, err, err_len);
}

/* load_pem reads the key from f (which it closes); path is for messages only. */
static dkd_signkey *load_pem(FILE *f, const char *path, char *err, size_t err_len)
{
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (pkey == NULL) {
        dkd__sign_err(err, err_len, "%s: no PEM private key in this file", path);
        return NULL;
    }
    char inner[160] = "";
    dkd_signkey *k = wrap(pkey, inner, sizeof inner);
    if (k == NULL) {
        dkd__sign_err(err, err_len, "%s: %s", path, inner);
    }
    return k;
}

dkd_signkey *dkd_signkey_load(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        dkd__sign_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    return load_pem(f, path, err, err_len);
}

/* private_fd_ok refuses what a daemon must not sign with: anything but a regular file,
 * or one that others may read or anyone but the owner may write (a key others can read
 * may already be someone else's; one others can write may be theirs next time). It asks
 * the open descriptor, so what is checked is what is read. */
static bool private_fd_ok(int fd, const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        dkd__sign_err(err, err_len, "%s: %s", path, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        dkd__sign_err(err, err_len, "%s: not a regular file", path);
        return false;
    }
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if ((st.st_mode & S_IRWXO) != 0) {
        dkd__sign_err(err, err_len,
                      "%s: mode %04o gives other users access to a private key; "
                      "chmod 600 %s",
                      path, mode, path);
        return false;
    }
    if ((st.st_mode & S_IWGRP) != 0) {
        dkd__sign_err(err, err_len,
                      "%s: mode %04o lets the file's group change a private key; "
                      "chmod 600 %s",
                      path, mode, path);
        return false;
    }
    return true;
}

dkd_signkey *dkd_signkey_load_private(const char *path, char *err, size_t err_len)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before
     * fstat could refuse it. It has no effect on reading a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        dkd__sign_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (!private_fd_ok(fd, path, err, err_len)) {
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        dkd__sign_err(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    return load_pem(f, path, err, err_len);
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
