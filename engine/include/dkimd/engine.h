/*
 * dkimd/engine.h - the in-process DKIM verification API.
 *
 * Usage in short:
 *
 *   dkd_config cfg;                     // defaults: RFC 6376 + RFC 8301
 *   dkd_config_init(&cfg);
 *   dkd_engine *eng = dkd_engine_new(&cfg);          // once; shared by all threads
 *   dkd_msg *m = dkd_msg_new(eng);                   // one per in-flight message
 *
 *   dkd_msg_begin(m, header_block, header_len, now); // parses every DKIM-Signature
 *   for (size_t i = 0; i < dkd_msg_key_count(m); i++)
 *       start a lookup of dkd_msg_key_name(m, i), later dkd_msg_key_ready(m, i, key)
 *   dkd_msg_body(m, chunk, len);                     // any number of chunks, any size
 *   dkd_msg_end(m);                                  // once the body and all keys are in
 *   dkd_msg_results(m, &n) ... dkd_msg_authres(m, "mx.example.net")
 *   dkd_msg_reset(m);                                // ready for the next message
 *
 * Keys may arrive before, between or after body chunks; dkd_msg_end needs all of them.
 * dkd_verify_message() does all of this for a whole message with a key source that
 * answers synchronously (the zone file).
 *
 * Line ends: input may use CRLF or bare LF. A bare LF is taken as CRLF, which is the
 * SMTP wire form every signer hashed; a CR not followed by LF is an ordinary byte.
 *
 * Threads: a dkd_engine is immutable after dkd_engine_new and may be shared. A dkd_msg
 * belongs to one thread at a time. dkd_key objects are immutable and reference-counted
 * with atomic counts, so any thread may hold and release them.
 */
#ifndef DKIMD_ENGINE_H
#define DKIMD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dkimd/result.h> /* enum dkd_result, enum dkd_reason, dkd_sig_result */

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes returned by actions (0 on success). All are below -4096. */
enum {
    DKD_ERR_NOMEM = -4097,    /* a per-message limit or allocation failed */
    DKD_ERR_STATE = -4098,    /* call out of order (body before begin, end twice, ...) */
    DKD_ERR_TOO_LARGE = -4099, /* header block over the configured limit */
    DKD_ERR_PENDING = -4100,  /* dkd_msg_end: a key has not arrived yet */
    DKD_ERR_SYNTAX = -4101,   /* input that cannot be a message (no header block) */
    DKD_ERR_IO = -4102,       /* a file could not be read */
};

/* dkd_strerror describes an error code returned by any dkd_ call. Never NULL. */
const char *dkd_strerror(int err);

/*
 * dkd_canon_impl: the code that canonicalizes bodies (dkd_config.canon_impl). All give
 * the same bytes and differ only in speed. AUTO is the fastest this CPU runs, which
 * dkd_engine_new finds out once.
 */
enum dkd_canon_impl {
    DKD_CANON_IMPL_AUTO,
    DKD_CANON_IMPL_SCALAR, /* the byte-at-a-time reference */
    DKD_CANON_IMPL_SSE2,
    DKD_CANON_IMPL_AVX2,
    DKD_CANON_IMPL_AVX512, /* AVX2 scanners, AVX-512 VBMI2 relaxed block rewriter */
    DKD_CANON_IMPL_NEON,   /* AArch64: NEON scanners (no block rewriter) */
};

/*
 * dkd_sha256_impl: the SHA-256 of sha256 body hashes (dkd_config.sha256_impl). AUTO is
 * our own on the x86 SHA extensions, run fused with canonicalization, where the CPU has
 * them, and OpenSSL's otherwise. Header hashes and sha1 always use OpenSSL.
 */
enum dkd_sha256_impl {
    DKD_SHA256_IMPL_AUTO,
    DKD_SHA256_IMPL_OPENSSL,
    DKD_SHA256_IMPL_SHANI,
};

/* dkd_config: policy and limits. Initialise with dkd_config_init, then change fields. */
typedef struct dkd_config {
    unsigned max_signatures;  /* signatures evaluated per message (default 8) */
    unsigned min_rsa_bits;    /* shorter RSA keys never pass (default 1024, RFC 8301) */
    unsigned max_rsa_bits;    /* longer RSA keys are refused (default 8192) */
    bool allow_sha1;          /* verify rsa-sha1 instead of permerror (default false) */
    bool refuse_partial_body; /* l= that leaves body unsigned gives policy (default false) */
    int64_t clock_skew;       /* seconds of slack for x= (default 300) */
    size_t max_header_bytes;  /* header block limit (default 1 MiB) */
    unsigned max_header_fields; /* header fields per message (default 1000) */
    /* Implementation choices, for measurements; verdicts never depend on them. Default
     * AUTO. A choice this CPU or build cannot run is replaced by AUTO's: see
     * dkd_engine_canon_impl and dkd_engine_sha256_impl for what an engine runs. */
    enum dkd_canon_impl canon_impl;
    enum dkd_sha256_impl sha256_impl;
} dkd_config;

