/*
 * resolver.c - DKIM key lookups through one asynchronous libunbound context, with
 * in-flight coalescing and the sharded key cache (keycache.c) in front.
 *
 * Workload: tens of thousands of messages per second ask for keys; almost all are cache
 * hits, answered in the calling worker's thread with a reference to an already parsed
 * key. The rest are misses in bursts: a campaign from a new sender brings hundreds of
 * messages with the same cold key within milliseconds. They must cost one DNS query:
 * every miss for a name already in flight joins that query's waiter list.
 *
 * Why this module owns a thread (engine/ otherwise never does): libunbound's async API is
 * an fd to poll plus ub_process(), and somebody has to poll it, enforce per-query
 * timeouts and hand results back, independently of any worker's ring. One small loop
 * thread keeps libunbound out of the workers entirely: workers only touch the cache (a
 * shard mutex), and on a miss a queue and an eventfd. DESIGN.md draws the resolver as
 * its own box beside the workers; this thread is that box.
 *
 * The loop: poll(ub_fd, eventfd, nearest deadline). Each turn swaps the submission queue
 * out under the mutex (never held across I/O or libunbound calls) and submits the whole
 * batch with ub_resolve_async; ub_process() runs the callbacks of finished queries, which
 * parse the answer once, store it in the cache and complete every waiter, on this thread.
 * All queries share one timeout, so the active list in submission order is also deadline
 * order: expiring is a walk from the head. ub_ctx_async(ctx, 1) makes libunbound use a
 * thread instead of forking a process, which a daemon with io_uring rings and an
 * allocator arena must not do.
 *
 * Answers (RFC 6376 3.6.2): the strings of one TXT record are concatenated; CNAMEs are
 * followed by libunbound. Several TXT records at one name: the same rule as zone.c's
 * answer() (which is static there, so it is restated in answer_from_records() below):
 * the first record that parses into a usable key, else the first record's error.
 * NXDOMAIN and NODATA are key-not-found; SERVFAIL and other failures dns-error; a query
 * past its timeout is cancelled and gives dns-timeout; a bogus answer is never parsed and
 * gives dnssec-bogus; a secure one marks the key DNSSEC-secure before it is shared.
 *
 * Canaries (forwarding modes only: FORWARD and RESOLV_CONF). libunbound keeps one
 * infrastructure-cache entry per (server address, zone), and with a forwarder the zone is
 * "." for every name: each unanswered packet of any query doubles the retransmit timeout
 * of the one entry that every healthy name uses too, and only a reply brings it down.
 * Past 12 s (PROBE_MAXRTO in libunbound's services/cache/infra.c, infra_get_lame_rtt)
 * libunbound lets one probe query through at a time and fails every other one with
 * SERVFAIL at once. "Dark" domains, whose servers are dead so the forwarder never
 * answers them, get there with nothing else in the traffic: dark_dns_test.py's
 * forward-trickle (one dark name every 0.25 s for 24 s, then 30 healthy lookups) passed
 * 4 of 30 healthy lookups with the other 26 dns-error in 1 ms (24-30 of 30 in earlier
 * runs), although outgoing-range and infra-host-ttl below were set. No option prevents it:
 * capping the maximum RTT marks the server down at the cap, and min = max marks a slow
 * forwarder down. So while our queries time out, the resolver thread sends a canary:
 * a TXT query for a name the forwarder answers from its own knowledge in a moment,
 * <counter>.dkimd-canary.invalid. (RFC 6761: NXDOMAIN, never sent on by a resolver),
 * at most one a second (CANARY_INTERVAL_MS) and only within CANARY_WINDOW_MS of the
 * last dns-timeout. Each reply resets the shared entry (a TXT reply also clears the
 * TXT timeout count), and a packet sent with a timeout above the fresh one is ignored
 * when it is lost (util/rtt.c rtt_lost), so the timeout stays far below 12 s: the same
 * trickle then passed 30 of 30 in each of 3 runs, with 27 canaries a run, and no dark
 * lookup failed at once (without canaries 6-7 of the 96 did in 2 of 3 runs: the
 * forwarder taken for down). The price besides the canaries: libunbound, no longer
 * giving up on the forwarder, sends every retry of the dark names (the forwarder saw
 * ~1020 queries instead of 670-995). libunbound answers invalid. itself unless told
 * 'local-zone: "invalid." nodefault', which only its configuration file reader applies,
 * so that goes into the file apply_options writes. A canary answer is only freed: it
 * never reaches the key cache, the in-flight table or a caller; dkd_resolver_stats
 * counts the canaries sent. The resolver option "dkimd-canary: no" turns them off.
 */
