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
#include "session_wire.h"

#include <stdlib.h>
#include <string.h>

enum {
    REQ_OVERHEAD = 8192, /* budget charge per request besides its header block */
    KEY_NONE = 0xffff,   /* the key index of a timer token */
};

enum sess_state {
    SESS_HELLO,    /* connected; only HELLO is valid */
    SESS_OPEN,     /* HELLO answered */
    SESS_RX_DONE,  /* the client shut down its side: answer what is whole, then close */
    SESS_DRAINING, /* shutdown: the last frames are read; ERROR 5 for new requests */
    SESS_CLOSED,   /* asked the transport to close: nothing more is done */
};

enum req_state {
    REQ_STREAMING, /* VERIFY_BEGIN seen; body chunks and VERIFY_END to come */
    REQ_WAITING,   /* the whole message is in; keys outstanding */
    REQ_FAILED,    /* a stream answered with ERROR before its END: swallow up to END */
};

typedef struct wire_sess wire_sess;
typedef struct req req;

struct req {
    req *next, *prev; /* in the session's list; next alone on the free list */
    wire_sess *s;
    dkd_msg *m;
    uint32_t index; /* in the worker's table */
    uint32_t gen;   /* bumped on release: stale lookups and timers see the change */
    uint32_t id;
    enum req_state state;
    bool starting_lookups; /* a synchronous key answer must not finish it under us */
    bool has_time;
    int64_t time;
    int64_t last_frame_ms; /* a stream's latest frame: the stall timeout bounds the gap */
    uint64_t timer;        /* the key deadline's handle; 0 = none */
    unsigned keys_pending;
    size_t nkeys;
    size_t wait_cap;
    bool *key_wait;   /* key_wait[i]: key i not delivered yet */
    uint64_t bytes;   /* header block + body so far */
    uint64_t charged; /* bytes charged to the memory budget */
    char authserv[DKD__WIRE_MAX_AUTHSERV + 1];
};

typedef struct wire_worker {
    const dkd__wire_cfg *cfg;
    dkd_engine *eng;
    req *free_reqs;
    req **table; /* every request the worker made, by index */
    uint32_t ntable, table_cap;
    /* VERIFY_SHM header blocks are copied here before parsing: the client can write to
     * the region while we read it, and the header parser makes several passes. */
    uint8_t *hdr_copy;
    size_t hdr_copy_cap;
} wire_worker;

struct wire_sess {
    wire_worker *ww;
    dkd__sess_env env;
    enum sess_state state;
    int64_t opened_ms;
    req *reqs;
    unsigned nreqs;
    /* Streams refused at VERIFY_BEGIN whose END has not arrived: their BODY and END are
     * discarded and their ids stay in use (PROTOCOL.md 4.4). At most max_inflight. */
    uint32_t *refused;
    unsigned nrefused;
    int passed_fd;      /* received and not yet claimed by an SHM_ATTACH; -1 = none */
    bool fd_fresh;      /* the input being handled brought passed_fd */
    bool fd_claim_next; /* the next whole frame must be the SHM_ATTACH it came with */
    const uint8_t *shm; /* the attached region (read-only), NULL = none */
    uint64_t shm_size;
};

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

static void req_release(req *r);

/* sess_close asks the transport to end the connection; the open requests end now, since
 * their answers could not be sent after the closing frame anyway. */
static void sess_close(wire_sess *s, enum dkd__close_mode mode)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    s->state = SESS_CLOSED;
    while (s->reqs != NULL) {
        req_release(s->reqs);
    }
    s->env.close(s->env.ctx, mode);
}

/* send_error queues an ERROR; on request_id 0 the connection closes once it is sent. */
static void send_error(wire_sess *s, uint32_t id, uint16_t code, const char *text)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    count_error(s, code);
    dkd__wire_put_error(s->env.out, id, code, dkd__span_str(text));
    if (id == 0) {
        sess_close(s, DKD__CLOSE_AFTER_SEND);
    }
}

