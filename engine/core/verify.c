/*
 * verify.c - one message through DKIM verification: the engine, the message state, and
 * the verdict for every DKIM-Signature.
 *
 * Workload: tens of thousands of messages per second per host, 1-2 signatures each,
 * bodies from 2 KB to megabytes. So:
 *  - the header block is parsed once into spans and every header hash is computed in
 *    dkd_msg_begin, so nothing of the header block needs to be kept after it returns;
 *  - the body is a stream: one canonicalize+hash pass per distinct (body canonicalization,
 *    hash, l=) — two signatures that agree on those share it;
 *  - keys arrive through dkd_msg_key_ready whenever the lookup completes; the verdict
 *    needs only the digests and the key, so lookups overlap with receiving the body;
 *  - message state is reused: the arena keeps its first block and the EVP_MD_CTX pool
 *    survives dkd_msg_reset, so the steady state allocates almost nothing.
 *
 * Order of checks for one signature (first failing one gives the verdict):
 *   syntax (sig.c) -> rsa-sha1 policy -> expiry -> [key arrives] -> key failure ->
 *   key type / hash / t=s / size limits -> body hash -> signature -> key-too-small ->
 *   l= policy.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <dkimd/engine.h>

#include "arena.h"
#include "authres.h"
#include "canon.h"
#include "hdr.h"
#include "key.h"
#include "sig.h"

struct dkd_engine {
    dkd_config cfg;
    /* Fetched once: OpenSSL 3's implicit fetch on every EVP_DigestInit is a measured
     * cost on the hot path. */
    EVP_MD *sha1, *sha256;
    /* Resolved once from cfg and the CPU (never AUTO), so no message asks the CPU. */
    enum dkd_canon_impl canon_impl;
    enum dkd_sha256_impl sha256_impl;
};

/* One body canonicalize+hash pass. sha256 on a CPU with SHA-NI hashes with our own
 * SHA-256 (sha256.c), which the relaxed rewriter runs fused with its loop (issue 7);
 * sha1, or no SHA-NI, keeps OpenSSL's EVP through md. */
typedef struct body_group {
    enum dkd_canon canon;
    enum dkd_hash hash;
    uint64_t limit;
    bool own_sha; /* hashed into sha, not md */
    EVP_MD_CTX *md;
    dkd_sha256 sha;
    unsigned digest_len;
    uint8_t digest[EVP_MAX_MD_SIZE];
    dkd_body_canon bc;
} body_group;

typedef struct sig_state {
    dkd_sig *sig; /* NULL when the field did not parse */
    bool decided; /* verdict known before any key (syntax, policy) */
    size_t key_idx;
    size_t group_idx;
    unsigned hdr_digest_len;
    uint8_t hdr_digest[EVP_MAX_MD_SIZE];
} sig_state;

typedef struct key_req {
    char *name;
    dkd_key *key;
} key_req;

enum msg_state { MSG_IDLE, MSG_BODY, MSG_BODY_DONE, MSG_DONE };

enum { MD_POOL = 16 };

/* RSA verify contexts kept across messages, for the last few keys: a fresh
 * EVP_PKEY_CTX with padding and digest set costs ~3.7 us per RSA-2048 signature
 * (measured, bench_engine BM_VerifyEnginePath against BM_VerifyLimit: 20.1 against
 * 16.4 us), and a worker sees the same hot keys again and again. Each entry holds a
 * reference on its EVP_PKEY, so the pointer cannot be reused by another key. */
enum { RSA_CTX_CACHE = 4 };

typedef struct rsa_ctx {
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *ctx;
    const EVP_MD *md; /* the signature digest set on ctx */
} rsa_ctx;

struct dkd_msg {
    dkd_engine *eng;
    dkd_arena arena;
    enum msg_state state;
    int64_t now;
    sig_state *sigs;
    dkd_sig_result *results; /* parallel to sigs */
    size_t nsigs;
    body_group *groups;
    size_t ngroups;
    key_req *keys;
    size_t nkeys;
    char *authres;
    EVP_MD_CTX *hdr_md;
    EVP_MD_CTX *md_pool[MD_POOL];
    EVP_MD_CTX *ed_md; /* DigestVerify context for Ed25519 */
    rsa_ctx rsa[RSA_CTX_CACHE];
    unsigned rsa_next; /* round-robin victim */
};

/* ---- the engine (dkd_config's defaults and names are in config.c) ---- */

/* The CPU is asked here, once per engine; a choice it cannot run falls back to AUTO's. */
static enum dkd_canon_impl resolve_canon_impl(enum dkd_canon_impl want)
{
    return want != DKD_CANON_IMPL_AUTO && dkd__canon_impl_supported(want) ? want
                                                                          : dkd__canon_impl_best();
}

