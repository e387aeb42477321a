/*
 * resolver_test.c - the resolver and key cache against real DNS servers on loopback.
 *
 * run_tests.py starts unbound (samples/keys.zone and a few extra records as local-data,
 * with a query log) and several misbehaving responders, and passes their ports in DKD_*
 * variables. Query counts come from the server's own log, so "one upstream query" is what
 * the server saw, not what we believe we sent. Each test makes its own resolver, so its
 * cache starts cold; server counts are compared as differences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>

/* ---- helpers ---- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fail_msg("%s not set: run through run_tests.py", name);
    }
    return v;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The injected cache clock. */
static _Atomic int64_t fake_now = 1000000;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

/* server_count: queries for name the unbound log holds (any case). */
static int server_count(const char *name)
{
    FILE *f = fopen(env("DKD_DNS_LOG"), "r");
    assert_non_null(f);
    char want[300];
    snprintf(want, sizeof want, " %s. TXT IN", name);
    for (char *p = want; *p; p++) {
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        for (char *p = line; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
        n += strstr(line, want) != NULL;
    }
    fclose(f);
    return n;
}

static dkd_resolver *make_at(const char *fwd, dkd_resolver_config *rc)
{
    static char addr[4][64];
    static int next;
    char *a = addr[next++ % 4];
    snprintf(a, sizeof addr[0], "127.0.0.1@%s", fwd);
    rc->mode = DKD_RESOLVER_FORWARD;
    rc->forwarders[rc->nforwarders++] = a;
    rc->options[rc->noptions++] = "do-not-query-localhost: no";
    rc->clock_ms = fake_clock;
    char err[256] = "";
    dkd_resolver *r = dkd_resolver_new(rc, err, sizeof err);
    if (r == NULL) {
        fail_msg("dkd_resolver_new: %s", err);
    }
    return r;
}

static dkd_resolver *make(const char *port_var)
{
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    return make_at(env(port_var), &rc);
}

typedef struct waitbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    dkd_key *key;
    unsigned flags;
    pthread_t thread;
} waitbox;

