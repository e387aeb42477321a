/*
 * server_req.c - the request half of the dkimd server: frames in, answers out. Splits
 * the receive buffer into frames, runs each verification through the engine (VERIFY
 * whole, or VERIFY_BEGIN/BODY/END streamed straight into dkd_msg_body), starts the key
 * lookups and takes their answers (synchronous, or posted back from the resolver's
 * thread), applies the per-message key deadline, and queues RESULT, STATS_REPLY, PONG
 * and ERROR frames on the connection's send queue.
 *
 * Workload: everything here runs on the worker that owns the connection, once per
 * frame; the common case is one whole VERIFY of tens of KiB whose keys are cached, so
 * a request goes from frame to queued RESULT without leaving this file or allocating
 * (requests, their dkd_msg and lookups are pooled per worker).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server_int.h"

/* ---- output ---- */

size_t dkd__conn_out_queued(const conn *c)
{
    return c->pend.len + (c->out.len - c->out_off);
}

/* account_out keeps the memory budget's charge equal to what the send buffers hold:
 * answers a client has not read yet are memory like any other. */
static void account_out(conn *c)
{
    uint64_t held = (uint64_t)c->out.cap + c->pend.cap;
    if (held > c->out_charged) {
        dkd__budget_force(c->w->srv, held - c->out_charged);
    } else if (held < c->out_charged) {
        dkd__budget_give(c->w->srv, c->out_charged - held);
    }
    c->out_charged = held;
}

void dkd__conn_flush(conn *c)
{
    if (c->send_armed || c->closing) {
        return;
    }
    if (c->rx_eof && c->nreqs == 0) {
        c->close_after_send = true; /* half-closed and every request answered */
    }
    if (c->out_off == c->out.len) {
        c->out_off = 0;
        if (c->out.cap > OUT_KEEP) {
            /* A burst of answers is over: do not keep its buffer for an idle client. */
            dkd__wbuf_free(&c->out);
            dkd__wbuf_init(&c->out);
        } else {
            dkd__wbuf_reset(&c->out);
        }
        if (c->pend.len == 0) {
            c->tx_wait_ms = 0;
            account_out(c);
            if (c->close_after_send) {
                dkd__conn_begin_close(c);
            }
            return;
        }
        dkd__wbuf t = c->out;
        c->out = c->pend;
        c->pend = t;
        account_out(c);
    }
    struct io_uring_sqe *sqe = dkd__get_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(c, OP_SEND));
    c->send_armed = true;
    c->ops++;
}

/* conn_queued checks the sticky error of the pending buffer after an append, and starts
 * a send unless frames are being handled (dkd__conn_process sends once at the end). */
static void conn_queued(conn *c)
{
    if (dkd__wbuf_ok(&c->pend) != 0) {
        /* Out of memory for the answer: the connection cannot be kept consistent. */
        dkd__wlog(c->w, LK_SYSTEM, DKD__LOG_ERR, "out of memory queueing an answer; closing");
        dkd__conn_begin_close(c);
        return;
    }
    if (c->tx_wait_ms == 0) {
        c->tx_wait_ms = c->w->now_ms;
    }
    if (c->pend.cap + c->out.cap != c->out_charged) {
        account_out(c);
    }
    if (!c->in_process) {
        dkd__conn_flush(c);
    }
}

void dkd__send_error(conn *c, uint32_t id, uint16_t code, const char *text)
{
    worker *w = c->w;
    switch (code) {
    case DKD__WIRE_E_MALFORMED:
    case DKD__WIRE_E_PROTOCOL:
    case DKD__WIRE_E_UNKNOWN_REQUEST:
        CNT_ADD(w, errors_malformed, 1);
        break;
    case DKD__WIRE_E_TOO_LARGE:
        CNT_ADD(w, errors_too_large, 1);
        break;
    case DKD__WIRE_E_OVERLOADED:
        CNT_ADD(w, errors_overloaded, 1);
        break;
    case DKD__WIRE_E_VERSION:
        CNT_ADD(w, errors_version, 1);
        break;
    case DKD__WIRE_E_SHUTTING_DOWN:
        CNT_ADD(w, errors_shutdown, 1);
        break;
    default:
        CNT_ADD(w, errors_message, 1);
        break;
    }
    dkd__wire_put_error(&c->pend, id, code, dkd__span_str(text));
    if (id == 0) {
        /* A connection-level error: nothing more is read; close once it is sent. */
        c->close_after_send = true;
    }
    conn_queued(c);
}

/* fatal: ERROR on request_id 0, then close (PROTOCOL.md 3). */
void dkd__conn_fatal(conn *c, enum log_kind kind, uint16_t code, const char *text)
{
    dkd__wlog(c->w, kind, DKD__LOG_WARNING, "client pid %ld uid %ld: %s; closing", (long)c->pid,
              (long)c->uid, text);
    dkd__send_error(c, 0, code, text);
}

/* ---- requests ---- */