/* dkd_config_init fills cfg with the defaults listed above. */
void dkd_config_init(dkd_config *cfg);

typedef struct dkd_engine dkd_engine;

/*
 * dkd_engine_new creates an engine holding a copy of cfg and the OpenSSL algorithms
 * fetched once. Aborts on allocation failure (set-up). Free with dkd_engine_free.
 */
dkd_engine *dkd_engine_new(const dkd_config *cfg);
void dkd_engine_free(dkd_engine *eng);

/* dkd_engine_config returns the engine's configuration (read-only). */
const dkd_config *dkd_engine_config(const dkd_engine *eng);

/* dkd_engine_canon_impl and dkd_engine_sha256_impl return the implementations the
 * engine runs, never AUTO: the configured ones, or what AUTO found on this CPU. */
enum dkd_canon_impl dkd_engine_canon_impl(const dkd_engine *eng);
enum dkd_sha256_impl dkd_engine_sha256_impl(const dkd_engine *eng);

/* dkd_canon_impl_name names an implementation: "auto", "scalar", "sse2", "avx2",
 * "avx512", "neon"; dkd_sha256_impl_name: "auto", "openssl", "shani". "?" for any other
 * value. Static strings. */
const char *dkd_canon_impl_name(enum dkd_canon_impl impl);
const char *dkd_sha256_impl_name(enum dkd_sha256_impl impl);

/* ---- keys ---- */

/*
 * dkd_key: the outcome of one key lookup, parsed once and shared. It is either a usable
 * key or a failure (key-not-found, key-syntax, dns-error, ...); both are cached alike.
 * Immutable; reference-counted.
 */
typedef struct dkd_key dkd_key;

/* Key record flags (t=) and key types (k=). */
enum { DKD_KEY_TESTING = 1u << 0, DKD_KEY_STRICT = 1u << 1 };
enum dkd_key_type { DKD_KEY_RSA = 1, DKD_KEY_ED25519 = 2 };

/*
 * dkd_key_from_record parses a key record (the TXT strings already concatenated).
 * Never returns NULL except on allocation failure: a record with errors gives a key
 * whose dkd_key_reason() is the error and dkd_key_detail() names the tag.
 * The caller owns the returned reference.
 */
dkd_key *dkd_key_from_record(const uint8_t *txt, size_t len);

/*
 * dkd_key_from_failure makes a failed lookup outcome (KEY_NOT_FOUND, DNS_ERROR,
 * DNS_TIMEOUT, DNSSEC_BOGUS, ...). detail is copied; may be NULL. Caller owns it.
 */
dkd_key *dkd_key_from_failure(enum dkd_reason reason, const char *detail);

dkd_key *dkd_key_ref(dkd_key *key);
void dkd_key_unref(dkd_key *key);

/* DKD_REASON_OK for a usable key; otherwise why the key cannot be used. */
enum dkd_reason dkd_key_reason(const dkd_key *key);
/* A human detail for the failure ("tag k: unknown key type 'foobar'"), or "". */
const char *dkd_key_detail(const dkd_key *key);
/* Key size in bits (RSA modulus, 256 for ed25519); 0 when not usable. */
unsigned dkd_key_bits(const dkd_key *key);
enum dkd_key_type dkd_key_type(const dkd_key *key);
unsigned dkd_key_flags(const dkd_key *key);
/* Whether the answer that produced this key was DNSSEC-validated. */
bool dkd_key_dnssec_secure(const dkd_key *key);
/* Whether the key is an expired cache entry served because DNS failed (serve-stale). */
bool dkd_key_stale(const dkd_key *key);
/* dkd_key_set_dnssec_secure marks a freshly made key before it is shared. */
void dkd_key_set_dnssec_secure(dkd_key *key, bool secure);

/*
 * dkd_keysrc: where keys come from. lookup starts a lookup of qname (for example
 * "sel._domainkey.example.com", NUL-terminated, no trailing dot) and calls done exactly
 * once, now or later, handing over one reference to the key. If lookup returns a
 * negative error, done is never called.
 */