static void box_init(waitbox *b)
{
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

static void box_done(void *arg, dkd_key *key, unsigned flags)
{
    waitbox *b = arg;
    pthread_mutex_lock(&b->mu);
    b->n++;
    b->key = key;
    b->flags = flags;
    b->thread = pthread_self();
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void box_wait(waitbox *b, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&b->mu);
    while (b->n < n) {
        if (pthread_cond_timedwait(&b->cv, &b->mu, &until) != 0) {
            pthread_mutex_unlock(&b->mu);
            fail_msg("no answer within 20 s");
        }
    }
    pthread_mutex_unlock(&b->mu);
}

/* lookup: one lookup, waited for; returns the key and the flags. */
static dkd_key *lookup(dkd_resolver *r, const char *name, unsigned *flags)
{
    waitbox b;
    box_init(&b);
    assert_int_equal(dkd_resolver_lookup(r, name, box_done, &b), 0);
    box_wait(&b, 1);
    assert_int_equal(b.n, 1);
    if (flags != NULL) {
        *flags = b.flags;
    }
    return b.key;
}

static void expect_reason(dkd_resolver *r, const char *name, enum dkd_reason want)
{
    dkd_key *k = lookup(r, name, NULL);
    if (dkd_key_reason(k) != want) {
        fail_msg("%s: got %s (%s), want %s", name, dkd_reason_code(dkd_key_reason(k)),
                 dkd_key_detail(k), dkd_reason_code(want));
    }
    dkd_key_unref(k);
}

/* ---- answers ---- */

static void zone_done(void *arg, dkd_key *key)
{
    *(dkd_key **)arg = key;
}

/* Every name of samples/keys.zone gives through DNS what the zone source gives. */
static void test_same_as_zone(void **state)
{
    (void)state;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/keys.zone", env("DKD_SAMPLES"));
    dkd_zone *z = dkd_zone_load(path, err, sizeof err);
    assert_non_null(z);
    dkd_keysrc zs = dkd_zone_keysrc(z);
    dkd_resolver *r = make("DKD_DNS_PORT");
    static const char *names[] = {
        "rsa2048._domainkey.example.com", /* two TXT strings: split record */
        "ed25519._domainkey.example.com", "rotated._domainkey.example.com",
        "revoked._domainkey.example.com", "typo._domainkey.example.com",
        "rsa768._domainkey.example.com",  "missing._domainkey.example.com",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        dkd_key *zk = NULL;
        assert_int_equal(zs.lookup(zs.impl, names[i], zone_done, &zk), 0);
        assert_non_null(zk);
        unsigned flags = 99;
        dkd_key *dk = lookup(r, names[i], &flags);
        assert_int_equal(flags & DKD_RESOLVER_HIT, 0); /* cold cache: came from DNS */
        if (dkd_key_reason(dk) != dkd_key_reason(zk) ||
            strcmp(dkd_key_detail(dk), dkd_key_detail(zk)) != 0 ||
            dkd_key_bits(dk) != dkd_key_bits(zk) || dkd_key_type(dk) != dkd_key_type(zk)) {
            fail_msg("%s: dns %s '%s' %u bits, zone %s '%s' %u bits", names[i],
                     dkd_reason_code(dkd_key_reason(dk)), dkd_key_detail(dk), dkd_key_bits(dk),
                     dkd_reason_code(dkd_key_reason(zk)), dkd_key_detail(zk), dkd_key_bits(zk));
        }
        assert_false(dkd_key_dnssec_secure(dk)); /* no validation against the test server */
        dkd_key_unref(dk);
        dkd_key_unref(zk);
    }
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.queries, 7);
    assert_int_equal(st.err_notfound, 1);
    assert_true(st.err_syntax >= 1);
    dkd_resolver_free(r);
    dkd_zone_free(z);
}

