/*
 * client_test.c - libdkimd against a fake server: a thread that speaks the protocol
 * through the same codec and verifies with the engine and samples/keys.zone, answering
 * each batch of requests in reverse order (so pipelined answers arrive out of order).
 * Modes make it misbehave: errors for every request, a connection closed after each
 * answer (a daemon restart), garbage replies, silence, early stream errors, shutdown.
 *
 * Every verdict that comes through the client is compared field by field with what the
 * engine gives in-process for the same message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dkimd/client.h>
#include <dkimd/engine.h>

#include "fake_server.h"
#include "wire.h"

/* ---- expected verdicts, in-process ---- */

typedef struct sample {
    char name[256];
    uint8_t *msg;
    size_t len;
} sample;

static sample samples[64];
static size_t nsamples;

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, fp);
    fclose(fp);
    return p;
}

static int load_samples(void **state)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/samples", root());
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && nsamples < 64) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".eml") == 0) {
            sample *s = &samples[nsamples++];
            snprintf(s->name, sizeof s->name, "%s", e->d_name);
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            s->msg = slurp(path, &s->len);
        }
    }
    closedir(d);
    (void)state;
    return nsamples > 0 ? 0 : -1;
}

static int free_samples(void **state)
{
    for (size_t k = 0; k < nsamples; k++) {
        free(samples[k].msg);
    }
    (void)state;
    return 0;
}

/* expect_same checks a client result against in-process verification of msg. */
static void expect_same(const dkd_client_result *r, const uint8_t *msg, size_t len,
                        const char *asid)
{
    char zone[4096], err[256];
    snprintf(zone, sizeof zone, "%s/samples/keys.zone", root());
    dkd_zone *z = dkd_zone_load(zone, err, sizeof err);
    int64_t now = NOW;
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(z);
    assert_int_equal(dkd_verify_message(m, &src, msg, len, now), 0);
    size_t n;
    const dkd_sig_result *want = dkd_msg_results(m, &n);
    assert_non_null(r);
    assert_int_equal(r->nsigs, n);
    for (size_t k = 0; k < n; k++) {
        const dkd_sig_result *a = &r->sigs[k], *b = &want[k];
        assert_int_equal(a->result, b->result);
        assert_int_equal(a->reason, b->reason);
        assert_string_equal(a->detail, b->detail);
        assert_string_equal(a->d, b->d);
        assert_string_equal(a->s, b->s);
        assert_string_equal(a->i, b->i);
        assert_string_equal(a->a, b->a);
        assert_string_equal(a->b_prefix, b->b_prefix);
        assert_int_equal(a->key_bits, b->key_bits);
        assert_int_equal(a->key_testing, b->key_testing);
        assert_int_equal(a->dnssec_secure, b->dnssec_secure);
        assert_int_equal(a->has_l, b->has_l);
        assert_true(a->body_signed == b->body_signed && a->body_total == b->body_total);
        assert_string_equal(r->explanations[k], dkd_reason_explanation(b->reason));
    }
    assert_string_equal(r->authres, dkd_msg_authres(m, asid));
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkd_zone_free(z);
}

static const dkd_client_opts opts_now = {.has_time = true, .time = 1764003600};

/* ---- tests ---- */

