/*
 * keycache.c - a sharded LRU cache of parsed DKIM keys, keyed by the lowercased
 * "selector._domainkey.domain".
 *
 * Workload: every message asks for one or two keys; a large platform sees a few thousand
 * hot signing domains and a long tail. Hits dominate and come from all worker threads at
 * once, so the table is split into shards by a hash of the name, each with its own mutex
 * held only for a bucket walk and a list splice: no parsing, allocation or I/O happens
 * under it (a miss allocates in put, outside the lookup). Each shard is bounded
 * (max_entries / shards) and evicts its least recently used entry, so memory is bounded
 * by the entry count times (name + parsed key).
 *
 * Entries carry an expiry computed when stored: the answer's TTL clamped to
 * [ttl_min, ttl_max] for usable keys, negative_ttl for permanent failures (NXDOMAIN,
 * NODATA, records that are not keys) and a short tempfail_ttl for temporary failures, which
 * only stops retry storms. A usable key also keeps a serve-stale window past its expiry;
 * inside it a lookup is a miss that hands back the old key, so the resolver can serve it
 * if the refresh fails temporarily (then put_stale re-inserts it, flagged, briefly).
 */
#include "keycache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "key.h"
#include "span.h"

typedef struct centry {
    struct centry *hnext;       /* bucket chain */
    struct centry *prev, *next; /* LRU list, most recent at head */
    uint64_t hash;
    dkd_key *key;
    int64_t expires;     /* ms */
    int64_t stale_until; /* ms; == expires when serve-stale does not apply */
    bool stale;          /* a stale stand-in (put_stale) */
    char name[];         /* lowercased */
} centry;

typedef struct shard {
    pthread_mutex_t mu;
    centry **buckets;
    size_t nbuckets; /* power of two */
    centry *head, *tail;
    size_t count, cap;
    uint64_t hits, misses, evictions, expiries;
    /* Keep shards on separate cache lines: their locks are taken by different threads. */
    char pad[64];
} shard;

struct dkd__keycache {
    dkd__keycache_cfg cfg;
    shard *shards;
};

static int64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dkd__keycache_now(const dkd__keycache *c)
{
    return c->cfg.clock_ms(c->cfg.clock_arg);
}

