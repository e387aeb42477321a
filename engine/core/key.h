/*
 * key.h - the inside of dkd_key, shared by the key record parser (key.c), the
 * verifier and the key sources.
 */
#ifndef DKD_KEY_H
#define DKD_KEY_H

#include <stdatomic.h>
#include <stdbool.h>

#include <openssl/evp.h>

#include <dkimd/engine.h>

/* Bits of dkd_key.hashes: which signature hashes key h= allows (all when h= absent). */
enum { DKD_KEY_HASH_SHA1 = 1u << 0, DKD_KEY_HASH_SHA256 = 1u << 1 };

struct dkd_key {
    atomic_uint refs;
    enum dkd_reason reason;  /* DKD_REASON_OK when pkey is usable */
    enum dkd_key_type type;  /* k=, default rsa */
    unsigned hashes;         /* DKD_KEY_HASH_* allowed by h= */
    unsigned flags;          /* DKD_KEY_TESTING, DKD_KEY_STRICT */
    bool service_email;      /* s= includes email or * (or s= absent) */
    bool dnssec_secure;
    bool stale;              /* an expired key standing in during a DNS outage */
    unsigned bits;
    EVP_PKEY *pkey;          /* NULL unless reason == OK */
    char detail[160];
};

/*
 * dkd__key_prefer folds the key of one more TXT record at a name into *best (NULL at
 * first), taking ownership of k. RFC 6376 section 3.6.2.2 lets a verifier pick among
 * several records; ours: the first record that gives a usable key wins, else the first
 * record's error is reported. Returns true once *best is usable: stop looking.
 */
bool dkd__key_prefer(dkd_key **best, dkd_key *k);

/*
 * dkd__key_stale_copy returns a new key sharing key's EVP_PKEY, marked stale: what
 * serve-stale hands out, so the verdict can say the key was past its TTL while the shared
 * cached key stays immutable. NULL on allocation failure.
 */
dkd_key *dkd__key_stale_copy(const dkd_key *key);

#endif
