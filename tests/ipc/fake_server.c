/*
 * fake_server.c - the fake dkimd of client_test.c (fake_server.h): one thread, poll()
 * over its connections, the wire codec for frames and the engine for verdicts.
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

const char *root(void)
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

fake *fake_start(uint32_t max_frame, uint32_t max_chunk, uint32_t max_inflight)
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

void fake_stop(fake *f)
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
