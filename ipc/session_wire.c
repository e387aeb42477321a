/*
 * session_wire.c - the dkimd protocol session: splits the bytes the transport hands in
 * into frames, runs each verification through the engine (VERIFY whole, VERIFY_SHM in
 * the client's shared memory, or VERIFY_BEGIN/BODY/END streamed straight into
 * dkd_msg_body), asks for the key lookups and takes their answers, applies the
 * per-message key deadline, and appends RESULT, STATS_REPLY, PONG and ERROR frames to
 * the connection's output. It knows no ring and no socket (session.h).
 *
 * Workload: one call per receive, on the worker that owns the connection; the common
 * case is one whole VERIFY of tens of KiB whose keys are cached, so a request goes from
 * frame to queued RESULT inside one input call without allocating: requests, their
 * dkd_msg and their key-wait arrays are pooled per worker.
 *
 * States: a connection is waiting for HELLO, open, half-closed by the client (its whole
 * requests are still answered), draining at shutdown, or closed. A request is
 * streaming (VERIFY_BEGIN seen, body coming), waiting (whole message in, keys
 * outstanding) or failed (a stream answered early with ERROR, whose BODY and END are
 * swallowed until its END, PROTOCOL.md 4.4).
 *
 * Tokens: a key lookup's token names the request by its index in the worker's table,
 * its generation (bumped on every release, so a late answer for a request that has
 * gone is recognised) and the key's index; a timer's token has the key index KEY_NONE.
 */
#include "session_wire_int.h"

#include <stdlib.h>
#include <string.h>

/* open_verify handles VERIFY (whole message) and VERIFY_BEGIN (header block). */
static void open_verify(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    dkd__wire_verify v;
    if (dkd__wire_decode_verify(payload, &v) != 0) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY payload");
        return;
    }
    bool whole = h->type == DKD__WIRE_VERIFY;
    size_t hlen = whole ? dkd_split_message(v.data.ptr, v.data.len) : v.data.len;
    req *r = dkd__ws_begin_request(s, h->request_id, &v.opts, whole, v.data.len, hlen);
    if (r != NULL) {
        dkd__ws_feed_message(r, v.data.ptr, hlen, v.data.ptr + hlen, v.data.len - hlen);
    }
}

/* ---- the shared memory transport (PROTOCOL.md 4.9) ---- */

static void shm_attach(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    uint64_t size = 0;
    /* The descriptor that came with this frame is ours to close whatever the answer. */
    int fd = s->passed_fd;
    s->passed_fd = -1;
    if (h->request_id == 0) {
        if (fd >= 0) {
            s->env.close_fd(s->env.ctx, fd);
        }
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return;
    }
    if (dkd__wire_decode_shm_attach(payload, &size) != 0) {
        if (payload.len != 8) {
            if (fd >= 0) {
                s->env.close_fd(s->env.ctx, fd);
            }
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed SHM_ATTACH");
            return;
        }
        /* Eight bytes fail to decode only as size 0: well framed, so it is refused on
         * its id like the other unusable regions. */
        size = 0;
    }
    const dkd__wire_cfg *cfg = s->ww->cfg;
    uint16_t code = DKD__WIRE_E_MALFORMED;
    const char *why = NULL;
    const uint8_t *base = NULL;
    if (cfg->max_shm_bytes == 0) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "shared memory is disabled in this server";
    } else if (dkd__ws_id_in_use(s, h->request_id)) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "request_id is in use";
    } else if (s->shm != NULL) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "a region is attached already";
    } else if (fd < 0) {
        why = "SHM_ATTACH without a file descriptor (SCM_RIGHTS)";
    } else if (size == 0) {
        why = "SHM_ATTACH of size 0";
    } else if (size > cfg->max_shm_bytes || size > SIZE_MAX) {
        code = DKD__WIRE_E_TOO_LARGE;
        why = "region over max_shm_bytes";
    } else {
        why = s->env.map_region(s->env.ctx, fd, size, &base);
    }
    if (fd >= 0) {
        s->env.close_fd(s->env.ctx, fd); /* the mapping keeps the memory */
    }
    if (why != NULL) {
        s->env.log(s->env.ctx, DKD__LK_MALFORMED, DKD__LOG_WARNING,
                   "client pid %ld: SHM_ATTACH refused: %s", (long)s->env.peer_pid, why);
        dkd__ws_send_error(s, h->request_id, code, why);
        return;
    }
    s->shm = base;
    s->shm_size = size;
    DKD__CNT_ADD(s->env.cnt, shm_attached, 1);
    dkd__wire_put_data(s->env.out, DKD__WIRE_SHM_ATTACH_OK, h->request_id, dkd__span(NULL, 0));
}