static void test_blocking_samples(void **state)
{
    fake *f = fake_start(1 << 20, 65536, 64);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    dkd_client_limits lim = dkd_client_get_limits(c);
    assert_int_equal(lim.max_frame, 1 << 20);
    assert_int_equal(lim.max_inflight, 64);
    /* The fake server announces no features: shared memory is declined up front and
     * everything goes over the socket. */
    assert_int_equal(dkd_client_use_shm(c, 1 << 20), DKD_CLIENT_ERR_UNSUPPORTED);
    dkd_client_opts o = opts_now;
    o.authserv_id = "mx.example.net";
    for (size_t k = 0; k < nsamples; k++) {
        dkd_client_result *r;
        int rc = dkd_client_verify(c, samples[k].msg, samples[k].len, &o, &r);
        if (rc != 0) {
            fail_msg("%s: %s", samples[k].name, dkd_client_strerror(rc));
        }
        expect_same(r, samples[k].msg, samples[k].len, "mx.example.net");
        dkd_client_result_free(r);
    }
    assert_int_equal(atomic_load(&f->begins), 0); /* all fitted one frame */
    assert_int_equal(dkd_client_ping(c), 0);
    dkd_client_counters *st;
    assert_int_equal(dkd_client_stats(c, &st), 0);
    assert_int_equal(st->count, 2);
    assert_string_equal(st->v[0].name, "requests_served");
    assert_true(st->v[0].value == nsamples);
    assert_string_equal(st->v[1].name, "connections");
    dkd_client_counters_free(st);
    /* A bad authserv-id is refused before anything is sent. */
    dkd_client_result *r;
    o.authserv_id = "has space";
    assert_int_equal(dkd_client_verify(c, samples[0].msg, samples[0].len, &o, &r),
                     DKD_CLIENT_ERR_ARG);
    assert_null(r);
    dkd_client_close(c);
    fake_stop(f);
    (void)state;
}

/* big_message: a sample with a body grown to n bytes (the signature then fails on the
 * body hash, identically in-process and through the daemon). */
static uint8_t *big_message(const sample *s, size_t n, size_t *len)
{
    uint8_t *m = malloc(n);
    memcpy(m, s->msg, s->len);
    for (size_t k = s->len; k < n; k++) {
        m[k] = (k % 72 == 71) ? '\n' : (uint8_t)('a' + k % 26);
    }
    *len = n;
    return m;
}

static void test_blocking_streamed(void **state)
{
    /* Small frames force streaming of anything over 4 KB, in 1000-byte chunks. */
    fake *f = fake_start(4096, 1000, 8);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    for (size_t k = 0; k < nsamples; k++) {
        size_t len;
        uint8_t *m = big_message(&samples[k], 3u << 20, &len);
        dkd_client_result *r;
        int rc = dkd_client_verify(c, m, len, &opts_now, &r);
        if (rc != 0) {
            fail_msg("%s: %s", samples[k].name, dkd_client_strerror(rc));
        }
        expect_same(r, m, len, "fake.example");
        dkd_client_result_free(r);
        free(m);
    }
    assert_int_equal(atomic_load(&f->begins), (int)nsamples);
    assert_true(atomic_load(&f->bodies) >= (int)nsamples * 3000);
    dkd_client_close(c);
    fake_stop(f);
    (void)state;
}

typedef struct job {
    size_t sample;
    int status;
    int order;
    dkd_client_result *r;
} job;

static int completions;

static void job_done(void *user, int status, dkd_client_result *r)
{
    job *j = user;
    assert_int_equal(j->order, -1); /* exactly once */
    j->status = status;
    j->r = r;
    j->order = completions++;
}

static void run_until(dkd_client *c, int want)
{
    while (completions < want) {
        struct pollfd p = {.fd = dkd_client_fd(c), .events = dkd_client_events(c)};
        assert_true(p.fd >= 0);
        assert_true(poll(&p, 1, 10000) > 0);
        if (dkd_client_process(c) < 0) {
            /* A dead connection: everything in flight was completed with the cause. */
            assert_int_equal(dkd_client_fd(c), -1);
            assert_int_equal(dkd_client_inflight(c), 0);
        }
    }
}

/* pipeline_samples submits n samples in turn, keeping as many in flight as the client
 * takes (on BUSY it lets one complete; *busy counts those times, with max_inflight
 * requests in flight each time), then checks every answer against the engine's with
 * authserv-id authserv. Returns how many answers arrived out of submission order. */
