/*
 * dkimd/sign.h - signing messages, and making and checking the key records that go
 * with them.
 *
 * Usage in short:
 *
 *   char err[256];
 *   dkd_signkey *k = dkd_signkey_load("sel.pem", err, sizeof err);   // or _generate
 *   dkd_sign_opts o;
 *   dkd_sign_opts_init(&o);
 *   o.domain = "example.com"; o.selector = "sel";
 *   char *hdr = NULL;
 *   if (dkd_sign(k, &o, msg, len, &hdr, err, sizeof err) == 0)
 *       write hdr ("DKIM-Signature: ...\r\n", folded), then the message; free(hdr)
 *
 * The signer shares the verifier's header parser and canonicalization, so what it
 * signs is exactly what dkimd verifies. rsa-sha256 and ed25519-sha256 (RFC 8463: the
 * Ed25519 signature is over the SHA-256 of the header hash input) follow the key type.
 *
 * dkd_record_lint checks a key record's text tag by tag with the engine's tag-list
 * parser and reports every finding, for `dkimctl check-record`.
 *
 * dkd_signer (below) is dkd_sign in pieces, for a milter: begin with the header block,
 * body chunks split anywhere, end; the field it returns is dkd_sign's, byte for byte.
 *
 * Threads: a dkd_signkey is immutable after it is made and may be shared; each call
 * uses only its own state.
 */
#ifndef DKIMD_SIGN_H
#define DKIMD_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dkimd/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dkd_signkey: a private signing key (RSA or Ed25519). */
typedef struct dkd_signkey dkd_signkey;

/*
 * dkd_signkey_generate makes a new key: type DKD_KEY_RSA with bits (1024..8192) or
 * DKD_KEY_ED25519 (bits ignored). NULL with a message in err on failure. Caller frees.
 */
dkd_signkey *dkd_signkey_generate(enum dkd_key_type type, unsigned bits, char *err,
                                  size_t err_len);

/* dkd_signkey_load reads a PEM private key (PKCS#8 or traditional RSA). NULL with a
 * message in err when the file cannot be read or holds no RSA/Ed25519 private key. */
dkd_signkey *dkd_signkey_load(const char *path, char *err, size_t err_len);

/*
 * dkd_signkey_load_private is dkd_signkey_load for a daemon: it also refuses a file that
 * is not a regular file, or that others may read or anyone but its owner may write (mode
 * & (S_IRWXO | S_IWGRP): 0600 and 0640 pass, 0644, 0604 and 0620 do not), with a message
 * that names the mode and the fix ("chmod 600 PATH"). The open descriptor is checked
 * (fstat), not the path, so the file cannot be swapped between check and read. NULL with
 * a message in err on failure; the caller frees the key.
 */
dkd_signkey *dkd_signkey_load_private(const char *path, char *err, size_t err_len);

void dkd_signkey_free(dkd_signkey *key);

enum dkd_key_type dkd_signkey_type(const dkd_signkey *key);
unsigned dkd_signkey_bits(const dkd_signkey *key);

/*
 * dkd_signkey_write_pem writes the private key as PKCS#8 PEM to a new file of mode
 * 0600. It never overwrites: an existing path fails (errno EEXIST). 0 or -errno.
 */
int dkd_signkey_write_pem(const dkd_signkey *key, const char *path);

/*
 * dkd_signkey_record returns the key record to publish ("v=DKIM1; k=rsa; p=..."),
 * malloc'd and NUL-terminated; NULL on allocation failure. Caller frees.
 */
char *dkd_signkey_record(const dkd_signkey *key);

/*
 * dkd_signkey_matches tells whether pub (a usable key from a record) is the public half
 * of key. False for an unusable pub or a different key type.
 */
bool dkd_signkey_matches(const dkd_signkey *key, const dkd_key *pub);

/* ---- signing ---- */

typedef struct dkd_sign_opts {
    const char *domain;   /* d=, required */
    const char *selector; /* s=, required */
    const char *identity; /* i=, or NULL to leave it out */
    /* h=: colon-separated names, signed as listed (a name listed twice over-signs). NULL
     * means the default list: each of from, to, cc, subject, date, message-id, reply-to,
     * in-reply-to, references, mime-version, content-type, content-transfer-encoding,
     * list-id that is present, plus one more "from" so From is over-signed. */
    const char *headers;
    bool header_relaxed;  /* c= header part (default relaxed) */
    bool body_relaxed;    /* c= body part (default relaxed) */
    bool body_length;     /* write l= covering the whole body (default false) */
    int64_t timestamp;    /* t=; negative means time(NULL) (the default) */
    uint64_t expire_after; /* x= = t= + this many seconds; 0 leaves x= out (default) */
} dkd_sign_opts;

/* dkd_sign_opts_init fills o with the defaults above; domain and selector stay NULL. */
void dkd_sign_opts_init(dkd_sign_opts *o);