static enum dkd_sha256_impl resolve_sha256_impl(enum dkd_sha256_impl want)
{
    if (want == DKD_SHA256_IMPL_OPENSSL) {
        return want;
    }
    return dkd__sha256_available() ? DKD_SHA256_IMPL_SHANI : DKD_SHA256_IMPL_OPENSSL;
}

dkd_engine *dkd_engine_new(const dkd_config *cfg)
{
    dkd_engine *eng = calloc(1, sizeof *eng);
    if (eng == NULL) {
        abort();
    }
    if (cfg != NULL) {
        eng->cfg = *cfg;
    } else {
        dkd_config_init(&eng->cfg);
    }
    eng->canon_impl = resolve_canon_impl(eng->cfg.canon_impl);
    eng->sha256_impl = resolve_sha256_impl(eng->cfg.sha256_impl);
    eng->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    eng->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (eng->sha1 == NULL || eng->sha256 == NULL) {
        abort(); /* set-up: an OpenSSL without SHA-256 cannot verify anything */
    }
    return eng;
}

void dkd_engine_free(dkd_engine *eng)
{
    if (eng == NULL) {
        return;
    }
    EVP_MD_free(eng->sha1);
    EVP_MD_free(eng->sha256);
    free(eng);
}

const dkd_config *dkd_engine_config(const dkd_engine *eng)
{
    return &eng->cfg;
}

enum dkd_canon_impl dkd_engine_canon_impl(const dkd_engine *eng)
{
    return eng->canon_impl;
}

enum dkd_sha256_impl dkd_engine_sha256_impl(const dkd_engine *eng)
{
    return eng->sha256_impl;
}

static const EVP_MD *engine_md(const dkd_engine *eng, enum dkd_hash hash)
{
    return hash == DKD_HASH_SHA1 ? eng->sha1 : eng->sha256;
}

/* ---- message lifecycle ---- */