#include <dkimd/resolver.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "key.h"
#include "keycache.h"
#include "resolver_ub.h"
#include "span.h"

enum {
    INFLIGHT_BUCKETS = 1024,
    RR_TYPE_TXT = 16,
    RR_CLASS_IN = 1,
    RCODE_SERVFAIL = 2,
    RCODE_NXDOMAIN = 3,
    /* Canaries (see the file comment): at most one per CANARY_INTERVAL_MS, and only
     * within CANARY_WINDOW_MS of the last query of ours that timed out. */
    CANARY_INTERVAL_MS = 1000,
    CANARY_WINDOW_MS = 5000,
};

/* Where canaries ask: a zone no resolver sends on (RFC 6761 6.4). */
#define CANARY_ZONE "dkimd-canary.invalid."

/* A completion: the public lookup's (with flags) or a dkd_keysrc's (without). */
typedef struct callback {
    dkd_resolver_done_fn full;
    dkd_key_done_fn plain;
    void *arg;
} callback;

static void deliver(const callback *cb, dkd_key *key, unsigned flags)
{
    if (cb->full != NULL) {
        cb->full(cb->arg, key, flags);
        return;
    }
    /* A dkd_keysrc callback has no flags: a stale stand-in travels as a stale-marked
     * copy, so the verdict can say so. Only during an outage, so the copy is rare. */
    if ((flags & DKD_RESOLVER_STALE) && key != NULL) {
        dkd_key *copy = dkd__key_stale_copy(key);
        if (copy != NULL) {
            dkd_key_unref(key);
            key = copy;
        }
    }
    cb->plain(cb->arg, key);
}

typedef struct waiter {
    struct waiter *next;
    callback cb;
} waiter;

typedef struct query {
    struct query *hnext;         /* in-flight table bucket (under mu) */
    struct query *qnext;         /* submission queue (under mu) */
    struct query *aprev, *anext; /* active list (resolver thread only) */
    dkd_resolver *r;
    waiter *waiters; /* under mu */
    dkd_key *stale;  /* expired key to serve if the refresh fails temporarily */
    int async_id;
    int64_t deadline; /* real monotonic ms */
    char name[];      /* lowercased */
} query;

enum err_kind { ERR_NONE, ERR_NOTFOUND, ERR_SERVFAIL, ERR_TIMEOUT, ERR_BOGUS, ERR_SYNTAX };

struct dkd_resolver {
    enum dkd_resolver_mode mode;
    unsigned query_timeout_ms, message_deadline_ms;
    dkd_zone *zone;
    dkd__keycache *cache;
    struct ub_ctx *ub;
    int evfd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu; /* the in-flight table, the submission queue, stopping */
    query *inflight[INFLIGHT_BUCKETS];
    query *submit_head, *submit_tail;
    bool stopping;

    query *active_head, *active_tail; /* resolver thread only */

    /* Canaries (see the file comment); the int64_t fields are the resolver thread's. */
    bool canary_on;       /* forwarding mode, not turned off by CANARY_OPTION */
    int64_t last_timeout; /* real ms of our last dns-timeout, 0 = none yet */
    int64_t last_canary;  /* real ms of the last canary sent, 0 = none yet */
    uint64_t canary_seq;  /* the next canary's label */

