/*
 * keycache.h - the sharded LRU cache of parsed keys used by the resolver (internal).
 */
#ifndef DKD_KEYCACHE_H
#define DKD_KEYCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dkimd/engine.h>

typedef struct dkd__keycache_cfg {
    size_t max_entries; /* over all shards; at least one per shard is kept */
    unsigned shards;
    uint32_t ttl_min, ttl_max, negative_ttl, tempfail_ttl, serve_stale; /* seconds */
    int64_t (*clock_ms)(void *arg);                                     /* NULL = CLOCK_MONOTONIC */
    void *clock_arg;
} dkd__keycache_cfg;

typedef struct dkd__keycache dkd__keycache;

/* What dkd__keycache_get found. */
enum dkd__cache_state {
    DKD__CACHE_MISS,  /* nothing usable: ask upstream */
    DKD__CACHE_HIT,   /* *key is the answer */
    DKD__CACHE_STALE, /* expired positive key within serve-stale: ask upstream, and keep
                       *key to serve if the refresh fails temporarily */
};

/* dkd__keycache_new aborts on allocation failure (set-up). */
dkd__keycache *dkd__keycache_new(const dkd__keycache_cfg *cfg);
void dkd__keycache_free(dkd__keycache *c);

/* dkd__keycache_now returns the cache clock in milliseconds. */
int64_t dkd__keycache_now(const dkd__keycache *c);

/*
 * dkd__keycache_get looks name up (any case). On HIT and STALE, *key is a new reference
 * the caller owns; *served_stale says a HIT is a stale stand-in put back by
 * dkd__keycache_put_stale.
 */
enum dkd__cache_state dkd__keycache_get(dkd__keycache *c, const char *name, dkd_key **key,
                                        bool *served_stale);

/*
 * dkd__keycache_put stores key (a new reference is taken) for name. How long depends on
 * what it is: a usable key lives for answer_ttl clamped to [ttl_min, ttl_max]; a
 * permanent failure (not found, bad record) for negative_ttl; a temporary failure
 * (dns-error, dns-timeout, dnssec-bogus) for tempfail_ttl. Replaces an older entry.
 */
void dkd__keycache_put(dkd__keycache *c, const char *name, dkd_key *key, uint32_t answer_ttl);

/*
 * dkd__keycache_put_stale puts an expired key back for tempfail_ttl after its refresh
 * failed, marked stale, without extending its serve-stale window.
 */
void dkd__keycache_put_stale(dkd__keycache *c, const char *name, dkd_key *key);

/* dkd__reason_is_temporary: dns-error, dns-timeout, dnssec-bogus, internal. */
bool dkd__reason_is_temporary(enum dkd_reason reason);

typedef struct dkd__keycache_stats {
    uint64_t hits, misses, evictions, expiries, entries;
} dkd__keycache_counts;

/* dkd__keycache_stats sums the per-shard counters (each shard's lock taken in turn). */
void dkd__keycache_stats(dkd__keycache *c, dkd__keycache_counts *out);

#endif
