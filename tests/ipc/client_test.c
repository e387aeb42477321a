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

#include "wire.h"

enum mode {
    MODE_NORMAL,
    MODE_ERROR_VERIFY, /* every VERIFY gets ERROR overloaded */
    MODE_CLOSE_AFTER,  /* close the connection after each batch of answers */
    MODE_GARBAGE,      /* answer VERIFY with an undecodable RESULT */
    MODE_SILENT,       /* never answer VERIFY */
    MODE_EARLY_ERROR,  /* answer VERIFY_BEGIN with ERROR too large at once */
    MODE_SHUTDOWN,     /* on VERIFY: connection-level ERROR shutting down, then close */
    MODE_RANDOM,       /* on VERIFY: a frame of random type and payload, then close */
};

static const int64_t NOW = 1764003600;

typedef struct stream {
    uint32_t id;
    dkd_msg *m;
    bool discarding; /* answered early: BODY/END are dropped until END */
} stream;

typedef struct fake {
    char path[108];
    int lfd;
    int stop[2];
    pthread_t th;
    uint32_t max_frame, max_chunk, max_inflight;
    _Atomic int mode;
    dkd_engine *eng;
    dkd_zone *zone;
    int64_t now;
    atomic_int connections, begins, bodies, ends_discarded, verifies, served;
} fake;

static const char *root(void)
{
    const char *r = getenv("DKD_SOURCE_ROOT");
    return r != NULL ? r : ".";
}

static void put_result(dkd__wbuf *b, uint32_t id, dkd_msg *m, dkd_span asid)
{
    char as[256];
    snprintf(as, sizeof as, "%.*s", (int)asid.len, asid.ptr);
    size_t n = 0;
    const dkd_sig_result *r = dkd_msg_results(m, &n);
    dkd__wire_sig sigs[16];
    for (size_t k = 0; k < n && k < 16; k++) {
        sigs[k] = dkd__wire_sig_from_result(&r[k]);
    }
    dkd__wire_put_result(b, id, sigs, n, dkd__span_str(dkd_msg_authres(m, as)));
}

typedef struct sync_key {
    dkd_msg *m;
    size_t k;
} sync_key;

static void key_done(void *arg, dkd_key *key)
{
    sync_key *s = arg;
    dkd_msg_key_ready(s->m, s->k, key);
}

static void lookup_all(fake *f, dkd_msg *m)
{
    dkd_keysrc src = dkd_zone_keysrc(f->zone);
    for (size_t k = 0; k < dkd_msg_key_count(m); k++) {
        sync_key s = {m, k};
        src.lookup(src.impl, dkd_msg_key_name(m, k), key_done, &s);
    }
}

static stream *find_stream(stream *st, size_t n, uint32_t id)
{
    for (size_t k = 0; k < n; k++) {
        if (st[k].id == id) {
            return &st[k];
        }
    }
    return NULL;
}

static bool send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

typedef struct conn {
    fake *f;
    int fd;
    bool hello;
    bool close;    /* close after this batch */
    bool answered; /* this batch holds a RESULT */
    stream streams[64];
    dkd_msg *whole;
    dkd__wbuf ans[1024];
    size_t nans;
} conn;

static dkd__wbuf *answer(conn *c)
{
    dkd__wbuf *a = &c->ans[c->nans < 1024 ? c->nans++ : 1023];
    dkd__wbuf_reset(a);
    return a;
}

static dkd_span asid_of(const dkd__wire_verify *v)
{
    return v->opts.has_authserv_id ? v->opts.authserv_id : dkd__span_str("fake.example");
}