    atomic_uint_fast64_t coalesced, queries, stale_served, canaries;
    atomic_uint_fast64_t errs[ERR_SYNTAX + 1];
};

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void dkd_resolver_config_init(dkd_resolver_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = DKD_RESOLVER_RECURSIVE;
    cfg->query_timeout_ms = 2000;
    cfg->message_deadline_ms = 5000;
    cfg->cache_entries = 100000;
    cfg->cache_shards = 16;
    cfg->ttl_min = 60;
    cfg->ttl_max = 86400;
    cfg->negative_ttl = 300;
    cfg->tempfail_ttl = 5;
    cfg->serve_stale = 0;
}

/* ---- answers ---- */

/* failure makes a failed outcome; the detail is cut to what dkd_key keeps. */
__attribute__((format(printf, 2, 3))) static dkd_key *failure(enum dkd_reason reason,
                                                              const char *fmt, ...)
{
    char detail[sizeof((dkd_key *)0)->detail];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return dkd_key_from_failure(reason, detail);
}

/*
 * txt_concat joins the character-strings of one TXT rdata (RFC 1035 3.3.14: a length
 * byte, then that many bytes, repeated). false when a length runs past the rdata, which
 * libunbound should never hand us, but the bytes came from the network.
 */
static bool txt_concat(const uint8_t *rd, size_t len, uint8_t *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = rd[i++];
        if (n > len - i) {
            return false;
        }
        memcpy(out + o, rd + i, n);
        o += n;
        i += n;
    }
    *out_len = o;
    return true;
}

/* answer_from_records: the first usable key among the TXT records, else the first
 * record's error (zone.c's rule; see the file comment). NULL on allocation failure. */
static dkd_key *answer_from_records(char **data, const int *lens)
{
    dkd_key *first = NULL;
    for (size_t i = 0; data[i] != NULL; i++) {
        size_t len = lens[i] > 0 ? (size_t)lens[i] : 0;
        uint8_t *txt = malloc(len + 1);
        size_t tlen = 0;
        dkd_key *k;
        if (txt == NULL) {
            k = NULL;
        } else if (!txt_concat((const uint8_t *)data[i], len, txt, &tlen)) {
            k = dkd_key_from_failure(DKD_REASON_KEY_SYNTAX, "malformed TXT record data");
        } else {
            k = dkd_key_from_record(txt, tlen);
        }
        free(txt);
        if (k == NULL) {
            dkd_key_unref(first);
            return NULL;
        }
        if (dkd__key_prefer(&first, k)) {
            break;
        }
    }
    return first;
}

/* key_from_result turns what libunbound answered into a key; *ttl is the answer's TTL. */
static dkd_key *key_from_result(const char *name, int err, struct ub_result *res, uint32_t *ttl,
                                enum err_kind *kind)
{
    *ttl = 0;
    if (err != 0 || res == NULL) {
        *kind = ERR_SERVFAIL;
        return failure(DKD_REASON_DNS_ERROR, "resolver error (%s) for %s",
                       err != 0 ? ub_strerror(err) : "no result", name);
    }
    if (res->bogus) {
        /* Never parse bogus data: it may be an attacker's key. */
        *kind = ERR_BOGUS;
        return failure(DKD_REASON_DNSSEC_BOGUS, "DNSSEC validation failed for %s: %s", name,
                       res->why_bogus != NULL ? res->why_bogus : "bogus");
    }
    if (res->rcode == RCODE_NXDOMAIN) {
        *kind = ERR_NOTFOUND;
        return failure(DKD_REASON_KEY_NOT_FOUND, "NXDOMAIN: no record at %s", name);
    }
    if (res->rcode == RCODE_SERVFAIL) {
        *kind = ERR_SERVFAIL;
        return failure(DKD_REASON_DNS_ERROR, "SERVFAIL for %s", name);
    }
    if (res->rcode != 0) {
        *kind = ERR_SERVFAIL;
        return failure(DKD_REASON_DNS_ERROR, "DNS error rcode %d for %s", res->rcode, name);
    }
    if (!res->havedata || res->data == NULL || res->data[0] == NULL) {
        *kind = ERR_NOTFOUND;
        return failure(DKD_REASON_KEY_NOT_FOUND, "NODATA: no TXT record at %s", name);
    }
    dkd_key *k = answer_from_records(res->data, res->len);
    if (k == NULL) {
        *kind = ERR_SERVFAIL;
        return NULL;
    }
    *kind = k->reason == DKD_REASON_OK ? ERR_NONE : ERR_SYNTAX;
    /* Only a key not yet shared may be marked (dkd_key_set_dnssec_secure's contract). */
    dkd_key_set_dnssec_secure(k, res->secure != 0);
    *ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
    return k;
}