/* header_copy returns a worker buffer of at least n bytes, NULL if it cannot grow. */
static uint8_t *header_copy(wire_worker *ww, size_t n)
{
    if (n > ww->hdr_copy_cap) {
        size_t cap = ww->hdr_copy_cap ? ww->hdr_copy_cap : 16384;
        while (cap < n) {
            cap *= 2;
        }
        uint8_t *p = realloc(ww->hdr_copy, cap);
        if (p == NULL) {
            return NULL;
        }
        ww->hdr_copy = p;
        ww->hdr_copy_cap = cap;
    }
    return ww->hdr_copy;
}

/*
 * verify_shm verifies bytes of the attached region in place. The client may write to
 * them while we read (by mistake or on purpose): the header block is copied first, since
 * its parser reads it more than once; the body goes to the canonicalizer, which reads
 * each byte within the chunk's bounds whatever it holds, so a changing body can only
 * change this request's verdict.
 */
static void verify_shm(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    dkd__wire_verify_shm v;
    if (dkd__wire_decode_verify_shm(payload, &v) != 0) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY_SHM payload");
        return;
    }
    if (s->shm == NULL) {
        dkd__ws_send_error(s, h->request_id, DKD__WIRE_E_PROTOCOL, "VERIFY_SHM before SHM_ATTACH");
        return;
    }
    if (v.offset > s->shm_size || v.length > s->shm_size - v.offset) {
        dkd__ws_send_error(s, h->request_id, DKD__WIRE_E_MALFORMED,
                           "VERIFY_SHM range outside the attached region");
        return;
    }
    const uint8_t *msg = s->shm + v.offset;
    size_t len = (size_t)v.length;
    size_t hlen = dkd_split_message(msg, len);
    req *r = dkd__ws_begin_request(s, h->request_id, &v.opts, true, v.length, hlen);
    if (r == NULL) {
        return;
    }
    /* A block over the engine's limit is refused by dkd_msg_begin on its length alone,
     * unread, as for VERIFY; not copying it keeps the worker's copy buffer within
     * max_header_bytes. */
    const uint8_t *hdr = msg;
    if (hlen <= s->ww->cfg->max_header_bytes) {
        uint8_t *copy = header_copy(s->ww, hlen);
        if (copy == NULL) {
            dkd__ws_req_fail(r, DKD__WIRE_E_OVERLOADED, "no memory for the header block");
            return;
        }
        memcpy(copy, msg, hlen);
        hdr = copy;
    }
    DKD__CNT_ADD(s->env.cnt, shm_requests, 1);
    DKD__CNT_ADD(s->env.cnt, shm_bytes, len);
    dkd__ws_feed_message(r, hdr, hlen, msg + hlen, len - hlen);
}

static void stream_body(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    req *r = dkd__ws_req_find(s, h->request_id);
    if (r == NULL && dkd__ws_refused_has(s, h->request_id)) {
        return; /* refused at VERIFY_BEGIN: discarded silently */
    }
    if (r == NULL || r->state == REQ_WAITING) {
        dkd__ws_send_error(s, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST,
                           "no open stream for this id");
        return;
    }
    r->last_frame_ms = s->env.now_ms(s->env.ctx);
    if (r->state == REQ_FAILED) {
        return;
    }
    r->bytes += payload.len;
    if (r->bytes > cfg->max_message_bytes) {
        s->env.log(s->env.ctx, DKD__LK_TOO_LARGE, DKD__LOG_INFO,
                   "client pid %ld: streamed message over %llu bytes", (long)s->env.peer_pid,
                   (unsigned long long)cfg->max_message_bytes);
        dkd__ws_req_fail(r, DKD__WIRE_E_TOO_LARGE, "message over the size limit");
        return;
    }
    int rc = dkd_msg_body(r->m, payload.ptr, payload.len);
    if (rc != 0) {
        dkd__ws_req_fail(r, dkd__ws_errcode_of_engine(rc), dkd_strerror(rc));
    }
}