/* fatal: ERROR on request_id 0, then close (PROTOCOL.md 3). */
static void fatal(wire_sess *s, enum dkd__log_kind kind, uint16_t code, const char *text)
{
    if (s->state == SESS_CLOSED) {
        return;
    }
    s->env.log(s->env.ctx, kind, DKD__LOG_WARNING, "client pid %ld uid %ld: %s; closing",
               (long)s->env.peer_pid, (long)s->env.peer_uid, text);
    send_error(s, 0, code, text);
}

/* maybe_finish closes a half-closed connection once its last request is answered. */
static void maybe_finish(wire_sess *s)
{
    if (s->state == SESS_RX_DONE && s->nreqs == 0) {
        sess_close(s, DKD__CLOSE_AFTER_SEND);
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

/* req_release ends a request: its id is free again and its state goes back to the pool. */
static void req_release(req *r)
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

static req *req_find(const wire_sess *s, uint32_t id)
{
    for (req *r = s->reqs; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

/* ---- streams refused at VERIFY_BEGIN ---- */

static bool refused_has(const wire_sess *s, uint32_t id)
{
    for (unsigned k = 0; k < s->nrefused; k++) {
        if (s->refused[k] == id) {
            return true;
        }
    }
    return false;
}

static void refused_remove(wire_sess *s, uint32_t id)
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
        fatal(s, DKD__LK_OVERLOADED, DKD__WIRE_E_OVERLOADED,
              "too many refused streams without VERIFY_END");
        return;
    }
    s->refused[s->nrefused++] = id;
    send_error(s, id, code, text);
}

/* id_in_use: a request, or a refused stream waiting for its END, has this id. */
static bool id_in_use(const wire_sess *s, uint32_t id)
{
    return req_find(s, id) != NULL || refused_has(s, id);
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
    wire_sess *s = r->s;
    send_error(s, r->id, code, text);
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
    req_release(r);
    maybe_finish(s);
}

static void req_answer(req *r)
{
    wire_sess *s = r->s;
    int rc = dkd_msg_end(r->m);
    if (rc != 0) {
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING, "request %u: %s", r->id,
                   dkd_strerror(rc));
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
    dkd__wire_put_result(s->env.out, r->id, sp, n, dkd__span_str(authres));
    if (sp != sigs) {
        free(sp);
    }
    DKD__CNT_ADD(s->env.cnt, results, 1);
    DKD__CNT_ADD(s->env.cnt, signatures, n);
    req_release(r);
    maybe_finish(s);
}

static void req_try_finish(req *r)
{
    if (r->state == REQ_WAITING && r->keys_pending == 0 && !r->starting_lookups) {
        req_answer(r);
    }
}

/* ops->key: a lookup's answer, applied to its request or dropped if stale. */
static void sess_key(void *sp, uint64_t token, dkd_key *key)
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
    req_try_finish(r);
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
            sess_key(s, token_of(r, (unsigned)i), k);
        }
    }
    r->starting_lookups = false;
    unsigned ms = s->ww->cfg->key_timeout_ms;
    if (r->keys_pending > 0 && ms > 0 && r->timer == 0) {
        r->timer = s->env.timer_arm(s->env.ctx, token_of(r, KEY_NONE), ms);
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

/* ops->timer: a request's key deadline passed. The engine gets a dns-timeout key for
 * every lookup still out; late answers are dropped because their slot no longer waits. */
static void sess_timer(void *sp, uint64_t token)
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
    if (expire_keys(r, DKD_REASON_DNS_TIMEOUT, "key lookup deadline passed")) {
        req_try_finish(r);
    }
}

/* ---- frames ---- */

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

/* check_id refuses request_id 0 (closing the connection) and an id in use; true when
 * the id may open a request. */
static bool check_id(wire_sess *s, uint32_t id)
{
    if (id == 0) {
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return false;
    }
    if (id_in_use(s, id)) {
        /* Also a stream answered early with ERROR: its id is busy until its END. */
        send_error(s, id, DKD__WIRE_E_PROTOCOL, "request_id is in use");
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
        send_error(s, id, code, text);
    }
}