static int pipeline_samples(dkd_client *c, int n, const char *authserv, int *busy)
{
    job *jobs = calloc((size_t)n, sizeof *jobs);
    assert_non_null(jobs);
    completions = 0;
    int submitted = 0;
    *busy = 0;
    while (submitted < n) {
        job *j = &jobs[submitted];
        j->sample = (size_t)submitted % nsamples;
        j->order = -1;
        int rc = dkd_client_submit(c, samples[j->sample].msg, samples[j->sample].len, &opts_now,
                                   job_done, j);
        if (rc == DKD_CLIENT_ERR_BUSY) {
            (*busy)++;
            assert_int_equal(dkd_client_inflight(c), dkd_client_get_limits(c).max_inflight);
            run_until(c, completions + 1);
            continue;
        }
        assert_int_equal(rc, 0);
        submitted++;
    }
    run_until(c, n);
    assert_int_equal(dkd_client_inflight(c), 0);
    int out_of_order = 0;
    for (int k = 0; k < n; k++) {
        assert_int_equal(jobs[k].status, 0);
        expect_same(jobs[k].r, samples[jobs[k].sample].msg, samples[jobs[k].sample].len, authserv);
        dkd_client_result_free(jobs[k].r);
        out_of_order += k > 0 && jobs[k].order < jobs[k - 1].order;
    }
    free(jobs);
    return out_of_order;
}

static void test_async_pipelined(void **state)
{
    fake *f = fake_start(1 << 20, 65536, 64);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    int busy;
    int out_of_order = pipeline_samples(c, 400, "fake.example", &busy);
    assert_true(busy > 0);         /* 64 in flight at times: some had to wait */
    assert_true(out_of_order > 0); /* the server reversed its batches */
    dkd_client_close(c);
    fake_stop(f);
    (void)state;
}

static void test_async_streams_interleaved(void **state)
{
    fake *f = fake_start(8192, 700, 16);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    enum { S = 4 };
    job jobs[S];
    uint8_t *msgs[S];
    size_t lens[S], hlens[S], off[S];
    uint32_t ids[S];
    completions = 0;
    for (int k = 0; k < S; k++) {
        msgs[k] = big_message(&samples[(size_t)k % nsamples], 50000 + (size_t)k * 777, &lens[k]);
        hlens[k] = dkd_split_message(msgs[k], lens[k]);
        off[k] = hlens[k];
        jobs[k] = (job){.sample = (size_t)k, .order = -1};
        assert_int_equal(
            dkd_client_begin(c, msgs[k], hlens[k], &opts_now, job_done, &jobs[k], &ids[k]), 0);
    }
    /* Feed the streams round robin in odd-sized pieces (CR and LF may be split). */
    bool more = true;
    while (more) {
        more = false;
        for (int k = 0; k < S; k++) {
            size_t n = lens[k] - off[k] < 1333 ? lens[k] - off[k] : 1333;
            if (n > 0) {
                assert_int_equal(dkd_client_body(c, ids[k], msgs[k] + off[k], n), 0);
                off[k] += n;
                more = true;
            }
        }
        assert_true(dkd_client_process(c) >= 0);
    }
    for (int k = 0; k < S; k++) {
        assert_int_equal(dkd_client_end(c, ids[k]), 0);
        assert_int_equal(dkd_client_end(c, ids[k]), DKD_CLIENT_ERR_STATE); /* once */
    }
    run_until(c, S);
    for (int k = 0; k < S; k++) {
        assert_int_equal(jobs[k].status, 0);
        expect_same(jobs[k].r, msgs[k], lens[k], "fake.example");
        dkd_client_result_free(jobs[k].r);
        free(msgs[k]);
    }
    dkd_client_close(c);
    fake_stop(f);
    (void)state;
}