static void stream_end(wire_sess *s, const dkd__wire_header *h)
{
    req *r = dkd__ws_req_find(s, h->request_id);
    if (r == NULL && dkd__ws_refused_has(s, h->request_id)) {
        dkd__ws_refused_remove(s, h->request_id); /* the id is free again */
        return;
    }
    if (r == NULL || r->state == REQ_WAITING) {
        dkd__ws_send_error(s, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST,
                           "no open stream for this id");
        return;
    }
    if (r->state == REQ_FAILED) {
        dkd__ws_req_release(r);
        dkd__ws_maybe_finish(s);
        return;
    }
    r->state = REQ_WAITING;
    dkd__ws_req_try_finish(r);
}

static void add_stat(dkd__wire_stat *st, size_t *n, const char *name, uint64_t v)
{
    st[*n].name = dkd__span_str(name);
    st[*n].value = v;
    (*n)++;
}

typedef struct stat_ctx {
    dkd__wire_stat *st;
    size_t n, max;
} stat_ctx;

static void add_extra(void *ctx, const char *name, uint64_t v)
{
    stat_ctx *sc = ctx;
    if (sc->n < sc->max) {
        add_stat(sc->st, &sc->n, name, v);
    }
}

static void answer_stats(wire_sess *s, uint32_t id)
{
    dkd__server_stats t;
    s->env.stats(s->env.ctx, &t);
    dkd__wire_stat st[64];
    size_t n = 0;
    add_stat(st, &n, "connections", t.connections_open);
    add_stat(st, &n, "connections_total", t.connections_total);
    add_stat(st, &n, "connections_refused", t.connections_refused);
    add_stat(st, &n, "requests_served", t.results);
    add_stat(st, &n, "requests_received", t.requests);
    add_stat(st, &n, "requests_inflight", t.requests_inflight);
    add_stat(st, &n, "signatures", t.signatures);
    uint64_t errors = t.errors_malformed + t.errors_too_large + t.errors_overloaded +
                      t.errors_version + t.errors_shutdown + t.errors_message;
    add_stat(st, &n, "errors", errors);
    add_stat(st, &n, "errors.malformed", t.errors_malformed);
    add_stat(st, &n, "errors.too_large", t.errors_too_large);
    add_stat(st, &n, "errors.overloaded", t.errors_overloaded);
    add_stat(st, &n, "errors.version", t.errors_version);
    add_stat(st, &n, "errors.shutting_down", t.errors_shutdown);
    add_stat(st, &n, "errors.message", t.errors_message);
    add_stat(st, &n, "engine.key_lookups", t.key_lookups);
    add_stat(st, &n, "engine.key_timeouts", t.key_timeouts);
    add_stat(st, &n, "bytes_in", t.bytes_in);
    add_stat(st, &n, "bytes_out", t.bytes_out);
    add_stat(st, &n, "shm.attached", t.shm_attached);
    add_stat(st, &n, "shm.requests", t.shm_requests);
    add_stat(st, &n, "shm.bytes", t.shm_bytes);
    add_stat(st, &n, "milter.messages", t.milter_messages);
    add_stat(st, &n, "milter.verified", t.milter_verified);
    add_stat(st, &n, "milter.signed", t.milter_signed);
    add_stat(st, &n, "milter.unsigned_no_key", t.milter_unsigned);
    add_stat(st, &n, "milter.aborted", t.milter_aborted);
    add_stat(st, &n, "milter.tempfailed", t.milter_tempfailed);
    add_stat(st, &n, "milter.errors", t.milter_errors);
    add_stat(st, &n, "memory_used", t.memory_used);
    add_stat(st, &n, "workers", t.workers);
    add_stat(st, &n, "process.cpu_user_us", t.cpu_user_us);
    add_stat(st, &n, "process.cpu_system_us", t.cpu_system_us);
    add_stat(st, &n, "process.max_rss_kib", t.max_rss_kib);
    stat_ctx sc = {st, n, sizeof st / sizeof st[0]};
    s->env.extra_stats(s->env.ctx, add_extra, &sc);
    dkd__wire_put_stats_reply(s->env.out, id, st, sc.n);
}

