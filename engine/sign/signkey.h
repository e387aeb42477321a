/*
 * signkey.h - what the signer shares with the signing-key module inside libdkd_sign:
 * the key's struct and the error-message helper. Not installed; the public API is
 * <dkimd/sign.h>.
 */
#ifndef DKD_SIGN_SIGNKEY_H
#define DKD_SIGN_SIGNKEY_H

#include <stddef.h>

#include <openssl/evp.h>

#include <dkimd/sign.h>

struct dkd_signkey {
    EVP_PKEY *pkey;
    enum dkd_key_type type;
    unsigned bits;
};

/* dkd__sign_err formats a message into err (err_len bytes, NUL-terminated); it does
 * nothing when err is NULL or err_len is 0. */
__attribute__((format(printf, 3, 4))) void dkd__sign_err(char *err, size_t err_len,
                                                         const char *fmt, ...);

#endif
