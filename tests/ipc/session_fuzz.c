/*
 * session_fuzz.c - drives whole dkimd protocol sessions (ipc/session_wire.c) with no
 * daemon and no ring: the fuzz input is a script of client frames (well formed, or raw
 * bytes), split anywhere, interleaved with key answers (some given synchronously inside
 * the lookup, as the zone file does), timer firings, stall ticks, the client's
 * half-close, reads that free the output room, and a shutdown.
 *
 * The property, beyond "no crash": every request gets at most one answer while it is
 * in flight, no answer names an id that is not in flight, and when the shutdown
 * deadline passes every request that was received in full is answered at once, keys
 * still out or not (unless the session had closed the connection before), and key
 * answers and timers that come later produce nothing.
 * A frame reusing an id still in flight makes that id ambiguous (the server answers
 * the newcomer with ERROR 8 on the same id): such ids are not checked further.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_wire.h"

enum { MAX_PENDING = 256, NIDS = 16 };

typedef struct harness harness;

enum id_state {
    ID_FREE,
    ID_WAITING,         /* sent in full; an answer is due */
    ID_STREAMING,       /* VERIFY_BEGIN sent, END not yet; may be answered early */
    ID_ANSWERED_STREAM, /* answered early; the id is busy until its END */
};

struct harness {
    const dkd__sess_ops *ops;
    void *wctx;
    void *sess;
    dkd__sess_env env;
    dkd__wbuf out;
    size_t out_seen; /* bytes of out already checked */
    dkd__counters cnt;
    bool closed;     /* the session asked to close */
    bool close_done; /* ops->close has run */
    bool sync_keys;  /* answer lookups inside env->lookup */
    uint64_t lookups[MAX_PENDING];
    size_t nlookups;
    uint64_t timers[MAX_PENDING]; /* tokens; 0 = cancelled */
    uint64_t handles[MAX_PENDING];
    size_t ntimers;
    uint64_t next_handle;
    uint64_t budget;
    enum id_state ids[NIDS + 1];
    bool tainted[NIDS + 1];
    bool raw;    /* raw bytes were sent: they can name any id at all */
    uint8_t *in; /* bytes sent and not consumed */
    size_t in_len, in_cap;
    int64_t now;
};

static int64_t h_now(void *ctx)
{
    return ((harness *)ctx)->now;
}

static int64_t h_unix_time(void *ctx)
{
    (void)ctx;
    return 1700000000;
}

static int h_lookup(void *ctx, uint64_t token, const char *name)
{
    harness *h = ctx;
    (void)name;
    if (h->sync_keys) {
        h->ops->key(h->sess, token, dkd_key_from_failure(DKD_REASON_KEY_NOT_FOUND, "fuzz"));
        return 0;
    }
    if (h->nlookups == MAX_PENDING) {
        return -1;
    }
    h->lookups[h->nlookups++] = token;
    return 0;
}

static uint64_t h_timer_arm(void *ctx, uint64_t token, unsigned ms)
{
    harness *h = ctx;
    (void)ms;
    if (h->ntimers == MAX_PENDING) {
        return 0;
    }
    h->timers[h->ntimers] = token;
    h->handles[h->ntimers] = ++h->next_handle;
    return h->handles[h->ntimers++];
}

static void h_timer_cancel(void *ctx, uint64_t handle)
{
    harness *h = ctx;
    for (size_t i = 0; i < h->ntimers; i++) {
        if (h->handles[i] == handle) {
            h->timers[i] = 0;
        }
    }
}

static void h_close(void *ctx, enum dkd__close_mode mode)
{
    (void)mode;
    ((harness *)ctx)->closed = true;
}

static bool h_budget_take(void *ctx, uint64_t n)
{
    harness *h = ctx;
    if (n > h->budget) {
        return false;
    }
    h->budget -= n;
    return true;
}

static void h_budget_give(void *ctx, uint64_t n)
{
    ((harness *)ctx)->budget += n;
}

static void h_log(void *ctx, enum dkd__log_kind kind, int level, const char *fmt, ...)
{
    (void)ctx;
    (void)kind;
    (void)level;
    (void)fmt;
}

static void h_stats(void *ctx, dkd__server_stats *out)
{
    (void)ctx;
    memset(out, 0, sizeof *out);
}

static void h_extra(void *ctx, void (*add)(void *actx, const char *name, uint64_t v), void *actx)
{
    (void)ctx;
    add(actx, "fuzz.extra", 1);
}