/*
 * admit checks an id and the limits before a new request opens. Returns true when the
 * request may proceed; otherwise the answer has been queued.
 */
static bool admit(wire_sess *s, uint32_t id, bool stream, uint64_t charge)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    if (!check_id(s, id)) {
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

/* begin_request opens request id for a message of len bytes whose header block is
 * hlen bytes long. NULL when refused (the answer has been queued). */
static req *begin_request(wire_sess *s, uint32_t id, const dkd__wire_verify_opts *opts, bool whole,
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
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    req_try_finish(r);
}

/* open_verify handles VERIFY (whole message) and VERIFY_BEGIN (header block). */
static void open_verify(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    dkd__wire_verify v;
    if (dkd__wire_decode_verify(payload, &v) != 0) {
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY payload");
        return;
    }
    bool whole = h->type == DKD__WIRE_VERIFY;
    size_t hlen = whole ? dkd_split_message(v.data.ptr, v.data.len) : v.data.len;
    req *r = begin_request(s, h->request_id, &v.opts, whole, v.data.len, hlen);
    if (r != NULL) {
        feed_message(r, v.data.ptr, hlen, v.data.ptr + hlen, v.data.len - hlen);
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return;
    }
    if (dkd__wire_decode_shm_attach(payload, &size) != 0) {
        if (payload.len != 8) {
            if (fd >= 0) {
                s->env.close_fd(s->env.ctx, fd);
            }
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed SHM_ATTACH");
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
    } else if (id_in_use(s, h->request_id)) {
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
        send_error(s, h->request_id, code, why);
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed VERIFY_SHM payload");
        return;
    }
    if (s->shm == NULL) {
        send_error(s, h->request_id, DKD__WIRE_E_PROTOCOL, "VERIFY_SHM before SHM_ATTACH");
        return;
    }
    if (v.offset > s->shm_size || v.length > s->shm_size - v.offset) {
        send_error(s, h->request_id, DKD__WIRE_E_MALFORMED,
                   "VERIFY_SHM range outside the attached region");
        return;
    }
    const uint8_t *msg = s->shm + v.offset;
    size_t len = (size_t)v.length;
    size_t hlen = dkd_split_message(msg, len);
    req *r = begin_request(s, h->request_id, &v.opts, true, v.length, hlen);
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
            req_fail(r, DKD__WIRE_E_OVERLOADED, "no memory for the header block");
            return;
        }
        memcpy(copy, msg, hlen);
        hdr = copy;
    }
    DKD__CNT_ADD(s->env.cnt, shm_requests, 1);
    DKD__CNT_ADD(s->env.cnt, shm_bytes, len);
    feed_message(r, hdr, hlen, msg + hlen, len - hlen);
}