/* FNV-1a over the lowercased name: names are short, and the shard pick needs no more. */
static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++) {
        h ^= dkd__lower((uint8_t)*p);
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool name_eq(const char *stored, const char *name)
{
    for (;; stored++, name++) {
        if (*stored != (char)dkd__lower((uint8_t)*name)) {
            return false;
        }
        if (*stored == '\0') {
            return true;
        }
    }
}

dkd__keycache *dkd__keycache_new(const dkd__keycache_cfg *cfg)
{
    dkd__keycache *c = calloc(1, sizeof *c);
    if (c == NULL) {
        abort();
    }
    c->cfg = *cfg;
    if (c->cfg.shards == 0) {
        c->cfg.shards = 1;
    }
    if (c->cfg.clock_ms == NULL) {
        c->cfg.clock_ms = mono_ms;
    }
    if (c->cfg.ttl_max < c->cfg.ttl_min) {
        c->cfg.ttl_max = c->cfg.ttl_min;
    }
    c->shards = calloc(c->cfg.shards, sizeof *c->shards);
    if (c->shards == NULL) {
        abort();
    }
    size_t per = c->cfg.max_entries / c->cfg.shards;
    if (per == 0) {
        per = 1;
    }
    size_t nb = 16;
    while (nb < per && nb < ((size_t)1 << 30)) {
        nb *= 2; /* load factor <= 1 at capacity */
    }
    for (unsigned i = 0; i < c->cfg.shards; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->cap = per;
        s->nbuckets = nb;
        s->buckets = calloc(nb, sizeof *s->buckets);
        if (s->buckets == NULL) {
            abort();
        }
    }
    return c;
}

void dkd__keycache_free(dkd__keycache *c)
{
    if (c == NULL) {
        return;
    }
    for (unsigned i = 0; i < c->cfg.shards; i++) {
        shard *s = &c->shards[i];
        for (centry *e = s->head; e != NULL;) {
            centry *n = e->next;
            dkd_key_unref(e->key);
            free(e);
            e = n;
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(c->shards);
    free(c);
}

static shard *shard_for(dkd__keycache *c, uint64_t h)
{
    /* The high bits pick the shard, the low bits the bucket: independent choices. */
    return &c->shards[(h >> 32) % c->cfg.shards];
}

/* ---- shard internals; the caller holds s->mu ---- */

static centry **bucket_slot(shard *s, uint64_t h, const char *name)
{
    centry **pp = &s->buckets[h & (s->nbuckets - 1)];
    while (*pp != NULL && !((*pp)->hash == h && name_eq((*pp)->name, name))) {
        pp = &(*pp)->hnext;
    }
    return pp;
}

static void lru_unlink(shard *s, centry *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        s->head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        s->tail = e->prev;
    }
    e->prev = e->next = NULL;
}

static void lru_push_head(shard *s, centry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head != NULL) {
        s->head->prev = e;
    } else {
        s->tail = e;
    }
    s->head = e;
}

/* remove unlinks e (whose bucket slot is pp) and returns its key reference to drop
 * outside the lock: the last unref frees an EVP_PKEY, which is not lock-hold work. */
static dkd_key *remove_entry(shard *s, centry **pp, centry *e)
{
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    dkd_key *k = e->key;
    free(e);
    return k;
}

enum dkd__cache_state dkd__keycache_get(dkd__keycache *c, const char *name, dkd_key **key,
                                        bool *served_stale)
{
    uint64_t h = name_hash(name);
    shard *s = shard_for(c, h);
    int64_t now = dkd__keycache_now(c);
    dkd_key *drop = NULL;
    enum dkd__cache_state st = DKD__CACHE_MISS;
    *key = NULL;
    *served_stale = false;

    pthread_mutex_lock(&s->mu);
    centry **pp = bucket_slot(s, h, name);
    centry *e = *pp;
    if (e != NULL && now < e->expires) {
        lru_unlink(s, e);
        lru_push_head(s, e);
        *key = dkd_key_ref(e->key);
        *served_stale = e->stale;
        s->hits++;
        st = DKD__CACHE_HIT;
    } else if (e != NULL && now < e->stale_until) {
        /* Expired but inside serve-stale: the caller refreshes and may fall back. */
        *key = dkd_key_ref(e->key);
        s->misses++;
        st = DKD__CACHE_STALE;
    } else {
        if (e != NULL) {
            drop = remove_entry(s, pp, e);
            s->expiries++;
        }
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    dkd_key_unref(drop);
    return st;
}

bool dkd__reason_is_temporary(enum dkd_reason reason)
{
    return reason == DKD_REASON_DNS_ERROR || reason == DKD_REASON_DNS_TIMEOUT ||
           reason == DKD_REASON_DNSSEC_BOGUS || reason == DKD_REASON_INTERNAL;
}

/* insert stores key under name with the given times; the shard's LRU tail goes if full. */
static void insert(dkd__keycache *c, const char *name, dkd_key *key, int64_t expires,
                   int64_t stale_until, bool stale, bool keep_window)
{
    if (c->cfg.max_entries == 0) {
        return;
    }
    size_t n = strlen(name);
    centry *fresh = malloc(sizeof *fresh + n + 1);
    if (fresh == NULL) {
        return; /* a cache that cannot grow just misses again */
    }
    for (size_t i = 0; i <= n; i++) {
        fresh->name[i] = (char)dkd__lower((uint8_t)name[i]);
    }
    uint64_t h = name_hash(name);
    fresh->hash = h;
    fresh->key = dkd_key_ref(key);
    fresh->expires = expires;
    fresh->stale_until = stale_until;
    fresh->stale = stale;
    fresh->prev = fresh->next = NULL;

    shard *s = shard_for(c, h);
    dkd_key *drop[2] = {NULL, NULL};
    pthread_mutex_lock(&s->mu);
    centry **pp = bucket_slot(s, h, name);
    if (*pp != NULL) {
        if (keep_window) {
            fresh->stale_until = (*pp)->stale_until;
            if (fresh->expires > fresh->stale_until) {
                fresh->expires = fresh->stale_until;
            }
        }
        drop[0] = remove_entry(s, pp, *pp);
    }
    if (s->count >= s->cap && s->tail != NULL) {
        centry *victim = s->tail;
        drop[1] = remove_entry(s, bucket_slot(s, victim->hash, victim->name), victim);
        s->evictions++;
    }
    fresh->hnext = NULL;
    *bucket_slot(s, h, fresh->name) = fresh;
    lru_push_head(s, fresh);
    s->count++;
    pthread_mutex_unlock(&s->mu);
    dkd_key_unref(drop[0]);
    dkd_key_unref(drop[1]);
}

void dkd__keycache_put(dkd__keycache *c, const char *name, dkd_key *key, uint32_t answer_ttl)
{
    int64_t now = dkd__keycache_now(c);
    enum dkd_reason reason = dkd_key_reason(key);
    int64_t ttl;
    int64_t stale = 0;
    if (reason == DKD_REASON_OK) {
        ttl = answer_ttl;
        if (ttl < c->cfg.ttl_min) {
            ttl = c->cfg.ttl_min;
        }
        if (ttl > c->cfg.ttl_max) {
            ttl = c->cfg.ttl_max;
        }
        stale = c->cfg.serve_stale;
    } else if (dkd__reason_is_temporary(reason)) {
        ttl = c->cfg.tempfail_ttl;
    } else {
        ttl = c->cfg.negative_ttl;
    }
    if (ttl == 0 && stale == 0) {
        return;
    }
    int64_t expires = now + ttl * 1000;
    insert(c, name, key, expires, expires + stale * 1000, false, false);
}

void dkd__keycache_put_stale(dkd__keycache *c, const char *name, dkd_key *key)
{
    int64_t expires = dkd__keycache_now(c) + (int64_t)c->cfg.tempfail_ttl * 1000;
    /* The stand-in never outlives the original window: keep_window carries the old
     * entry's window over and caps the stand-in's expiry by it. */
    insert(c, name, key, expires, expires, true, true);
}

void dkd__keycache_stats(dkd__keycache *c, dkd__keycache_counts *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < c->cfg.shards; i++) {
        shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->expiries += s->expiries;
        out->entries += s->count;
        pthread_mutex_unlock(&s->mu);
    }
}