static const char *h_map(void *ctx, int fd, uint64_t size, const uint8_t **base)
{
    (void)ctx;
    (void)fd;
    (void)size;
    (void)base;
    return "no regions while fuzzing";
}

static void h_unmap(void *ctx, const uint8_t *base, uint64_t size)
{
    (void)ctx;
    (void)base;
    (void)size;
}

static void h_close_fd(void *ctx, int fd)
{
    (void)ctx;
    (void)fd;
}

static void fail(const char *what, uint32_t id)
{
    fprintf(stderr, "session_fuzz: %s (request %u)\n", what, id);
    abort();
}

/* check_output reads the frames the session queued since the last check. */
static void check_output(harness *h)
{
    if (h->out.len == h->out_seen) {
        return; /* nothing new (and out.ptr may still be NULL) */
    }
    dkd_span s = dkd__span(h->out.ptr + h->out_seen, h->out.len - h->out_seen);
    for (;;) {
        dkd__wire_header hd;
        dkd_span payload;
        int rc = dkd__wire_frame_split(&s, DKD__WIRE_VERSION, UINT32_MAX, &hd, &payload);
        if (rc == 0) {
            break;
        }
        if (rc < 0) {
            fail("the session wrote a frame its own codec rejects", hd.request_id);
        }
        uint32_t id = hd.request_id;
        if (id == 0 || hd.type == DKD__WIRE_HELLO_OK) {
            continue;
        }
        if (id > NIDS) {
            if (h->raw) {
                continue;
            }
            fail("answer for an id never sent", id);
        }
        if (h->tainted[id]) {
            continue;
        }
        if (hd.type == DKD__WIRE_SHM_ATTACH_OK) {
            fail("SHM_ATTACH_OK with no region", id);
        }
        switch (h->ids[id]) {
        case ID_WAITING:
            h->ids[id] = ID_FREE;
            break;
        case ID_STREAMING:
            if (hd.type != DKD__WIRE_ERROR) {
                fail("a RESULT before the stream's END", id);
            }
            h->ids[id] = ID_ANSWERED_STREAM;
            break;
        case ID_FREE:
        case ID_ANSWERED_STREAM:
            fail("an answer for an id not in flight, or a second answer", id);
            break;
        }
    }
    h->out_seen = h->out.len - s.len;
}

/* deliver runs what the session asked for once a call has returned. */
static void after_call(harness *h)
{
    check_output(h);
}

static void feed(harness *h, const uint8_t *p, size_t n, size_t room)
{
    if (h->closed) {
        return;
    }
    if (h->in == NULL || h->in_len + n > h->in_cap) {
        size_t cap = h->in_cap ? h->in_cap : 4096;
        while (cap < h->in_len + n) {
            cap *= 2;
        }
        h->in = realloc(h->in, cap);
        if (h->in == NULL) {
            abort();
        }
        h->in_cap = cap;
    }
    if (n > 0) {
        memcpy(h->in + h->in_len, p, n);
    }
    h->in_len += n;
    dkd__sess_input r = h->ops->input(h->sess, h->in, h->in_len, -1, 0, room);
    if (r.consumed > h->in_len) {
        fail("consumed more than it was given", 0);
    }
    memmove(h->in, h->in + r.consumed, h->in_len - r.consumed);
    h->in_len -= r.consumed;
    after_call(h);
}

/* A message with two signatures, so that each request needs two keys. */
static const char message[] =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=one;\r\n"
    "\th=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n"
    "DKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=two; h=from;\r\n"
    "\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n"
    "From: a@example.com\r\n"
    "Subject: fuzz\r\n"
    "\r\n"
    "body\r\n";

static void put_frame(dkd__wbuf *b, uint8_t type, uint32_t id, const void *p, size_t n)
{
    dkd__wire_header hd = {
        .version = 1, .type = type, .flags = 0, .request_id = id, .payload_len = (uint32_t)n};
    dkd__wire_put_header(b, &hd);
    dkd__wbuf_append(b, p, n);
}