static void test_not_found(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_DNS_PORT");
    dkd_key *k = lookup(r, "Nope._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_NOT_FOUND);
    assert_string_equal(dkd_key_detail(k), "NXDOMAIN: no record at nope._domainkey.example.com");
    dkd_key_unref(k);
    k = lookup(r, "nodata._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_NOT_FOUND);
    assert_string_equal(dkd_key_detail(k),
                        "NODATA: no TXT record at nodata._domainkey.example.com");
    dkd_key_unref(k);
    dkd_resolver_free(r);
}

static void test_cname_and_several_records(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_DNS_PORT");
    dkd_key *k = lookup(r, "alias._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_type(k), DKD_KEY_ED25519);
    dkd_key_unref(k);
    /* A broken record and a good one at one name: the good one is used (zone.c's rule). */
    k = lookup(r, "multi._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    dkd_key_unref(k);
    dkd_resolver_free(r);
}

/* Names under test. need libunbound's default local zone lifted: an option that only
 * ub_ctx_config accepts (local-zone), so this also exercises the generated file. */
static void test_option_passthrough(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_DNS_PORT");
    int before = server_count("sel._domainkey.corp.test");
    expect_reason(r, "sel._domainkey.corp.test", DKD_REASON_KEY_NOT_FOUND);
    assert_int_equal(server_count("sel._domainkey.corp.test"), before); /* never asked */
    dkd_resolver_free(r);

    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.options[rc.noptions++] = "local-zone: test. nodefault";
    r = make_at(env("DKD_DNS_PORT"), &rc);
    expect_reason(r, "sel._domainkey.corp.test", DKD_REASON_OK);
    assert_int_equal(server_count("sel._domainkey.corp.test"), before + 1);
    dkd_resolver_free(r);

    dkd_resolver_config_init(&rc);
    rc.options[rc.noptions++] = "no-such-option: 1";
    rc.mode = DKD_RESOLVER_FORWARD;
    rc.forwarders[rc.nforwarders++] = "127.0.0.1";
    char err[256] = "";
    assert_null(dkd_resolver_new(&rc, err, sizeof err));
    assert_non_null(strstr(err, "resolver option"));
    dkd_resolver_config_init(&rc);
    rc.mode = DKD_RESOLVER_FORWARD;
    rc.forwarders[rc.nforwarders++] = "not an address";
    assert_null(dkd_resolver_new(&rc, err, sizeof err));
    assert_non_null(strstr(err, "not an address"));
}

/* DNSSEC: with sec.example.'s key as trust anchor, a correctly signed key record is
 * marked secure, a record whose signature does not match is dnssec-bogus and never
 * parsed, and names outside the anchor stay insecure. */
static void test_dnssec(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.trust_anchor = env("DKD_SEC_ANCHOR");
    dkd_resolver *r = make_at(env("DKD_DNS_PORT"), &rc);
    dkd_key *k = lookup(r, "good._domainkey.sec.example", NULL);
    if (dkd_key_reason(k) != DKD_REASON_OK) {
        fail_msg("good: %s (%s)", dkd_reason_code(dkd_key_reason(k)), dkd_key_detail(k));
    }
    assert_true(dkd_key_dnssec_secure(k));
    dkd_key_unref(k);
    k = lookup(r, "bad._domainkey.sec.example", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_DNSSEC_BOGUS);
    printf("# bogus detail: %s\n", dkd_key_detail(k));
    assert_false(dkd_key_dnssec_secure(k));
    dkd_key_unref(k);
    k = lookup(r, "ed25519._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_false(dkd_key_dnssec_secure(k));
    dkd_key_unref(k);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.err_bogus, 1);
    dkd_resolver_free(r);

    /* Without the anchor the same answers are plainly insecure. */
    r = make("DKD_DNS_PORT");
    k = lookup(r, "bad._domainkey.sec.example", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_false(dkd_key_dnssec_secure(k));
    dkd_key_unref(k);
    dkd_resolver_free(r);
}

/* ---- the cache ---- */

static void test_hit_costs_no_query(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_DNS_PORT");
    const char *name = "ed25519._domainkey.example.com";
    int before = server_count(name);
    unsigned flags;
    dkd_key *a = lookup(r, name, &flags);
    assert_int_equal(flags, 0);
    assert_int_equal(server_count(name), before + 1);
    /* A hit answers synchronously in this thread, with the same parsed key. */
    waitbox b;
    box_init(&b);
    assert_int_equal(dkd_resolver_lookup(r, "ED25519._DomainKey.Example.COM", box_done, &b), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.flags, DKD_RESOLVER_HIT);
    assert_ptr_equal(b.key, a);
    assert_true(pthread_equal(b.thread, pthread_self()));
    dkd_key_unref(b.key);
    dkd_key_unref(a);
    assert_int_equal(server_count(name), before + 1);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.queries, 1);
    dkd_resolver_free(r);
}

/* The TTL: asked again after it passes, not before. The record's TTL is 1 s and ttl_min
 * is 1, so our entry lives 1000 ms of the injected clock; the real sleep lets libunbound's
 * own cache expire too, so the refresh reaches the server. */
static void test_ttl(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.ttl_min = 1;
    dkd_resolver *r = make_at(env("DKD_DNS_PORT"), &rc);
    const char *name = "ttl._domainkey.example.com";
    int before = server_count(name);
    int64_t t0 = atomic_load(&fake_now);
    expect_reason(r, name, DKD_REASON_OK);
    assert_int_equal(server_count(name), before + 1);
    usleep(2100 * 1000); /* unbound keeps whole seconds: a 1 s TTL can last 2 */
    atomic_store(&fake_now, t0 + 900);
    unsigned flags;
    dkd_key_unref(lookup(r, name, &flags));
    assert_int_equal(flags, DKD_RESOLVER_HIT);
    assert_int_equal(server_count(name), before + 1);
    atomic_store(&fake_now, t0 + 1001);
    dkd_key_unref(lookup(r, name, &flags));
    assert_int_equal(flags, 0);
    assert_int_equal(server_count(name), before + 2);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.expiries, 1);
    dkd_resolver_free(r);
}

/* Negative answers are cached for negative_ttl. */
static void test_negative_cache(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.negative_ttl = 10;
    dkd_resolver *r = make_at(env("DKD_DNS_PORT"), &rc);
    const char *name = "negative._domainkey.example.com";
    int before = server_count(name);
    int64_t t0 = atomic_load(&fake_now);
    expect_reason(r, name, DKD_REASON_KEY_NOT_FOUND);
    atomic_store(&fake_now, t0 + 9999);
    unsigned flags;
    dkd_key *k = lookup(r, name, &flags);
    assert_int_equal(flags, DKD_RESOLVER_HIT);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_NOT_FOUND);
    dkd_key_unref(k);
    assert_int_equal(server_count(name), before + 1);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.queries, 1);
    /* Past the negative TTL we ask again. libunbound keeps its own negative cache (in
     * 1.17 even past cache-max-negative-ttl), so the second question may be answered
     * inside the library: count what we sent, not what the server saw. */
    atomic_store(&fake_now, t0 + 10000);
    k = lookup(r, name, &flags);
    assert_int_equal(flags, 0);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_NOT_FOUND);
    dkd_key_unref(k);
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.queries, 2);
    assert_int_equal(st.expiries, 1);
    /* A key syntax error is negative too. */
    before = server_count("typo._domainkey.example.com");
    expect_reason(r, "typo._domainkey.example.com", DKD_REASON_KEY_SYNTAX);
    expect_reason(r, "typo._domainkey.example.com", DKD_REASON_KEY_SYNTAX);
    assert_int_equal(server_count("typo._domainkey.example.com"), before + 1);
    dkd_resolver_free(r);
}

