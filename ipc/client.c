/*
 * client.c - libdkimd's requests: the slot table, answers, submitting and the blocking
 * calls (the client side of ipc/PROTOCOL.md; the connection is client_conn.c).
 *
 * Requests live in a slot table sized by the server's max_inflight; a request id is the
 * slot index in its low 16 bits and a generation in its high 16 bits, so a late answer to
 * an abandoned request can never be taken for the answer to its slot's next occupant.
 * The blocking calls are the async API plus poll().
 *
 * Workload: an MTA process with one client per thread, tens to thousands of requests in
 * flight, messages of a few KB (one frame each) and now and then a large one streamed in
 * chunks. The library never blocks except while (re)connecting, starts no threads and
 * links neither OpenSSL nor the engine: of the engine's code it carries only the result
 * and reason tables and the end of the header block (engine/core/meson.build).
 */
#include "client_int.h"
#include "hdrblock.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

enum {
    /* Blocking streaming drains the queue when it grows past this, so a 50 MB message
     * costs the client about this much memory, not 50 MB. */
    STREAM_HIGH_WATER = 1u << 20,
    MAX_SLOTS = 1u << 16,
};

/* ---- slots ---- */

int dkd__client_slots_init(dkd_client *c, uint32_t n)
{
    if (n > MAX_SLOTS) {
        n = MAX_SLOTS;
    }
    if (n == c->nslots) {
        return 0;
    }
    dkd__client_slot *s = calloc(n, sizeof *s);
    uint32_t *f = calloc(n, sizeof *f);
    dkd__client_ring_entry *q = calloc(n, sizeof *q);
    if (s == NULL || f == NULL || q == NULL) {
        free(s);
        free(f);
        free(q);
        return -ENOMEM;
    }
    free(c->slots);
    free(c->free_ids);
    free(c->shm.ring.q);
    c->slots = s;
    c->free_ids = f;
    c->nslots = n;
    /* Called with nothing in flight, so nothing lives in the region either. */
    dkd__client_ring_init(&c->shm.ring, c->shm.ring.size, q, n);
    /* Hand out low indexes first: stack top is index 0. */
    for (uint32_t k = 0; k < n; k++) {
        f[k] = n - 1 - k;
    }
    c->nfree = n;
    return 0;
}

static dkd__client_slot *slot_alloc(dkd_client *c)
{
    if (c->nfree == 0) {
        return NULL;
    }
    uint32_t idx = c->free_ids[--c->nfree];
    /* Generation 0 is skipped so that no id is ever 0, the connection-level id. */
    if (++c->gen == 0) {
        c->gen = 1;
    }
    dkd__client_slot *s = &c->slots[idx];
    *s = (dkd__client_slot){.id = (uint32_t)c->gen << 16 | idx, .shm_pos = -1};
    c->inflight++;
    return s;
}

static void slot_release(dkd_client *c, dkd__client_slot *s)
{
    uint32_t idx = (uint32_t)(s - c->slots);
    if (s->shm_pos >= 0) {
        dkd__client_ring_free(&c->shm.ring, (uint32_t)s->shm_pos);
    }
    *s = (dkd__client_slot){0};
    c->free_ids[c->nfree++] = idx;
    c->inflight--;
}

static dkd__client_slot *slot_find(dkd_client *c, uint32_t id)
{
    uint32_t idx = id & 0xFFFFu;
    if (id == 0 || idx >= c->nslots || c->slots[idx].id != id) {
        return NULL;
    }
    return &c->slots[idx];
}

/* complete frees the slot and then calls its callback (which may reuse the slot). */
static void complete(dkd_client *c, dkd__client_slot *s, int status, dkd_client_result *r,
                     dkd_client_counters *st)
{
    dkd__client_slot copy = *s;
    slot_release(c, s);
    if (copy.kind == DKD__SLOT_STATS) {
        if (copy.stats_done != NULL) {
            copy.stats_done(copy.user, status, st);
            return;
        }
    } else if (copy.done != NULL) {
        copy.done(copy.user, status, r);
        return;
    }
    /* Abandoned by a timed-out blocking call: nobody wants the answer. */
    dkd_client_result_free(r);
    dkd_client_counters_free(st);
}