static req *req_get(worker *w, conn *c, uint32_t id)
{
    req *r = w->free_reqs;
    if (r != NULL) {
        w->free_reqs = r->next;
    } else {
        r = calloc(1, sizeof *r);
        if (r == NULL) {
            return NULL;
        }
        r->w = w;
        r->m = dkd_msg_new(w->srv->eng);
        if (r->m == NULL) {
            free(r);
            return NULL;
        }
        r->all_next = w->all_reqs;
        w->all_reqs = r;
    }
    r->c = c;
    r->id = id;
    r->streaming = r->ended = r->failed = r->in_lookup = r->dead = false;
    r->has_time = false;
    r->keys_pending = 0;
    r->nkeys = 0;
    r->bytes = 0;
    r->charged = 0;
    r->prev = NULL;
    r->next = c->reqs;
    if (c->reqs != NULL) {
        c->reqs->prev = r;
    }
    c->reqs = r;
    c->nreqs++;
    CNT_ADD(w, requests, 1);
    CNT_ADD(w, requests_inflight, 1);
    return r;
}

static void timer_remove(req *r)
{
    if (!r->timer_armed || r->timer_removing) {
        return;
    }
    struct io_uring_sqe *sqe = dkd__get_sqe(r->w);
    io_uring_prep_timeout_remove(sqe, ud_make(r, OP_TIMER), 0);
    io_uring_sqe_set_data64(sqe, 0);
    r->timer_removing = true;
}

/* dkd__req_release ends a request: its id is free again and its state goes back to the pool. */
void dkd__req_release(req *r)
{
    worker *w = r->w;
    conn *c = r->c;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        c->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    c->nreqs--;
    r->c = NULL;
    dkd_msg_reset(r->m);
    r->gen++;
    dkd__budget_give(w->srv, r->charged);
    r->charged = 0;
    CNT_SUB(w, requests_inflight, 1);
    if (r->timer_armed) {
        r->dead = true;
        timer_remove(r);
        return;
    }
    r->next = w->free_reqs;
    w->free_reqs = r;
}