static void handle(conn *c, const dkd__wire_header *h, dkd_span pl)
{
    fake *f = c->f;
    int mode = atomic_load(&f->mode);
    if (!c->hello) {
        dkd__wire_hello hh;
        assert_int_equal(h->type, DKD__WIRE_HELLO);
        assert_int_equal(dkd__wire_decode_hello(pl, &hh), 0);
        assert_int_equal(hh.min_version, 1);
        dkd__wire_hello_ok ok = {.version = 1,
                                 .max_frame = f->max_frame,
                                 .max_message = 1ull << 32,
                                 .max_header_block = 65536,
                                 .max_inflight = f->max_inflight,
                                 .max_chunk = f->max_chunk,
                                 .server_name = dkd__span_str("fake")};
        dkd__wire_put_hello_ok(answer(c), 0, &ok);
        c->hello = true;
        return;
    }
    dkd__wire_verify v;
    stream *st;
    switch (h->type) {
    case DKD__WIRE_VERIFY:
        atomic_fetch_add(&f->verifies, 1);
        assert_int_equal(dkd__wire_decode_verify(pl, &v), 0);
        if (mode == MODE_ERROR_VERIFY) {
            dkd__wire_put_error(answer(c), h->request_id, DKD__WIRE_E_OVERLOADED,
                                dkd__span_str("busy"));
        } else if (mode == MODE_GARBAGE) {
            dkd__wire_put_data(answer(c), DKD__WIRE_RESULT, h->request_id, dkd__span("\0\5", 2));
        } else if (mode == MODE_RANDOM) {
            /* A header the client accepts (its version, a plausible type, this id) and a
             * random payload, so the reply decoders see hostile input; sometimes junk. */
            static const uint8_t types[] = {DKD__WIRE_RESULT,   DKD__WIRE_ERROR,
                                            DKD__WIRE_PONG,     DKD__WIRE_STATS_REPLY,
                                            DKD__WIRE_HELLO_OK, 0x42};
            uint8_t junk[300];
            size_t n = (size_t)rand() % sizeof junk;
            for (size_t k = 0; k < n; k++) {
                junk[k] = (uint8_t)(rand() % 4 == 0 ? 0 : rand());
            }
            dkd__wbuf *a = answer(c);
            if (rand() % 8 == 0) {
                dkd__wbuf_append(a, junk, n);
            } else {
                dkd__wire_put_data(a, types[rand() % 6], h->request_id, dkd__span(junk, n));
            }
            c->close = true;
        } else if (mode == MODE_SHUTDOWN) {
            dkd__wire_put_error(answer(c), 0, DKD__WIRE_E_SHUTTING_DOWN, dkd__span_str("bye"));
            c->close = true;
        } else if (mode != MODE_SILENT) {
            f->now = v.opts.has_time ? v.opts.time : NOW;
            dkd_keysrc src = dkd_zone_keysrc(f->zone);
            assert_int_equal(dkd_verify_message(c->whole, &src, v.data.ptr, v.data.len, f->now), 0);
            put_result(answer(c), h->request_id, c->whole, asid_of(&v));
            dkd_msg_reset(c->whole);
            atomic_fetch_add(&f->served, 1);
            c->answered = true;
        }
        break;
    case DKD__WIRE_VERIFY_BEGIN:
        atomic_fetch_add(&f->begins, 1);
        assert_int_equal(dkd__wire_decode_verify(pl, &v), 0);
        assert_null(find_stream(c->streams, 64, h->request_id));
        st = find_stream(c->streams, 64, 0);
        assert_non_null(st);
        st->id = h->request_id;
        if (mode == MODE_EARLY_ERROR) {
            st->discarding = true;
            dkd__wire_put_error(answer(c), h->request_id, DKD__WIRE_E_TOO_LARGE,
                                dkd__span_str("header block too large"));
            break;
        }
        st->m = dkd_msg_new(f->eng);
        f->now = v.opts.has_time ? v.opts.time : NOW;
        assert_int_equal(dkd_msg_begin(st->m, v.data.ptr, v.data.len, f->now), 0);
        lookup_all(f, st->m);
        break;
    case DKD__WIRE_VERIFY_BODY:
        atomic_fetch_add(&f->bodies, 1);
        assert_true(pl.len <= f->max_chunk);
        st = find_stream(c->streams, 64, h->request_id);
        assert_non_null(st);
        if (!st->discarding) {
            assert_int_equal(dkd_msg_body(st->m, pl.ptr, pl.len), 0);
        }
        break;
    case DKD__WIRE_VERIFY_END:
        assert_int_equal(pl.len, 0);
        st = find_stream(c->streams, 64, h->request_id);
        assert_non_null(st);
        if (st->discarding) {
            atomic_fetch_add(&f->ends_discarded, 1);
        } else {
            assert_int_equal(dkd_msg_end(st->m), 0);
            put_result(answer(c), h->request_id, st->m, dkd__span_str("fake.example"));
            dkd_msg_free(st->m);
            atomic_fetch_add(&f->served, 1);
            c->answered = true;
        }
        *st = (stream){0};
        break;
    case DKD__WIRE_STATS: {
        dkd__wire_stat stats[2] = {
            {dkd__span_str("requests_served"), (uint64_t)atomic_load(&f->served)},
            {dkd__span_str("connections"), (uint64_t)atomic_load(&f->connections)}};
        dkd__wire_put_stats_reply(answer(c), h->request_id, stats, 2);
        break;
    }
    case DKD__WIRE_PING:
        dkd__wire_put_data(answer(c), DKD__WIRE_PONG, h->request_id, pl);
        break;
    default:
        fail_msg("fake server: unexpected frame type 0x%02x", h->type);
    }
}