/* The bound: more distinct names than entries evicts, and the count stays at the bound. */
static void test_cache_bound(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.cache_entries = 32;
    rc.cache_shards = 4;
    dkd_resolver *r = make_at(env("DKD_DNS_PORT"), &rc);
    waitbox b;
    box_init(&b);
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "bound%d._domainkey.example.com", i);
        assert_int_equal(dkd_resolver_lookup(r, name, box_done, &b), 0);
        box_wait(&b, i + 1);
        dkd_key_unref(b.key);
    }
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.entries, 32);
    assert_int_equal(st.evictions, N - 32);
    assert_int_equal(st.queries, N);
    dkd_resolver_free(r);
}

/* ---- coalescing: 200 messages with one cold key, started together ---- */

typedef struct msg_slot {
    dkd_msg *m;
    waitbox *box;
} msg_slot;

static void msg_key_done(void *arg, dkd_key *key)
{
    msg_slot *s = arg;
    dkd_msg_key_ready(s->m, 0, key);
    box_done(s->box, NULL, 0);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 20];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

static void test_coalescing(void **state)
{
    (void)state;
    enum { N = 200 };
    dkd_resolver *r = make("DKD_DNS_PORT");
    const char *name = "rsa2048._domainkey.example.com";
    int before = server_count(name);
    char path[512];
    snprintf(path, sizeof path, "%s/01-pass-rsa2048.eml", env("DKD_SAMPLES"));
    size_t len;
    const uint8_t *msg = read_all(path, &len);
    size_t hlen = dkd_split_message(msg, len);
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    static msg_slot slots[N];
    waitbox b;
    box_init(&b);
    for (int i = 0; i < N; i++) {
        slots[i].m = dkd_msg_new(eng);
        slots[i].box = &b;
        assert_int_equal(dkd_msg_begin(slots[i].m, msg, hlen, (int64_t)time(NULL)), 0);
        assert_int_equal(dkd_msg_key_count(slots[i].m), 1);
        assert_string_equal(dkd_msg_key_name(slots[i].m, 0), name);
    }
    dkd_keysrc src = dkd_resolver_keysrc(r);
    for (int i = 0; i < N; i++) {
        assert_int_equal(
            src.lookup(src.impl, dkd_msg_key_name(slots[i].m, 0), msg_key_done, &slots[i]), 0);
    }
    box_wait(&b, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(dkd_msg_body(slots[i].m, msg + hlen, len - hlen), 0);
        assert_int_equal(dkd_msg_end(slots[i].m), 0);
        size_t n;
        const dkd_sig_result *res = dkd_msg_results(slots[i].m, &n);
        assert_int_equal(n, 1);
        assert_int_equal(res[0].result, DKD_RESULT_PASS);
        dkd_msg_free(slots[i].m);
    }
    assert_int_equal(server_count(name), before + 1);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.queries, 1);
    assert_int_equal(st.coalesced + st.hits, N - 1);
    printf("# coalescing: %d lookups, 1 query, %llu coalesced waits, %llu hits\n", N,
           (unsigned long long)st.coalesced, (unsigned long long)st.hits);
    dkd_engine_free(eng);
    dkd_resolver_free(r);
}