static req *req_find(const conn *c, uint32_t id)
{
    for (req *r = c->reqs; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

/* ---- streams refused at VERIFY_BEGIN ---- */

static bool refused_has(const conn *c, uint32_t id)
{
    for (unsigned k = 0; k < c->nrefused; k++) {
        if (c->refused[k] == id) {
            return true;
        }
    }
    return false;
}

static void refused_remove(conn *c, uint32_t id)
{
    for (unsigned k = 0; k < c->nrefused; k++) {
        if (c->refused[k] == id) {
            c->refused[k] = c->refused[--c->nrefused];
            return;
        }
    }
}

/* refuse_stream answers a VERIFY_BEGIN with ERROR and remembers its id until its END,
 * so that the stream's later frames are discarded, not answered (PROTOCOL.md 4.4). A
 * client holding more refused streams than max_inflight is not following the text. */
static void refuse_stream(conn *c, uint32_t id, uint16_t code, const char *text)
{
    unsigned cap = c->w->srv->cfg.max_inflight;
    if (c->refused == NULL) {
        c->refused = malloc(cap * sizeof *c->refused);
    }
    if (c->refused == NULL || c->nrefused >= cap) {
        dkd__conn_fatal(c, LK_OVERLOADED, DKD__WIRE_E_OVERLOADED,
                        "too many refused streams without VERIFY_END");
        return;
    }
    c->refused[c->nrefused++] = id;
    dkd__send_error(c, id, code, text);
}

/* id_in_use: a request, or a refused stream waiting for its END, has this id. */
static bool id_in_use(const conn *c, uint32_t id)
{
    return req_find(c, id) != NULL || refused_has(c, id);
}

static uint16_t errcode_of_engine(int rc)
{
    switch (rc) {
    case DKD_ERR_TOO_LARGE:
    case DKD_ERR_NOMEM:
        return DKD__WIRE_E_TOO_LARGE;
    case DKD_ERR_SYNTAX:
        return DKD__WIRE_E_MALFORMED;
    default:
        return DKD__WIRE_E_INTERNAL;
    }
}

/*
 * req_fail answers a request with ERROR. A stream stays open in the failed state until
 * its END so its later BODY frames are ignored (PROTOCOL.md 4.4).
 */
static void req_fail(req *r, uint16_t code, const char *text)
{
    conn *c = r->c;
    dkd__send_error(c, r->id, code, text);
    if (r->streaming && !r->ended) {
        r->failed = true;
        dkd_msg_reset(r->m);
        r->gen++;
        timer_remove(r);
        dkd__budget_give(r->w->srv, r->charged);
        r->charged = 0;
        return;
    }
    dkd__req_release(r);
}

static void req_answer(req *r)
{
    worker *w = r->w;
    conn *c = r->c;
    int rc = dkd_msg_end(r->m);
    if (rc != 0) {
        dkd__wlog(w, LK_MESSAGE, DKD__LOG_WARNING, "request %u: %s", r->id, dkd_strerror(rc));
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    size_t n = 0;
    const dkd_sig_result *res = dkd_msg_results(r->m, &n);
    const char *authres = dkd_msg_authres(r->m, r->authserv);
    if (authres == NULL) {
        req_fail(r, DKD__WIRE_E_INTERNAL, "out of memory formatting Authentication-Results");
        return;
    }
    dkd__wire_sig sigs[16];
    dkd__wire_sig *sp = sigs;
    if (n > sizeof sigs / sizeof sigs[0]) {
        sp = malloc(n * sizeof *sp);
        if (sp == NULL) {
            req_fail(r, DKD__WIRE_E_INTERNAL, "out of memory encoding the result");
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        sp[i] = dkd__wire_sig_from_result(&res[i]);
    }
    dkd__wire_put_result(&c->pend, r->id, sp, n, dkd__span_str(authres));
    if (sp != sigs) {
        free(sp);
    }
    CNT_ADD(w, results, 1);
    CNT_ADD(w, signatures, n);
    dkd__req_release(r);
    conn_queued(c);
}

static void req_try_finish(req *r)
{
    if (r->ended && r->keys_pending == 0 && !r->failed && !r->in_lookup) {
        timer_remove(r);
        req_answer(r);
    }
}

/* key_apply hands a finished lookup's key to its request, or drops it if stale. */
static void key_apply(worker *w, lookup *lk, dkd_key *key)
{
    req *r = lk->r;
    uint32_t idx = lk->idx;
    bool live =
        lk->gen == r->gen && r->c != NULL && !r->failed && idx < r->nkeys && r->key_wait[idx];
    lk->next = w->free_lookups;
    w->free_lookups = lk;
    w->lookups_out--;
    if (!live) {
        dkd_key_unref(key);
        return;
    }
    r->key_wait[idx] = false;
    r->keys_pending--;
    dkd_msg_key_ready(r->m, idx, key);
    req_try_finish(r);
}

/* key_done is the key source's callback: on the owner thread apply now, else post. */
static void key_done(void *arg, dkd_key *key)
{
    lookup *lk = arg;
    worker *w = lk->w;
    if (dkd__tl_worker == w) {
        key_apply(w, lk, key);
        return;
    }
    lk->key = key;
    lookup *head = atomic_load_explicit(&w->done_stack, memory_order_relaxed);
    do {
        lk->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&w->done_stack, &head, lk, memory_order_release,
                                                    memory_order_relaxed));
    uint64_t one = 1;
    /* The eventfd counter cannot overflow in practice; a failed write only delays the
     * wake-up until the worker's next event, so it is not worth a retry loop. */
    ssize_t wr = write(w->efd, &one, sizeof one);
    (void)wr;
}

void dkd__drain_done_stack(worker *w)
{
    lookup *lk = atomic_exchange_explicit(&w->done_stack, NULL, memory_order_acquire);
    while (lk != NULL) {
        lookup *next = lk->next;
        key_apply(w, lk, lk->key);
        lk = next;
    }
}

/* req_start_lookups asks the key source for every key the message needs. */
static int req_start_lookups(req *r)
{
    worker *w = r->w;
    dkd__server *srv = w->srv;
    size_t n = dkd_msg_key_count(r->m);
    if (n > r->wait_cap) {
        bool *nw = realloc(r->key_wait, n * sizeof *nw);
        if (nw == NULL) {
            return DKD_ERR_NOMEM;
        }
        r->key_wait = nw;
        r->wait_cap = n;
    }
    r->nkeys = n;
    r->keys_pending = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        r->key_wait[i] = true;
    }
    r->in_lookup = true;
    uint32_t gen = r->gen;
    for (size_t i = 0; i < n && r->gen == gen; i++) {
        lookup *lk = w->free_lookups;
        if (lk != NULL) {
            w->free_lookups = lk->next;
        } else {
            lk = malloc(sizeof *lk);
            if (lk == NULL) {
                r->in_lookup = false;
                return DKD_ERR_NOMEM;
            }
        }
        *lk = (lookup){.w = w, .r = r, .gen = gen, .idx = (uint32_t)i};
        w->lookups_out++;
        CNT_ADD(w, key_lookups, 1);
        int rc = srv->src.lookup(srv->src.impl, dkd_msg_key_name(r->m, i), key_done, lk);
        if (rc < 0) {
            /* done will never be called: fail this key now. */
            dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_ERROR, "key lookup not started");
            if (k == NULL) {
                lk->next = w->free_lookups;
                w->free_lookups = lk;
                w->lookups_out--;
                r->in_lookup = false;
                return DKD_ERR_NOMEM;
            }
            key_apply(w, lk, k);
        }
    }
    r->in_lookup = false;
    if (r->keys_pending > 0 && srv->cfg.key_timeout_ms > 0 && !r->timer_armed) {
        r->ts.tv_sec = srv->cfg.key_timeout_ms / 1000;
        r->ts.tv_nsec = (long long)(srv->cfg.key_timeout_ms % 1000) * 1000000;
        struct io_uring_sqe *sqe = dkd__get_sqe(w);
        io_uring_prep_timeout(sqe, &r->ts, 0, 0);
        io_uring_sqe_set_data64(sqe, ud_make(r, OP_TIMER));
        r->timer_armed = true;
        r->timer_removing = false;
    }
    return 0;
}

/* expire_keys gives every key request r still waits for a failure of the given
 * reason, so that the verdict can be formed now. False when out of memory (then r has
 * been answered with ERROR). */
static bool expire_keys(req *r, enum dkd_reason reason, const char *why)
{
    for (size_t i = 0; i < r->nkeys; i++) {
        if (!r->key_wait[i]) {
            continue;
        }
        dkd_key *k = dkd_key_from_failure(reason, why);
        if (k == NULL) {
            req_fail(r, DKD__WIRE_E_INTERNAL, "out of memory");
            return false;
        }
        r->key_wait[i] = false;
        r->keys_pending--;
        dkd_msg_key_ready(r->m, i, k);
    }
    return true;
}

/* dkd__req_timer: a request's key deadline passed (or its timer was removed). */
void dkd__req_timer(worker *w, req *r, int res)
{
    r->timer_armed = false;
    r->timer_removing = false;
    if (r->dead) {
        r->dead = false;
        r->next = w->free_reqs;
        w->free_reqs = r;
        return;
    }
    if (res != -ETIME || r->c == NULL || r->failed || r->keys_pending == 0) {
        return;
    }
    /* The engine gets a dns-timeout key for every lookup still out; late answers are
     * dropped by key_apply because their slot is no longer waiting. */
    CNT_ADD(w, key_timeouts, 1);
    dkd__wlog(w, LK_MESSAGE, DKD__LOG_WARNING, "key lookup deadline (%u ms) passed",
              w->srv->cfg.key_timeout_ms);
    if (expire_keys(r, DKD_REASON_DNS_TIMEOUT, "key lookup deadline passed")) {
        req_try_finish(r);
    }
}

/*
 * dkd__conn_eof: the client shut down its side. What it sent in full is answered (its
 * keys may still be on their way); a stream it cannot finish now is dropped, and so is
 * a partial frame. The connection closes when the last answer has been sent.
 */
void dkd__conn_eof(conn *c)
{
    c->rx_eof = true;
    c->partial_since_ms = 0;
    c->nrefused = 0;
    req *next;
    for (req *r = c->reqs; r != NULL; r = next) {
        next = r->next;
        if (r->streaming && !r->ended) {
            dkd__req_release(r);
        }
    }
    dkd__conn_flush(c);
}

/*
 * dkd__conn_deadline: the shutdown timeout expired. Every request received in full gets
 * its verdict as it stands, keys not found yet counting as temperror (dns-timeout);
 * incomplete streams get ERROR 5; then ERROR 5 on id 0, and the close once it is sent.
 */
void dkd__conn_deadline(conn *c)
{
    c->draining = true;
    c->in_process = true; /* one send for all of it */
    req *next;
    for (req *r = c->reqs; r != NULL && !c->closing; r = next) {
        next = r->next;
        if (r->ended && !r->failed) {
            if (expire_keys(r, DKD_REASON_DNS_TIMEOUT, "server shutting down")) {
                timer_remove(r);
                req_try_finish(r);
            }
        } else {
            if (!r->failed) {
                dkd__send_error(c, r->id, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
            }
            if (!c->closing) {
                dkd__req_release(r);
            }
        }
    }
    c->in_process = false;
    if (!c->closing) {
        dkd__send_error(c, 0, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
    }
}

/* ---- frames ---- */

static void copy_opts(worker *w, req *r, const dkd__wire_verify_opts *o)
{
    const char *def = w->srv->authserv_id;
    if (o->has_authserv_id) {
        memcpy(r->authserv, o->authserv_id.ptr, o->authserv_id.len);
        r->authserv[o->authserv_id.len] = '\0';
    } else {
        /* Not snprintf: this runs once per request. The length was capped at start-up. */
        memcpy(r->authserv, def, w->srv->authserv_len);
        r->authserv[w->srv->authserv_len] = '\0';
    }
    r->has_time = o->has_time;
    r->time = o->time;
}

/* check_id refuses request_id 0 (closing the connection) and an id in use; true when
 * the id may open a request. */
static bool check_id(conn *c, uint32_t id)
{
    if (id == 0) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return false;
    }
    if (id_in_use(c, id)) {
        /* Also a stream answered early with ERROR: its id is busy until its END. */
        dkd__send_error(c, id, DKD__WIRE_E_PROTOCOL, "request_id is in use");
        return false;
    }
    return true;
}

/* refuse answers a request that may not open with ERROR; a stream is remembered so
 * that its BODY and END frames are discarded. */
static void refuse(conn *c, uint32_t id, bool stream, uint16_t code, const char *text)
{
    if (stream) {
        refuse_stream(c, id, code, text);
    } else {
        dkd__send_error(c, id, code, text);
    }
}

/*
 * admit checks an id and the limits before a new request opens. Returns true when the
 * request may proceed; otherwise the answer has been queued.
 */
static bool admit(conn *c, uint32_t id, bool stream, uint64_t charge)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    if (!check_id(c, id)) {
        return false;
    }
    if (atomic_load_explicit(&srv->stop, memory_order_relaxed) && c->draining) {
        refuse(c, id, stream, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
        return false;
    }
    if (c->nreqs >= srv->cfg.max_inflight) {
        dkd__wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "client pid %ld: over %u requests in flight",
                  (long)c->pid, srv->cfg.max_inflight);
        refuse(c, id, stream, DKD__WIRE_E_OVERLOADED, "too many requests in flight");
        return false;
    }
    if (!dkd__budget_take(srv, charge)) {
        dkd__wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "memory budget of %llu bytes exhausted",
                  (unsigned long long)srv->cfg.memory_budget);
        refuse(c, id, stream, DKD__WIRE_E_OVERLOADED, "server memory budget exhausted");
        return false;
    }
    return true;
}