static void stream_body(wire_sess *s, const dkd__wire_header *h, dkd_span payload)
{
    const dkd__wire_cfg *cfg = s->ww->cfg;
    req *r = req_find(s, h->request_id);
    if (r == NULL && refused_has(s, h->request_id)) {
        return; /* refused at VERIFY_BEGIN: discarded silently */
    }
    if (r == NULL || r->state == REQ_WAITING) {
        send_error(s, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
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
        req_fail(r, DKD__WIRE_E_TOO_LARGE, "message over the size limit");
        return;
    }
    int rc = dkd_msg_body(r->m, payload.ptr, payload.len);
    if (rc != 0) {
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
    }
}

static void stream_end(wire_sess *s, const dkd__wire_header *h)
{
    req *r = req_find(s, h->request_id);
    if (r == NULL && refused_has(s, h->request_id)) {
        refused_remove(s, h->request_id); /* the id is free again */
        return;
    }
    if (r == NULL || r->state == REQ_WAITING) {
        send_error(s, h->request_id, DKD__WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
        return;
    }
    if (r->state == REQ_FAILED) {
        req_release(r);
        maybe_finish(s);
        return;
    }
    r->state = REQ_WAITING;
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "second HELLO");
        return;
    }
    if (h->request_id != 0) {
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "HELLO on a nonzero request_id");
        return;
    }
    if (dkd__wire_decode_hello(payload, &m) != 0) {
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed HELLO");
        return;
    }
    if (m.min_version > DKD__WIRE_VERSION || m.max_version < DKD__WIRE_VERSION) {
        fatal(s, DKD__LK_VERSION, DKD__WIRE_E_VERSION, "no common protocol version");
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "frame before HELLO");
        return;
    }
    if (s->fd_claim_next) {
        /* The frame cut short by the input that brought a descriptor: it must be the
         * SHM_ATTACH the descriptor was sent with (PROTOCOL.md 4.9). */
        s->fd_claim_next = false;
        if (h->type != DKD__WIRE_SHM_ATTACH) {
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
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
            fatal(s, DKD__LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE, "VERIFY_BODY over max_chunk");
            break;
        }
        stream_body(s, h, payload);
        break;
    case DKD__WIRE_VERIFY_END:
        if (payload.len != 0) {
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "VERIFY_END with a payload");
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
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed STATS");
            break;
        }
        if (check_id(s, h->request_id)) {
            answer_stats(s, h->request_id);
        }
        break;
    case DKD__WIRE_PING:
        if (payload.len > DKD__WIRE_MAX_PING) {
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "malformed PING");
            break;
        }
        if (check_id(s, h->request_id)) {
            dkd__wire_put_data(s->env.out, DKD__WIRE_PONG, h->request_id, payload);
        }
        break;
    default:
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "unknown frame type");
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL, "more than one file descriptor passed");
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
            fatal(s, DKD__LK_VERSION, DKD__WIRE_E_VERSION, "unsupported frame version");
            break;
        }
        if (rc < 0) {
            fatal(s, DKD__LK_TOO_LARGE, DKD__WIRE_E_TOO_LARGE, "frame over max_frame");
            break;
        }
        if (s->fd_fresh && in.len == 0 && s->passed_fd >= 0 && h.type != DKD__WIRE_SHM_ATTACH) {
            /* The kernel ends a receive right after the bytes a descriptor came with, so
             * the last frame of this input is the one it was sent with. */
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
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
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
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
        sess_close(s, DKD__CLOSE_AFTER_SEND);
        return;
    }
    s->state = SESS_RX_DONE;
    s->nrefused = 0;
    req *next;
    for (req *r = s->reqs; r != NULL; r = next) {
        next = r->next;
        if (r->state != REQ_WAITING) {
            req_release(r);
        }
    }
    maybe_finish(s);
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
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED,
              "frame not completed within stall-timeout");
        return;
    }
    if (s->state == SESS_HELLO && s->opened_ms <= limit_ms) {
        fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED, "no HELLO within stall-timeout");
        return;
    }
    for (req *r = s->reqs; r != NULL; r = r->next) {
        if (r->state == REQ_STREAMING && r->last_frame_ms <= limit_ms) {
            fatal(s, DKD__LK_MALFORMED, DKD__WIRE_E_MALFORMED,
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
            if (expire_keys(r, DKD_REASON_DNS_TIMEOUT, "server shutting down")) {
                req_try_finish(r);
            }
            continue;
        }
        if (r->state == REQ_STREAMING) {
            send_error(s, r->id, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
        }
        if (s->state != SESS_CLOSED) {
            req_release(r);
        }
    }
    send_error(s, 0, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
}

/* ---- life ---- */

static void *sess_worker_new(const void *cfg, dkd_engine *eng)
{
    wire_worker *ww = calloc(1, sizeof *ww);
    if (ww == NULL) {
        abort(); /* set-up: out of memory at start is fatal */
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
        req_release(s->reqs);
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
    .key = sess_key,
    .timer = sess_timer,
    .eof = sess_eof,
    .tick = sess_tick,
    .drain = sess_drain,
    .close = sess_free,
    .refuse = sess_refuse,
};