int dkd__client_fail_all(dkd_client *c, int status)
{
    dkd__client_disconnect(c);
    int called = 0;
    for (uint32_t k = 0; k < c->nslots; k++) {
        if (c->slots[k].kind != DKD__SLOT_FREE) {
            complete(c, &c->slots[k], status, NULL, NULL);
            called++;
        }
    }
    return called;
}


size_t dkd_client_inflight(const dkd_client *c)
{
    return c->inflight;
}

/* ---- dispatching answers ---- */

/* dispatch handles one frame from the server. 1 if a callback ran, 0 if not, or a
 * negative code that ends the connection. */
static int dispatch(dkd_client *c, const dkd__wire_header *h, dkd_span payload)
{
    if (h->type == DKD__WIRE_ERROR) {
        dkd__wire_error e;
        if (dkd__wire_decode_error(payload, &e) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (h->request_id == 0) {
            return dkd__client_server_err(e.code); /* the server closes the connection after this */
        }
        dkd__client_slot *s = slot_find(c, h->request_id);
        if (s == NULL) {
            return 0; /* the answer to a request already given up */
        }
        if (s->stream == DKD__STREAM_OPEN) {
            /* PROTOCOL.md 4.4: after an early error the id is free once our END arrives. */
            dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_END, s->id, dkd__span(NULL, 0));
        }
        complete(c, s, dkd__client_server_err(e.code), NULL, NULL);
        return 1;
    }
    dkd__client_slot *s = slot_find(c, h->request_id);
    if (h->type == DKD__WIRE_RESULT) {
        dkd__wire_result wr;
        if (dkd__wire_decode_result(payload, &wr) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (s == NULL || s->kind != DKD__SLOT_VERIFY || s->stream == DKD__STREAM_OPEN) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        dkd_client_result *r = dkd__client_result_from_wire(&wr);
        complete(c, s, r != NULL ? 0 : -ENOMEM, r, NULL);
        return 1;
    }
    if (h->type == DKD__WIRE_STATS_REPLY) {
        dkd__wire_stats_reply wr;
        if (dkd__wire_decode_stats_reply(payload, &wr) != 0) {
            return DKD_CLIENT_ERR_BAD_REPLY;
        }
        if (s == NULL || s->kind != DKD__SLOT_STATS) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        dkd_client_counters *st = dkd__client_counters_from_wire(&wr);
        complete(c, s, st != NULL ? 0 : -ENOMEM, NULL, st);
        return 1;
    }
    if (h->type == DKD__WIRE_PONG) {
        if (s == NULL || s->kind != DKD__SLOT_PING) {
            return s == NULL ? 0 : DKD_CLIENT_ERR_BAD_REPLY;
        }
        complete(c, s, 0, NULL, NULL);
        return 1;
    }
    return DKD_CLIENT_ERR_BAD_REPLY;
}

int dkd_client_process(dkd_client *c)
{
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    if (c->fd < 0) {
        return 0;
    }
    c->in_process = true;
    int called = 0;
    int rc = c->pending_err;
    if (rc == 0) {
        rc = dkd__client_flush(c);
    }
    bool eof = false;
    while (rc == 0 && !eof) {
        int n = dkd__client_fill(c, 4096);
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            break;
        }
        if (n < 0) {
            rc = n;
            break;
        }
        eof = n == 0;
        dkd_span in = dkd__span(c->in, c->in_len);
        for (;;) {
            dkd__wire_header h;
            dkd_span payload;
            int got = dkd__wire_frame_split(&in, c->version, DKD__CLIENT_MAX_REPLY, &h, &payload);
            if (got < 0) {
                rc = DKD_CLIENT_ERR_BAD_REPLY;
                break;
            }
            if (got == 0) {
                break;
            }
            int d = dispatch(c, &h, payload);
            if (d < 0) {
                rc = d;
                break;
            }
            called += d;
        }
        if (rc != 0) {
            break;
        }
        memmove(c->in, in.ptr, in.len);
        c->in_len = in.len;
        /* Callbacks may have queued frames (new requests, an END after an early error). */
        rc = dkd__client_flush(c);
    }
    if (rc == 0 && eof) {
        rc = DKD_CLIENT_ERR_CLOSED;
    }
    if (rc != 0) {
        /* The connection is unusable: everything in flight fails with the cause. A reset
         * or broken pipe is the daemon going away, reported as "closed". */
        if (rc == -EPIPE || rc == -ECONNRESET) {
            rc = DKD_CLIENT_ERR_CLOSED;
        }
        called += dkd__client_fail_all(c, rc);
    }
    c->in_process = false;
    return rc != 0 ? rc : called;
}