/* send_frame builds one well-formed client frame and feeds it split in two at cut. */
static void send_frame(harness *h, uint8_t kind, uint32_t id, size_t cut, size_t room)
{
    uint8_t mem[2048];
    dkd__wbuf b;
    dkd__wbuf_init_fixed(&b, mem, sizeof mem);
    size_t hlen = strlen(message) - strlen("body\r\n");
    static const uint8_t no_opts[2] = {0, 0};
    enum id_state *st = &h->ids[id];
    bool busy = *st != ID_FREE;
    switch (kind % 8) {
    case 0: {
        static const uint8_t hello[] = {1, 1, 4, 'f', 'u', 'z', 'z'};
        put_frame(&b, DKD__WIRE_HELLO, 0, hello, sizeof hello);
        busy = false;
        id = 0;
        break;
    }
    case 1: /* VERIFY */
    case 2: {
        uint8_t pl[1024];
        memcpy(pl, no_opts, 2);
        memcpy(pl + 2, message, strlen(message));
        put_frame(&b, DKD__WIRE_VERIFY, id, pl, 2 + strlen(message));
        if (!busy) {
            *st = ID_WAITING;
        }
        break;
    }
    case 3: { /* VERIFY_BEGIN */
        uint8_t pl[1024];
        memcpy(pl, no_opts, 2);
        memcpy(pl + 2, message, hlen);
        put_frame(&b, DKD__WIRE_VERIFY_BEGIN, id, pl, 2 + hlen);
        if (!busy) {
            *st = ID_STREAMING;
        }
        break;
    }
    case 4: /* VERIFY_BODY */
        put_frame(&b, DKD__WIRE_VERIFY_BODY, id, message + hlen, strlen(message) - hlen);
        if (*st == ID_FREE || *st == ID_WAITING) {
            h->tainted[id] = true; /* no open stream: ERROR 6 on an id not opened */
        }
        busy = false;
        break;
    case 5: /* VERIFY_END */
        put_frame(&b, DKD__WIRE_VERIFY_END, id, NULL, 0);
        if (*st == ID_STREAMING) {
            *st = ID_WAITING;
        } else if (*st == ID_ANSWERED_STREAM) {
            *st = ID_FREE;
        } else {
            /* no open stream: ERROR 6 comes on this id, which the harness did not open */
            h->tainted[id] = true;
        }
        busy = false;
        break;
    case 6:
        put_frame(&b, DKD__WIRE_PING, id, "p", 1);
        if (!busy) {
            *st = ID_WAITING;
        }
        break;
    case 7:
        put_frame(&b, DKD__WIRE_STATS, id, NULL, 0);
        if (!busy) {
            *st = ID_WAITING;
        }
        break;
    }
    if (busy && id != 0) {
        h->tainted[id] = true; /* reused while in flight: ERROR 8 on the same id */
    }
    if (dkd__wbuf_ok(&b) != 0) {
        return;
    }
    if (cut > b.len) {
        cut = b.len;
    }
    feed(h, b.ptr, cut, room);
    feed(h, b.ptr + cut, b.len - cut, room);
}

static void deliver_lookup(harness *h, size_t i)
{
    uint64_t token = h->lookups[i];
    h->lookups[i] = h->lookups[--h->nlookups];
    if (!h->closed) {
        h->ops->key(h->sess, token, dkd_key_from_failure(DKD_REASON_DNS_ERROR, "fuzz"));
        after_call(h);
    }
}

static void fire_timer(harness *h, size_t i)
{
    uint64_t token = h->timers[i];
    h->timers[i] = h->timers[--h->ntimers];
    h->handles[i] = h->handles[h->ntimers];
    if (token != 0 && !h->closed) {
        h->ops->timer(h->sess, token);
        after_call(h);
    }
}