static void hello(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    dkd__wire_hello m;
    if (s->state != SESS_HELLO) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "second HELLO");
        return;
    }
    if (h->request_id != 0) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "HELLO on a nonzero request_id");
        return;
    }
    if (dkd__wire_decode_hello(payload, &m) != 0) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed HELLO");
        return;
    }
    if (m.min_version > DKD__WIRE_VERSION || m.max_version < DKD__WIRE_VERSION) {
        dkd__ws_fatal(s, DKD__LK_VERSION, DKD__WIRE_E_VERSION, "no common protocol version");
        return;
    }
    s->state = SESS_OPEN;
    dkd__wire_hello_ok ok = {
        .version = DKD__WIRE_VERSION,
        .max_frame = cfg->max_frame,
        .max_message = cfg->max_message_bytes,
        .max_header_block = (uint32_t)cfg->max_header_bytes,
        .max_inflight = cfg->max_inflight,
        .max_chunk = (uint32_t)cfg->max_body_chunk,
        .server_name = dkd__span_str("dkimd"),
        .features = cfg->max_shm_bytes > 0 ? DKD__WIRE_F_SHM : 0,
    };
    dkd__wire_put_hello_ok(s->env.out, 0, &ok);
}

/* on_frame dispatches one whole frame. The payload borrows the caller's bytes. */
static void on_frame(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    if (s->state == SESS_HELLO && h->type != DKD__WIRE_HELLO) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "frame before HELLO");
        return;
    }
    if (s->fd_claim_next) {
        /* The frame cut short by the input that brought a descriptor: it must be the
         * SHM_ATTACH the descriptor was sent with (PROTOCOL.md 4.9). */
        s->fd_claim_next = false;
        if (h->type != DKD__WIRE_SHM_ATTACH) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                          "file descriptor sent with a frame other than SHM_ATTACH");
            return;
        }
    }
    switch (h->type) {
    case DKD__WIRE_HELLO:
        hello(s, h, payload);
        break;
    case DKD__WIRE_VERIFY:
    case DKD__WIRE_VERIFY_BEGIN:
        open_verify(s, h, payload);
        break;
    case DKD__WIRE_VERIFY_BODY:
        if (payload.len > s->ww->cfg->max_body_chunk) {
            dkd__ws_fatal(s, DKD__LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE,
                          "VERIFY_BODY over max_chunk");
            break;
        }
        stream_body(s, h, payload);
        break;
    case DKD__WIRE_VERIFY_END:
        if (payload.len != 0) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "VERIFY_END with a payload");
            break;
        }
        stream_end(s, h);
        break;
    case DKD__WIRE_SHM_ATTACH:
        shm_attach(s, h, payload);
        break;
    case DKD__WIRE_VERIFY_SHM:
        verify_shm(s, h, payload);
        break;
    case DKD__WIRE_STATS:
        if (payload.len != 0) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed STATS");
            break;
        }
        if (dkd__ws_check_id(s, h->request_id)) {
            answer_stats(s, h->request_id);
        }
        break;
    case DKD__WIRE_PING:
        if (payload.len > DKD__WIRE_MAX_PING) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed PING");
            break;
        }
        if (dkd__ws_check_id(s, h->request_id)) {
            dkd__wire_put_data(s->env.out, DKD__WIRE_PONG, h->request_id, payload);
        }
        break;
    default:
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "unknown frame type");
        break;
    }
}

/*
 * ops->input splits and handles the whole frames at the front of p, until the output
 * room is used up (then it pauses: the rest waits for the client to read its answers).
 * Frames are handled where they lie; the transport keeps what is not consumed.
 */