/* ---- submitting ---- */

static int wire_opts(const dkd_client_opts *o, dkd__wire_verify_opts *w)
{
    *w = (dkd__wire_verify_opts){0};
    if (o == NULL) {
        return 0;
    }
    if (o->authserv_id != NULL) {
        size_t n = strlen(o->authserv_id);
        if (n < 1 || n > DKD__WIRE_MAX_AUTHSERV) {
            return DKD_CLIENT_ERR_ARG;
        }
        for (size_t k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)o->authserv_id[k];
            if (ch < 0x21 || ch > 0x7E) {
                return DKD_CLIENT_ERR_ARG;
            }
        }
        w->has_authserv_id = true;
        w->authserv_id = dkd__span(o->authserv_id, n);
    }
    w->has_time = o->has_time;
    w->time = o->time;
    return 0;
}

/* after_queue checks the builder and tries to send at once (latency); a send error is
 * kept for process(), since callbacks are never called from a submitting call. */
static int after_queue(dkd_client *c, size_t mark, dkd__client_slot *s)
{
    if (dkd__wbuf_ok(&c->out) != 0) {
        c->out.len = mark;
        c->out.err = false;
        if (s != NULL) {
            slot_release(c, s);
        }
        return -ENOMEM;
    }
    if (c->pending_err == 0) {
        c->pending_err = dkd__client_flush(c);
    }
    return 0;
}

size_t dkd_client_max_whole(const dkd_client *c, const dkd_client_opts *opts)
{
    dkd__wire_verify_opts w;
    if (wire_opts(opts, &w) != 0) {
        return 0;
    }
    size_t head = dkd__wire_verify_head_len(&w) - DKD__WIRE_HEADER_LEN;
    size_t max = c->lim.max_frame > head ? c->lim.max_frame - head : 0;
    return c->lim.max_message < max ? (size_t)c->lim.max_message : max;
}

static int submit_verify(dkd_client *c, uint8_t type, const uint8_t *data, size_t len,
                         const dkd_client_opts *opts, dkd_client_done_fn done, void *user,
                         uint32_t *req)
{
    dkd__wire_verify_opts w;
    int rc = wire_opts(opts, &w);
    if (rc != 0) {
        return rc;
    }
    if ((rc = dkd__client_ensure_connected(c)) != 0) {
        return rc;
    }
    /* Through the shared region when it has room (any size up to max_message), else
     * over the socket. */
    size_t shm_off = 0;
    bool via_shm = type == DKD__WIRE_VERIFY && c->shm.attached && len <= c->lim.max_message &&
                   dkd__client_ring_place(&c->shm.ring, len, &shm_off);
    size_t limit =
        type == DKD__WIRE_VERIFY ? dkd_client_max_whole(c, opts) : c->lim.max_header_block;
    if (!via_shm && len > limit) {
        return DKD_CLIENT_ERR_TOO_LARGE;
    }
    dkd__client_slot *s = slot_alloc(c);
    if (s == NULL) {
        return DKD_CLIENT_ERR_BUSY;
    }
    s->kind = DKD__SLOT_VERIFY;
    s->stream = type == DKD__WIRE_VERIFY_BEGIN ? DKD__STREAM_OPEN : DKD__STREAM_NONE;
    s->done = done;
    s->user = user;
    if (req != NULL) {
        *req = s->id;
    }
    size_t mark = c->out.len;
    if (via_shm) {
        memcpy(c->shm.base + shm_off, data, len);
        s->shm_pos = (int32_t)dkd__client_ring_push(&c->shm.ring, shm_off, len);
        dkd__wire_verify_shm m = {.opts = w, .offset = shm_off, .length = len};
        dkd__wire_put_verify_shm(&c->out, s->id, &m);
    } else {
        dkd__wire_put_verify_head(&c->out, type, s->id, &w, len);
        dkd__wbuf_append(&c->out, data, len);
    }
    return after_queue(c, mark, s);
}