/*
 * dkd_sign signs the message msg (header block, empty line, body; CRLF or bare LF) and
 * stores in *out a malloc'd, NUL-terminated "DKIM-Signature: ..." field folded at about
 * 78 columns with CRLF line ends (b= last), ending in CRLF, to prepend to the message.
 * Returns 0, or a negative DKD_ERR_* with a message in err (missing d=/s=, invalid
 * names, From absent, no header block). The caller frees *out.
 */
int dkd_sign(const dkd_signkey *key, const dkd_sign_opts *o, const uint8_t *msg, size_t len,
             char **out, char *err, size_t err_len);

/*
 * ---- streaming ----
 *
 * dkd_signer signs a message that arrives in pieces (a milter's header fields, then
 * body chunks), with the same result as dkd_sign on the whole message, byte for byte:
 *
 *   dkd_signer *s;
 *   if (dkd_signer_begin(k, &o, hdr, hlen, &s, err, sizeof err) == 0) {
 *       for each chunk: dkd_signer_body(s, chunk, n);
 *       dkd_signer_end(s, &field, err, sizeof err);   // then free(field)
 *       dkd_signer_free(s);
 *   }
 *
 * Memory: a copy of the header block and a fixed state (about 5 KiB, most of it the
 * canonicalizer's batch), whatever the size of the body. One signer belongs to one
 * thread at a time; signers that share a key may run on different threads.
 */
typedef struct dkd_signer dkd_signer;

/*
 * dkd_signer_begin starts signing the message whose header block is hdr[0..hlen): its
 * fields with or without the empty line that ends them, CRLF or bare LF (bytes after
 * the empty line are refused: they are body, for dkd_signer_body). It checks what
 * dkd_sign checks (d=, s=, i=, From present, a block that does not open with a folded
 * line), builds h= from the block, and copies the block and o's strings, so neither
 * hdr nor o need outlive the call; key is borrowed until dkd_signer_free. Returns 0 with
 * the new signer in *out, or a negative DKD_ERR_* with a message in err and *out NULL.
 */
int dkd_signer_begin(const dkd_signkey *key, const dkd_sign_opts *o, const uint8_t *hdr,
                     size_t hlen, dkd_signer **out, char *err, size_t err_len);

/*
 * dkd_signer_body feeds the next len bytes of the body; chunks may split it anywhere,
 * a CRLF included. chunk is read during the call only. Returns 0, or DKD_ERR_STATE
 * after dkd_signer_end.
 */
int dkd_signer_body(dkd_signer *s, const uint8_t *chunk, size_t len);

/*
 * dkd_signer_end finishes the body and stores in *out the DKIM-Signature field, exactly
 * as dkd_sign does (malloc'd, folded, ending in CRLF; the caller frees it). t= is taken
 * now when o->timestamp was negative. Returns 0, or a negative DKD_ERR_* with a message
 * in err and *out NULL: DKD_ERR_STATE when called a second time (a failed end counts:
 * the body hash is spent either way). The signer is still to be freed.
 */
int dkd_signer_end(dkd_signer *s, char **out, char *err, size_t err_len);

/* dkd_signer_free releases s (NULL is a no-op), ended or not. */
void dkd_signer_free(dkd_signer *s);

/*
 * dkd_from_domain finds the From header fields of msg (a whole message or its header
 * block) and writes the domain of the first one's address, lowercased, into out (""
 * when it has none we can read). Returns how many From fields there are (DMARC needs
 * exactly one). For explaining alignment; not a full RFC 5322 address parser: comments
 * and group syntax are not interpreted.
 */
size_t dkd_from_domain(const uint8_t *msg, size_t len, char *out, size_t cap);

/* ---- key record lint ---- */

enum dkd_lint_level { DKD_LINT_INFO = 0, DKD_LINT_WARNING = 1, DKD_LINT_ERROR = 2 };

/*
 * One finding about a record. code is a stable word ("syntax", "v-not-first",
 * "unknown-k", "weak-key", "revoked", "testing", "sha1-only", "service", ...), the
 * publishing mistakes included: "quoted" (literal quotes kept as data; the findings after
 * it are about the record without them), "spf-record", "dmarc-record", "pem-armour",
 * "private-key", "p-whitespace", "k-mismatch" (k= names another key type than p= holds),
 * "ed25519-spki" (an Ed25519 key in SubjectPublicKeyInfo form), "truncated" (p= shorter
 * than its DER says; "cut at 255 characters" when the record is a multiple of 255); tag is
 * the tag it is about ("" for the record as a whole); offset is the byte offset in the
 * record text it points at. Strings are valid only during the callback.
 */
typedef struct dkd_lint_finding {
    enum dkd_lint_level level;
    const char *code;
    const char *tag;
    size_t offset;
    const char *message;
} dkd_lint_finding;

typedef void (*dkd_lint_fn)(void *arg, const dkd_lint_finding *f);

/*
 * dkd_record_lint checks one key record (TXT strings concatenated) and calls fn for every
 * finding, in record order, syntax errors in every tag-spec included (each tag-spec is
 * parsed on its own, so one error does not hide the next). Returns the highest level
 * reported, or -1 when there was nothing to report.
 */
int dkd_record_lint(const uint8_t *txt, size_t len, dkd_lint_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
