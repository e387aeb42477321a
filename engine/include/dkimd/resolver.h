/*
 * dkimd/resolver.h - DKIM key lookups through DNS (libunbound), with a shared key cache.
 *
 * Usage in short:
 *
 *   dkd_resolver_config rc;
 *   dkd_resolver_config_init(&rc);                 // full recursion, DNSSEC when an
 *                                                  // anchor file exists
 *   rc.mode = DKD_RESOLVER_FORWARD;                // or keep the default
 *   rc.forwarders[rc.nforwarders++] = "127.0.0.1@5353";
 *   rc.options[rc.noptions++] = "do-not-query-localhost: no";
 *   dkd_resolver *r = dkd_resolver_new(&rc, err, sizeof err);
 *   dkd_keysrc src = dkd_resolver_keysrc(r);       // hand to the engine's callers
 *   ...
 *   dkd_resolver_free(r);
 *
 * A cache hit completes in the caller's thread before lookup returns, with no parsing:
 * the cache holds parsed dkd_key references. A miss joins the in-flight query for the same
 * name (case-insensitive) or queues a new one; its callback runs later ON THE RESOLVER'S
 * THREAD. The daemon posts those completions to the worker that asked (its ring or
 * eventfd); no caller may assume the callback runs on its own thread, nor block in it.
 *
 * Threads: every function except dkd_resolver_new/free may be called from any thread.
 * dkd_resolver_free must not race with lookups; pending lookups are completed with
 * dns-error before it returns.
 */
#ifndef DKIMD_RESOLVER_H
#define DKIMD_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dkimd/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dkd_resolver_mode {
    DKD_RESOLVER_RECURSIVE = 0, /* libunbound's built-in root hints (the default) */
    DKD_RESOLVER_FORWARD,       /* ask the forwarders listed below */
    DKD_RESOLVER_RESOLV_CONF,   /* ask the servers in /etc/resolv.conf */
    DKD_RESOLVER_ZONE,          /* answer from zone_path only, offline */
};

enum { DKD_RESOLVER_MAX_FORWARDERS = 16, DKD_RESOLVER_MAX_OPTIONS = 64 };

/* dkd_resolver_config: initialise with dkd_resolver_config_init, then change fields.
 * Strings are borrowed until dkd_resolver_new returns. */
typedef struct dkd_resolver_config {
    enum dkd_resolver_mode mode;
    /* "addr" or "addr@port" (IPv4 or IPv6), for DKD_RESOLVER_FORWARD. */
    const char *forwarders[DKD_RESOLVER_MAX_FORWARDERS];
    size_t nforwarders;
    /*
     * DNSSEC trust anchor file. NULL = automatic: in RECURSIVE mode the first of
     * /var/lib/unbound/root.key (RFC 5011 tracked) and /usr/share/dns/root.key that
     * exists; none in the other modes (a forwarder is trusted to validate, and a test
     * server's unsigned local data would otherwise be bogus). "" = no validation.
     */
    const char *trust_anchor;
    /* libunbound options as "name: value" ("do-not-query-localhost: no",
     * "local-zone: test. nodefault"), applied before the mode's settings and after
     * dkimd's own defaults (resolver.c's builtin_options: outgoing-range 4096, and
     * infra-host-ttl 2 when forwarding), which they override. One is dkimd's own and
     * never reaches libunbound: "dkimd-canary: no" turns off the canary queries that
     * forwarding modes send while lookups time out (see resolver.c; default yes). */
    const char *options[DKD_RESOLVER_MAX_OPTIONS];
    size_t noptions;
    const char *zone_path; /* DKD_RESOLVER_ZONE: master file of key records */

    unsigned query_timeout_ms;    /* one DNS query, then dns-timeout (default 2000) */
    unsigned message_deadline_ms; /* all keys of one message (default 5000); applied
                                     by the caller (daemon), exposed here */
    size_t cache_entries;         /* cache bound (default 100000; 0 = no cache) */
    unsigned cache_shards;        /* lock shards (default 16) */
    uint32_t ttl_min, ttl_max;    /* answer TTL clamp, seconds (60, 86400) */
    uint32_t negative_ttl;        /* NXDOMAIN/NODATA/bad records, seconds (300) */
    uint32_t tempfail_ttl;        /* SERVFAIL/timeout/bogus, seconds (5) */
    uint32_t serve_stale;         /* seconds an expired key may stand in when the
                                     refresh fails temporarily (0 = off) */
    /* Cache clock in milliseconds (monotonic); NULL = CLOCK_MONOTONIC. For tests. The
     * per-query timeout always uses the real monotonic clock. */
    int64_t (*clock_ms)(void *clock_arg);
    void *clock_arg;
} dkd_resolver_config;