/* begin_request opens request id for a message of len bytes whose header block is
 * hlen bytes long. NULL when refused (the answer has been queued). */
static req *begin_request(conn *c, uint32_t id, const dkd__wire_verify_opts *opts, bool whole,
                          uint64_t len, size_t hlen)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    uint64_t charge = (uint64_t)hlen + REQ_OVERHEAD;
    if (!admit(c, id, !whole, charge)) {
        return NULL;
    }
    req *r = req_get(w, c, id);
    if (r == NULL) {
        dkd__budget_give(srv, charge);
        refuse(c, id, !whole, DKD__WIRE_E_INTERNAL, "out of memory");
        return NULL;
    }
    r->charged = charge;
    r->streaming = !whole;
    r->last_frame_ms = w->now_ms;
    copy_opts(w, r, opts);
    if (len > srv->cfg.max_message_bytes || (!whole && len > srv->cfg.max_header_bytes)) {
        req_fail(r, DKD__WIRE_E_TOO_LARGE, "message over the size limit");
        return NULL;
    }
    r->bytes = len;
    return r;
}

/* feed_message hands the header block and, for a whole message, the body to the engine,
 * then starts the key lookups. */
static void feed_message(req *r, const uint8_t *hdr, size_t hlen, const uint8_t *body,
                         size_t body_len)
{
    dkd__tl_req = r;
    int rc = dkd_msg_begin(r->m, hdr, hlen);
    dkd__tl_req = NULL;
    if (rc == 0) {
        rc = req_start_lookups(r);
    }
    if (rc == 0 && body_len > 0) {
        rc = dkd_msg_body(r->m, body, body_len);
    }
    if (rc != 0) {
        dkd__wlog(r->w, LK_MESSAGE, DKD__LOG_INFO, "request %u: %s", r->id, dkd_strerror(rc));
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    r->ended = !r->streaming;
    req_try_finish(r);
}

/* open_verify handles VERIFY (whole message) and VERIFY_BEGIN (header block). */
static void open_verify(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    dkd__wire_verify v;
    if (dkd__wire_decode_verify(payload, &v) != 0) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY payload");
        return;
    }
    bool whole = h->type == DKD__WIRE_VERIFY;
    size_t hlen = whole ? dkd_split_message(v.data.ptr, v.data.len) : v.data.len;
    req *r = begin_request(c, h->request_id, &v.opts, whole, v.data.len, hlen);
    if (r != NULL) {
        feed_message(r, v.data.ptr, hlen, v.data.ptr + hlen, v.data.len - hlen);
    }
}