static dkd_engine *engine(void)
{
    static dkd_engine *eng;
    if (eng == NULL) {
        dkd_config cfg;
        dkd_config_init(&cfg);
        eng = dkd_engine_new(&cfg);
    }
    return eng;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dkd__wire_cfg cfg = {
        .max_message_bytes = 1 << 20,
        .max_header_bytes = 4096,
        .max_body_chunk = 4096,
        .max_shm_bytes = 1 << 20,
        .max_frame = (1 << 20) + 512,
        .max_inflight = 4,
        .key_timeout_ms = 1000,
        .authserv_id = "fuzz.example",
        .authserv_len = 12,
    };
    harness *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return 0;
    }
    h->ops = &dkd__wire_session;
    h->wctx = h->ops->worker_new(&cfg, engine());
    dkd__wbuf_init(&h->out);
    h->budget = 64 << 10;
    h->now = 1000;
    h->env = (dkd__sess_env){
        .ctx = h,
        .out = &h->out,
        .cnt = &h->cnt,
        .now_ms = h_now,
        .unix_time = h_unix_time,
        .lookup = h_lookup,
        .timer_arm = h_timer_arm,
        .timer_cancel = h_timer_cancel,
        .close = h_close,
        .budget_take = h_budget_take,
        .budget_give = h_budget_give,
        .log = h_log,
        .stats = h_stats,
        .extra_stats = h_extra,
        .map_region = h_map,
        .unmap_region = h_unmap,
        .close_fd = h_close_fd,
        .peer_pid = 1,
        .peer_uid = 0,
    };
    h->sess = h->ops->open(h->wctx, &h->env);
    if (h->sess == NULL) {
        abort();
    }
    size_t i = 0;
    bool eof = false;
    while (i + 2 <= size && !h->closed) {
        uint8_t op = data[i], arg = data[i + 1];
        i += 2;
        size_t room = (op & 0x80) ? (size_t)arg * 16 : SIZE_MAX;
        switch (op & 0x0f) {
        case 0:
        case 1:
        case 2:
        case 3: /* a well-formed frame, split at a point chosen by the input */
            if (!eof && i < size) {
                send_frame(h, arg, (uint32_t)(data[i] % NIDS) + 1, (size_t)(op >> 4) * 7, room);
                i++;
            }
            break;
        case 4: { /* raw bytes */
            size_t n = arg % 64;
            if (n > size - i) {
                n = size - i;
            }
            if (!eof) {
                h->raw = true;
                for (uint32_t id = 1; id <= NIDS; id++) {
                    h->tainted[id] = true; /* raw bytes can be any frame at all */
                }
                feed(h, data + i, n, room);
            }
            i += n;
            break;
        }
        case 5:
            if (h->nlookups > 0) {
                deliver_lookup(h, arg % h->nlookups);
            }
            break;
        case 6:
            if (h->ntimers > 0) {
                fire_timer(h, arg % h->ntimers);
            }
            break;
        case 7:
            h->sync_keys = !h->sync_keys;
            break;
        case 8: /* the client reads: the room comes back on the next input */
            if (!eof) {
                feed(h, NULL, 0, SIZE_MAX);
            }
            break;
        case 9:
            h->now += (int64_t)arg * 1000;
            h->ops->tick(h->sess, h->now - 30000, arg & 1);
            after_call(h);
            break;
        case 10:
            if (!eof) {
                eof = true;
                /* Input not consumed yet is dropped, and so are open streams: the ids
                 * they name owe nothing. */
                for (uint32_t id = 1; id <= NIDS; id++) {
                    if (h->in_len > 0) {
                        h->tainted[id] = true;
                    }
                    if (h->ids[id] == ID_STREAMING || h->ids[id] == ID_ANSWERED_STREAM) {
                        h->ids[id] = ID_FREE;
                    }
                }
                h->ops->eof(h->sess);
                after_call(h);
            }
            break;
        case 11:
            h->ops->drain(h->sess, false);
            after_call(h);
            break;
        default:
            break;
        }
    }
    /* Let everything through, then the shutdown deadline: all that is due is answered. */
    if (!eof && !h->closed) {
        feed(h, NULL, 0, SIZE_MAX);
    }
    /* A session that closed before this owes nothing to the requests it had not
     * answered (PROTOCOL.md 3); one still open must answer them all now. */
    bool open_at_deadline = !h->closed;
    if (open_at_deadline) {
        h->ops->drain(h->sess, true);
        after_call(h);
        if (!h->closed) {
            fail("the session did not close at the shutdown deadline", 0);
        }
        for (uint32_t id = 1; id <= NIDS; id++) {
            if (!h->tainted[id] && (h->ids[id] == ID_WAITING || h->ids[id] == ID_STREAMING)) {
                fail("a request received in full got no answer by the deadline", id);
            }
        }
    }
    /* Key answers and timers that come after the deadline find nothing to answer. */
    while (h->nlookups > 0) {
        uint64_t token = h->lookups[--h->nlookups];
        h->ops->key(h->sess, token, dkd_key_from_failure(DKD_REASON_DNS_ERROR, "late"));
        after_call(h);
    }
    while (h->ntimers > 0) {
        uint64_t token = h->timers[--h->ntimers];
        if (token != 0) {
            h->ops->timer(h->sess, token);
            after_call(h);
        }
    }
    h->ops->close(h->sess);
    h->ops->worker_free(h->wctx);
    dkd__wbuf_free(&h->out);
    free(h->in);
    free(h);
    return 0;
}