int dkd_client_submit(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_done_fn done, void *user)
{
    return submit_verify(c, DKD__WIRE_VERIFY, msg, len, opts, done, user, NULL);
}

int dkd_client_begin(dkd_client *c, const uint8_t *hdr, size_t len, const dkd_client_opts *opts,
                     dkd_client_done_fn done, void *user, uint32_t *req)
{
    return submit_verify(c, DKD__WIRE_VERIFY_BEGIN, hdr, len, opts, done, user, req);
}

int dkd_client_body(dkd_client *c, uint32_t req, const uint8_t *chunk, size_t len)
{
    dkd__client_slot *s = c->fd >= 0 ? slot_find(c, req) : NULL;
    if (s == NULL || s->stream != DKD__STREAM_OPEN) {
        return DKD_CLIENT_ERR_STATE;
    }
    size_t mark = c->out.len;
    size_t max = c->lim.max_chunk;
    do {
        size_t n = len < max ? len : max;
        dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_BODY, req, dkd__span(chunk, n));
        chunk += n;
        len -= n;
    } while (len > 0);
    return after_queue(c, mark, NULL);
}

int dkd_client_end(dkd_client *c, uint32_t req)
{
    dkd__client_slot *s = c->fd >= 0 ? slot_find(c, req) : NULL;
    if (s == NULL || s->stream != DKD__STREAM_OPEN) {
        return DKD_CLIENT_ERR_STATE;
    }
    size_t mark = c->out.len;
    dkd__wire_put_data(&c->out, DKD__WIRE_VERIFY_END, req, dkd__span(NULL, 0));
    int rc = after_queue(c, mark, NULL);
    if (rc == 0) {
        s->stream = DKD__STREAM_NONE;
    }
    return rc;
}

static int submit_simple(dkd_client *c, uint8_t type, uint8_t kind, dkd_client_done_fn done,
                         dkd__client_stats_fn sdone, void *user, uint32_t *req)
{
    int rc = dkd__client_ensure_connected(c);
    if (rc != 0) {
        return rc;
    }
    dkd__client_slot *s = slot_alloc(c);
    if (s == NULL) {
        return DKD_CLIENT_ERR_BUSY;
    }
    s->kind = kind;
    s->done = done;
    s->stats_done = sdone;
    s->user = user;
    *req = s->id;
    size_t mark = c->out.len;
    /* A PING carries its own id so a PONG can be checked against it by eye in a dump. */
    uint8_t id[4] = {(uint8_t)(s->id >> 24), (uint8_t)(s->id >> 16), (uint8_t)(s->id >> 8),
                     (uint8_t)s->id};
    dkd__wire_put_data(&c->out, type, s->id,
                      type == DKD__WIRE_PING ? dkd__span(id, 4) : dkd__span(NULL, 0));
    return after_queue(c, mark, s);
}

/* ---- blocking calls: the async API plus poll() ---- */

typedef struct waiter {
    bool done;
    int status;
    dkd_client_result *result;
    dkd_client_counters *counters;
} waiter;

static void wait_verify_done(void *user, int status, dkd_client_result *r)
{
    waiter *w = user;
    w->done = true;
    w->status = status;
    w->result = r;
}

static void wait_stats_done(void *user, int status, dkd_client_counters *s)
{
    waiter *w = user;
    w->done = true;
    w->status = status;
    w->counters = s;
}

/* drive waits for the socket once and processes. 0, or a negative code (timeout). */
static int drive(dkd_client *c, int64_t deadline)
{
    if (c->fd < 0) {
        return DKD_CLIENT_ERR_CLOSED;
    }
    int rc = c->pending_err == 0 ? dkd__client_wait_fd(c->fd, dkd_client_events(c), deadline) : 0;
    if (rc != 0) {
        return rc;
    }
    rc = dkd_client_process(c);
    return rc < 0 ? rc : 0;
}

/* wait_for runs the loop until w completes; on timeout the request is abandoned (its
 * late answer is dropped) and -ETIMEDOUT returned. */