/* ---- the shared memory transport (PROTOCOL.md 4.9) ---- */

/* map_region maps a region the client passed, or says why it cannot. The seal against
 * shrinking is what makes reading it safe: a client that truncated a plain file under
 * our mapping would turn our next read into SIGBUS and take every connection down. */
static const char *map_region(int fd, uint64_t size, const uint8_t **out)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        return "the descriptor is not a memfd or regular file";
    }
    if ((uint64_t)st.st_size < size) {
        return "the region is smaller than SHM_ATTACH says";
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        return "the region is not sealed against shrinking (memfd with F_SEAL_SHRINK)";
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        return "the region cannot be mapped";
    }
    *out = p;
    return NULL;
}

static void shm_attach(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    uint64_t size = 0;
    /* The descriptor that came with this frame is ours to close whatever the answer. */
    int fd = c->passed_fd;
    c->passed_fd = -1;
    if (h->request_id == 0) {
        if (fd >= 0) {
            close(fd);
        }
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return;
    }
    if (dkd__wire_decode_shm_attach(payload, &size) != 0) {
        if (payload.len != 8) {
            if (fd >= 0) {
                close(fd);
            }
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed SHM_ATTACH");
            return;
        }
        /* Eight bytes fail to decode only as size 0: well framed, so it is refused on
         * its id like the other unusable regions. */
        size = 0;
    }
    uint16_t code = DKD__WIRE_E_MALFORMED;
    const char *why = NULL;
    const uint8_t *base = NULL;
    if (w->srv->cfg.max_shm_bytes == 0) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "shared memory is disabled in this server";
    } else if (id_in_use(c, h->request_id)) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "request_id is in use";
    } else if (c->shm != NULL) {
        code = DKD__WIRE_E_PROTOCOL;
        why = "a region is attached already";
    } else if (fd < 0) {
        why = "SHM_ATTACH without a file descriptor (SCM_RIGHTS)";
    } else if (size == 0) {
        why = "SHM_ATTACH of size 0";
    } else if (size > w->srv->cfg.max_shm_bytes || size > SIZE_MAX) {
        code = DKD__WIRE_E_TOO_LARGE;
        why = "region over max_shm_bytes";
    } else {
        why = map_region(fd, size, &base);
    }
    if (fd >= 0) {
        close(fd); /* the mapping keeps the memory */
    }
    if (why != NULL) {
        dkd__wlog(w, LK_MALFORMED, DKD__LOG_WARNING, "client pid %ld: SHM_ATTACH refused: %s",
                  (long)c->pid, why);
        dkd__send_error(c, h->request_id, code, why);
        return;
    }
    c->shm = base;
    c->shm_size = size;
    CNT_ADD(w, shm_attached, 1);
    dkd__wire_put_data(&c->pend, DKD__WIRE_SHM_ATTACH_OK, h->request_id, dkd__span(NULL, 0));
    conn_queued(c);
}