static void test_reconnect(void **state)
{
    fake *f = fake_start(1 << 20, 65536, 64);
    atomic_store(&f->mode, MODE_CLOSE_AFTER);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    /* Each answer is followed by the server closing: every later call finds a dead
     * connection (a restarted daemon) and must get through on a fresh one. */
    for (int k = 0; k < 5; k++) {
        dkd_client_result *r;
        int rc = dkd_client_verify(c, samples[0].msg, samples[0].len, &opts_now, &r);
        if (rc != 0) {
            fail_msg("round %d: %s", k, dkd_client_strerror(rc));
        }
        expect_same(r, samples[0].msg, samples[0].len, "fake.example");
        dkd_client_result_free(r);
    }
    assert_true(atomic_load(&f->connections) >= 5);

    /* The async API fails requests in flight with the cause and reconnects on submit.
     * First a ping on a healthy connection, so that the request below cannot meet the
     * close of the last round (which would give "closed", not "shutting down"). */
    atomic_store(&f->mode, MODE_NORMAL);
    assert_int_equal(dkd_client_ping(c), 0);
    atomic_store(&f->mode, MODE_SHUTDOWN);
    job j = {.order = -1};
    completions = 0;
    assert_int_equal(dkd_client_submit(c, samples[0].msg, samples[0].len, NULL, job_done, &j), 0);
    run_until(c, 1);
    assert_int_equal(j.status, DKD_CLIENT_ERR_SHUTTING_DOWN);
    assert_null(j.r);
    assert_int_equal(dkd_client_fd(c), -1);
    atomic_store(&f->mode, MODE_NORMAL);
    j = (job){.order = -1};
    assert_int_equal(dkd_client_submit(c, samples[0].msg, samples[0].len, &opts_now, job_done, &j),
                     0);
    run_until(c, 2);
    assert_int_equal(j.status, 0);
    dkd_client_result_free(j.r);
    dkd_client_close(c);
    fake_stop(f);
    (void)state;
}

static void test_errors(void **state)
{
    fake *f = fake_start(4096, 1000, 8);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(f->path, &c), 0);
    dkd_client_result *r;

    atomic_store(&f->mode, MODE_ERROR_VERIFY);
    assert_int_equal(dkd_client_verify(c, samples[0].msg, 100, NULL, &r),
                     DKD_CLIENT_ERR_OVERLOADED);
    assert_null(r);
    assert_string_equal(dkd_client_strerror(DKD_CLIENT_ERR_OVERLOADED), "overloaded");
    assert_int_equal(dkd_client_ping(c), 0); /* a request error leaves the connection up */

    atomic_store(&f->mode, MODE_GARBAGE);
    assert_int_equal(dkd_client_verify(c, samples[0].msg, 100, NULL, &r), DKD_CLIENT_ERR_BAD_REPLY);
    assert_int_equal(dkd_client_fd(c), -1); /* a server we cannot understand is dropped */

    /* An early error on a stream: the library closes the stream itself (VERIFY_END), so
     * the server can forget the id; further body calls are refused. */
    atomic_store(&f->mode, MODE_EARLY_ERROR);
    job j = {.order = -1};
    uint32_t id;
    completions = 0;
    assert_int_equal(
        dkd_client_begin(c, (const uint8_t *)"From: a\r\n", 9, NULL, job_done, &j, &id), 0);
    assert_int_equal(dkd_client_body(c, id, (const uint8_t *)"x", 1), 0);
    run_until(c, 1);
    assert_int_equal(j.status, DKD_CLIENT_ERR_TOO_LARGE);
    assert_int_equal(dkd_client_body(c, id, (const uint8_t *)"x", 1), DKD_CLIENT_ERR_STATE);
    assert_int_equal(dkd_client_end(c, id), DKD_CLIENT_ERR_STATE);
    assert_int_equal(dkd_client_ping(c), 0); /* flushes the END, then a round trip */
    assert_int_equal(atomic_load(&f->ends_discarded), 1);

    /* Silence: the blocking call times out and abandons the request. */
    atomic_store(&f->mode, MODE_SILENT);
    dkd_client_set_timeout(c, 200);
    assert_int_equal(dkd_client_verify(c, samples[0].msg, 100, NULL, &r), -ETIMEDOUT);
    assert_int_equal(dkd_client_inflight(c), 1); /* still owed an answer, nobody waits */

    /* Hostile replies: never a crash or a leak (ASan), always an error or a result. */
    atomic_store(&f->mode, MODE_RANDOM);
    dkd_client_set_timeout(c, 5000);
    srand(12345);
    int failures = 0;
    for (int k = 0; k < 300; k++) {
        int rc = dkd_client_verify(c, samples[0].msg, 100, NULL, &r);
        assert_true(rc != 0 || r != NULL);
        failures += rc != 0;
        dkd_client_result_free(r);
    }
    assert_true(failures > 250);

    /* Too large for the server's limits, refused locally. */
    atomic_store(&f->mode, MODE_NORMAL);
    static uint8_t big[5000];
    assert_int_equal(dkd_client_submit(c, big, sizeof big, NULL, job_done, &j),
                     DKD_CLIENT_ERR_TOO_LARGE);
    assert_true(dkd_client_max_whole(c, NULL) < sizeof big);
    dkd_client_close(c);
    fake_stop(f);

    /* Nobody listening. */
    dkd_client *none;
    assert_int_equal(dkd_client_connect("/nonexistent/dkimd.sock", &none), -ENOENT);
    assert_null(none);
    (void)state;
}