dkd_msg *dkd_msg_new(dkd_engine *eng)
{
    dkd_msg *m = calloc(1, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    m->eng = eng;
    /* The arena holds decoded signatures (~1.2 KiB each), body canon state (~4.2 KiB
     * per group) and the field index of the header block; bound it well above what
     * the header limit allows so the header limit is the one that bites. */
    dkd__arena_init(&m->arena, eng->cfg.max_header_bytes * 2 + (8u << 20));
    m->hdr_md = EVP_MD_CTX_new();
    m->ed_md = EVP_MD_CTX_new();
    if (m->hdr_md == NULL || m->ed_md == NULL) {
        dkd_msg_free(m);
        return NULL;
    }
    return m;
}

static void release_keys(dkd_msg *m)
{
    for (size_t i = 0; i < m->nkeys; i++) {
        if (m->keys[i].key != NULL) {
            dkd_key_unref(m->keys[i].key);
            m->keys[i].key = NULL;
        }
    }
}

void dkd_msg_reset(dkd_msg *m)
{
    release_keys(m);
    dkd__arena_reset(&m->arena);
    m->state = MSG_IDLE;
    m->sigs = NULL;
    m->results = NULL;
    m->nsigs = 0;
    m->groups = NULL;
    m->ngroups = 0;
    m->keys = NULL;
    m->nkeys = 0;
    m->authres = NULL;
}

void dkd_msg_free(dkd_msg *m)
{
    if (m == NULL) {
        return;
    }
    release_keys(m);
    dkd__arena_destroy(&m->arena);
    EVP_MD_CTX_free(m->hdr_md);
    EVP_MD_CTX_free(m->ed_md);
    for (size_t i = 0; i < RSA_CTX_CACHE; i++) {
        EVP_PKEY_CTX_free(m->rsa[i].ctx);
        EVP_PKEY_free(m->rsa[i].pkey);
    }
    for (size_t i = 0; i < MD_POOL; i++) {
        EVP_MD_CTX_free(m->md_pool[i]);
    }
    free(m);
}

/* ---- results ---- */

static const char *arena_span(dkd_msg *m, dkd_span s)
{
    const char *p = dkd__arena_strndup(&m->arena, s.ptr, s.len);
    return p != NULL ? p : "";
}

static void decide(dkd_sig_result *r, enum dkd_result result, enum dkd_reason reason,
                   const char *detail)
{
    r->result = result;
    r->reason = reason;
    r->detail = detail != NULL ? detail : "";
}

static void decide_fmt(dkd_msg *m, dkd_sig_result *r, enum dkd_result result,
                       enum dkd_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void decide_fmt(dkd_msg *m, dkd_sig_result *r, enum dkd_result result,
                       enum dkd_reason reason, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    decide(r, result, reason, dkd__arena_strndup(&m->arena, buf, strlen(buf)));
}

/* The first 8 base64 characters of b= (FWS removed), for header.b (RFC 6008). */
static const char *b_prefix(dkd_msg *m, dkd_span b_raw)
{
    char out[9];
    size_t n = 0;
    for (size_t i = 0; i < b_raw.len && n < 8; i++) {
        if (!dkd__is_fws(b_raw.ptr[i])) {
            out[n++] = (char)b_raw.ptr[i];
        }
    }
    return arena_span(m, dkd__span(out, n));
}

/* ---- dkd_msg_begin: headers, signatures, header hashes ---- */

static void md_sink(void *arg, const uint8_t *p, size_t n)
{
    EVP_DigestUpdate((EVP_MD_CTX *)arg, p, n);
}

static EVP_MD_CTX *pool_md(dkd_msg *m, size_t i)
{
    if (i >= MD_POOL) {
        return NULL;
    }
    if (m->md_pool[i] == NULL) {
        m->md_pool[i] = EVP_MD_CTX_new();
    }
    return m->md_pool[i];
}

/* parse_fields indexes the header block into the arena (see dkd__hdr_index) in one pass.
 * The index starts with room for one field per 64 bytes of block (real fields average
 * 50-100 bytes, so a typical message fits at once and the arena part left unused is
 * small) and doubles when full, up to the configured maximum: counting lines first to
 * size it exactly, as this did before, cost a second scan of the block. */
static int parse_fields(dkd_msg *m, dkd_span block, dkd_field **out, size_t *count, size_t *end)
{
    size_t limit = m->eng->cfg.max_header_fields;
    size_t cap = block.len / 64 + 16;
    if (cap > limit) {
        cap = limit;
    }
    dkd_field *fields = dkd__arena_alloc(&m->arena, cap * sizeof *fields);
    if (fields == NULL) {
        return DKD_ERR_NOMEM;
    }
    size_t pos = 0, n = 0;
    while (dkd__hdr_index_more(block, &pos, fields, cap, &n) == DKD_HDR_TOO_MANY) {
        if (cap == limit) {
            return DKD_ERR_TOO_LARGE;
        }
        size_t bigger = cap <= limit / 2 ? cap * 2 : limit;
        dkd_field *grown = dkd__arena_alloc(&m->arena, bigger * sizeof *grown);
        if (grown == NULL) {
            return DKD_ERR_NOMEM;
        }
        memcpy(grown, fields, n * sizeof *fields);
        fields = grown;
        cap = bigger;
    }
    *out = fields;
    *count = n;
    *end = pos; /* the empty line ending the header block, or block.len */
    return 0;
}

/*
 * The header selection index: every field in chains by a hash of its lower-cased name,
 * each chain bottom-most field first, built once per message. A signature then finds the
 * bottom-most unused instance of each h= name by walking one short chain instead of all
 * fields (that was O(h= names x fields) per signature). "Used" is a per-signature mark
 * (mark[f] == the signature's generation), so nothing is cleared between signatures.
 */
enum { SEL_BUCKETS = 64 };

typedef struct hdr_select {
    uint32_t head[SEL_BUCKETS]; /* field index + 1 of the chain's bottom-most field; 0 none */
    uint32_t *next;             /* per field: the next field up the block in its chain, + 1 */
    uint32_t *mark;             /* per field: generation of the signature that used it */
    uint32_t gen;
} hdr_select;

static unsigned name_bucket(dkd_span name)
{
    /* Length, first and last byte, case folded by | 0x20 (which also merges a few
     * punctuation pairs: harmless, as chains are checked with a real case-insensitive
     * compare). A hash over every byte of every name cost more than the old scan saved:
     * the common names already differ in these three (From, To, Subject, Date,
     * Message-ID, Received, DKIM-Signature, List-*). Empty names do not occur. */
    uint32_t h = (uint32_t)name.len * 17u + (uint32_t)(name.ptr[0] | 0x20) * 5u +
                 (uint32_t)(name.ptr[name.len - 1] | 0x20);
    return h & (SEL_BUCKETS - 1);
}

static int select_init(dkd_msg *m, hdr_select *sel, const dkd_field *fields, size_t nfields)
{
    memset(sel->head, 0, sizeof sel->head);
    sel->next = dkd__arena_alloc(&m->arena, (nfields + 1) * sizeof *sel->next);
    sel->mark = dkd__arena_alloc(&m->arena, (nfields + 1) * sizeof *sel->mark);
    if (sel->next == NULL || sel->mark == NULL) {
        return DKD_ERR_NOMEM;
    }
    memset(sel->mark, 0, (nfields + 1) * sizeof *sel->mark);
    sel->gen = 0;
    for (size_t f = 0; f < nfields; f++) {
        unsigned b = name_bucket(fields[f].name);
        sel->next[f] = sel->head[b];
        sel->head[b] = (uint32_t)f + 1;
    }
    return 0;
}

/* The header hash input gathered into one buffer, so the digest sees one or two
 * updates per signature instead of one per field (~15 at 2 KB; each update costs more
 * than copying a field's few dozen bytes). */
typedef struct hdr_batch {
    EVP_MD_CTX *md;
    size_t len;
    uint8_t buf[4096];
} hdr_batch;

static void batch_flush(hdr_batch *b)
{
    if (b->len > 0) {
        EVP_DigestUpdate(b->md, b->buf, b->len);
        b->len = 0;
    }
}

static void batch_sink(void *arg, const uint8_t *p, size_t n)
{
    hdr_batch *b = arg;
    if (n > sizeof b->buf - b->len) {
        batch_flush(b);
        if (n >= sizeof b->buf) {
            EVP_DigestUpdate(b->md, p, n);
            return;
        }
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void hash_headers(dkd_msg *m, sig_state *st, const dkd_field *fields, hdr_select *sel,
                         size_t self)
{
    const dkd_sig *sig = st->sig;
    EVP_MD_CTX *md = m->hdr_md;
    EVP_DigestInit_ex(md, engine_md(m->eng, sig->hash), NULL);
    hdr_batch batch;
    batch.md = md;
    batch.len = 0;
    uint32_t gen = ++sel->gen;
    sel->mark[self] = gen;
    for (size_t h = 0; h < sig->h_count; h++) {
        /* Bottom-up: the last unused instance of the name. A name with no instance left
         * contributes nothing (over-signing against added headers). */
        for (uint32_t f1 = sel->head[name_bucket(sig->h_names[h])]; f1 != 0;
             f1 = sel->next[f1 - 1]) {
            size_t f = f1 - 1;
            if (sel->mark[f] != gen && dkd__span_eq_nocase(fields[f].name, sig->h_names[h])) {
                sel->mark[f] = gen;
                dkd__canon_header(sig->canon_header, fields[f].raw, 0, 0, true, batch_sink, &batch);
                break;
            }
        }
    }
    const dkd_field *own = &fields[self];
    size_t value_off = (size_t)(own->value.ptr - own->raw.ptr);
    dkd__canon_header(sig->canon_header, own->raw, value_off + sig->b_value_off,
                      value_off + sig->b_value_end, false, batch_sink, &batch);
    batch_flush(&batch);
    EVP_DigestFinal_ex(md, st->hdr_digest, &st->hdr_digest_len);
}

static int body_group_for(dkd_msg *m, const dkd_sig *sig, size_t *out)
{
    uint64_t limit = sig->has_l ? sig->l : UINT64_MAX;
    for (size_t g = 0; g < m->ngroups; g++) {
        body_group *bg = &m->groups[g];
        if (bg->canon == sig->canon_body && bg->hash == sig->hash && bg->limit == limit) {
            *out = g;
            return 0;
        }
    }
    body_group *bg = &m->groups[m->ngroups];
    bg->canon = sig->canon_body;
    bg->hash = sig->hash;
    bg->limit = limit;
    bg->own_sha = false;
    bg->md = NULL;
    enum dkd_canon_impl impl = m->eng->canon_impl;
#ifdef DKD_SHA256_SHANI
    if (sig->hash == DKD_HASH_SHA256 && m->eng->sha256_impl == DKD_SHA256_IMPL_SHANI) {
        dkd__sha256_init(&bg->sha);
        dkd__body_init_impl(&bg->bc, sig->canon_body, limit, impl, NULL, NULL);
        dkd__body_use_sha256(&bg->bc, &bg->sha);
        bg->own_sha = true;
    }
#endif
    if (!bg->own_sha) {
        bg->md = pool_md(m, m->ngroups);
        if (bg->md == NULL) {
            return DKD_ERR_NOMEM;
        }
        EVP_DigestInit_ex(bg->md, engine_md(m->eng, sig->hash), NULL);
        dkd__body_init_impl(&bg->bc, sig->canon_body, limit, impl, md_sink, bg->md);
    }
    *out = m->ngroups++;
    return 0;
}

static int key_request_for(dkd_msg *m, const dkd_sig *sig, size_t *out)
{
    /* s._domainkey.d, put together with memcpy: snprintf's format parsing was a visible
     * share of a 2 KB message's non-crypto time. */
    static const char mid[] = "._domainkey.";
    char name[600];
    size_t n = sig->s.len + (sizeof mid - 1) + sig->d.len;
    if (n >= sizeof name) {
        return DKD_ERR_NOMEM;
    }
    memcpy(name, sig->s.ptr, sig->s.len);
    memcpy(name + sig->s.len, mid, sizeof mid - 1);
    memcpy(name + sig->s.len + (sizeof mid - 1), sig->d.ptr, sig->d.len);
    name[n] = '\0';
    /* DNS names are case-insensitive: one lookup per distinct name. */
    for (size_t k = 0; k < m->nkeys; k++) {
        if (strcasecmp(m->keys[k].name, name) == 0) {
            *out = k;
            return 0;
        }
    }
    char *copy = dkd__arena_strndup(&m->arena, name, n);
    if (copy == NULL) {
        return DKD_ERR_NOMEM;
    }
    m->keys[m->nkeys] = (key_req){copy, NULL};
    *out = m->nkeys++;
    return 0;
}

/* precheck applies the policy that needs no key; true when the verdict is decided. */
static bool precheck(dkd_msg *m, const dkd_sig *sig, dkd_sig_result *r)
{
    const dkd_config *cfg = &m->eng->cfg;
    if (sig->alg == DKD_ALG_RSA_SHA1 && !cfg->allow_sha1) {
        decide(r, DKD_RESULT_PERMERROR, DKD_REASON_INSECURE_ALGORITHM,
               "a=rsa-sha1 (RFC 8301 section 3.1)");
        return true;
    }
    if (sig->has_x && m->now >= 0 && (uint64_t)m->now > sig->x &&
        (uint64_t)m->now - sig->x > (uint64_t)(cfg->clock_skew > 0 ? cfg->clock_skew : 0)) {
        decide_fmt(m, r, DKD_RESULT_PERMERROR, DKD_REASON_EXPIRED,
                   "x=%llu is %llu seconds before the verification time",
                   (unsigned long long)sig->x, (unsigned long long)((uint64_t)m->now - sig->x));
        return true;
    }
    return false;
}

static int begin_fields(dkd_msg *m, dkd_field *fields, size_t nfields, int64_t now);

int dkd_msg_begin(dkd_msg *m, const uint8_t *hdr, size_t len, int64_t now)
{
    if (m->state != MSG_IDLE) {
        return DKD_ERR_STATE;
    }
    if (len > m->eng->cfg.max_header_bytes) {
        return DKD_ERR_TOO_LARGE;
    }
    dkd_field *fields = NULL;
    size_t nfields = 0, end = 0;
    int rc = parse_fields(m, dkd__span(hdr, len), &fields, &nfields, &end);
    if (rc != 0) {
        return rc;
    }
    return begin_fields(m, fields, nfields, now);
}

/* begin_fields is dkd_msg_begin after the header block is indexed. */
static int begin_fields(dkd_msg *m, dkd_field *fields, size_t nfields, int64_t now)
{
    const dkd_config *cfg = &m->eng->cfg;
    m->now = now;
    int rc = 0;
    size_t nsigs = 0;
    for (size_t f = 0; f < nfields; f++) {
        if (dkd__span_eq_str_nocase(fields[f].name, "DKIM-Signature")) {
            nsigs++;
        }
    }
    size_t evaluated = nsigs < cfg->max_signatures ? nsigs : cfg->max_signatures;
    m->sigs = dkd__arena_alloc(&m->arena, (nsigs + 1) * sizeof *m->sigs);
    m->results = dkd__arena_alloc(&m->arena, (nsigs + 1) * sizeof *m->results);
    m->groups = dkd__arena_alloc(&m->arena, (evaluated + 1) * sizeof *m->groups);
    m->keys = dkd__arena_alloc(&m->arena, (evaluated + 1) * sizeof *m->keys);
    if (!m->sigs || !m->results || !m->groups || !m->keys) {
        return DKD_ERR_NOMEM;
    }
    memset(m->sigs, 0, (nsigs + 1) * sizeof *m->sigs);
    memset(m->results, 0, (nsigs + 1) * sizeof *m->results);
    hdr_select sel; /* built at the first signature that needs header hashes */
    bool have_sel = false;

    for (size_t f = 0; f < nfields; f++) {
        if (!dkd__span_eq_str_nocase(fields[f].name, "DKIM-Signature")) {
            continue;
        }
        size_t idx = m->nsigs++;
        sig_state *st = &m->sigs[idx];
        dkd_sig_result *r = &m->results[idx];
        *r = (dkd_sig_result){.detail = "", .d = "", .s = "", .i = "", .a = "", .b_prefix = ""};
        if (idx >= cfg->max_signatures) {
            st->decided = true;
            decide_fmt(m, r, DKD_RESULT_NEUTRAL, DKD_REASON_NOT_EVALUATED,
                       "signature %zu of %zu; at most %u are evaluated", idx + 1, nsigs,
                       cfg->max_signatures);
            continue;
        }
        dkd_sig *sig = dkd__arena_alloc(&m->arena, sizeof *sig);
        if (sig == NULL) {
            return DKD_ERR_NOMEM;
        }
        dkd_sig_error err = {0};
        bool ok = dkd__sig_parse(fields[f].value, sig, &m->arena, &err);
        r->d = arena_span(m, sig->d);
        r->s = arena_span(m, sig->s);
        r->i = arena_span(m, sig->i_raw);
        r->a = arena_span(m, sig->a);
        r->b_prefix = b_prefix(m, sig->b_raw);
        if (!ok) {
            st->decided = true;
            decide(r, DKD_RESULT_PERMERROR, err.reason, arena_span(m, dkd__span_str(err.detail)));
            continue;
        }
        st->sig = sig;
        r->has_l = sig->has_l;
        if (precheck(m, sig, r)) {
            st->decided = true;
            continue;
        }
        if (!have_sel) {
            if ((rc = select_init(m, &sel, fields, nfields)) != 0) {
                return rc;
            }
            have_sel = true;
        }
        hash_headers(m, st, fields, &sel, f);
        if ((rc = body_group_for(m, sig, &st->group_idx)) != 0 ||
            (rc = key_request_for(m, sig, &st->key_idx)) != 0) {
            return rc;
        }
    }
    m->state = MSG_BODY;
    return 0;
}

size_t dkd_msg_key_count(const dkd_msg *m)
{
    return m->nkeys;
}

const char *dkd_msg_key_name(const dkd_msg *m, size_t i)
{
    return i < m->nkeys ? m->keys[i].name : NULL;
}

void dkd_msg_key_ready(dkd_msg *m, size_t i, dkd_key *key)
{
    if (i >= m->nkeys || key == NULL) {
        if (key != NULL) {
            dkd_key_unref(key);
        }
        return;
    }
    if (m->keys[i].key != NULL) {
        dkd_key_unref(m->keys[i].key);
    }
    m->keys[i].key = key;
}

int dkd_msg_body(dkd_msg *m, const uint8_t *chunk, size_t len)
{
    if (m->state != MSG_BODY) {
        return DKD_ERR_STATE;
    }
    for (size_t g = 0; g < m->ngroups; g++) {
        dkd__body_update(&m->groups[g].bc, chunk, len);
    }
    return 0;
}

/* ---- verdicts ---- */

/* rsa_ctx_for returns a verify context for key with PKCS#1 padding and digest md set,
 * from the message's small cache or made now; NULL on OpenSSL failure. */
static EVP_PKEY_CTX *rsa_ctx_for(dkd_msg *m, const dkd_key *key, const EVP_MD *md)
{
    rsa_ctx *e = NULL;
    for (size_t i = 0; i < RSA_CTX_CACHE; i++) {
        if (m->rsa[i].pkey == key->pkey) {
            e = &m->rsa[i];
            break;
        }
    }
    if (e == NULL) {
        e = &m->rsa[m->rsa_next++ % RSA_CTX_CACHE];
        EVP_PKEY_CTX_free(e->ctx);
        EVP_PKEY_free(e->pkey);
        *e = (rsa_ctx){0};
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
        if (pctx == NULL || EVP_PKEY_verify_init(pctx) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_up_ref(key->pkey) != 1) {
            EVP_PKEY_CTX_free(pctx);
            return NULL;
        }
        e->pkey = key->pkey;
        e->ctx = pctx;
    }
    if (e->md != md) {
        if (EVP_PKEY_CTX_set_signature_md(e->ctx, md) != 1) {
            EVP_PKEY_CTX_free(e->ctx); /* its digest state is unknown now: drop it */
            EVP_PKEY_free(e->pkey);
            *e = (rsa_ctx){0};
            return NULL;
        }
        e->md = md;
    }
    return e->ctx;
}

static bool rsa_verify(dkd_msg *m, const dkd_key *key, const EVP_MD *md, const uint8_t *digest,
                       size_t digest_len, const uint8_t *sigbytes, size_t sig_len)
{
    /* A PKCS#1 verify keeps no state in the context: it can be used again. */
    EVP_PKEY_CTX *pctx = rsa_ctx_for(m, key, md);
    return pctx != NULL && EVP_PKEY_verify(pctx, sigbytes, sig_len, digest, digest_len) == 1;
}

/* RFC 8463: Ed25519 (pure, no pre-hash of its own) over the SHA-256 of the header hash
 * input, which is exactly the header digest we already have. */
static bool ed25519_verify(dkd_msg *m, const dkd_key *key, const uint8_t *digest, size_t digest_len,
                           const uint8_t *sigbytes, size_t sig_len)
{
    EVP_MD_CTX_reset(m->ed_md);
    return EVP_DigestVerifyInit_ex(m->ed_md, NULL, NULL, NULL, NULL, key->pkey, NULL) == 1 &&
           EVP_DigestVerify(m->ed_md, sigbytes, sig_len, digest, digest_len) == 1;
}

static enum dkd_result key_failure_result(enum dkd_reason reason)
{
    switch (reason) {
    case DKD_REASON_DNS_ERROR:
    case DKD_REASON_DNS_TIMEOUT:
    case DKD_REASON_DNSSEC_BOGUS:
        return DKD_RESULT_TEMPERROR;
    default:
        return DKD_RESULT_PERMERROR;
    }
}

static const char *alg_name(enum dkd_sig_alg alg)
{
    switch (alg) {
    case DKD_ALG_RSA_SHA1:
        return "rsa-sha1";
    case DKD_ALG_RSA_SHA256:
        return "rsa-sha256";
    default:
        return "ed25519-sha256";
    }
}

/* identity_domain returns the part of i= after its last '@'. */
static dkd_span identity_domain(dkd_span identity)
{
    for (size_t i = identity.len; i-- > 0;) {
        if (identity.ptr[i] == '@') {
            return dkd__span(identity.ptr + i + 1, identity.len - i - 1);
        }
    }
    return identity;
}

static void verdict(dkd_msg *m, sig_state *st, dkd_sig_result *r)
{
    const dkd_config *cfg = &m->eng->cfg;
    const dkd_sig *sig = st->sig;
    const dkd_key *key = m->keys[st->key_idx].key;
    const body_group *bg = &m->groups[st->group_idx];

    r->body_total = bg->bc.emitted;
    r->body_signed = sig->has_l && sig->l < bg->bc.emitted ? sig->l : bg->bc.emitted;

    if (key->reason != DKD_REASON_OK) {
        decide(r, key_failure_result(key->reason), key->reason,
               arena_span(m, dkd__span_str(key->detail)));
        return;
    }
    r->key_bits = key->bits;
    r->key_testing = (key->flags & DKD_KEY_TESTING) != 0;
    r->dnssec_secure = key->dnssec_secure;
    r->key_stale = key->stale;

    enum dkd_key_type want = sig->alg == DKD_ALG_ED25519_SHA256 ? DKD_KEY_ED25519 : DKD_KEY_RSA;
    if (key->type != want) {
        decide_fmt(m, r, DKD_RESULT_PERMERROR, DKD_REASON_KEY_TYPE,
                   "signature a=%s but the key record has k=%s", alg_name(sig->alg),
                   key->type == DKD_KEY_ED25519 ? "ed25519" : "rsa");
        return;
    }
    unsigned hash_bit = sig->hash == DKD_HASH_SHA1 ? DKD_KEY_HASH_SHA1 : DKD_KEY_HASH_SHA256;
    if ((key->hashes & hash_bit) == 0) {
        decide_fmt(m, r, DKD_RESULT_PERMERROR, DKD_REASON_KEY_HASH, "key h= does not list %s",
                   sig->hash == DKD_HASH_SHA1 ? "sha1" : "sha256");
        return;
    }
    if ((key->flags & DKD_KEY_STRICT) != 0 &&
        !dkd__span_eq_nocase(identity_domain(sig->identity), sig->d)) {
        decide(r, DKD_RESULT_PERMERROR, DKD_REASON_KEY_STRICT_IDENTITY,
               "key t=s requires the i= domain to equal d=");
        return;
    }
    if (key->type == DKD_KEY_RSA && key->bits > cfg->max_rsa_bits) {
        decide_fmt(m, r, DKD_RESULT_PERMERROR, DKD_REASON_KEY_TOO_LARGE,
                   "%u-bit RSA key; the maximum accepted is %u bits", key->bits, cfg->max_rsa_bits);
        return;
    }
    if (sig->has_l && sig->l > bg->bc.emitted) {
        decide_fmt(m, r, DKD_RESULT_PERMERROR, DKD_REASON_BODY_LENGTH,
                   "l=%llu but the canonical body has %llu bytes", (unsigned long long)sig->l,
                   (unsigned long long)bg->bc.emitted);
        return;
    }
    if (sig->bh_len != bg->digest_len || memcmp(sig->bh, bg->digest, bg->digest_len) != 0) {
        decide(r, DKD_RESULT_FAIL, DKD_REASON_BODY_HASH_MISMATCH, "");
        return;
    }
    bool good = key->type == DKD_KEY_ED25519
                    ? ed25519_verify(m, key, st->hdr_digest, st->hdr_digest_len, sig->b, sig->b_len)
                    : rsa_verify(m, key, engine_md(m->eng, sig->hash), st->hdr_digest,
                                 st->hdr_digest_len, sig->b, sig->b_len);
    if (!good) {
        decide(r, DKD_RESULT_FAIL, DKD_REASON_SIGNATURE_MISMATCH, "");
        return;
    }
    if (key->type == DKD_KEY_RSA && key->bits < cfg->min_rsa_bits) {
        decide_fmt(m, r, DKD_RESULT_FAIL, DKD_REASON_KEY_TOO_SMALL,
                   "%u-bit RSA key; the minimum is %u bits (RFC 8301 section 3.2)", key->bits,
                   cfg->min_rsa_bits);
        return;
    }
    if (cfg->refuse_partial_body && sig->has_l && sig->l < bg->bc.emitted) {
        decide_fmt(m, r, DKD_RESULT_POLICY, DKD_REASON_PARTIAL_BODY,
                   "l=%llu covers %llu of %llu body bytes", (unsigned long long)sig->l,
                   (unsigned long long)sig->l, (unsigned long long)bg->bc.emitted);
        return;
    }
    decide(r, DKD_RESULT_PASS, DKD_REASON_OK, "");
}

int dkd_msg_end(dkd_msg *m)
{
    if (m->state == MSG_BODY) {
        for (size_t g = 0; g < m->ngroups; g++) {
            body_group *bg = &m->groups[g];
            dkd__body_final(&bg->bc);
#ifdef DKD_SHA256_SHANI
            if (bg->own_sha) {
                dkd__sha256_final(&bg->sha, bg->digest);
                bg->digest_len = DKD_SHA256_LEN;
                continue;
            }
#endif
            EVP_DigestFinal_ex(bg->md, bg->digest, &bg->digest_len);
        }
        m->state = MSG_BODY_DONE;
    }
    if (m->state != MSG_BODY_DONE) {
        return DKD_ERR_STATE;
    }
    for (size_t k = 0; k < m->nkeys; k++) {
        if (m->keys[k].key == NULL) {
            return DKD_ERR_PENDING;
        }
    }
    for (size_t i = 0; i < m->nsigs; i++) {
        if (!m->sigs[i].decided) {
            verdict(m, &m->sigs[i], &m->results[i]);
        }
    }
    m->state = MSG_DONE;
    return 0;
}

const dkd_sig_result *dkd_msg_results(const dkd_msg *m, size_t *n)
{
    if (m->state != MSG_DONE || m->nsigs == 0) {
        *n = 0;
        return NULL;
    }
    *n = m->nsigs;
    return m->results;
}

const char *dkd_msg_authres(dkd_msg *m, const char *authserv_id)
{
    size_t n = 0;
    const dkd_sig_result *res = dkd_msg_results(m, &n);
    m->authres = dkd__authres_format(&m->arena, authserv_id, res, n);
    return m->authres;
}

/* ---- whole-message convenience ---- */

size_t dkd_split_message(const uint8_t *msg, size_t len)
{
    return dkd__hdr_block_len(dkd__span(msg, len));
}

typedef struct sync_lookup {
    dkd_msg *m;
    size_t idx;
} sync_lookup;

static void sync_done(void *arg, dkd_key *key)
{
    sync_lookup *sl = arg;
    dkd_msg_key_ready(sl->m, sl->idx, key);
}

/*
 * begin_message is dkd_split_message followed by dkd_msg_begin in one pass over the
 * header block: the index stops at the empty line that ends the block, which is where
 * dkd__hdr_block_len would have put the split (both walk whole lines from the start, and
 * both take the first line that is LF or CRLF alone), so the block is not scanned twice.
 * Only max_header_bytes + 1 bytes are looked at: if the empty line does not end within
 * the limit, the block is too large whatever follows.
 */
static int begin_message(dkd_msg *m, const uint8_t *msg, size_t len, int64_t now, size_t *hlen)
{
    if (m->state != MSG_IDLE) {
        return DKD_ERR_STATE;
    }
    size_t limit = m->eng->cfg.max_header_bytes;
    size_t scan = len <= limit ? len : limit + 1;
    dkd_field *fields = NULL;
    size_t nfields = 0, end = 0;
    int rc = parse_fields(m, dkd__span(msg, scan), &fields, &nfields, &end);
    if (rc != 0) {
        return rc; /* too many fields is DKD_ERR_TOO_LARGE too; no end was found */
    }
    size_t n = end;
    if (end < scan) {
        n += dkd__hdr_block_blank(msg + end, scan - end); /* the empty line itself */
    } else if (scan < len) {
        return DKD_ERR_TOO_LARGE; /* no empty line within the limit */
    }
    if (n > limit) {
        return DKD_ERR_TOO_LARGE;
    }
    *hlen = n;
    return begin_fields(m, fields, nfields, now);
}

int dkd_verify_message(dkd_msg *m, const dkd_keysrc *src, const uint8_t *msg, size_t len,
                       int64_t now)
{
    size_t hlen = 0;
    int rc = begin_message(m, msg, len, now, &hlen);
    if (rc != 0) {
        return rc;
    }
    for (size_t k = 0; k < m->nkeys; k++) {
        sync_lookup sl = {m, k};
        rc = src->lookup(src->impl, m->keys[k].name, sync_done, &sl);
        if (rc != 0 || m->keys[k].key == NULL) {
            /* A source that cannot answer now is a temporary failure for this key, not
             * a reason to drop the other signatures. */
            dkd_msg_key_ready(
                m, k, dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, "key source gave no answer"));
        }
    }
    if ((rc = dkd_msg_body(m, msg + hlen, len - hlen)) != 0) {
        return rc;
    }
    return dkd_msg_end(m);
}
