/*
 * session_wire_req.c - the request half of the dkimd protocol session: admission
 * (ids, limits, the memory budget, refused streams), the engine, key lookups and their
 * answers, the per-message key deadline, and the RESULT or ERROR that ends a request.
 * The frame half (session_wire.c) calls these; see session_wire.c for the session's
 * states and tokens.
 *
 * Workload: once per request; the common case, a whole VERIFY with cached keys, goes
 * from admission to a queued RESULT without allocating (requests are pooled per worker).
 */
#include "session_wire_int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t token_of(const req *r, unsigned key)
{
    return (uint64_t)r->index << 40 | (uint64_t)(r->gen & 0xffffff) << 16 | key;
}

/* req_of_token returns the live request a token names on s, or NULL; *key gets the key
 * index. */
static req *req_of_token(wire_sess *s, uint64_t token, unsigned *key)
{
    uint32_t index = (uint32_t)(token >> 40);
    wire_worker *ww = s->ww;
    if (index >= ww->ntable) {
        return NULL;
    }
    req *r = ww->table[index];
    if (r->s != s || (r->gen & 0xffffff) != ((token >> 16) & 0xffffff)) {
        return NULL;
    }
    *key = (unsigned)(token & 0xffff);
    return r;
}

/* ---- output ---- */

static void count_error(wire_sess *s, uint16_t code)
{
    dkd__counters *cnt = s->env.cnt;
    switch (code) {
    case DKD__WIRE_E_MALFORMED:
    case DKD__WIRE_E_PROTOCOL:
    case DKD__WIRE_E_UNKNOWN_REQUEST:
        DKD__CNT_ADD(cnt, errors_malformed, 1);
        break;
    case DKD__WIRE_E_TOO_LARGE:
        DKD__CNT_ADD(cnt, errors_too_large, 1);
        break;
    case DKD__WIRE_E_OVERLOADED:
        DKD__CNT_ADD(cnt, errors_overloaded, 1);
        break;
    case DKD__WIRE_E_VERSION:
        DKD__CNT_ADD(cnt, errors_version, 1);
        break;
    case DKD__WIRE_E_SHUTTING_DOWN:
        DKD__CNT_ADD(cnt, errors_shutdown, 1);
        break;
    default:
        DKD__CNT_ADD(cnt, errors_message, 1);
        break;
    }
}

/* dkd__ws_sess_close asks the transport to end the connection; the open requests end now, since
 * their answers could not be sent after the closing frame anyway. */
void dkd__ws_sess_close(wire_sess *s, enum dkd__close_mode mode)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    s->state = SESS_CLOSED;
    while (s->reqs != NULL) {
        dkd__ws_req_release(s->reqs);
    }
    s->env.close(s->env.ctx, mode);
}

/* dkd__ws_send_error queues an ERROR; on request_id 0 the connection closes once it is sent. */
void dkd__ws_send_error(wire_sess *s, uint32_t id, uint16_t code, const char *text)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    count_error(s, code);
    dkd__wire_put_error(s->env.out, id, code, dkd__span_str(text));
    if (id == 0) {
        dkd__ws_sess_close(s, DKD__CLOSE_AFTER_SEND);
    }
}

/* dkd__ws_fatal: ERROR on request_id 0, then close (PROTOCOL.md 3). */
void dkd__ws_fatal(wire_sess *s, enum dkd__log_kind kind, uint16_t code, const char *text)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    s->env.log(s->env.ctx, kind, DKD__LOG_WARNING, "client pid %ld uid %ld: %s; closing",
               (long)s->env.peer_pid, (long)s->env.peer_uid, text);
    dkd__ws_send_error(s, 0, code, text);
}

/* dkd__ws_maybe_finish closes a half-closed connection once its last request is answered. */
void dkd__ws_maybe_finish(wire_sess *s)
{
    if (s->state == SESS_RX_DONE && s->nreqs == 0) {
        dkd__ws_sess_close(s, DKD__CLOSE_AFTER_SEND);
    }
}

/* ---- requests ---- */