/* ---- the in-flight table ---- */

static size_t bucket_of(const char *lower_name)
{
    uint32_t h = 2166136261u;
    for (const char *p = lower_name; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h % INFLIGHT_BUCKETS;
}

/* finish completes q with key (one reference handed over) and frees it. */
static void finish(dkd_resolver *r, query *q, dkd_key *key, uint32_t ttl, enum err_kind kind)
{
    if (kind != ERR_NONE) {
        count(&r->errs[kind], 1);
    }
    unsigned flags = 0;
    if (key != NULL && q->stale != NULL && dkd__reason_is_temporary(key->reason)) {
        /* Serve-stale: the refresh failed for now; the last good key stands in. */
        dkd__keycache_put_stale(r->cache, q->name, q->stale);
        dkd_key_unref(key);
        key = q->stale;
        q->stale = NULL;
        flags = DKD_RESOLVER_STALE;
    } else if (key != NULL) {
        /* Into the cache before leaving the table, so a lookup that misses the table
         * finds the cache filled instead of asking again. */
        dkd__keycache_put(r->cache, q->name, key, ttl);
    }
    pthread_mutex_lock(&r->mu);
    query **pp = &r->inflight[bucket_of(q->name)];
    while (*pp != q) {
        pp = &(*pp)->hnext;
    }
    *pp = q->hnext;
    waiter *w = q->waiters;
    q->waiters = NULL;
    pthread_mutex_unlock(&r->mu);

    if (key == NULL) {
        /* Allocation failure while parsing: give every waiter a small failure key, or at
         * worst a shared one; done must be called exactly once. */
        key = dkd_key_from_failure(DKD_REASON_INTERNAL, "out of memory");
    }
    while (w != NULL) {
        waiter *next = w->next;
        if (flags & DKD_RESOLVER_STALE) {
            count(&r->stale_served, 1);
        }
        deliver(&w->cb, key != NULL ? dkd_key_ref(key) : NULL, flags);
        free(w);
        w = next;
    }
    dkd_key_unref(key);
    dkd_key_unref(q->stale);
    free(q);
}

/* ---- the resolver thread ---- */

static void active_unlink(dkd_resolver *r, query *q)
{
    if (q->aprev != NULL) {
        q->aprev->anext = q->anext;
    } else {
        r->active_head = q->anext;
    }
    if (q->anext != NULL) {
        q->anext->aprev = q->aprev;
    } else {
        r->active_tail = q->aprev;
    }
    q->aprev = q->anext = NULL;
}

static void ub_done(void *arg, int err, struct ub_result *res)
{
    query *q = arg;
    dkd_resolver *r = q->r;
    active_unlink(r, q);
    uint32_t ttl;
    enum err_kind kind = ERR_SERVFAIL;
    dkd_key *key = key_from_result(q->name, err, res, &ttl, &kind);
    if (res != NULL) {
        ub_resolve_free(res);
    }
    finish(r, q, key, ttl, kind);
}

static void submit(dkd_resolver *r, query *q)
{
    count(&r->queries, 1);
    int rc = ub_resolve_async(r->ub, q->name, RR_TYPE_TXT, RR_CLASS_IN, q, ub_done, &q->async_id);
    if (rc != 0) {
        /* libunbound's callback is never called when submission fails. */
        if (rc == UB_SYNTAX) {
            finish(r, q, failure(DKD_REASON_KEY_NOT_FOUND, "not a valid DNS name: %s", q->name), 0,
                   ERR_NOTFOUND);
        } else {
            finish(r, q,
                   failure(DKD_REASON_DNS_ERROR, "resolver error (%s) for %s", ub_strerror(rc),
                           q->name),
                   0, ERR_SERVFAIL);
        }
        return;
    }
    q->deadline = real_ms() + r->query_timeout_ms;
    q->anext = NULL;
    q->aprev = r->active_tail;
    if (r->active_tail != NULL) {
        r->active_tail->anext = q;
    } else {
        r->active_head = q;
    }
    r->active_tail = q;
}

static void expire(dkd_resolver *r, int64_t now, bool all)
{
    while (r->active_head != NULL && (all || r->active_head->deadline <= now)) {
        query *q = r->active_head;
        active_unlink(r, q);
        ub_cancel(r->ub, q->async_id);
        if (!all) {
            r->last_timeout = now;
        }
        if (all) {
            finish(r, q,
                   failure(DKD_REASON_DNS_ERROR, "resolver stopped before %s answered", q->name), 0,
                   ERR_SERVFAIL);
        } else {
            finish(r, q,
                   failure(DKD_REASON_DNS_TIMEOUT, "no answer for %s within %u ms", q->name,
                           r->query_timeout_ms),
                   0, ERR_TIMEOUT);
        }
    }
}

/* ---- canaries (see the file comment) ---- */

/* canary_due returns the real ms at which the next canary is due, or -1 when none is:
 * canaries off, no timeout of ours yet, or the last one is older than the window. */
static int64_t canary_due(const dkd_resolver *r)
{
    if (!r->canary_on || r->last_timeout == 0) {
        return -1;
    }
    int64_t due = r->last_canary == 0 ? r->last_timeout : r->last_canary + CANARY_INTERVAL_MS;
    if (due < r->last_timeout) {
        due = r->last_timeout; /* the first canary goes out with the timeout */
    }
    return due <= r->last_timeout + CANARY_WINDOW_MS ? due : -1;
}

/* A canary's answer only had to reach libunbound's infrastructure cache: freed here,
 * never parsed, cached or delivered. */
static void canary_done(void *arg, int err, struct ub_result *res)
{
    (void)arg;
    (void)err;
    if (res != NULL) {
        ub_resolve_free(res);
    }
}

static void canary(dkd_resolver *r, int64_t now)
{
    int64_t due = canary_due(r);
    if (due < 0 || now < due) {
        return;
    }
    char name[64];
    snprintf(name, sizeof name, "%llu." CANARY_ZONE, (unsigned long long)r->canary_seq++);
    int id;
    /* Never cancelled: the callback only frees, and ub_ctx_delete drops what is left. A
     * refusal (out of memory) waits for the next interval like a sent one. */
    if (ub_resolve_async(r->ub, name, RR_TYPE_TXT, RR_CLASS_IN, NULL, canary_done, &id) == 0) {
        count(&r->canaries, 1);
    }
    r->last_canary = now;
}

static void *loop(void *arg)
{
    dkd_resolver *r = arg;
    struct pollfd pfd[2] = {{.fd = ub_fd(r->ub), .events = POLLIN},
                            {.fd = r->evfd, .events = POLLIN}};
    for (;;) {
        int64_t wake = r->active_head != NULL ? r->active_head->deadline : -1;
        int64_t due = canary_due(r);
        if (due >= 0 && (wake < 0 || due < wake)) {
            wake = due;
        }
        int timeout = -1;
        if (wake >= 0) {
            int64_t left = wake - real_ms();
            timeout = left < 0 ? 0 : (int)(left > 60000 ? 60000 : left);
        }
        int n = poll(pfd, 2, timeout);
        if (n < 0 && errno != EINTR) {
            /* Nothing sensible to do but keep going: poll only fails on EINTR/ENOMEM. */
            continue;
        }
        if (n > 0 && (pfd[1].revents & POLLIN)) {
            uint64_t v;
            if (read(r->evfd, &v, sizeof v) < 0) {
                /* EAGAIN: another turn drained it already. */
            }
        }
        pthread_mutex_lock(&r->mu);
        query *batch = r->submit_head;
        r->submit_head = r->submit_tail = NULL;
        bool stop = r->stopping;
        pthread_mutex_unlock(&r->mu);
        while (batch != NULL) {
            query *next = batch->qnext;
            submit(r, batch);
            batch = next;
        }
        if (n > 0 && (pfd[0].revents & POLLIN)) {
            ub_process(r->ub);
        }
        int64_t now = real_ms();
        expire(r, now, false);
        if (stop) {
            expire(r, 0, true);
            return NULL;
        }
        canary(r, now);
    }
}

/* ---- lookups ---- */

static void zone_done(void *arg, dkd_key *key)
{
    deliver(arg, key, DKD_RESOLVER_HIT);
}

static int lookup(dkd_resolver *r, const char *qname, callback cb)
{
    if (r->mode == DKD_RESOLVER_ZONE) {
        /* The zone answers before returning, so cb may live on this stack. */
        dkd_keysrc zs = dkd_zone_keysrc(r->zone);
        return zs.lookup(zs.impl, qname, zone_done, &cb);
    }
    size_t len = strlen(qname);
    if (len > 0 && qname[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > 253) {
        dkd_key *k = failure(DKD_REASON_KEY_NOT_FOUND, "not a valid DNS name: %.120s", qname);
        if (k == NULL) {
            return DKD_ERR_NOMEM;
        }
        deliver(&cb, k, DKD_RESOLVER_HIT);
        return 0;
    }
    char lower[256];
    for (size_t i = 0; i < len; i++) {
        lower[i] = (char)dkd__lower((uint8_t)qname[i]);
    }
    lower[len] = '\0';

    dkd_key *cached;
    bool stale;
    enum dkd__cache_state st = dkd__keycache_get(r->cache, lower, &cached, &stale);
    if (st == DKD__CACHE_HIT) {
        if (stale) {
            count(&r->stale_served, 1);
        }
        deliver(&cb, cached, DKD_RESOLVER_HIT | (stale ? DKD_RESOLVER_STALE : 0));
        return 0;
    }

    /* Allocated before taking the lock, freed again if the name is already in flight:
     * the lock covers only the table walk and a few pointer writes. */
    waiter *w = malloc(sizeof *w);
    query *q = malloc(sizeof *q + len + 1);
    if (w == NULL || q == NULL) {
        free(w);
        free(q);
        dkd_key_unref(cached);
        return DKD_ERR_NOMEM;
    }
    *w = (waiter){NULL, cb};
    memset(q, 0, sizeof *q);
    memcpy(q->name, lower, len + 1);
    q->r = r;

    size_t b = bucket_of(lower);
    pthread_mutex_lock(&r->mu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->mu);
        free(w);
        free(q);
        dkd_key_unref(cached);
        dkd_key *k =
            failure(DKD_REASON_DNS_ERROR, "resolver stopped before %.120s answered", lower);
        if (k == NULL) {
            return DKD_ERR_NOMEM;
        }
        deliver(&cb, k, 0);
        return 0;
    }
    query *in = r->inflight[b];
    while (in != NULL && strcmp(in->name, lower) != 0) {
        in = in->hnext;
    }
    if (in != NULL) {
        w->next = in->waiters;
        in->waiters = w;
        pthread_mutex_unlock(&r->mu);
        count(&r->coalesced, 1);
        free(q);
        dkd_key_unref(cached);
        return 0;
    }
    q->waiters = w;
    q->stale = cached; /* NULL unless st == DKD__CACHE_STALE */
    q->hnext = r->inflight[b];
    r->inflight[b] = q;
    bool wake = r->submit_head == NULL; /* one wake-up per batch is enough */
    if (r->submit_tail != NULL) {
        r->submit_tail->qnext = q;
    } else {
        r->submit_head = q;
    }
    r->submit_tail = q;
    pthread_mutex_unlock(&r->mu);
    if (wake) {
        uint64_t one = 1;
        if (write(r->evfd, &one, sizeof one) < 0) {
            /* EAGAIN means the counter is already non-zero: the thread will wake. */
        }
    }
    return 0;
}

int dkd_resolver_lookup(dkd_resolver *r, const char *qname, dkd_resolver_done_fn done,
                        void *done_arg)
{
    return lookup(r, qname, (callback){done, NULL, done_arg});
}

static int keysrc_lookup(void *impl, const char *qname, dkd_key_done_fn done, void *done_arg)
{
    return lookup(impl, qname, (callback){NULL, done, done_arg});
}

dkd_keysrc dkd_resolver_keysrc(dkd_resolver *r)
{
    return (dkd_keysrc){keysrc_lookup, r};
}

/* ---- the blocking key source ---- */

typedef struct blocking_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    dkd_key *key;
} blocking_wait;