/* header_copy returns a worker buffer of at least n bytes, NULL if it cannot grow. */
static uint8_t *header_copy(worker *w, size_t n)
{
    if (n > w->hdr_copy_cap) {
        size_t cap = w->hdr_copy_cap ? w->hdr_copy_cap : 16384;
        while (cap < n) {
            cap *= 2;
        }
        uint8_t *p = realloc(w->hdr_copy, cap);
        if (p == NULL) {
            return NULL;
        }
        w->hdr_copy = p;
        w->hdr_copy_cap = cap;
    }
    return w->hdr_copy;
}

/*
 * verify_shm verifies bytes of the attached region in place. The client may write to
 * them while we read (by mistake or on purpose): the header block is copied first, since
 * its parser reads it more than once; the body goes to the canonicalizer, which reads
 * each byte within the chunk's bounds whatever it holds, so a changing body can only
 * change this request's verdict.
 */
static void verify_shm(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    dkd__wire_verify_shm v;
    if (dkd__wire_decode_verify_shm(payload, &v) != 0) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY_SHM payload");
        return;
    }
    if (c->shm == NULL) {
        dkd__send_error(c, h->request_id, DKD__WIRE_E_PROTOCOL, "VERIFY_SHM before SHM_ATTACH");
        return;
    }
    if (v.offset > c->shm_size || v.length > c->shm_size - v.offset) {
        dkd__send_error(c, h->request_id, DKD__WIRE_E_MALFORMED,
                        "VERIFY_SHM range outside the attached region");
        return;
    }
    const uint8_t *msg = c->shm + v.offset;
    size_t len = (size_t)v.length;
    size_t hlen = dkd_split_message(msg, len);
    req *r = begin_request(c, h->request_id, &v.opts, true, v.length, hlen);
    if (r == NULL) {
        return;
    }
    /* A block over the engine's limit is refused by dkd_msg_begin on its length alone,
     * unread, as for VERIFY; not copying it keeps the worker's copy buffer within
     * max_header_bytes. */
    const uint8_t *hdr = msg;
    if (hlen <= w->srv->cfg.max_header_bytes) {
        uint8_t *copy = header_copy(w, hlen);
        if (copy == NULL) {
            req_fail(r, DKD__WIRE_E_OVERLOADED, "no memory for the header block");
            return;
        }
        memcpy(copy, msg, hlen);
        hdr = copy;
    }
    CNT_ADD(w, shm_requests, 1);
    CNT_ADD(w, shm_bytes, len);
    feed_message(r, hdr, hlen, msg + hlen, len - hlen);
}