static dkd__sess_input sess_input(void *sp, const uint8_t *p, size_t n, int fd, unsigned flags,
                                  size_t out_room)
{
    wire_sess *s = sp;
    dkd__sess_input res = {0, 0, false};
    if (fd >= 0) {
        if (s->passed_fd >= 0 || s->state == SESS_CLOSED) {
            s->env.close_fd(s->env.ctx, fd);
            flags |= DKD__IN_FD_EXCESS;
        } else {
            s->passed_fd = fd;
            s->fd_fresh = true;
        }
    }
    if (s->state == SESS_CLOSED) {
        return res;
    }
    if (flags & DKD__IN_FD_EXCESS) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                      "more than one file descriptor passed");
        return res;
    }
    if (s->state == SESS_RX_DONE) {
        return res;
    }
    size_t out_start = s->env.out->len;
    dkd_span in = dkd__span(p, n);
    while (s->state != SESS_CLOSED) {
        if (in.len > 0 && s->env.out->len - out_start >= out_room) {
            res.paused = true;
            break;
        }
        uint32_t limit = s->state == SESS_HELLO ? DKD__WIRE_PRE_HELLO_MAX : s->ww->cfg->max_frame;
        /* HELLO always carries version 1; afterwards the negotiated one (also 1). */
        dkd__wire_header h;
        dkd_span payload;
        int rc = dkd__wire_frame_split(&in, DKD__WIRE_VERSION, limit, &h, &payload);
        if (rc == 0) {
            if (in.len >= DKD__WIRE_HEADER_LEN) {
                res.need = DKD__WIRE_HEADER_LEN + (size_t)h.payload_len;
            }
            break;
        }
        if (rc == DKD__WIRE_ERR_VERSION) {
            dkd__ws_fatal(s, DKD__LK_VERSION, DKD__WIRE_E_VERSION, "unsupported frame version");
            break;
        }
        if (rc < 0) {
            dkd__ws_fatal(s, DKD__LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE, "frame over max_frame");
            break;
        }
        if (s->fd_fresh && in.len == 0 && s->passed_fd >= 0 && h.type != DKD__WIRE_SHM_ATTACH) {
            /* The kernel ends a receive right after the bytes a descriptor came with, so
             * the last frame of this input is the one it was sent with. */
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                          "file descriptor sent with a frame other than SHM_ATTACH");
            break;
        }
        on_frame(s, &h, payload);
    }
    res.consumed = (size_t)(in.ptr - p);
    if (s->fd_fresh && s->state != SESS_CLOSED && !res.paused) {
        /* Every frame of the input that brought the descriptor has been handled and none
         * took it: it came with the partial frame left, which must be its SHM_ATTACH. (A
         * paused input is judged when it resumes.) */
        s->fd_fresh = false;
        if (s->passed_fd >= 0 && in.len == 0) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                          "file descriptor sent with a frame other than SHM_ATTACH");
        } else if (s->passed_fd >= 0) {
            s->fd_claim_next = true;
        }
    }
    return res;
}

/*
 * ops->eof: the client shut down its side. What it sent in full is answered (its keys
 * may still be on their way); a stream it cannot finish now is dropped, and so is a
 * partial frame. The connection closes when the last answer has been queued.
 */
static void sess_eof(void *sp)
{
    wire_sess *s = sp;
    if (s->state == SESS_CLOSED) {
        return;
    }
    if (s->state == SESS_HELLO) {
        dkd__ws_sess_close(s, DKD__CLOSE_AFTER_SEND);
        return;
    }
    s->state = SESS_RX_DONE;
    s->nrefused = 0;
    req *next;
    for (req *r = s->reqs; r != NULL; r = next) {
        next = r->next;
        if (r->state != REQ_WAITING) {
            dkd__ws_req_release(r);
        }
    }
    dkd__ws_maybe_finish(s);
}

/*
 * ops->tick: the stall timeout bounds the HELLO (from the connection's start) and the
 * gap between a stream's frames (a stream may follow a slow SMTP transfer, so its
 * frames, not the whole stream, are bounded). The transport bounds each frame.
 */
