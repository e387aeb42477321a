/*
 * client_result.c - libdkimd's answers as the caller receives them: a decoded RESULT or
 * STATS_REPLY copied into one allocation the caller frees at once, and the text of
 * every dkd_client_ error code.
 *
 * Workload: one conversion per answer, a few hundred bytes per signature: two passes
 * over the decoded signatures (size, then copy) so each answer costs one calloc.
 */
#include "client_int.h"

#include <stdlib.h>
#include <string.h>

const char *dkd_client_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case DKD_CLIENT_ERR_BAD_REPLY:
        return "the daemon sent a reply that cannot be decoded";
    case DKD_CLIENT_ERR_CLOSED:
        return "connection to the daemon lost";
    case DKD_CLIENT_ERR_BUSY:
        return "too many requests in flight";
    case DKD_CLIENT_ERR_STATE:
        return "call out of order for this request";
    case DKD_CLIENT_ERR_ARG:
        return "invalid argument";
    case DKD_CLIENT_ERR_UNSUPPORTED:
        return "the daemon does not offer this feature";
    default:
        if (err < DKD_CLIENT_ERR_SERVER_BASE && err > DKD_CLIENT_ERR_SERVER_BASE - 0x10000) {
            return dkd__wire_errcode_name((uint16_t)(DKD_CLIENT_ERR_SERVER_BASE - err));
        }
        if (err < 0 && err > -4096) {
            return strerror(-err);
        }
        return "unknown error";
    }
}

int dkd__client_server_err(uint16_t code)
{
    /* Unknown codes are treated like "internal", as PROTOCOL.md 4.8 says. */
    if (code < DKD__WIRE_E_MALFORMED || code > DKD__WIRE_E_PROTOCOL) {
        code = DKD__WIRE_E_INTERNAL;
    }
    return DKD_CLIENT_ERR_SERVER_BASE - (int)code;
}

/* ---- results ---- */

void dkd_client_result_free(dkd_client_result *r)
{
    free(r);
}

void dkd_client_counters_free(dkd_client_counters *s)
{
    free(s);
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* copy_str copies a NUL-free span to *pool as a C string and advances the pool. */
static const char *copy_str(char **pool, dkd_span v)
{
    char *s = *pool;
    if (v.len) {
        memcpy(s, v.ptr, v.len);
    }
    s[v.len] = '\0';
    *pool += v.len + 1;
    return s;
}

/* result_from_wire converts a decoded RESULT into one allocation. NULL on ENOMEM. */
dkd_client_result *dkd__client_result_from_wire(const dkd__wire_result *wr)
{
    size_t n = wr->nsigs;
    size_t chars = wr->authres.len + 1;
    dkd_span cur = wr->sigs;
    dkd__wire_sig w;
    while (dkd__wire_sig_next(&cur, &w)) {
        chars += w.explanation.len + w.detail.len + w.d.len + w.s.len + w.i.len + w.a.len +
                 w.b_prefix.len + 7;
    }
    size_t off_sigs = align_up(sizeof(dkd_client_result), _Alignof(dkd_sig_result));
    size_t off_expl = align_up(off_sigs + n * sizeof(dkd_sig_result), _Alignof(const char *));
    size_t off_chars = off_expl + n * sizeof(const char *);
    uint8_t *mem = calloc(1, off_chars + chars);
    if (mem == NULL) {
        return NULL;
    }
    dkd_client_result *r = (dkd_client_result *)mem;
    r->nsigs = n;
    r->sigs = n ? (dkd_sig_result *)(mem + off_sigs) : NULL;
    r->explanations = n ? (const char **)(mem + off_expl) : NULL;
    char *pool = (char *)mem + off_chars;
    cur = wr->sigs;
    for (size_t k = 0; k < n && dkd__wire_sig_next(&cur, &w); k++) {
        dkd_sig_result *s = &r->sigs[k];
        s->result = (enum dkd_result)w.result;
        s->reason = (enum dkd_reason)w.reason;
        s->key_bits = w.key_bits;
        s->key_testing = (w.flags & DKD__WIRE_SIG_TESTING) != 0;
        s->has_l = (w.flags & DKD__WIRE_SIG_HAS_L) != 0;
        s->key_stale = (w.flags & DKD__WIRE_SIG_STALE) != 0;
        s->dnssec_secure = w.dnssec == DKD__WIRE_DNSSEC_SECURE;
        s->body_signed = w.body_signed;
        s->body_total = w.body_total;
        r->explanations[k] = copy_str(&pool, w.explanation);
        s->detail = copy_str(&pool, w.detail);
        s->d = copy_str(&pool, w.d);
        s->s = copy_str(&pool, w.s);
        s->i = copy_str(&pool, w.i);
        s->a = copy_str(&pool, w.a);
        s->b_prefix = copy_str(&pool, w.b_prefix);
    }
    r->authres = copy_str(&pool, wr->authres);
    return r;
}

dkd_client_counters *dkd__client_counters_from_wire(const dkd__wire_stats_reply *wr)
{
    size_t chars = 0;
    dkd_span cur = wr->entries;
    dkd__wire_stat st;
    while (dkd__wire_stat_next(&cur, &st)) {
        chars += st.name.len + 1;
    }
    size_t off_v = align_up(sizeof(dkd_client_counters), _Alignof(dkd_client_stat));
    size_t off_chars = off_v + (size_t)wr->count * sizeof(dkd_client_stat);
    uint8_t *mem = calloc(1, off_chars + chars);
    if (mem == NULL) {
        return NULL;
    }
    dkd_client_counters *s = (dkd_client_counters *)mem;
    s->count = wr->count;
    s->v = (dkd_client_stat *)(mem + off_v);
    char *pool = (char *)mem + off_chars;
    cur = wr->entries;
    for (size_t k = 0; k < s->count && dkd__wire_stat_next(&cur, &st); k++) {
        s->v[k].name = copy_str(&pool, st.name);
        s->v[k].value = st.value;
    }
    return s;
}