static req *req_get(wire_sess *s, uint32_t id)
{
    wire_worker *ww = s->ww;
    req *r = ww->free_reqs;
    if (r != NULL) {
        ww->free_reqs = r->next;
    } else {
        if (ww->ntable == ww->table_cap) {
            uint32_t cap = ww->table_cap ? ww->table_cap * 2 : 64;
            if (cap > (1u << 24)) {
                return NULL; /* the token has 24 bits for the index */
            }
            req **t = realloc(ww->table, cap * sizeof *t);
            if (t == NULL) {
                return NULL;
            }
            ww->table = t;
            ww->table_cap = cap;
        }
        r = calloc(1, sizeof *r);
        if (r == NULL) {
            return NULL;
        }
        r->m = dkd_msg_new(ww->eng);
        if (r->m == NULL) {
            free(r);
            return NULL;
        }
        r->index = ww->ntable;
        ww->table[ww->ntable++] = r;
    }
    r->s = s;
    r->id = id;
    r->state = REQ_WAITING;
    r->starting_lookups = false;
    r->has_time = false;
    r->timer = 0;
    r->keys_pending = 0;
    r->nkeys = 0;
    r->bytes = 0;
    r->charged = 0;
    r->prev = NULL;
    r->next = s->reqs;
    if (s->reqs != NULL) {
        s->reqs->prev = r;
    }
    s->reqs = r;
    s->nreqs++;
    DKD__CNT_ADD(s->env.cnt, requests, 1);
    DKD__CNT_ADD(s->env.cnt, requests_inflight, 1);
    return r;
}

static void timer_cancel(req *r)
{
    if (r->timer != 0) {
        r->s->env.timer_cancel(r->s->env.ctx, r->timer);
        r->timer = 0;
    }
}

/* dkd__ws_req_release ends a request: its id is free again and its state goes back to the pool. */
void dkd__ws_req_release(req *r)
{
    wire_sess *s = r->s;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        s->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    s->nreqs--;
    timer_cancel(r);
    r->s = NULL;
    dkd_msg_reset(r->m);
    r->gen++;
    s->env.budget_give(s->env.ctx, r->charged);
    r->charged = 0;
    DKD__CNT_SUB(s->env.cnt, requests_inflight, 1);
    r->next = s->ww->free_reqs;
    s->ww->free_reqs = r;
}