static void sess_tick(void *sp, int64_t limit_ms, bool input_stalled)
{
    wire_sess *s = sp;
    if (s->state == SESS_CLOSED) {
        return;
    }
    if (input_stalled) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED,
                      "frame not completed within stall-timeout");
        return;
    }
    if (s->state == SESS_HELLO && s->opened_ms <= limit_ms) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "no HELLO within stall-timeout");
        return;
    }
    for (req *r = s->reqs; r != NULL; r = r->next) {
        if (r->state == REQ_STREAMING && r->last_frame_ms <= limit_ms) {
            dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED,
                          "streamed message stalled past stall-timeout");
            return;
        }
    }
}

/*
 * ops->drain, while the server stops. Before the shutdown timeout: wait while whole
 * requests are waiting for keys, then ERROR 5 for the streams left incomplete and on
 * request_id 0, and close once sent (PROTOCOL.md 3). At the timeout: every whole
 * request gets its verdict as it stands, keys not found yet counting as temperror
 * (dns-timeout), incomplete streams ERROR 5, then the same ending.
 */
static void sess_drain(void *sp, bool expired)
{
    wire_sess *s = sp;
    if (s->state == SESS_CLOSED) {
        return;
    }
    if (!expired) {
        for (req *r = s->reqs; r != NULL; r = r->next) {
            if (r->state == REQ_WAITING) {
                return; /* whole request waiting for keys: answer it first */
            }
        }
    }
    s->state = SESS_DRAINING;
    req *next;
    for (req *r = s->reqs; r != NULL && s->state != SESS_CLOSED; r = next) {
        next = r->next;
        if (r->state == REQ_WAITING) {
            if (dkd__ws_expire_keys(r, DKD_REASON_DNS_TIMEOUT, "server shutting down")) {
                dkd__ws_req_try_finish(r);
            }
            continue;
        }
        if (r->state == REQ_STREAMING) {
            dkd__ws_send_error(s, r->id, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
        }
        if (s->state != SESS_CLOSED) {
            dkd__ws_req_release(r);
        }
    }
    dkd__ws_send_error(s, 0, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
}

/* ---- life ---- */

static void *sess_worker_new(const void *cfg, dkd_engine *eng)
{
    wire_worker *ww = calloc(1, sizeof *ww);
    if (ww == NULL) {
        abort(); /* set-up: out of memory at start is dkd__ws_fatal */
    }
    ww->cfg = cfg;
    ww->eng = eng;
    return ww;
}

static void sess_worker_free(void *wp)
{
    wire_worker *ww = wp;
    if (ww == NULL) {
        return;
    }
    for (uint32_t i = 0; i < ww->ntable; i++) {
        dkd_msg_free(ww->table[i]->m);
        free(ww->table[i]->key_wait);
        free(ww->table[i]);
    }
    free(ww->table);
    free(ww->hdr_copy);
    free(ww);
}

static void *sess_open(void *wp, const dkd__sess_env *env)
{
    wire_sess *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->ww = wp;
    s->env = *env;
    s->state = SESS_HELLO;
    s->opened_ms = env->now_ms(env->ctx);
    s->passed_fd = -1;
    return s;
}

static void sess_free(void *sp)
{
    wire_sess *s = sp;
    while (s->reqs != NULL) {
        dkd__ws_req_release(s->reqs);
    }
    if (s->passed_fd >= 0) {
        s->env.close_fd(s->env.ctx, s->passed_fd);
    }
    if (s->shm != NULL) {
        s->env.unmap_region(s->env.ctx, s->shm, s->shm_size);
    }
    free(s->refused);
    free(s);
}

static void sess_refuse(dkd__wbuf *out, bool shutting_down, const char *text)
{
    dkd__wire_put_error(out, 0, shutting_down ? DKD__WIRE_E_SHUTTING_DOWN : DKD__WIRE_E_OVERLOADED,
                        dkd__span_str(text));
}

const dkd__sess_ops dkd__wire_session = {
    .name = "dkimd",
    .worker_new = sess_worker_new,
    .worker_free = sess_worker_free,
    .open = sess_open,
    .input = sess_input,
    .key = dkd__ws_sess_key,
    .timer = dkd__ws_sess_timer,
    .eof = sess_eof,
    .tick = sess_tick,
    .drain = sess_drain,
    .close = sess_free,
    .refuse = sess_refuse,
};