/* ---- faults ---- */

static void test_servfail(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_SERVFAIL_PORT");
    expect_reason(r, "a._domainkey.example.com", DKD_REASON_DNS_ERROR);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.err_servfail, 1);
    dkd_resolver_free(r);
}

/* A server that never answers gives dns-timeout within the configured timeout, and the
 * resolver keeps answering other names meanwhile. */
static void test_timeout(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.query_timeout_ms = 600;
    dkd_resolver *r = make_at(env("DKD_DNS_PORT"), &rc);
    waitbox slow;
    box_init(&slow);
    int64_t t0 = real_ms();
    assert_int_equal(dkd_resolver_lookup(r, "sel._domainkey.slow.example", box_done, &slow), 0);
    dkd_key *k = lookup(r, "ed25519._domainkey.example.com", NULL);
    int64_t fast = real_ms() - t0;
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    dkd_key_unref(k);
    assert_int_equal(slow.n, 0); /* still waiting while the other one was answered */
    box_wait(&slow, 1);
    int64_t took = real_ms() - t0;
    assert_int_equal(dkd_key_reason(slow.key), DKD_REASON_DNS_TIMEOUT);
    dkd_key_unref(slow.key);
    printf("# timeout after %lld ms (limit 600); other lookup answered in %lld ms\n",
           (long long)took, (long long)fast);
    /* The lower bound is the behaviour (never before the limit); the upper one only
     * catches a timeout that never fires, loose enough for a loaded sanitizer run. */
    assert_true(took >= 590 && took < 15000);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.err_timeout, 1);
    dkd_resolver_free(r);
}

static void test_truncation(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.query_timeout_ms = 3000;
    /* TC over UDP and nothing over TCP: a temporary failure, never a key. */
    dkd_resolver *r = make_at(env("DKD_TRUNC_PORT"), &rc);
    dkd_key *k = lookup(r, "a._domainkey.example.com", NULL);
    assert_true(dkd_key_reason(k) == DKD_REASON_DNS_ERROR ||
                dkd_key_reason(k) == DKD_REASON_DNS_TIMEOUT);
    dkd_key_unref(k);
    dkd_resolver_free(r);
    /* TC over UDP, the answer over TCP: the retry over TCP gets the key. */
    r = make("DKD_TRUNC_OK_PORT");
    k = lookup(r, "a._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(k), 2048);
    dkd_key_unref(k);
    dkd_resolver_free(r);
    /* A 16 KB record over TCP: parsed and refused as a key, no crash, no truncation. */
    r = make("DKD_BIG_PORT");
    k = lookup(r, "a._domainkey.example.com", NULL);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_SYNTAX);
    dkd_key_unref(k);
    dkd_resolver_free(r);
}

static void keep_key(void *arg, dkd_key *key)
{
    *(dkd_key **)arg = key;
}