req *dkd__ws_req_find(const wire_sess *s, uint32_t id)
{
    for (req *r = s->reqs; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

/* ---- streams refused at VERIFY_BEGIN ---- */

bool dkd__ws_refused_has(const wire_sess *s, uint32_t id)
{
    for (unsigned k = 0; k < s->nrefused; k++) {
        if (s->refused[k] == id) {
            return true;
        }
    }
    return false;
}

void dkd__ws_refused_remove(wire_sess *s, uint32_t id)
{
    for (unsigned k = 0; k < s->nrefused; k++) {
        if (s->refused[k] == id) {
            s->refused[k] = s->refused[--s->nrefused];
            return;
        }
    }
}

/* refuse_stream answers a VERIFY_BEGIN with ERROR and remembers its id until its END,
 * so that the stream's later frames are discarded, not answered (PROTOCOL.md 4.4). A
 * client holding more refused streams than max_inflight is not following the text. */
static void refuse_stream(wire_sess *s, uint32_t id, uint16_t code, const char *text)
{
    unsigned cap = s->ww->cfg->max_inflight;
    if (s->refused == NULL) {
        s->refused = malloc(cap * sizeof *s->refused);
    }
    if (s->refused == NULL || s->nrefused >= cap) {
        dkd__ws_fatal(s, DKD__LK_OVERLOADED, DKD__WIRE_E_OVERLOADED,
                      "too many refused streams without VERIFY_END");
        return;
    }
    s->refused[s->nrefused++] = id;
    dkd__ws_send_error(s, id, code, text);
}

/* dkd__ws_id_in_use: a request, or a refused stream waiting for its END, has this id. */
bool dkd__ws_id_in_use(const wire_sess *s, uint32_t id)
{
    return dkd__ws_req_find(s, id) != NULL || dkd__ws_refused_has(s, id);
}

uint16_t dkd__ws_errcode_of_engine(int rc)
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
 * dkd__ws_req_fail answers a request with ERROR. A stream stays open in the failed state until
 * its END so its later BODY frames are ignored (PROTOCOL.md 4.4).
 */
void dkd__ws_req_fail(req *r, uint16_t code, const char *text)
{
    wire_sess *s = r->s;
    dkd__ws_send_error(s, r->id, code, text);
    if (r->s == NULL) {
        return; /* the error closed the connection and released every request */
    }
    if (r->state == REQ_STREAMING) {
        r->state = REQ_FAILED;
        dkd_msg_reset(r->m);
        r->gen++;
        timer_cancel(r);
        s->env.budget_give(s->env.ctx, r->charged);
        r->charged = 0;
        return;
    }
    dkd__ws_req_release(r);
    dkd__ws_maybe_finish(s);
}

static void req_answer(req *r)
{
    wire_sess *s = r->s;
    int rc = dkd_msg_end(r->m);
    if (rc != 0) {
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING, "request %u: %s", r->id,
                   dkd_strerror(rc));
        dkd__ws_req_fail(r, dkd__ws_errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    size_t n = 0;
    const dkd_sig_result *res = dkd_msg_results(r->m, &n);
    const char *authres = dkd_msg_authres(r->m, r->authserv);
    if (authres == NULL) {
        dkd__ws_req_fail(r, DKD__WIRE_E_INTERNAL,
                         "out of memory formatting Authentication-Results");
        return;
    }
    dkd__wire_sig sigs[16];
    dkd__wire_sig *sp = sigs;
    if (n > sizeof sigs / sizeof sigs[0]) {
        sp = malloc(n * sizeof *sp);
        if (sp == NULL) {
            dkd__ws_req_fail(r, DKD__WIRE_E_INTERNAL, "out of memory encoding the result");
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        sp[i] = dkd__wire_sig_from_result(&res[i]);
    }
    dkd__wire_put_result(s->env.out, r->id, sp, n, dkd__span_str(authres));
    if (sp != sigs) {
        free(sp);
    }
    DKD__CNT_ADD(s->env.cnt, results, 1);
    DKD__CNT_ADD(s->env.cnt, signatures, n);
    dkd__ws_req_release(r);
    dkd__ws_maybe_finish(s);
}

void dkd__ws_req_try_finish(req *r)
{
    if (r->state == REQ_WAITING && r->keys_pending == 0 && !r->starting_lookups) {
        req_answer(r);
    }
}

/* ops->key: a lookup's answer, applied to its request or dropped if stale. */
void dkd__ws_sess_key(void *sp, uint64_t token, dkd_key *key)
{
    wire_sess *s = sp;
    unsigned idx = 0;
    req *r = req_of_token(s, token, &idx);
    if (r == NULL || r->state == REQ_FAILED || idx >= r->nkeys || !r->key_wait[idx]) {
        dkd_key_unref(key);
        return;
    }
    r->key_wait[idx] = false;
    r->keys_pending--;
    dkd_msg_key_ready(r->m, idx, key);
    dkd__ws_req_try_finish(r);
}

/* start_lookups asks for every key the message needs. */
static int start_lookups(req *r)
{
    wire_sess *s = r->s;
    size_t n = dkd_msg_key_count(r->m);
    if (n >= KEY_NONE) {
        return DKD_ERR_TOO_LARGE; /* the token has 16 bits for the key */
    }
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
    r->starting_lookups = true;
    uint32_t gen = r->gen;
    for (size_t i = 0; i < n && r->gen == gen; i++) {
        DKD__CNT_ADD(s->env.cnt, key_lookups, 1);
        if (s->env.lookup(s->env.ctx, token_of(r, (unsigned)i), dkd_msg_key_name(r->m, i)) < 0) {
            /* No answer will come: fail this key now. */
            dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_ERROR, "key lookup not started");
            if (k == NULL) {
                r->starting_lookups = false;
                return DKD_ERR_NOMEM;
            }
            dkd__ws_sess_key(s, token_of(r, (unsigned)i), k);
        }
    }
    r->starting_lookups = false;
    unsigned ms = s->ww->cfg->key_timeout_ms;
    if (r->keys_pending > 0 && ms > 0 && r->timer == 0) {
        r->timer = s->env.timer_arm(s->env.ctx, token_of(r, KEY_NONE), ms);
    }
    return 0;
}

/* dkd__ws_expire_keys gives every key request r still waits for a failure of the given
 * reason, so that the verdict can be formed now. False when out of memory (then r has
 * been answered with ERROR). */
bool dkd__ws_expire_keys(req *r, enum dkd_reason reason, const char *why)
{
    for (size_t i = 0; i < r->nkeys; i++) {
        if (!r->key_wait[i]) {
            continue;
        }
        dkd_key *k = dkd_key_from_failure(reason, why);
        if (k == NULL) {
            dkd__ws_req_fail(r, DKD__WIRE_E_INTERNAL, "out of memory");
            return false;
        }
        r->key_wait[i] = false;
        r->keys_pending--;
        dkd_msg_key_ready(r->m, i, k);
    }
    return true;
}

/* ops->timer: a request's key deadline passed. The engine gets a dns-timeout key for
 * every lookup still out; late answers are dropped because their slot no longer waits. */
void dkd__ws_sess_timer(void *sp, uint64_t token)
{
    wire_sess *s = sp;
    unsigned idx = 0;
    req *r = req_of_token(s, token, &idx);
    if (r == NULL || idx != KEY_NONE) {
        return;
    }
    r->timer = 0;
    if (r->state == REQ_FAILED || r->keys_pending == 0) {
        return;
    }
    DKD__CNT_ADD(s->env.cnt, key_timeouts, 1);
    s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING, "key lookup deadline (%u ms) passed",
               s->ww->cfg->key_timeout_ms);
    if (dkd__ws_expire_keys(r, DKD_REASON_DNS_TIMEOUT, "key lookup deadline passed")) {
        dkd__ws_req_try_finish(r);
    }
}

static void copy_opts(wire_sess *s, req *r, const dkd__wire_verify_opts *o)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    if (o->has_authserv_id) {
        memcpy(r->authserv, o->authserv_id.ptr, o->authserv_id.len);
        r->authserv[o->authserv_id.len] = '\0';
    } else {
        /* Not snprintf: this runs once per request. The length was capped at start-up. */
        memcpy(r->authserv, cfg->authserv_id, cfg->authserv_len);
        r->authserv[cfg->authserv_len] = '\0';
    }
    r->has_time = o->has_time;
    r->time = o->time;
}

/* dkd__ws_check_id refuses request_id 0 (closing the connection) and an id in use; true when
 * the id may open a request. */
bool dkd__ws_check_id(wire_sess *s, uint32_t id)
{
    if (id == 0) {
        dkd__ws_fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return false;
    }
    if (dkd__ws_id_in_use(s, id)) {
        /* Also a stream answered early with ERROR: its id is busy until its END. */
        dkd__ws_send_error(s, id, DKD__WIRE_E_PROTOCOL, "request_id is in use");
        return false;
    }
    return true;
}

/* refuse answers a request that may not open with ERROR; a stream is remembered so
 * that its BODY and END frames are discarded. */
static void refuse(wire_sess *s, uint32_t id, bool stream, uint16_t code, const char *text)
{
    if (stream) {
        refuse_stream(s, id, code, text);
    } else {
        dkd__ws_send_error(s, id, code, text);
    }
}

/*
 * admit checks an id and the limits before a new request opens. Returns true when the
 * request may proceed; otherwise the answer has been queued.
 */
static bool admit(wire_sess *s, uint32_t id, bool stream, uint64_t charge)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    if (!dkd__ws_check_id(s, id)) {
        return false;
    }
    if (s->state == SESS_DRAINING) {
        refuse(s, id, stream, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
        return false;
    }
    if (s->nreqs >= cfg->max_inflight) {
        s->env.log(s->env.ctx, DKD__LK_OVERLOADED, DKD__LOG_WARNING,
                   "client pid %ld: over %u requests in flight", (long)s->env.peer_pid,
                   cfg->max_inflight);
        refuse(s, id, stream, DKD__WIRE_E_OVERLOADED, "too many requests in flight");
        return false;
    }
    if (!s->env.budget_take(s->env.ctx, charge)) {
        s->env.log(s->env.ctx, DKD__LK_OVERLOADED, DKD__LOG_WARNING, "memory budget exhausted");
        refuse(s, id, stream, DKD__WIRE_E_OVERLOADED, "server memory budget exhausted");
        return false;
    }
    return true;
}

/* dkd__ws_begin_request opens request id for a message of len bytes whose header block is
 * hlen bytes long. NULL when refused (the answer has been queued). */
req *dkd__ws_begin_request(wire_sess *s, uint32_t id, const dkd__wire_verify_opts *opts, bool whole,
                           uint64_t len, size_t hlen)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    uint64_t charge = (uint64_t)hlen + REQ_OVERHEAD;
    if (!admit(s, id, !whole, charge)) {
        return NULL;
    }
    req *r = req_get(s, id);
    if (r == NULL) {
        s->env.budget_give(s->env.ctx, charge);
        refuse(s, id, !whole, DKD__WIRE_E_INTERNAL, "out of memory");
        return NULL;
    }
    r->charged = charge;
    r->state = whole ? REQ_WAITING : REQ_STREAMING;
    r->last_frame_ms = s->env.now_ms(s->env.ctx);
    copy_opts(s, r, opts);
    if (len > cfg->max_message_bytes || (!whole && len > cfg->max_header_bytes)) {
        dkd__ws_req_fail(r, DKD__WIRE_E_TOO_LARGE, "message over the size limit");
        return NULL;
    }
    r->bytes = len;
    return r;
}

/* dkd__ws_feed_message hands the header block and, for a whole message, the body to the engine,
 * then starts the key lookups. */
void dkd__ws_feed_message(req *r, const uint8_t *hdr, size_t hlen, const uint8_t *body,
                          size_t body_len)
{
    wire_sess *s = r->s;
    int64_t now = r->has_time ? r->time : s->env.unix_time(s->env.ctx);
    int rc = dkd_msg_begin(r->m, hdr, hlen, now);
    if (rc == 0) {
        rc = start_lookups(r);
    }
    if (rc == 0 && body_len > 0) {
        rc = dkd_msg_body(r->m, body, body_len);
    }
    if (rc != 0) {
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_INFO, "request %u: %s", r->id,
                   dkd_strerror(rc));
        dkd__ws_req_fail(r, dkd__ws_errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    dkd__ws_req_try_finish(r);
}
