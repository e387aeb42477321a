/*
 * dkimd/result.h - what a DKIM verdict is: the result words, the reason codes behind
 * them and one signature's verdict. Shared by the engine (dkimd/engine.h) and libdkimd
 * (dkimd/client.h); libdkimd exports the functions declared here and in dkimd/reason.h,
 * so a client explains a reason without linking the engine.
 *
 * Nothing here allocates or keeps state; every function may be called from any thread.
 */
#ifndef DKIMD_RESULT_H
#define DKIMD_RESULT_H

#include <stdbool.h>
#include <stdint.h>

#include <dkimd/reason.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dkd_result: the RFC 8601 section 2.7.1 result words for the "dkim" method. */
enum dkd_result {
    DKD_RESULT_NONE = 0,  /* the message carries no DKIM-Signature */
    DKD_RESULT_PASS,      /* the signature verified */
    DKD_RESULT_FAIL,      /* the signature or body hash did not verify */
    DKD_RESULT_NEUTRAL,   /* not used by the verifier today; kept for the vocabulary */
    DKD_RESULT_POLICY,    /* verified, but refused by local policy (l= replay defence) */
    DKD_RESULT_PERMERROR, /* cannot be verified, and retrying will not help */
    DKD_RESULT_TEMPERROR, /* cannot be verified now; retrying later may help */
};

/* dkd_result_name returns the RFC 8601 word ("pass", "permerror", ...). Never NULL. */
const char *dkd_result_name(enum dkd_result result);

/*
 * dkd_sig_result: one signature's verdict. Strings are NUL-terminated and owned by what
 * handed the struct out: a dkd_msg until dkd_msg_reset (engine), or a dkd_client_result
 * until dkd_client_result_free (libdkimd).
 */
typedef struct dkd_sig_result {
    enum dkd_result result;
    enum dkd_reason reason;
    const char *detail;  /* specific cause ("tag c: unknown value 'foobar'"), or "" */
    const char *d, *s, *i, *a; /* as written in the header ("" when absent/unparsable) */
    const char *b_prefix; /* first 8 characters of b= for header.b */
    unsigned key_bits;    /* 0 when no key was used */
    bool key_testing;     /* key record has t=y */
    bool dnssec_secure;   /* key answer was DNSSEC-validated */
    bool key_stale;       /* key was an expired cache entry served during a DNS failure */
    bool has_l;           /* l= present */
    uint64_t body_signed; /* canonical body bytes covered (l= or all) */
    uint64_t body_total;  /* canonical body bytes in all */
} dkd_sig_result;

#ifdef __cplusplus
}
#endif

#endif