/* dkd_resolver_config_init fills cfg with the defaults listed above. */
void dkd_resolver_config_init(dkd_resolver_config *cfg);

typedef struct dkd_resolver dkd_resolver;

/*
 * dkd_resolver_new sets up libunbound and starts the resolver thread (not in ZONE mode).
 * Returns NULL and writes the reason into err on a configuration error (bad option,
 * bad forwarder, unreadable file). Aborts on allocation failure (set-up).
 */
dkd_resolver *dkd_resolver_new(const dkd_resolver_config *cfg, char *err, size_t err_len);

/* dkd_resolver_free stops the thread, completes pending lookups with dns-error and
 * frees everything. NULL is a no-op. */
void dkd_resolver_free(dkd_resolver *r);

/* Flags handed to a dkd_resolver_done_fn. */
enum {
    DKD_RESOLVER_HIT = 1u << 0,   /* answered from the cache, in the caller's thread */
    DKD_RESOLVER_STALE = 1u << 1, /* an expired key served because the refresh failed */
};
typedef void (*dkd_resolver_done_fn)(void *done_arg, dkd_key *key, unsigned flags);

/*
 * dkd_resolver_lookup starts a lookup of qname and calls done exactly once, handing over
 * one key reference: now (cache hit, flag DKD_RESOLVER_HIT) or later on the resolver
 * thread. Returns 0, or DKD_ERR_NOMEM and then never calls done.
 */
int dkd_resolver_lookup(dkd_resolver *r, const char *qname, dkd_resolver_done_fn done,
                        void *done_arg);

/* dkd_resolver_keysrc: a key source over dkd_resolver_lookup (asynchronous). */
dkd_keysrc dkd_resolver_keysrc(dkd_resolver *r);

/* dkd_resolver_keysrc_blocking: a key source whose lookup waits for the answer, for
 * command-line tools and dkd_verify_message. Never use it on a daemon worker. */
dkd_keysrc dkd_resolver_keysrc_blocking(dkd_resolver *r);

/*
 * dkd_resolver_txt looks qname's TXT records up synchronously and calls each once per
 * record (strings concatenated), for tools that lint records (dkimctl check-record).
 * Returns DKD_REASON_OK, KEY_NOT_FOUND (NXDOMAIN/NODATA), DNS_ERROR or DNSSEC_BOGUS;
 * *secure tells whether the answer was DNSSEC-validated. Bypasses the key cache. Blocks
 * with libunbound's own timeouts: not for daemon workers.
 */
enum dkd_reason dkd_resolver_txt(dkd_resolver *r, const char *qname, dkd_zone_txt_fn each,
                                 void *arg, bool *secure);

/* dkd_resolver_message_deadline_ms returns the configured per-message key deadline. */
unsigned dkd_resolver_message_deadline_ms(const dkd_resolver *r);

/* Counters since dkd_resolver_new. */
struct dkd_resolver_stats {
    uint64_t hits;         /* answered from the cache (positive or negative) */
    uint64_t misses;       /* not in the cache (or expired) */
    uint64_t coalesced;    /* misses that joined a query already in flight */
    uint64_t queries;      /* queries sent upstream */
    uint64_t evictions;    /* entries pushed out by the size bound */
    uint64_t expiries;     /* entries dropped because their TTL passed */
    uint64_t stale_served; /* lookups answered with an expired key (serve-stale) */
    uint64_t entries;      /* entries now in the cache */
    uint64_t canaries;     /* canary queries sent (forwarding modes, while lookups
                              time out; not in queries; see resolver.c) */
    /* Upstream answers by kind. */
    uint64_t err_notfound; /* NXDOMAIN or NODATA */
    uint64_t err_servfail; /* SERVFAIL and other server or libunbound failures */
    uint64_t err_timeout;  /* past query_timeout_ms */
    uint64_t err_bogus;    /* DNSSEC validation failed */
    uint64_t err_syntax;   /* a record that is not a usable key */
};

/* dkd_resolver_stats sums the counters into out. Any thread. */
void dkd_resolver_stats(dkd_resolver *r, struct dkd_resolver_stats *out);

#ifdef __cplusplus
}
#endif

#endif