/* Serve-stale: the switch responder answers with TTL 0 until told to fail. */
static void test_serve_stale(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.ttl_min = 1;
    rc.serve_stale = 60;
    rc.tempfail_ttl = 5;
    dkd_resolver *r = make_at(env("DKD_SWITCH_PORT"), &rc);
    const char *name = "stale._domainkey.example.com";
    int64_t t0 = atomic_load(&fake_now);
    unsigned flags;
    dkd_key *good = lookup(r, name, &flags);
    assert_int_equal(dkd_key_reason(good), DKD_REASON_OK);
    assert_int_equal(flags, 0);
    /* From now on the server fails. */
    expect_reason(r, "switch-off._domainkey.example.com", DKD_REASON_DNS_ERROR);
    atomic_store(&fake_now, t0 + 2000); /* expired, inside the stale window */
    dkd_key *k = lookup(r, name, &flags);
    assert_ptr_equal(k, good);
    assert_int_equal(flags, DKD_RESOLVER_STALE);
    dkd_key_unref(k);
    /* The stand-in is cached briefly: a hit, still flagged stale, no new query. */
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    uint64_t queries = st.queries;
    k = lookup(r, name, &flags);
    assert_ptr_equal(k, good);
    assert_int_equal(flags, DKD_RESOLVER_HIT | DKD_RESOLVER_STALE);
    dkd_key_unref(k);
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.queries, queries);
    assert_int_equal(st.stale_served, 2);
    /* Through a plain dkd_keysrc (what the daemon uses) the stand-in arrives as a
     * stale-marked copy of the same key, and the verdict can say so. */
    dkd_keysrc src = dkd_resolver_keysrc(r);
    dkd_key *plain = NULL;
    assert_int_equal(src.lookup(src.impl, name, keep_key, &plain), 0);
    assert_non_null(plain);
    assert_true(dkd_key_stale(plain));
    assert_false(dkd_key_stale(good));
    assert_int_equal(dkd_key_reason(plain), DKD_REASON_OK);
    assert_int_equal(dkd_key_bits(plain), dkd_key_bits(good));
    dkd_key_unref(plain);
    /* Past the window the failure shows. */
    atomic_store(&fake_now, t0 + 1000 + 60000 + 1);
    expect_reason(r, name, DKD_REASON_DNS_ERROR);
    dkd_key_unref(good);
    dkd_resolver_free(r);
}

/* dark_canaries: canary queries (names under dkimd-canary.invalid.) the dark responder's
 * log holds, that is, the ones that left libunbound and reached the forwarder. */
