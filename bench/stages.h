/*
 * stages.h - thin C wrappers that let the C++ microbenchmarks drive the engine-private
 * stages (header splitting, tag parsing, canonicalization, the parsed key's EVP_PKEY).
 *
 * The engine's internal headers are C17 (compound literals, <stdatomic.h>) and do not
 * compile as C++, so bench_engine.cc reaches them through this file, compiled as C.
 * Each wrapper does one stage call and nothing else, so its own cost is a function call.
 */
#ifndef DKD_BENCH_STAGES_H
#define DKD_BENCH_STAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <dkimd/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

/* bench_hdr_split splits a header block; returns the number of fields, or 0 when it is
 * malformed. fields_max bounds the work like the verifier's limit does. */
size_t bench_hdr_split(const uint8_t *block, size_t len, size_t fields_max);

/* bench_sig_prepare finds the first DKIM-Signature in block and keeps its value; false
 * when there is none. bench_sig_parse parses the kept value once; true on success. */
typedef struct bench_sig bench_sig;
bench_sig *bench_sig_new(const uint8_t *block, size_t len);
size_t bench_sig_value_len(const bench_sig *s);
bool bench_sig_parse(bench_sig *s);
void bench_sig_free(bench_sig *s);

/* bench_hdr_new splits block once; bench_hdr_canon then canonicalizes every field
 * (relaxed when relaxed is true) into md, which the caller has initialised.
 * bench_hdr_bytes is the size of those fields. */
typedef struct bench_hdr bench_hdr;
bench_hdr *bench_hdr_new(const uint8_t *block, size_t len);
size_t bench_hdr_bytes(const bench_hdr *h);
void bench_hdr_canon(const bench_hdr *h, bool relaxed, EVP_MD_CTX *md);
void bench_hdr_free(bench_hdr *h);

/* bench_body_canon canonicalizes a whole body into md (initialised by the caller). */
void bench_body_canon(const uint8_t *body, size_t len, bool relaxed, EVP_MD_CTX *md);

/* bench_key_pkey returns the parsed key inside a dkd_key (borrowed), or NULL. */
EVP_PKEY *bench_key_pkey(const dkd_key *key);

#ifdef __cplusplus
}
#endif

#endif
