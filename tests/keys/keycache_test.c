/*
 * keycache_test.c - the sharded LRU key cache alone (no DNS): a differential test
 * against a naive model, TTL classes, serve-stale windows, the size bound with flat
 * memory, and many threads at once (for the TSan build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkimd/engine.h>

#include "keycache.h"

static int64_t now_ms;

static int64_t test_clock(void *arg)
{
    (void)arg;
    return now_ms;
}

static dkd__keycache *make(size_t entries, unsigned shards)
{
    dkd__keycache_cfg cfg = {
        .max_entries = entries,
        .shards = shards,
        .ttl_min = 60,
        .ttl_max = 86400,
        .negative_ttl = 300,
        .tempfail_ttl = 5,
        .serve_stale = 0,
        .clock_ms = test_clock,
    };
    return dkd__keycache_new(&cfg);
}

static dkd_key *ok_key(void)
{
    static const char rec[] = "v=DKIM1; k=ed25519; p=2fZ87ldu4Iw2BkvY4osaII5uJf31kXDb0ccMyE/cH/o=";
    dkd_key *k = dkd_key_from_record((const uint8_t *)rec, sizeof rec - 1);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    return k;
}

/* ---- differential test: one shard against a naive LRU list ---- */

enum { CAP = 8, NAMES = 24, OPS = 20000 };

typedef struct model_entry {
    int name;
    int64_t expires;
    uint64_t used; /* recency stamp */
} model_entry;

static void test_against_model(void **state)
{
    (void)state;
    dkd__keycache *c = make(CAP, 1);
    dkd_key *key = ok_key();
    model_entry m[CAP];
    size_t mn = 0;
    uint64_t stamp = 0;
    uint64_t hits = 0, evictions = 0;
    srand(12345);
    now_ms = 0;
    for (int op = 0; op < OPS; op++) {
        int name = rand() % NAMES;
        char buf[64];
        /* Mixed case: the cache must not care. */
        snprintf(buf, sizeof buf, (op & 1) ? "S%d._DomainKey.Example" : "s%d._domainkey.example",
                 name);
        if (rand() % 8 == 0) {
            now_ms += rand() % 20000;
        }
        size_t at = mn;
        for (size_t i = 0; i < mn; i++) {
            if (m[i].name == name) {
                at = i;
            }
        }
        if (rand() % 2 == 0) {
            uint32_t ttl = (uint32_t)(rand() % 200);
            dkd__keycache_put(c, buf, key, ttl);
            int64_t exp = now_ms + (int64_t)(ttl < 60 ? 60 : ttl) * 1000;
            if (at < mn) {
                m[at] = m[--mn]; /* replaced: removed, then inserted fresh */
            } else if (mn == CAP) {
                size_t lru = 0;
                for (size_t i = 1; i < mn; i++) {
                    if (m[i].used < m[lru].used) {
                        lru = i;
                    }
                }
                m[lru] = m[--mn];
                evictions++;
            }
            m[mn++] = (model_entry){name, exp, ++stamp};
        } else {
            dkd_key *got;
            bool stale;
            enum dkd__cache_state st = dkd__keycache_get(c, buf, &got, &stale);
            bool want_hit = at < mn && now_ms < m[at].expires;
            assert_int_equal(st, want_hit ? DKD__CACHE_HIT : DKD__CACHE_MISS);
            assert_false(stale);
            if (want_hit) {
                assert_ptr_equal(got, key);
                dkd_key_unref(got);
                m[at].used = ++stamp;
                hits++;
            } else if (at < mn) {
                m[at] = m[--mn]; /* expired entries are dropped on sight */
            }
        }
    }
    dkd__keycache_counts cs;
    dkd__keycache_stats(c, &cs);
    assert_int_equal(cs.hits, hits);
    assert_int_equal(cs.evictions, evictions);
    assert_int_equal(cs.entries, mn);
    dkd__keycache_free(c);
    dkd_key_unref(key);
}

/* ---- TTL classes and serve-stale ---- */

static void test_ttl_classes(void **state)
{
    (void)state;
    dkd__keycache *c = make(100, 4);
    now_ms = 0;
    dkd_key *good = ok_key();
    dkd_key *nf = dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, "x");
    dkd_key *tmp = dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, "x");
    dkd__keycache_put(c, "short", good, 1);     /* clamped up to 60 s */
    dkd__keycache_put(c, "long", good, 999999); /* clamped down to 1 day */
    dkd__keycache_put(c, "neg", nf, 999999);    /* negative: 300 s whatever the answer */
    dkd__keycache_put(c, "tmp", tmp, 999999);   /* temporary: 5 s */
    struct {
        const char *name;
        int64_t last_ms;
    } want[] = {{"short", 60000}, {"long", 86400000}, {"neg", 300000}, {"tmp", 5000}};
    for (size_t i = 0; i < 4; i++) {
        dkd_key *k;
        bool stale;
        now_ms = want[i].last_ms - 1;
        assert_int_equal(dkd__keycache_get(c, want[i].name, &k, &stale), DKD__CACHE_HIT);
        dkd_key_unref(k);
        now_ms = want[i].last_ms;
        assert_int_equal(dkd__keycache_get(c, want[i].name, &k, &stale), DKD__CACHE_MISS);
        assert_null(k);
        now_ms = 0;
    }
    dkd__keycache_free(c);
    dkd_key_unref(good);
    dkd_key_unref(nf);
    dkd_key_unref(tmp);
}