static void blocking_done(void *arg, dkd_key *key)
{
    blocking_wait *bw = arg;
    pthread_mutex_lock(&bw->mu);
    bw->key = key;
    bw->done = true;
    pthread_cond_signal(&bw->cv);
    pthread_mutex_unlock(&bw->mu);
}

static int blocking_lookup(void *impl, const char *qname, dkd_key_done_fn done, void *done_arg)
{
    blocking_wait bw = {.done = false, .key = NULL};
    pthread_mutex_init(&bw.mu, NULL);
    pthread_cond_init(&bw.cv, NULL);
    int rc = lookup(impl, qname, (callback){NULL, blocking_done, &bw});
    if (rc == 0) {
        pthread_mutex_lock(&bw.mu);
        while (!bw.done) {
            pthread_cond_wait(&bw.cv, &bw.mu);
        }
        pthread_mutex_unlock(&bw.mu);
    }
    pthread_cond_destroy(&bw.cv);
    pthread_mutex_destroy(&bw.mu);
    if (rc == 0) {
        done(done_arg, bw.key);
    }
    return rc;
}

dkd_keysrc dkd_resolver_keysrc_blocking(dkd_resolver *r)
{
    return (dkd_keysrc){blocking_lookup, r};
}

unsigned dkd_resolver_message_deadline_ms(const dkd_resolver *r)
{
    return r->message_deadline_ms;
}