static void stream_body(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    req *r = req_find(c, h->request_id);
    if (r == NULL && refused_has(c, h->request_id)) {
        return; /* refused at VERIFY_BEGIN: discarded silently */
    }
    if (r == NULL || !r->streaming || r->ended) {
        dkd__send_error(c, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
        return;
    }
    r->last_frame_ms = w->now_ms;
    if (r->failed) {
        return;
    }
    r->bytes += payload.len;
    if (r->bytes > w->srv->cfg.max_message_bytes) {
        dkd__wlog(w, LK_TOO_LARGE, DKD__LOG_INFO,
                  "client pid %ld: streamed message over %llu bytes", (long)c->pid,
                  (unsigned long long)w->srv->cfg.max_message_bytes);
        req_fail(r, DKD__WIRE_E_TOO_LARGE, "message over the size limit");
        return;
    }
    int rc = dkd_msg_body(r->m, payload.ptr, payload.len);
    if (rc != 0) {
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
    }
}

static void stream_end(conn *c, const dkd__wire_header *h)
{
    req *r = req_find(c, h->request_id);
    if (r == NULL && refused_has(c, h->request_id)) {
        refused_remove(c, h->request_id); /* the id is free again */
        return;
    }
    if (r == NULL || !r->streaming || r->ended) {
        dkd__send_error(c, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
        return;
    }
    if (r->failed) {
        dkd__req_release(r);
        return;
    }
    r->ended = true;
    req_try_finish(r);
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

static void answer_stats(conn *c, uint32_t id)
{
    dkd__server_stats s;
    dkd__server_stats_get(c->w->srv, &s);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    dkd__wire_stat st[64];
    size_t n = 0;
    add_stat(st, &n, "connections", s.connections_open);
    add_stat(st, &n, "connections_total", s.connections_total);
    add_stat(st, &n, "connections_refused", s.connections_refused);
    add_stat(st, &n, "requests_served", s.results);
    add_stat(st, &n, "requests_received", s.requests);
    add_stat(st, &n, "requests_inflight", s.requests_inflight);
    add_stat(st, &n, "signatures", s.signatures);
    uint64_t errors = s.errors_malformed + s.errors_too_large + s.errors_overloaded +
                      s.errors_version + s.errors_shutdown + s.errors_message;
    add_stat(st, &n, "errors", errors);
    add_stat(st, &n, "errors.malformed", s.errors_malformed);
    add_stat(st, &n, "errors.too_large", s.errors_too_large);
    add_stat(st, &n, "errors.overloaded", s.errors_overloaded);
    add_stat(st, &n, "errors.version", s.errors_version);
    add_stat(st, &n, "errors.shutting_down", s.errors_shutdown);
    add_stat(st, &n, "errors.message", s.errors_message);
    add_stat(st, &n, "engine.key_lookups", s.key_lookups);
    add_stat(st, &n, "engine.key_timeouts", s.key_timeouts);
    add_stat(st, &n, "bytes_in", s.bytes_in);
    add_stat(st, &n, "bytes_out", s.bytes_out);
    add_stat(st, &n, "shm.attached", s.shm_attached);
    add_stat(st, &n, "shm.requests", s.shm_requests);
    add_stat(st, &n, "shm.bytes", s.shm_bytes);
    add_stat(st, &n, "memory_used", s.memory_used);
    add_stat(st, &n, "workers", c->w->srv->nworkers);
    add_stat(st, &n, "process.cpu_user_us",
             (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec);
    add_stat(st, &n, "process.cpu_system_us",
             (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec);
    add_stat(st, &n, "process.max_rss_kib", (uint64_t)ru.ru_maxrss);
    dkd__server *srv = c->w->srv;
    if (srv->cfg.extra_stats != NULL) {
        stat_ctx sc = {st, n, sizeof st / sizeof st[0]};
        srv->cfg.extra_stats(srv->cfg.extra_stats_arg, add_extra, &sc);
        n = sc.n;
    }
    dkd__wire_put_stats_reply(&c->pend, id, st, n);
    conn_queued(c);
}

static void hello(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    dkd__server *srv = c->w->srv;
    dkd__wire_hello m;
    if (c->hello_done) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "second HELLO");
        return;
    }
    if (h->request_id != 0) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "HELLO on a nonzero request_id");
        return;
    }
    if (dkd__wire_decode_hello(payload, &m) != 0) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed HELLO");
        return;
    }
    if (m.min_version > DKD__WIRE_VERSION || m.max_version < DKD__WIRE_VERSION) {
        dkd__conn_fatal(c, LK_VERSION, DKD__WIRE_E_VERSION, "no common protocol version");
        return;
    }
    c->hello_done = true;
    uint64_t max_msg = srv->cfg.max_message_bytes;
    dkd__wire_hello_ok ok = {
        .version = DKD__WIRE_VERSION,
        .max_frame = srv->max_frame,
        .max_message = max_msg,
        .max_header_block = (uint32_t)srv->cfg.max_header_bytes,
        .max_inflight = srv->cfg.max_inflight,
        .max_chunk = (uint32_t)srv->cfg.max_body_chunk,
        .server_name = dkd__span_str("dkimd"),
        .features = srv->cfg.max_shm_bytes > 0 ? DKD__WIRE_F_SHM : 0,
    };
    dkd__wire_put_hello_ok(&c->pend, 0, &ok);
    conn_queued(c);
}

/* on_frame dispatches one whole frame. The payload borrows the receive buffer. */
static void on_frame(conn *c, const dkd__wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    if (!c->hello_done && h->type != DKD__WIRE_HELLO) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "frame before HELLO");
        return;
    }
    if (c->fd_claim_next) {
        /* The frame cut short by the receive that brought a descriptor: it must be the
         * SHM_ATTACH the descriptor was sent with (PROTOCOL.md 4.9). */
        c->fd_claim_next = false;
        if (h->type != DKD__WIRE_SHM_ATTACH) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                            "file descriptor sent with a frame other than SHM_ATTACH");
            return;
        }
    }
    switch (h->type) {
    case DKD__WIRE_HELLO:
        hello(c, h, payload);
        break;
    case DKD__WIRE_VERIFY:
    case DKD__WIRE_VERIFY_BEGIN:
        open_verify(c, h, payload);
        break;
    case DKD__WIRE_VERIFY_BODY:
        if (payload.len > w->srv->cfg.max_body_chunk) {
            dkd__conn_fatal(c, LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE, "VERIFY_BODY over max_chunk");
            break;
        }
        stream_body(c, h, payload);
        break;
    case DKD__WIRE_VERIFY_END:
        if (payload.len != 0) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "VERIFY_END with a payload");
            break;
        }
        stream_end(c, h);
        break;
    case DKD__WIRE_SHM_ATTACH:
        shm_attach(c, h, payload);
        break;
    case DKD__WIRE_VERIFY_SHM:
        verify_shm(c, h, payload);
        break;
    case DKD__WIRE_STATS:
        if (payload.len != 0) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed STATS");
            break;
        }
        if (check_id(c, h->request_id)) {
            answer_stats(c, h->request_id);
        }
        break;
    case DKD__WIRE_PING:
        if (payload.len > DKD__WIRE_MAX_PING) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed PING");
            break;
        }
        if (check_id(c, h->request_id)) {
            dkd__wire_put_data(&c->pend, DKD__WIRE_PONG, h->request_id, payload);
            conn_queued(c);
        }
        break;
    default:
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, "unknown frame type");
        break;
    }
}

