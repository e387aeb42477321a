/*
 * dkimd/reason.h - the reason codes behind DKIM results (included by dkimd/result.h).
 *
 * Every verdict dkimd gives is an RFC 8601 result word (enum dkd_result, in
 * dkimd/result.h) plus one reason code from the list below. The code is stable and
 * machine-readable (it is what JSON output and the wire protocol carry); the
 * explanation says what happened in one line; the fix says what the operator should
 * change. Codes are never renumbered: add new ones at the end. The functions are
 * part of the engine and exported by libdkimd alike, and may be called from any thread.
 */
#ifndef DKIMD_REASON_H
#define DKIMD_REASON_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X(ENUM, "code", "explanation", "fix"). The explanation completes the sentence
 * "this signature ..." loosely; both are plain ASCII without parentheses so they can
 * sit inside an Authentication-Results comment unescaped.
 */
#define DKD_REASONS(X)                                                                      \
    X(OK, "ok", "signature verified", "nothing to fix")                                     \
    X(NO_SIGNATURE, "no-signature", "message not signed: no DKIM-Signature header",         \
      "enable DKIM signing at the sending MTA or mail provider")                             \
    X(SIG_SYNTAX, "sig-syntax", "DKIM-Signature header has a syntax error",                 \
      "fix the signer: the tag list of its DKIM-Signature header is malformed")              \
    X(SIG_MISSING_TAG, "sig-missing-tag", "DKIM-Signature lacks a required tag",            \
      "fix the signer: v= a= b= bh= d= h= s= are required")                                  \
    X(SIG_DUPLICATE_TAG, "sig-duplicate-tag", "DKIM-Signature repeats a tag",               \
      "fix the signer: each tag may appear once")                                            \
    X(SIG_VERSION, "sig-version", "DKIM-Signature version is not v=1",                      \
      "upgrade the signer to RFC 6376 DKIM, v=1")                                           \
    X(UNSUPPORTED_ALGORITHM, "unsupported-algorithm", "signing algorithm a= is unknown",    \
      "sign with rsa-sha256 or ed25519-sha256")                                              \
    X(UNSUPPORTED_CANON, "unsupported-canonicalization",                                    \
      "canonicalization c= is unknown", "sign with c=relaxed/relaxed or simple/simple")     \
    X(UNSUPPORTED_QUERY, "unsupported-query-method", "query method q= lacks dns/txt",       \
      "sign with q=dns/txt or omit q=")                                                      \
    X(BAD_DOMAIN, "bad-domain", "d= or s= is not a valid domain name",                      \
      "fix the signer's d= and s= settings")                                                 \
    X(DOMAIN_MISMATCH, "domain-mismatch", "identity i= is not in the signing domain d=",    \
      "make i= an address at d= or a subdomain of it")                                       \
    X(FROM_NOT_SIGNED, "from-not-signed", "From header is not covered by h=",               \
      "configure the signer to include From in the signed headers")                          \
    X(EXPIRED, "expired", "signature expired: x= is in the past",                           \
      "re-send; if frequent, lengthen the signer's expiry or fix its clock")                 \
    X(BAD_TIMESTAMP, "bad-timestamp", "expiry x= is before the signing time t=",           \
      "fix the signer's clock or expiry settings")                                           \
    X(INSECURE_ALGORITHM, "insecure-algorithm", "rsa-sha1 is not acceptable per RFC 8301",  \
      "re-sign with rsa-sha256 or ed25519-sha256")                                           \
    X(KEY_NOT_FOUND, "key-not-found", "no key record at selector._domainkey.domain",        \
      "publish the TXT record for this selector")                                            \
    X(KEY_SYNTAX, "key-syntax", "key record has a syntax error",                            \
      "correct the TXT record; copy-paste the key, do not retype it")                        \
    X(KEY_REVOKED, "key-revoked", "key record is revoked: p= is empty",                     \
      "publish a key for this selector or stop signing with it")                             \
    X(KEY_VERSION, "key-version", "key record version is not v=DKIM1",                      \
      "publish the record with v=DKIM1 as its first tag, or without v=")                     \
    X(KEY_TYPE, "key-type", "key type k= is unknown or does not match a=",                  \
      "publish k=rsa or k=ed25519 matching the signing algorithm")                           \
    X(KEY_HASH, "key-hash", "key record h= does not allow the signature's hash",            \
      "add the hash to the record's h= or remove h=")                                        \
    X(KEY_SERVICE, "key-service", "key record s= does not include email",                   \
      "publish s=email or s=* or remove s=")                                                 \
    X(KEY_STRICT_IDENTITY, "key-strict-identity",                                          \
      "key has t=s but i= is in a subdomain of d=", "sign with i= in d= exactly or drop t=s") \
    X(KEY_TOO_SMALL, "key-too-small", "RSA key is shorter than the minimum",                \
      "re-key with RSA >= 2048 bits or ed25519")                                             \
    X(KEY_TOO_LARGE, "key-too-large", "RSA key is longer than the maximum accepted",        \
      "re-key with RSA 2048-4096 bits or ed25519")                                           \
    X(BODY_HASH_MISMATCH, "body-hash-mismatch", "body hash did not verify: body changed",   \
      "find the hop that rewrites the body: footers, re-encoding, line wrapping")            \
    X(SIGNATURE_MISMATCH, "signature-mismatch", "signature did not verify",                 \
      "publish the public half of the key the MTA signs with, or find the hop that "        \
      "changes signed headers")                                                              \
    X(BODY_LENGTH, "body-length", "l= is longer than the body",                             \
      "the body was truncated in transit or the signer wrote a wrong l=")                    \
    X(PARTIAL_BODY, "partial-body", "l= leaves part of the body unsigned",                  \
      "sign without l=; local policy refuses partly signed bodies")                          \
    X(DNS_ERROR, "dns-error", "key lookup failed: DNS server failure",                      \
      "fix the domain's authoritative DNS servers; retry later")                             \
    X(DNS_TIMEOUT, "dns-timeout", "key lookup timed out",                                   \
      "fix the domain's authoritative DNS servers; retry later")                             \
    X(DNSSEC_BOGUS, "dnssec-bogus", "key record failed DNSSEC validation",                  \
      "fix the domain's DNSSEC signatures or delegation")                                    \
    X(NOT_EVALUATED, "not-evaluated", "not evaluated: too many signatures on the message",  \
      "sign each message once or twice; more signatures are ignored")                        \
    X(INTERNAL, "internal", "internal error while verifying",                                \
      "report this message to the dkimd developers")

enum dkd_reason {
#define DKD__REASON_ENUM(name, code, expl, fix) DKD_REASON_##name,
    DKD_REASONS(DKD__REASON_ENUM)
#undef DKD__REASON_ENUM
    DKD_REASON__COUNT
};

/* dkd_reason_code returns the stable code ("key-not-found", ...). Never NULL. */
const char *dkd_reason_code(enum dkd_reason reason);

/* dkd_reason_explanation returns the one-line human explanation. Never NULL. */
const char *dkd_reason_explanation(enum dkd_reason reason);

/* dkd_reason_fix returns what the operator should change. Never NULL. */
const char *dkd_reason_fix(enum dkd_reason reason);

/* dkd_reason_from_code maps a NUL-terminated code back to its enum; returns -1 when
 * unknown. */
int dkd_reason_from_code(const char *code);

#ifdef __cplusplus
}
#endif

#endif