void dkd_resolver_stats(dkd_resolver *r, struct dkd_resolver_stats *out)
{
    memset(out, 0, sizeof *out);
    if (r->cache != NULL) {
        dkd__keycache_counts cs;
        dkd__keycache_stats(r->cache, &cs);
        out->hits = cs.hits;
        out->misses = cs.misses;
        out->evictions = cs.evictions;
        out->expiries = cs.expiries;
        out->entries = cs.entries;
    }
    out->coalesced = atomic_load_explicit(&r->coalesced, memory_order_relaxed);
    out->queries = atomic_load_explicit(&r->queries, memory_order_relaxed);
    out->stale_served = atomic_load_explicit(&r->stale_served, memory_order_relaxed);
    out->canaries = atomic_load_explicit(&r->canaries, memory_order_relaxed);
    out->err_notfound = atomic_load_explicit(&r->errs[ERR_NOTFOUND], memory_order_relaxed);
    out->err_servfail = atomic_load_explicit(&r->errs[ERR_SERVFAIL], memory_order_relaxed);
    out->err_timeout = atomic_load_explicit(&r->errs[ERR_TIMEOUT], memory_order_relaxed);
    out->err_bogus = atomic_load_explicit(&r->errs[ERR_BOGUS], memory_order_relaxed);
    out->err_syntax = atomic_load_explicit(&r->errs[ERR_SYNTAX], memory_order_relaxed);
}