static int dark_canaries(void)
{
    FILE *f = fopen(env("DKD_DARK_LOG"), "r");
    if (f == NULL) {
        return 0;
    }
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        n += strstr(line, ".dkimd-canary.invalid ") != NULL;
    }
    fclose(f);
    return n;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Canaries (resolver.c's file comment): a forwarding resolver sends none while its
 * lookups are answered; after a dns-timeout one at once and then one a second, to the
 * forwarder (so 'local-zone: "invalid." nodefault' took effect), for 5 s after the last
 * timeout; their answers are neither cached nor counted as queries. "dkimd-canary: no"
 * turns them off; a value other than yes or no is refused. */
static void test_canary(void **state)
{
    (void)state;
    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.query_timeout_ms = 300;
    dkd_resolver *r = make_at(env("DKD_DARK_PORT"), &rc);
    int seen0 = dark_canaries();
    expect_reason(r, "ed25519._domainkey.example.com", DKD_REASON_OK);
    sleep_ms(1200);
    struct dkd_resolver_stats st;
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.canaries, 0); /* answered: no reason for canaries */

    int64_t t0 = real_ms();
    expect_reason(r, "s._domainkey.dark.example", DKD_REASON_DNS_TIMEOUT);
    sleep_ms(2500 - (real_ms() - t0)); /* canaries at ~300, 1300, 2300 ms */
    dkd_resolver_stats(r, &st);
    printf("# %llu canaries 2.5 s after a dns-timeout at 300 ms\n",
           (unsigned long long)st.canaries);
    assert_true(st.canaries >= 2 && st.canaries <= 3);
    assert_int_equal(st.queries, 2);  /* canaries are not key queries */
    assert_int_equal(st.entries, 2);  /* nor cached */
    sleep_ms(200);
    assert_true(dark_canaries() - seen0 >= (int)st.canaries);

    /* 5 s after the timeout they stop. */
    sleep_ms(6000 - (real_ms() - t0));
    dkd_resolver_stats(r, &st);
    uint64_t last = st.canaries;
    assert_true(last >= 5 && last <= 7);
    sleep_ms(1500);
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.canaries, last);
    assert_int_equal(st.entries, 2);
    dkd_resolver_free(r);

    dkd_resolver_config_init(&rc);
    rc.query_timeout_ms = 300;
    rc.options[rc.noptions++] = "dkimd-canary: no";
    r = make_at(env("DKD_DARK_PORT"), &rc);
    seen0 = dark_canaries();
    expect_reason(r, "t._domainkey.dark.example", DKD_REASON_DNS_TIMEOUT);
    sleep_ms(1500);
    dkd_resolver_stats(r, &st);
    assert_int_equal(st.canaries, 0);
    assert_int_equal(dark_canaries(), seen0);
    dkd_resolver_free(r);

    dkd_resolver_config_init(&rc);
    rc.mode = DKD_RESOLVER_FORWARD;
    rc.forwarders[rc.nforwarders++] = "127.0.0.1";
    rc.options[rc.noptions++] = "dkimd-canary: maybe";
    char err[256] = "";
    assert_null(dkd_resolver_new(&rc, err, sizeof err));
    assert_non_null(strstr(err, "dkimd-canary"));
}

/* Lookups still pending when the resolver is freed complete with dns-error. */
static void test_free_completes_pending(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_SILENT_PORT");
    waitbox b;
    box_init(&b);
    assert_int_equal(dkd_resolver_lookup(r, "x._domainkey.example.com", box_done, &b), 0);
    dkd_resolver_free(r);
    assert_int_equal(b.n, 1);
    assert_int_equal(dkd_key_reason(b.key), DKD_REASON_DNS_ERROR);
    dkd_key_unref(b.key);
}

/* The blocking key source and the zone mode, as dkimctl uses them. */
static void test_blocking_and_zone_mode(void **state)
{
    (void)state;
    dkd_resolver *r = make("DKD_DNS_PORT");
    dkd_keysrc src = dkd_resolver_keysrc_blocking(r);
    dkd_key *k = NULL;
    assert_int_equal(src.lookup(src.impl, "ed25519._domainkey.example.com", zone_done, &k), 0);
    assert_non_null(k);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_OK);
    dkd_key_unref(k);
    dkd_resolver_free(r);

    dkd_resolver_config rc;
    dkd_resolver_config_init(&rc);
    rc.mode = DKD_RESOLVER_ZONE;
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/keys.zone", env("DKD_SAMPLES"));
    rc.zone_path = path;
    r = dkd_resolver_new(&rc, err, sizeof err);
    assert_non_null(r);
    unsigned flags;
    k = lookup(r, "revoked._domainkey.example.com", &flags);
    assert_int_equal(dkd_key_reason(k), DKD_REASON_KEY_REVOKED);
    assert_int_equal(flags, DKD_RESOLVER_HIT);
    dkd_key_unref(k);
    dkd_resolver_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_zone),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_cname_and_several_records),
        cmocka_unit_test(test_option_passthrough),
        cmocka_unit_test(test_dnssec),
        cmocka_unit_test(test_hit_costs_no_query),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_negative_cache),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_coalescing),
        cmocka_unit_test(test_servfail),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_serve_stale),
        cmocka_unit_test(test_canary),
        cmocka_unit_test(test_free_completes_pending),
        cmocka_unit_test(test_blocking_and_zone_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