/*
 * dkd__conn_process splits and handles every whole frame in the receive buffer, then makes
 * sure the buffer can hold the rest of the partial frame, if any.
 *
 * Frames are handled where they lie and the answers of the whole batch go out in one
 * send. The partial frame at the end stays in place while the buffer has room for the
 * whole of it; it is moved to the front only when it would not fit (or it is a frame
 * header of a few bytes). (Stopping the recv at a large frame's end, so that the next
 * frame always starts at the front, was tried: it cost 0.27 more recvs per 200 KB
 * message than the few KB it saved moving.)
 */
void dkd__conn_process(conn *c)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    dkd_span in = dkd__span(c->rbuf + c->rpos, c->rlen - c->rpos);
    uint32_t need = 0;
    bool consumed = false;
    c->in_process = true;
    while (!c->close_after_send && !c->closing) {
        if (in.len > 0 && dkd__conn_out_queued(c) >= srv->out_share) {
            /* Its share of answers is waiting: the rest waits for the client to read
             * (on_send resumes), and so does the socket. */
            c->rx_paused = true;
            break;
        }
        uint32_t limit = c->hello_done ? srv->max_frame : DKD__WIRE_PRE_HELLO_MAX;
        /* HELLO always carries version 1; afterwards the negotiated one (also 1). */
        dkd__wire_header h;
        dkd_span payload;
        int rc = dkd__wire_frame_split(&in, DKD__WIRE_VERSION, limit, &h, &payload);
        if (rc == 0) {
            if (in.len >= DKD__WIRE_HEADER_LEN) {
                need = DKD__WIRE_HEADER_LEN + h.payload_len;
            }
            break;
        }
        if (rc == DKD__WIRE_ERR_VERSION) {
            dkd__conn_fatal(c, LK_VERSION, DKD__WIRE_E_VERSION, "unsupported frame version");
            break;
        }
        if (rc < 0) {
            dkd__conn_fatal(c, LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE, "frame over max_frame");
            break;
        }
        consumed = true;
        if (c->fd_fresh && in.len == 0 && c->passed_fd >= 0 && h.type != DKD__WIRE_SHM_ATTACH) {
            /* The kernel ends a receive right after the bytes a descriptor came with, so
             * the last frame of this receive is the one it was sent with. */
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                            "file descriptor sent with a frame other than SHM_ATTACH");
            break;
        }
        on_frame(c, &h, payload);
    }
    c->in_process = false;
    if (c->closing) {
        return;
    }
    if (c->fd_fresh && !c->close_after_send && !c->rx_paused) {
        /* Every frame of the receive that brought the descriptor has been handled and
         * none took it: it came with the partial frame left, which must be its
         * SHM_ATTACH. (A paused batch is judged when it resumes.) */
        c->fd_fresh = false;
        if (c->passed_fd >= 0 && in.len == 0) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                            "file descriptor sent with a frame other than SHM_ATTACH");
        } else if (c->passed_fd >= 0) {
            c->fd_claim_next = true;
        }
    }
    if (in.len == 0) {
        c->partial_since_ms = 0;
    } else if (consumed || c->partial_since_ms == 0) {
        c->partial_since_ms = w->now_ms; /* a new frame began in this receive */
    }
    /* One send for every answer this batch queued (a no-op if one is in flight). */
    dkd__conn_flush(c);
    if (c->closing) {
        return;
    }
    size_t used = (size_t)(in.ptr - c->rbuf);
    if (in.len == 0) {
        used = 0;
    } else if (need == 0 || used + need > c->rcap) {
        memmove(c->rbuf, in.ptr, in.len);
        used = 0;
    }
    c->rpos = used;
    c->rlen = used + in.len;
    if (need > c->rcap && c->rlen == c->rcap) {
        /* Grow with the bytes that actually arrive (doubling), not to the size the
         * header claims: a client announcing a 64 MiB frame and trickling it would
         * otherwise pin 64 MiB of the budget for the price of 12 bytes. */
        size_t want = c->rcap * 2 < need ? c->rcap * 2 : need;
        uint64_t extra = want - c->rcap;
        uint8_t *nb = NULL;
        if (dkd__budget_take(srv, extra)) {
            nb = realloc(c->rbuf, want);
            if (nb == NULL) {
                dkd__budget_give(srv, extra);
            }
        }
        if (nb == NULL) {
            dkd__wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "no memory for a %u-byte frame", need);
            dkd__conn_fatal(c, LK_OVERLOADED, DKD__WIRE_E_OVERLOADED, "no memory for this frame");
            return;
        }
        c->rbuf = nb;
        c->rcap = want;
        c->charged += extra;
    } else if (c->rcap > srv->cfg.max_body_chunk + DKD__WIRE_HEADER_LEN && c->rlen <= RBUF_BASE &&
               c->rpos + need <= RBUF_BASE) {
        /* A whole-message frame is done: give its memory back. A buffer that only grew
         * to the body chunk size is kept, or a client streaming chunks a little over
         * 64 KiB would make us reallocate on every frame. */
        uint8_t *nb = realloc(c->rbuf, RBUF_BASE);
        if (nb != NULL) {
            c->rbuf = nb;
            dkd__budget_give(srv, c->charged);
            c->charged = 0;
            c->rcap = RBUF_BASE;
        }
    }
}