/* ---- set-up ---- */

dkd_resolver *dkd_resolver_new(const dkd_resolver_config *cfg, char *err, size_t err_len)
{
    dkd_resolver *r = calloc(1, sizeof *r);
    if (r == NULL) {
        abort();
    }
    r->mode = cfg->mode;
    r->query_timeout_ms = cfg->query_timeout_ms ? cfg->query_timeout_ms : 1;
    r->message_deadline_ms = cfg->message_deadline_ms;
    r->evfd = -1;
    pthread_mutex_init(&r->mu, NULL);
    if (cfg->mode == DKD_RESOLVER_ZONE) {
        if (cfg->zone_path == NULL) {
            dkd__resolver_err(err, err_len, "resolver: zone mode needs a zone file");
            dkd_resolver_free(r);
            return NULL;
        }
        r->zone = dkd_zone_load(cfg->zone_path, err, err_len);
        if (r->zone == NULL) {
            dkd_resolver_free(r);
            return NULL;
        }
        return r;
    }
    dkd__keycache_cfg cc = {
        .max_entries = cfg->cache_entries,
        .shards = cfg->cache_shards,
        .ttl_min = cfg->ttl_min,
        .ttl_max = cfg->ttl_max,
        .negative_ttl = cfg->negative_ttl,
        .tempfail_ttl = cfg->tempfail_ttl,
        .serve_stale = cfg->serve_stale,
        .clock_ms = cfg->clock_ms,
        .clock_arg = cfg->clock_arg,
    };
    r->cache = dkd__keycache_new(&cc);
    r->ub = dkd__resolver_ub_new(cfg, &r->canary_on, err, err_len);
    if (r->ub == NULL) {
        dkd_resolver_free(r);
        return NULL;
    }
    /* Non-blocking: the loop drains it whenever it wakes; a full counter needs no write. */
    r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->evfd < 0) {
        dkd__resolver_err(err, err_len, "resolver: eventfd: %s", strerror(errno));
        dkd_resolver_free(r);
        return NULL;
    }
    if (pthread_create(&r->thread, NULL, loop, r) != 0) {
        dkd__resolver_err(err, err_len, "resolver: cannot start its thread");
        dkd_resolver_free(r);
        return NULL;
    }
    r->thread_started = true;
    return r;
}