/* ---- against the real dkimd (DKD_DKIMD = its path, set by meson once it is built) ---- */

static pid_t daemon_pid = -1;

static pid_t daemon_start(const char *bin, const char *sock)
{
    char zone[4096];
    snprintf(zone, sizeof zone, "%s/samples/keys.zone", root());
    unlink(sock);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "--socket", sock, "--zone", zone, "--workers", "2", "--max-inflight", "64",
              "--max-chunk", "65536", "--max-message", "16m", "--authserv-id", "daemon.example",
              (char *)NULL);
        _exit(127);
    }
    assert_true(pid > 0);
    /* Wait for the socket: up to 10 s. */
    for (int k = 0; k < 1000; k++) {
        dkd_client *c;
        if (dkd_client_connect(sock, &c) == 0) {
            dkd_client_close(c);
            return pid;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("dkimd did not start listening on %s", sock);
    return -1;
}

static void daemon_stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* counter returns one of the daemon's STATS counters (0 when absent). */
static uint64_t counter(dkd_client *c, const char *name)
{
    dkd_client_counters *st;
    assert_int_equal(dkd_client_stats(c, &st), 0);
    uint64_t v = 0;
    for (size_t k = 0; k < st->count; k++) {
        if (strcmp(st->v[k].name, name) == 0) {
            v = st->v[k].value;
        }
    }
    dkd_client_counters_free(st);
    return v;
}

static void test_real_daemon(void **state)
{
    const char *bin = getenv("DKD_DKIMD");
    if (bin == NULL || access(bin, X_OK) != 0) {
        skip(); /* dkimd not built in this tree */
    }
    char sock[108];
    snprintf(sock, sizeof sock, "/tmp/dkd-client-test-%d.sock", (int)getpid());
    daemon_pid = daemon_start(bin, sock);
    dkd_client *c;
    assert_int_equal(dkd_client_connect(sock, &c), 0);
    dkd_client_limits lim = dkd_client_get_limits(c);
    assert_int_equal(lim.max_inflight, 64);
    assert_int_equal(lim.max_chunk, 65536);

    /* Blocking, whole messages: the daemon's verdicts are the engine's. */
    dkd_client_opts o = opts_now;
    o.authserv_id = "mx.example.net";
    for (size_t k = 0; k < nsamples; k++) {
        dkd_client_result *r;
        int rc = dkd_client_verify(c, samples[k].msg, samples[k].len, &o, &r);
        if (rc != 0) {
            fail_msg("%s: %s", samples[k].name, dkd_client_strerror(rc));
        }
        expect_same(r, samples[k].msg, samples[k].len, "mx.example.net");
        dkd_client_result_free(r);
    }

    /* Over --max-message: refused. */
    size_t blen;
    uint8_t *big = big_message(&samples[0], (size_t)lim.max_message + 1, &blen);
    dkd_client_result *r;
    assert_int_equal(dkd_client_verify(c, big, blen, &opts_now, &r), DKD_CLIENT_ERR_TOO_LARGE);
    free(big);

    /* Async streaming of 5 MB in 64 KiB pieces, keeping at most ~1 MiB queued. */
    big = big_message(&samples[1], 5u << 20, &blen);
    size_t hlen = dkd_split_message(big, blen);
    job sj = {.order = -1};
    uint32_t id;
    completions = 0;
    assert_int_equal(dkd_client_begin(c, big, hlen, &opts_now, job_done, &sj, &id), 0);
    for (size_t off = hlen; off < blen;) {
        size_t n = blen - off < 65536 ? blen - off : 65536;
        assert_int_equal(dkd_client_body(c, id, big + off, n), 0);
        off += n;
        while (dkd_client_queued(c) > (1u << 20)) {
            struct pollfd p = {.fd = dkd_client_fd(c), .events = dkd_client_events(c)};
            assert_true(poll(&p, 1, 10000) > 0);
            assert_true(dkd_client_process(c) >= 0);
        }
    }
    assert_int_equal(dkd_client_end(c, id), 0);
    run_until(c, 1);
    assert_int_equal(sj.status, 0);
    expect_same(sj.r, big, blen, "daemon.example");
    dkd_client_result_free(sj.r);
    free(big);

    /* Async, pipelined to the daemon's depth, answers in any order. */
    enum { N = 1000 };
    int busy;
    pipeline_samples(c, N, "daemon.example", &busy);

    /* Through shared memory: a region of 16 KiB holds a few samples at a time, so the
     * pipelined run goes partly through it and partly over the socket when it is full;
     * every answer must be the engine's either way. */
    dkd_client *sc;
    assert_int_equal(dkd_client_connect(sock, &sc), 0);
    assert_int_equal(dkd_client_use_shm(sc, 16384), 0);
    assert_int_equal(dkd_client_use_shm(sc, 16384), DKD_CLIENT_ERR_STATE);
    uint64_t shm_before = counter(sc, "shm.requests");
    pipeline_samples(sc, N, "daemon.example", &busy);
    uint64_t via_shm = counter(sc, "shm.requests") - shm_before;
    if (!(via_shm > 0 && via_shm < N)) {
        fail_msg("%llu of %d requests through shared memory", (unsigned long long)via_shm, N);
    }
    dkd_client_close(sc);

    /* A 5 MB message in one VERIFY_SHM (over max_frame, so it would stream otherwise). */
    assert_int_equal(dkd_client_connect(sock, &sc), 0);
    assert_int_equal(dkd_client_use_shm(sc, 8u << 20), 0);
    big = big_message(&samples[1], 5u << 20, &blen);
    shm_before = counter(sc, "shm.requests");
    assert_int_equal(dkd_client_verify(sc, big, blen, &opts_now, &r), 0);
    expect_same(r, big, blen, "daemon.example");
    dkd_client_result_free(r);
    assert_true(counter(sc, "shm.requests") == shm_before + 1);
    free(big);

    dkd_client_counters *st;
    assert_int_equal(dkd_client_stats(c, &st), 0);
    bool served = false;
    for (size_t k = 0; k < st->count; k++) {
        if (strcmp(st->v[k].name, "requests_served") == 0) {
            served = st->v[k].value >= N + nsamples + 1;
        }
    }
    assert_true(served);
    dkd_client_counters_free(st);

    /* The daemon restarts under the client: the next blocking call gets through. */
    daemon_stop(daemon_pid);
    daemon_pid = daemon_start(bin, sock);
    assert_int_equal(dkd_client_verify(c, samples[0].msg, samples[0].len, &opts_now, &r), 0);
    expect_same(r, samples[0].msg, samples[0].len, "daemon.example");
    dkd_client_result_free(r);
    assert_int_equal(dkd_client_ping(c), 0);
    /* The shared memory client re-attaches its region on the new connection. */
    assert_int_equal(dkd_client_verify(sc, samples[0].msg, samples[0].len, &opts_now, &r), 0);
    expect_same(r, samples[0].msg, samples[0].len, "daemon.example");
    dkd_client_result_free(r);
    assert_true(counter(sc, "shm.requests") == 1);
    dkd_client_close(sc);

    dkd_client_close(c);
    daemon_stop(daemon_pid);
    daemon_pid = -1;
    unlink(sock);
    (void)state;
}

static int kill_daemon(void **state)
{
    /* A failed test leaves the daemon running: never leave it behind. */
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = -1;
    }
    (void)state;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_samples),
        cmocka_unit_test(test_blocking_streamed),
        cmocka_unit_test(test_async_pipelined),
        cmocka_unit_test(test_async_streams_interleaved),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_errors),
        cmocka_unit_test_teardown(test_real_daemon, kill_daemon),
    };
    return cmocka_run_group_tests(tests, load_samples, free_samples);
}