static int wait_for(dkd_client *c, waiter *w, uint32_t req, int64_t deadline)
{
    while (!w->done) {
        int rc = drive(c, deadline);
        if (w->done) {
            break;
        }
        if (rc != 0) {
            dkd__client_slot *s = slot_find(c, req);
            if (s != NULL) {
                s->done = NULL;
                s->stats_done = NULL;
            }
            return rc;
        }
    }
    return w->status;
}


static int verify_once(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                       waiter *w)
{
    int64_t deadline = dkd__client_deadline(c);
    int rc = dkd__client_ensure_connected(c);
    if (rc != 0) {
        return rc;
    }
    if (len > c->lim.max_message) {
        return DKD_CLIENT_ERR_TOO_LARGE; /* the server would refuse it after the upload */
    }
    uint32_t req = 0;
    bool whole = len <= dkd_client_max_whole(c, opts);
    if (whole || c->shm.attached) {
        rc = submit_verify(c, DKD__WIRE_VERIFY, msg, len, opts, wait_verify_done, w, &req);
        if (whole || rc != DKD_CLIENT_ERR_TOO_LARGE) {
            return rc != 0 ? rc : wait_for(c, w, req, deadline);
        }
        /* too large for one frame and no room in the region now: stream it */
    }
    size_t hlen = dkd__hdr_block_len(dkd__span(msg, len));
    rc = dkd_client_begin(c, msg, hlen, opts, wait_verify_done, w, &req);
    if (rc != 0) {
        return rc;
    }
    size_t off = hlen;
    while (off < len && !w->done) {
        size_t n = len - off < STREAM_HIGH_WATER ? len - off : STREAM_HIGH_WATER;
        if ((rc = dkd_client_body(c, req, msg + off, n)) != 0) {
            break;
        }
        off += n;
        while (rc == 0 && !w->done && dkd_client_queued(c) >= STREAM_HIGH_WATER) {
            rc = drive(c, deadline);
        }
    }
    if (rc == 0 && !w->done) {
        rc = dkd_client_end(c, req);
    }
    if (rc != 0 && !w->done) {
        dkd__client_slot *s = slot_find(c, req);
        if (s != NULL) {
            s->done = NULL;
        }
        return rc;
    }
    return wait_for(c, w, req, deadline);
}

static bool retryable(int rc)
{
    return rc == DKD_CLIENT_ERR_CLOSED || rc == DKD_CLIENT_ERR_SHUTTING_DOWN ||
           rc == -ECONNREFUSED || rc == -ENOENT || rc == -EPIPE || rc == -ECONNRESET;
}

int dkd_client_verify(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_result **result)
{
    *result = NULL;
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        waiter w = {0};
        rc = verify_once(c, msg, len, opts, &w);
        if (rc == 0) {
            *result = w.result;
            return 0;
        }
        if (!retryable(rc)) {
            break;
        }
        /* The daemon restarted or is restarting: a fresh connection gets one more try. */
        if (c->fd >= 0 && c->inflight == 0) {
            dkd__client_disconnect(c);
        }
    }
    return rc;
}

static int simple_call(dkd_client *c, uint8_t type, uint8_t kind, waiter *w)
{
    if (c->in_process) {
        return DKD_CLIENT_ERR_STATE;
    }
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        *w = (waiter){0};
        int64_t deadline = dkd__client_deadline(c);
        uint32_t req;
        rc = submit_simple(c, type, kind, kind == DKD__SLOT_PING ? wait_verify_done : NULL,
                           kind == DKD__SLOT_STATS ? wait_stats_done : NULL, w, &req);
        if (rc == 0) {
            rc = wait_for(c, w, req, deadline);
        }
        if (rc == 0 || !retryable(rc)) {
            break;
        }
        if (c->fd >= 0 && c->inflight == 0) {
            dkd__client_disconnect(c);
        }
    }
    return rc;
}

int dkd_client_stats(dkd_client *c, dkd_client_counters **out)
{
    waiter w;
    *out = NULL;
    int rc = simple_call(c, DKD__WIRE_STATS, DKD__SLOT_STATS, &w);
    if (rc == 0) {
        *out = w.counters;
    }
    return rc;
}

int dkd_client_ping(dkd_client *c)
{
    waiter w;
    return simple_call(c, DKD__WIRE_PING, DKD__SLOT_PING, &w);
}