/* serve_conn speaks to one client until it leaves, a mode closes it, or stop. */
static void serve_conn(fake *f, int fd)
{
    conn *c = calloc(1, sizeof *c);
    c->f = f;
    c->fd = fd;
    c->whole = dkd_msg_new(f->eng);
    for (int k = 0; k < 1024; k++) {
        dkd__wbuf_init(&c->ans[k]);
    }
    size_t cap = (size_t)f->max_frame + 64, len = 0;
    uint8_t *buf = malloc(cap);
    while (!c->close) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = f->stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents) {
            break;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        dkd_span in = dkd__span(buf, len);
        dkd__wire_header h;
        dkd_span pl;
        c->nans = 0;
        int rc;
        while ((rc = dkd__wire_frame_split(&in, c->hello ? 1 : 0, f->max_frame, &h, &pl)) == 1) {
            handle(c, &h, pl);
        }
        assert_true(rc == 0);
        memmove(buf, in.ptr, in.len);
        len = in.len;
        /* Answer the batch last to first: pipelined answers arrive out of order. */
        for (size_t k = c->nans; k-- > 0;) {
            assert_int_equal(dkd__wbuf_ok(&c->ans[k]), 0);
            if (!send_all(fd, c->ans[k].ptr, c->ans[k].len)) {
                c->close = true;
            }
        }
        if (atomic_load(&f->mode) == MODE_CLOSE_AFTER && c->answered) {
            c->close = true;
        }
        c->answered = false;
    }
    for (int k = 0; k < 64; k++) {
        dkd_msg_free(c->streams[k].m);
    }
    for (int k = 0; k < 1024; k++) {
        dkd__wbuf_free(&c->ans[k]);
    }
    dkd_msg_free(c->whole);
    free(buf);
    free(c);
    close(fd);
}

static void *serve(void *arg)
{
    fake *f = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = f->lfd, .events = POLLIN},
                              {.fd = f->stop[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents) {
            break;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        atomic_fetch_add(&f->connections, 1);
        serve_conn(f, fd);
    }
    return NULL;
}

static fake *fake_start(uint32_t max_frame, uint32_t max_chunk, uint32_t max_inflight)
{
    fake *f = calloc(1, sizeof *f);
    f->max_frame = max_frame;
    f->max_chunk = max_chunk;
    f->max_inflight = max_inflight;
    char zone[4096], err[256];
    snprintf(zone, sizeof zone, "%s/samples/keys.zone", root());
    f->zone = dkd_zone_load(zone, err, sizeof err);
    assert_non_null(f->zone);
    dkd_config cfg;
    dkd_config_init(&cfg);
    f->eng = dkd_engine_new(&cfg);
    snprintf(f->path, sizeof f->path, "/tmp/dkd-client-test-%d-%p.sock", (int)getpid(), (void *)f);
    unlink(f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, f->path, strlen(f->path));
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(pipe(f->stop), 0);
    assert_int_equal(pthread_create(&f->th, NULL, serve, f), 0);
    return f;
}

static void fake_stop(fake *f)
{
    assert_int_equal(write(f->stop[1], "x", 1), 1);
    pthread_join(f->th, NULL);
    close(f->stop[0]);
    close(f->stop[1]);
    close(f->lfd);
    unlink(f->path);
    dkd_engine_free(f->eng);
    dkd_zone_free(f->zone);
    free(f);
}

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
