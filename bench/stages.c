/*
 * stages.c - the C side of the microbenchmarks: one engine-private stage per wrapper
 * (see stages.h for why they exist). Set-up allocations abort on failure; this is
 * benchmark code driven with known-good input.
 */
#include "stages.h"

#include <stdio.h>
#include <stdlib.h>

#include "arena.h"
#include "canon.h"
#include "hdr.h"
#include "key.h"
#include "sig.h"

enum { MAX_FIELDS = 256 };

size_t bench_hdr_split(const uint8_t *block, size_t len, size_t fields_max)
{
    dkd_field fields[MAX_FIELDS];
    size_t count = 0, err_off = 0;
    if (fields_max > MAX_FIELDS) {
        fields_max = MAX_FIELDS;
    }
    dkd_hdr_status st = dkd__hdr_parse(dkd__span(block, len), fields, fields_max, &count, &err_off);
    return st == DKD_HDR_OK ? count : 0;
}

struct bench_sig {
    dkd_span value;
    dkd_arena arena;
    dkd_sig sig;
    dkd_sig_error err;
};

bench_sig *bench_sig_new(const uint8_t *block, size_t len)
{
    dkd_field fields[MAX_FIELDS];
    size_t count = 0, err_off = 0;
    dkd__hdr_parse(dkd__span(block, len), fields, MAX_FIELDS, &count, &err_off);
    for (size_t i = 0; i < count; i++) {
        if (dkd__span_eq_str_nocase(fields[i].name, "DKIM-Signature")) {
            bench_sig *s = calloc(1, sizeof *s);
            if (s == NULL) {
                abort();
            }
            s->value = fields[i].value;
            dkd__arena_init(&s->arena, 1 << 20);
            return s;
        }
    }
    return NULL;
}

size_t bench_sig_value_len(const bench_sig *s)
{
    return s->value.len;
}

bool bench_sig_parse(bench_sig *s)
{
    /* The arena is reset per parse, as dkd_msg_reset does per message. */
    dkd__arena_reset(&s->arena);
    return dkd__sig_parse(s->value, &s->sig, &s->arena, &s->err);
}

void bench_sig_free(bench_sig *s)
{
    if (s != NULL) {
        dkd__arena_destroy(&s->arena);
        free(s);
    }
}

static void md_sink(void *arg, const uint8_t *p, size_t n)
{
    EVP_DigestUpdate(arg, p, n);
}

struct bench_hdr {
    dkd_field fields[MAX_FIELDS];
    size_t count, bytes;
};

bench_hdr *bench_hdr_new(const uint8_t *block, size_t len)
{
    bench_hdr *h = calloc(1, sizeof *h);
    if (h == NULL) {
        abort();
    }
    size_t err_off = 0;
    dkd__hdr_parse(dkd__span(block, len), h->fields, MAX_FIELDS, &h->count, &err_off);
    for (size_t i = 0; i < h->count; i++) {
        h->bytes += h->fields[i].raw.len;
    }
    return h;
}

size_t bench_hdr_bytes(const bench_hdr *h)
{
    return h->bytes;
}

void bench_hdr_canon(const bench_hdr *h, bool relaxed, EVP_MD_CTX *md)
{
    for (size_t i = 0; i < h->count; i++) {
        dkd__canon_header(relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE, h->fields[i].raw, 0, 0,
                          true, md_sink, md);
    }
}

void bench_hdr_free(bench_hdr *h)
{
    free(h);
}

void bench_body_canon(const uint8_t *body, size_t len, bool relaxed, EVP_MD_CTX *md)
{
    dkd_body_canon bc;
    dkd__body_init(&bc, relaxed ? DKD_CANON_RELAXED : DKD_CANON_SIMPLE, UINT64_MAX, md_sink, md);
    dkd__body_update(&bc, body, len);
    dkd__body_final(&bc);
}

EVP_PKEY *bench_key_pkey(const dkd_key *key)
{
    return key->pkey;
}