void dkd_resolver_free(dkd_resolver *r)
{
    if (r == NULL) {
        return;
    }
    if (r->thread_started) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_mutex_unlock(&r->mu);
        uint64_t one = 1;
        if (write(r->evfd, &one, sizeof one) < 0) {
            /* already signalled */
        }
        pthread_join(r->thread, NULL);
    }
    if (r->ub != NULL) {
        ub_ctx_delete(r->ub);
    }
    if (r->evfd >= 0) {
        close(r->evfd);
    }
    dkd__keycache_free(r->cache);
    dkd_zone_free(r->zone);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

enum dkd_reason dkd_resolver_txt(dkd_resolver *r, const char *qname, dkd_zone_txt_fn each,
                                 void *arg, bool *secure)
{
    *secure = false;
    if (r->ub == NULL) {
        return r->zone != NULL ? dkd_zone_txt(r->zone, qname, each, arg) : DKD_REASON_DNS_ERROR;
    }
    /* Synchronous and uncached by us: for check-record, which asks right after a
     * dkd_resolver_lookup of the same name, so libunbound's own cache answers. */
    struct ub_result *res = NULL;
    int err = ub_resolve(r->ub, qname, RR_TYPE_TXT, RR_CLASS_IN, &res);
    enum dkd_reason why = DKD_REASON_OK;
    if (err != 0 || res == NULL) {
        why = DKD_REASON_DNS_ERROR;
    } else if (res->bogus) {
        why = DKD_REASON_DNSSEC_BOGUS;
    } else if (res->rcode == RCODE_NXDOMAIN || (res->rcode == 0 && !res->havedata)) {
        why = DKD_REASON_KEY_NOT_FOUND;
    } else if (res->rcode != 0) {
        why = DKD_REASON_DNS_ERROR;
    } else {
        *secure = res->secure != 0;
        for (size_t i = 0; res->data[i] != NULL; i++) {
            size_t len = res->len[i] > 0 ? (size_t)res->len[i] : 0, tlen = 0;
            uint8_t *txt = malloc(len + 1);
            if (txt != NULL && txt_concat((const uint8_t *)res->data[i], len, txt, &tlen)) {
                each(arg, txt, tlen);
            }
            free(txt);
        }
    }
    if (res != NULL) {
        ub_resolve_free(res);
    }
    return why;
}