typedef void (*dkd_key_done_fn)(void *done_arg, dkd_key *key);
typedef struct dkd_keysrc {
    int (*lookup)(void *impl, const char *qname, dkd_key_done_fn done, void *done_arg);
    void *impl;
} dkd_keysrc;

/* ---- one message ---- */

typedef struct dkd_msg dkd_msg;

/* dkd_msg_new creates a reusable message state bound to eng. NULL on allocation failure. */
dkd_msg *dkd_msg_new(dkd_engine *eng);
void dkd_msg_free(dkd_msg *m);

/* dkd_msg_reset drops the current message (and its results); keys held are released. */
void dkd_msg_reset(dkd_msg *m);

/*
 * dkd_msg_begin parses the header block (everything before the empty line; the empty
 * line itself may be included or not). The block is borrowed until dkd_msg_begin
 * returns: everything needed later is hashed or copied. now is the verification time in
 * Unix seconds (x= expiry is judged against it): the engine reads no clock, so a
 * caller verifying as of another time just passes it. Returns 0 or a negative error.
 */
int dkd_msg_begin(dkd_msg *m, const uint8_t *hdr, size_t len, int64_t now);

/* Keys this message needs, deduplicated. Names stay valid until dkd_msg_reset. */
size_t dkd_msg_key_count(const dkd_msg *m);
const char *dkd_msg_key_name(const dkd_msg *m, size_t i);

/* dkd_msg_key_ready hands over one reference to the key for request i. */
void dkd_msg_key_ready(dkd_msg *m, size_t i, dkd_key *key);

/* dkd_msg_body feeds the next body chunk; chunks may split anywhere, even CR|LF. */
int dkd_msg_body(dkd_msg *m, const uint8_t *chunk, size_t len);

/* dkd_msg_end finishes the body and computes every verdict. */
int dkd_msg_end(dkd_msg *m);

/*
 * dkd_msg_results returns the verdicts (dkd_sig_result, <dkimd/result.h>) in top-down
 * header order (NULL and *n = 0 for an unsigned message, whose result is
 * none/no-signature). Valid after dkd_msg_end; they and their strings are owned by m
 * until dkd_msg_reset.
 */
const dkd_sig_result *dkd_msg_results(const dkd_msg *m, size_t *n);

/*
 * dkd_msg_authres formats the RFC 8601 Authentication-Results header field, name
 * included, folded with CRLF TAB between results, without a final CRLF. The string is
 * owned by m until reset; NULL on allocation failure.
 */
const char *dkd_msg_authres(dkd_msg *m, const char *authserv_id);

/* dkd_split_message returns the length of the header block of a whole message
 * (through its terminating empty line, or all of it when there is none). */
size_t dkd_split_message(const uint8_t *msg, size_t len);

/*
 * dkd_verify_message verifies a whole message in one call: begin, look up every key
 * through src (whose lookups must complete before lookup returns), body, end, as of
 * Unix time now (see dkd_msg_begin).
 */
int dkd_verify_message(dkd_msg *m, const dkd_keysrc *src, const uint8_t *msg, size_t len,
                       int64_t now);

/* ---- the zone-file key source ---- */

typedef struct dkd_zone dkd_zone;

/*
 * dkd_zone_load reads a DNS master file of TXT records and the directives
 * "; @nxdomain NAME", "; @servfail NAME", "; @timeout NAME". Names not in the file are
 * NXDOMAIN. On error returns NULL and writes a message (file:line: what) into err.
 */
dkd_zone *dkd_zone_load(const char *path, char *err, size_t err_len);
void dkd_zone_free(dkd_zone *zone);

/* dkd_zone_keysrc returns a key source answering synchronously from zone. */
dkd_keysrc dkd_zone_keysrc(dkd_zone *zone);

/*
 * dkd_zone_txt calls each once per TXT record at qname (strings concatenated), in file
 * order, for tools that lint records. Returns DKD_REASON_OK when the name has records,
 * KEY_NOT_FOUND when it has none, DNS_ERROR or DNS_TIMEOUT for a directive.
 */
typedef void (*dkd_zone_txt_fn)(void *arg, const uint8_t *txt, size_t len);
enum dkd_reason dkd_zone_txt(const dkd_zone *zone, const char *qname, dkd_zone_txt_fn each,
                             void *arg);

#ifdef __cplusplus
}
#endif

#endif