static void test_serve_stale_window(void **state)
{
    (void)state;
    dkd__keycache_cfg cfg = {.max_entries = 10,
                             .shards = 1,
                             .ttl_min = 60,
                             .ttl_max = 60,
                             .negative_ttl = 300,
                             .tempfail_ttl = 5,
                             .serve_stale = 100,
                             .clock_ms = test_clock};
    dkd__keycache *c = dkd__keycache_new(&cfg);
    dkd_key *good = ok_key();
    dkd_key *nf = dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, "x");
    now_ms = 0;
    dkd__keycache_put(c, "k", good, 60);
    dkd__keycache_put(c, "n", nf, 60);
    dkd_key *k;
    bool stale;
    now_ms = 60000; /* expired, inside the 100 s window */
    assert_int_equal(dkd__keycache_get(c, "k", &k, &stale), DKD__CACHE_STALE);
    assert_ptr_equal(k, good);
    /* The refresh failed: the stand-in lives tempfail_ttl, flagged. */
    dkd__keycache_put_stale(c, "k", k);
    dkd_key_unref(k);
    now_ms = 64999;
    assert_int_equal(dkd__keycache_get(c, "k", &k, &stale), DKD__CACHE_HIT);
    assert_true(stale);
    dkd_key_unref(k);
    now_ms = 65000;
    assert_int_equal(dkd__keycache_get(c, "k", &k, &stale), DKD__CACHE_STALE);
    /* Put back again near the end of the window: capped by it, never extended. */
    now_ms = 158000;
    dkd__keycache_put_stale(c, "k", k);
    dkd_key_unref(k);
    now_ms = 159999;
    assert_int_equal(dkd__keycache_get(c, "k", &k, &stale), DKD__CACHE_HIT);
    dkd_key_unref(k);
    now_ms = 160000;
    assert_int_equal(dkd__keycache_get(c, "k", &k, &stale), DKD__CACHE_MISS);
    /* Negative entries get no stale window. */
    now_ms = 300000;
    assert_int_equal(dkd__keycache_get(c, "n", &k, &stale), DKD__CACHE_MISS);
    dkd__keycache_free(c);
    dkd_key_unref(good);
    dkd_key_unref(nf);
}

/* More distinct names than the bound: entries stay at the bound and so does the heap. */
static void test_bound_memory_flat(void **state)
{
    (void)state;
    dkd__keycache *c = make(256, 16);
    dkd_key *key = ok_key();
    now_ms = 0;
    char name[64];
    size_t heap_at[2] = {0, 0};
    for (int i = 0; i < 200000; i++) {
        snprintf(name, sizeof name, "sel%d._domainkey.example%d.com", i, i % 977);
        dkd__keycache_put(c, name, key, 3600);
        if (i == 20000 || i == 199999) {
            heap_at[i == 20000 ? 0 : 1] = mallinfo2().uordblks;
        }
    }
    dkd__keycache_counts cs;
    dkd__keycache_stats(c, &cs);
    assert_int_equal(cs.entries, 256);
    assert_int_equal(cs.evictions, 200000 - 256);
    printf("# heap in use after 20000 puts: %zu bytes, after 200000: %zu\n", heap_at[0],
           heap_at[1]);
    /* 180000 more names through a full cache may not grow the heap (slack for the
     * allocator's own bookkeeping). */
    assert_true(heap_at[1] <= heap_at[0] + 16384);
    dkd__keycache_free(c);
    dkd_key_unref(key);
}

/* ---- many threads ---- */

typedef struct worker_arg {
    dkd__keycache *c;
    dkd_key *key;
    unsigned seed;
    uint64_t gets;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *a = p;
    char name[64];
    for (int i = 0; i < 100000; i++) {
        int n = (int)(rand_r(&a->seed) % 500);
        snprintf(name, sizeof name, "s%d._domainkey.example", n);
        if (rand_r(&a->seed) % 4 == 0) {
            dkd__keycache_put(a->c, name, a->key, 3600);
        } else {
            dkd_key *k;
            bool stale;
            if (dkd__keycache_get(a->c, name, &k, &stale) != DKD__CACHE_MISS) {
                dkd_key_unref(k);
            }
            a->gets++;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    dkd__keycache *c = make(300, 8);
    dkd_key *key = ok_key();
    now_ms = 0;
    enum { T = 4 };
    pthread_t th[T];
    worker_arg args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (worker_arg){c, key, (unsigned)i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    uint64_t gets = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        gets += args[i].gets;
    }
    dkd__keycache_counts cs;
    dkd__keycache_stats(c, &cs);
    assert_int_equal(cs.hits + cs.misses, gets);
    assert_true(cs.entries <= 300);
    dkd__keycache_free(c);
    dkd_key_unref(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_ttl_classes),
        cmocka_unit_test(test_serve_stale_window),
        cmocka_unit_test(test_bound_memory_flat),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
