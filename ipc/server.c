/*
 * server.c - the dkimd worker pool: N threads, each with its own io_uring ring, serving
 * the framed protocol of ipc/PROTOCOL.md on one listening Unix stream socket.
 *
 * Workload: a few MTA processes keep long-lived connections and pipeline many small
 * messages (tens of KiB) on each, with the occasional multi-megabyte message streamed in
 * chunks. The hot path is recv -> split frames -> dkd_msg_begin/body/end -> encode RESULT
 * -> send, all on one thread with no lock: a connection lives on the worker that
 * accepted it, and so do its requests, their dkd_msg states and their output.
 *
 * Accept: every worker keeps a multishot accept on the same listening socket and the
 * kernel hands each connection to one of them (SO_REUSEPORT does not exist for Unix
 * sockets, and a dedicated acceptor thread would add a hop and a hand-off). Kernels
 * without multishot accept get single-shot accepts re-armed after each completion.
 *
 * Receive: one plain recv per connection into a per-connection buffer. Provided buffer
 * rings would save memory on idle connections, but every frame that straddles two
 * buffers would then have to be copied out anyway; the buffer is 64 KiB and grows only
 * for a frame that needs it (a whole-message VERIFY), charged to the memory budget, and
 * shrinks back once that frame is done.
 *
 * Key lookups: the key source may answer synchronously (the zone file) or later from
 * another thread (the resolver). A later answer is pushed on the owning worker's
 * lock-free completion stack and the worker is woken through an eventfd read that sits
 * in its ring, so the worker never blocks. Each lookup carries the request's generation:
 * an answer for a request that has gone (client left, deadline passed) is dropped.
 *
 * Lifetimes: a connection is freed only when no SQE refers to it (ops == 0); a request
 * goes back to the worker's pool only when its deadline timer is no longer in the ring.
 */
#include "server.h"

#include <errno.h>
#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

/* ---- user_data: a pointer (8-byte aligned) with the operation in its low 3 bits ---- */

enum op {
    OP_NONE = 0, /* cancels and timer removals: nothing to do on completion */
    OP_ACCEPT = 1,
    OP_RECV = 2,
    OP_SEND = 3,
    OP_EVENT = 4, /* eventfd read: cross-thread wake-up */
    OP_TIMER = 5, /* a request's key deadline */
    OP_TICK = 6,  /* the worker's drain tick during shutdown */
    OP_SWEEP = 7, /* the worker's once-a-second check for stalled clients */
};

static uint64_t ud_make(void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

static void *ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ~(uint64_t)7);
}

enum {
    RBUF_BASE = 64 * 1024,       /* receive buffer of every connection */
    SEND_HIGH_WATER = 4u << 20,  /* stop reading a client that does not read its answers */
    RING_ENTRIES = 1024,
    REQ_OVERHEAD = 8192,         /* budget charge per request besides its header block */
    TICK_MS = 20,
};

/* Problems that are logged; each kind at most once per second per worker. */
enum log_kind {
    LK_MALFORMED,
    LK_VERSION,
    LK_TOO_LARGE,
    LK_OVERLOADED,
    LK_REFUSED,
    LK_MESSAGE,
    LK_SYSTEM,
    LK__COUNT,
};

/* Per-worker counters: written by the owner only, read by any thread (relaxed). */
typedef struct counters {
    _Atomic uint64_t connections_total, connections_open, connections_refused;
    _Atomic uint64_t requests, requests_inflight, results, signatures;
    _Atomic uint64_t errors_malformed, errors_too_large, errors_overloaded, errors_version,
        errors_shutdown, errors_message;
    _Atomic uint64_t key_lookups, key_timeouts;
    _Atomic uint64_t bytes_in, bytes_out;
} counters;

/* Single-writer increment: no locked instruction, since only the owner writes. */
#define CNT_ADD(w, f, n)                                                                    \
    atomic_store_explicit(&(w)->cnt.f, atomic_load_explicit(&(w)->cnt.f, memory_order_relaxed) + \
                                           (uint64_t)(n),                                   \
                          memory_order_relaxed)
#define CNT_SUB(w, f, n) CNT_ADD(w, f, -(uint64_t)(n))

typedef struct worker worker;
typedef struct conn conn;
typedef struct req req;

/* One key lookup in progress. Created and freed on the owning worker. */
typedef struct lookup {
    struct lookup *next; /* free list, or the completion stack */
    worker *w;
    req *r;
    uint32_t gen;
    uint32_t idx;
    dkd_key *key; /* set by a cross-thread completion */
} lookup;

struct req {
    req *next, *prev; /* in conn->reqs; next alone on the free list */
    req *all_next;    /* every request the worker ever made, for the final free */
    worker *w;
    conn *c;
    dkd_msg *m;
    uint32_t id;
    uint32_t gen;        /* bumped on release: stale lookups and timers see the change */
    bool streaming;      /* opened by VERIFY_BEGIN */
    bool ended;          /* whole message in, or VERIFY_END seen */
    bool failed;         /* answered with ERROR; swallow BODY/END up to END (4.4) */
    bool in_lookup;      /* issuing lookups: synchronous answers must not finish it */
    bool timer_armed;    /* a timeout SQE refers to this request */
    bool timer_removing;
    bool dead;           /* released while the timer was armed: free on its CQE */
    bool has_time;
    int64_t time;
    unsigned keys_pending;
    size_t nkeys;
    size_t wait_cap;
    bool *key_wait;      /* key_wait[i]: key i not delivered yet */
    uint64_t bytes;      /* header block + body so far */
    uint64_t charged;    /* bytes charged to the memory budget */
    struct __kernel_timespec ts;
    char authserv[DKD_WIRE_MAX_AUTHSERV + 1];
};

struct conn {
    conn *next, *prev; /* in worker->conns */
    worker *w;
    int fd;
    unsigned ops; /* SQEs in the ring that refer to this connection */
    bool hello_done;
    bool recv_armed, send_armed;
    bool closing;     /* shut down; freed once ops == 0 */
    bool close_after_send;
    bool draining;    /* shutdown: last frames read, sent ERROR 5 */
    pid_t pid;
    uid_t uid;
    int64_t last_rx_ms; /* when the last byte arrived */
    uint8_t *rbuf;
    size_t rcap, rlen;
    dkd_wbuf out;     /* being sent: out.ptr[out_off..out.len) */
    size_t out_off;
    dkd_wbuf pend;    /* queued while a send is in flight */
    req *reqs;        /* open requests */
    unsigned nreqs;
    uint64_t charged; /* receive buffer growth charged to the budget */
};

struct worker {
    dkd__server *srv;
    unsigned index;
    pthread_t thread;
    struct io_uring ring;
    bool ring_ok;
    int efd;
    uint64_t efd_val;
    bool accept_armed;
    bool multishot;
    bool stopping;     /* saw the server's stop flag */
    bool tick_armed;
    struct __kernel_timespec tick_ts;
    struct __kernel_timespec sweep_ts;
    int64_t stop_deadline_ms;
    conn *conns;
    unsigned nconns;
    req *free_reqs;
    req *all_reqs;
    lookup *free_lookups;
    _Atomic(lookup *) done_stack; /* completions from other threads */
    unsigned lookups_out;          /* lookups not yet completed */
    dkd_wbuf scratch;
    counters cnt;
    int64_t log_last[LK__COUNT];
    unsigned log_suppressed[LK__COUNT];
    char pad[64];
};

struct dkd__server {
    dkd__server_config cfg;
    uid_t *allow_uids;
    gid_t *allow_gids;
    char *authserv_id;
    dkd_engine *eng;
    dkd_keysrc src;
    unsigned ring_flags;
    bool multishot;
    uint32_t max_frame;
    worker *workers;
    unsigned nworkers; /* fixed in dkd__server_new: the workers read it */
    unsigned nstarted; /* threads to join */
    bool started;
    atomic_bool stop;
    atomic_int log_level;
    _Atomic uint64_t memory_used;
    _Atomic uint64_t connections_open;
};

static _Thread_local worker *tl_worker;
static _Thread_local const req *tl_req; /* request being begun: its verification time */

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dkd__server_clock(void *arg)
{
    (void)arg;
    if (tl_req != NULL && tl_req->has_time) {
        return tl_req->time;
    }
    return (int64_t)time(NULL);
}

static void default_log(void *arg, int level, const char *line)
{
    (void)arg;
    (void)level;
    fprintf(stderr, "%s\n", line);
}

static void srv_log(dkd__server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void srv_log(dkd__server *srv, int level, const char *fmt, ...)
{
    if (level > atomic_load_explicit(&srv->log_level, memory_order_relaxed)) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    srv->cfg.log(srv->cfg.log_arg, level, line);
}

/*
 * wlog logs one problem line from a worker, at most one per kind per second: a hostile
 * or broken client must not be able to fill the disk. The line after a quiet second says
 * how many were suppressed.
 */
static void wlog(worker *w, enum log_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void wlog(worker *w, enum log_kind kind, int level, const char *fmt, ...)
{
    dkd__server *srv = w->srv;
    if (level > atomic_load_explicit(&srv->log_level, memory_order_relaxed)) {
        return;
    }
    int64_t t = now_ms();
    if (w->log_last[kind] != 0 && t - w->log_last[kind] < 1000) {
        w->log_suppressed[kind]++;
        return;
    }
    w->log_last[kind] = t;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[512];
    if (w->log_suppressed[kind] != 0) {
        snprintf(line, sizeof line, "worker %u: %s (%u similar suppressed)", w->index, msg,
                 w->log_suppressed[kind]);
    } else {
        snprintf(line, sizeof line, "worker %u: %s", w->index, msg);
    }
    w->log_suppressed[kind] = 0;
    srv->cfg.log(srv->cfg.log_arg, level, line);
}

/* budget_take charges n bytes to the global memory budget; false when over it. */
static bool budget_take(dkd__server *srv, uint64_t n)
{
    uint64_t used = atomic_fetch_add_explicit(&srv->memory_used, n, memory_order_relaxed);
    if (used + n > srv->cfg.memory_budget) {
        atomic_fetch_sub_explicit(&srv->memory_used, n, memory_order_relaxed);
        return false;
    }
    return true;
}

static void budget_give(dkd__server *srv, uint64_t n)
{
    atomic_fetch_sub_explicit(&srv->memory_used, n, memory_order_relaxed);
}

/* get_sqe never fails: a full submission queue is flushed to the kernel first. */
static struct io_uring_sqe *get_sqe(worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    while (sqe == NULL) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

/* ---- output ---- */

static void conn_begin_close(conn *c);
static void conn_arm_recv(conn *c);

static void conn_flush(conn *c)
{
    if (c->send_armed || c->closing) {
        return;
    }
    if (c->out_off == c->out.len) {
        dkd_wbuf_reset(&c->out);
        c->out_off = 0;
        if (c->pend.len == 0) {
            if (c->close_after_send) {
                conn_begin_close(c);
            }
            return;
        }
        dkd_wbuf t = c->out;
        c->out = c->pend;
        c->pend = t;
    }
    struct io_uring_sqe *sqe = get_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(c, OP_SEND));
    c->send_armed = true;
    c->ops++;
}

/* conn_queue_ok checks the sticky error of the pending buffer after an append. */
static void conn_queued(conn *c)
{
    if (dkd_wbuf_ok(&c->pend) != 0) {
        /* Out of memory for the answer: the connection cannot be kept consistent. */
        wlog(c->w, LK_SYSTEM, DKD__LOG_ERR, "out of memory queueing an answer; closing");
        conn_begin_close(c);
        return;
    }
    conn_flush(c);
}

static void send_error(conn *c, uint32_t id, uint16_t code, const char *text)
{
    worker *w = c->w;
    switch (code) {
    case DKD_WIRE_E_MALFORMED:
    case DKD_WIRE_E_PROTOCOL:
    case DKD_WIRE_E_UNKNOWN_REQUEST:
        CNT_ADD(w, errors_malformed, 1);
        break;
    case DKD_WIRE_E_TOO_LARGE:
        CNT_ADD(w, errors_too_large, 1);
        break;
    case DKD_WIRE_E_OVERLOADED:
        CNT_ADD(w, errors_overloaded, 1);
        break;
    case DKD_WIRE_E_VERSION:
        CNT_ADD(w, errors_version, 1);
        break;
    case DKD_WIRE_E_SHUTTING_DOWN:
        CNT_ADD(w, errors_shutdown, 1);
        break;
    default:
        CNT_ADD(w, errors_message, 1);
        break;
    }
    dkd_wire_put_error(&c->pend, id, code, dkd__span_str(text));
    if (id == 0) {
        /* A connection-level error: nothing more is read; close once it is sent. */
        c->close_after_send = true;
    }
    conn_queued(c);
}

/* fatal: ERROR on request_id 0, then close (PROTOCOL.md 3). */
static void conn_fatal(conn *c, enum log_kind kind, uint16_t code, const char *text)
{
    wlog(c->w, kind, DKD__LOG_WARNING, "client pid %ld uid %ld: %s; closing", (long)c->pid,
         (long)c->uid, text);
    send_error(c, 0, code, text);
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
    struct io_uring_sqe *sqe = get_sqe(r->w);
    io_uring_prep_timeout_remove(sqe, ud_make(r, OP_TIMER), 0);
    io_uring_sqe_set_data64(sqe, 0);
    r->timer_removing = true;
}

/* req_release ends a request: its id is free again and its state goes back to the pool. */
static void req_release(req *r)
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
    budget_give(w->srv, r->charged);
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

static req *req_find(conn *c, uint32_t id)
{
    for (req *r = c->reqs; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

static uint16_t errcode_of_engine(int rc)
{
    switch (rc) {
    case DKD_ERR_TOO_LARGE:
    case DKD_ERR_NOMEM:
        return DKD_WIRE_E_TOO_LARGE;
    case DKD_ERR_SYNTAX:
        return DKD_WIRE_E_MALFORMED;
    default:
        return DKD_WIRE_E_INTERNAL;
    }
}

/*
 * req_fail answers a request with ERROR. A stream stays open in the failed state until
 * its END so its later BODY frames are ignored (PROTOCOL.md 4.4).
 */
static void req_fail(req *r, uint16_t code, const char *text)
{
    conn *c = r->c;
    send_error(c, r->id, code, text);
    if (r->streaming && !r->ended) {
        r->failed = true;
        dkd_msg_reset(r->m);
        r->gen++;
        timer_remove(r);
        budget_give(r->w->srv, r->charged);
        r->charged = 0;
        return;
    }
    req_release(r);
}

static void req_answer(req *r)
{
    worker *w = r->w;
    conn *c = r->c;
    int rc = dkd_msg_end(r->m);
    if (rc != 0) {
        wlog(w, LK_MESSAGE, DKD__LOG_WARNING, "request %u: %s", r->id, dkd_strerror(rc));
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    size_t n = 0;
    const dkd_sig_result *res = dkd_msg_results(r->m, &n);
    const char *authres = dkd_msg_authres(r->m, r->authserv);
    if (authres == NULL) {
        req_fail(r, DKD_WIRE_E_INTERNAL, "out of memory formatting Authentication-Results");
        return;
    }
    dkd_wire_sig sigs[16];
    dkd_wire_sig *sp = sigs;
    if (n > sizeof sigs / sizeof sigs[0]) {
        sp = malloc(n * sizeof *sp);
        if (sp == NULL) {
            req_fail(r, DKD_WIRE_E_INTERNAL, "out of memory encoding the result");
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        sp[i] = dkd_wire_sig_from_result(&res[i]);
    }
    dkd_wire_put_result(&c->pend, r->id, sp, n, dkd__span_str(authres));
    if (sp != sigs) {
        free(sp);
    }
    CNT_ADD(w, results, 1);
    CNT_ADD(w, signatures, n);
    req_release(r);
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
    bool live = lk->gen == r->gen && r->c != NULL && !r->failed && idx < r->nkeys &&
                r->key_wait[idx];
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
    if (tl_worker == w) {
        key_apply(w, lk, key);
        return;
    }
    lk->key = key;
    lookup *head = atomic_load_explicit(&w->done_stack, memory_order_relaxed);
    do {
        lk->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&w->done_stack, &head, lk,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    uint64_t one = 1;
    /* The eventfd counter cannot overflow in practice; a failed write only delays the
     * wake-up until the worker's next event, so it is not worth a retry loop. */
    ssize_t wr = write(w->efd, &one, sizeof one);
    (void)wr;
}

static void drain_done_stack(worker *w)
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
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_timeout(sqe, &r->ts, 0, 0);
        io_uring_sqe_set_data64(sqe, ud_make(r, OP_TIMER));
        r->timer_armed = true;
        r->timer_removing = false;
    }
    return 0;
}

/* on_timer: a request's key deadline passed (or its timer was removed). */
static void on_timer(worker *w, req *r, int res)
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
    wlog(w, LK_MESSAGE, DKD__LOG_WARNING, "key lookup deadline (%u ms) passed",
         w->srv->cfg.key_timeout_ms);
    for (size_t i = 0; i < r->nkeys; i++) {
        if (!r->key_wait[i]) {
            continue;
        }
        dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, "key lookup deadline passed");
        if (k == NULL) {
            req_fail(r, DKD_WIRE_E_INTERNAL, "out of memory");
            return;
        }
        r->key_wait[i] = false;
        r->keys_pending--;
        dkd_msg_key_ready(r->m, i, k);
    }
    req_try_finish(r);
}

/* ---- frames ---- */

static void copy_opts(worker *w, req *r, const dkd_wire_verify_opts *o)
{
    const char *def = w->srv->authserv_id;
    if (o->has_authserv_id) {
        memcpy(r->authserv, o->authserv_id.ptr, o->authserv_id.len);
        r->authserv[o->authserv_id.len] = '\0';
    } else {
        snprintf(r->authserv, sizeof r->authserv, "%s", def);
    }
    r->has_time = o->has_time;
    r->time = o->time;
}

/*
 * admit checks an id and the limits before a new request opens. Returns true when the
 * request may proceed; otherwise the answer has been queued.
 */
static bool admit(conn *c, uint32_t id, uint64_t charge)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    if (id == 0) {
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_PROTOCOL, "request_id 0 is reserved");
        return false;
    }
    if (req_find(c, id) != NULL) {
        /* Also a stream answered early with ERROR: its id is busy until its END. */
        send_error(c, id, DKD_WIRE_E_PROTOCOL, "request_id is in use");
        return false;
    }
    if (atomic_load_explicit(&srv->stop, memory_order_relaxed) && c->draining) {
        send_error(c, id, DKD_WIRE_E_SHUTTING_DOWN, "server is shutting down");
        return false;
    }
    if (c->nreqs >= srv->cfg.max_inflight) {
        wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "client pid %ld: over %u requests in flight",
             (long)c->pid, srv->cfg.max_inflight);
        send_error(c, id, DKD_WIRE_E_OVERLOADED, "too many requests in flight");
        return false;
    }
    if (!budget_take(srv, charge)) {
        wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "memory budget of %llu bytes exhausted",
             (unsigned long long)srv->cfg.memory_budget);
        send_error(c, id, DKD_WIRE_E_OVERLOADED, "server memory budget exhausted");
        return false;
    }
    return true;
}

/* open_verify handles VERIFY (whole message) and VERIFY_BEGIN (header block). */
static void open_verify(conn *c, const dkd_wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    dkd_wire_verify v;
    if (dkd_wire_decode_verify(payload, &v) != 0) {
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "malformed VERIFY payload");
        return;
    }
    bool whole = h->type == DKD_WIRE_VERIFY;
    size_t hlen = whole ? dkd_split_message(v.data.ptr, v.data.len) : v.data.len;
    uint64_t charge = (uint64_t)hlen + REQ_OVERHEAD;
    if (!admit(c, h->request_id, charge)) {
        return;
    }
    req *r = req_get(w, c, h->request_id);
    if (r == NULL) {
        budget_give(srv, charge);
        send_error(c, h->request_id, DKD_WIRE_E_INTERNAL, "out of memory");
        return;
    }
    r->charged = charge;
    r->streaming = !whole;
    copy_opts(w, r, &v.opts);
    if (v.data.len > srv->cfg.max_message_bytes ||
        (!whole && v.data.len > srv->cfg.max_header_bytes)) {
        req_fail(r, DKD_WIRE_E_TOO_LARGE, "message over the size limit");
        return;
    }
    r->bytes = v.data.len;
    tl_req = r;
    int rc = dkd_msg_begin(r->m, v.data.ptr, hlen);
    tl_req = NULL;
    if (rc == 0) {
        rc = req_start_lookups(r);
    }
    if (rc == 0 && whole && v.data.len > hlen) {
        rc = dkd_msg_body(r->m, v.data.ptr + hlen, v.data.len - hlen);
    }
    if (rc != 0) {
        wlog(w, LK_MESSAGE, DKD__LOG_INFO, "request %u: %s", r->id, dkd_strerror(rc));
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
        return;
    }
    r->ended = whole;
    req_try_finish(r);
}

static void stream_body(conn *c, const dkd_wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    req *r = req_find(c, h->request_id);
    if (r == NULL || !r->streaming || r->ended) {
        send_error(c, h->request_id, DKD_WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
        return;
    }
    if (r->failed) {
        return;
    }
    r->bytes += payload.len;
    if (r->bytes > w->srv->cfg.max_message_bytes) {
        wlog(w, LK_TOO_LARGE, DKD__LOG_INFO, "client pid %ld: streamed message over %llu bytes",
             (long)c->pid, (unsigned long long)w->srv->cfg.max_message_bytes);
        req_fail(r, DKD_WIRE_E_TOO_LARGE, "message over the size limit");
        return;
    }
    int rc = dkd_msg_body(r->m, payload.ptr, payload.len);
    if (rc != 0) {
        req_fail(r, errcode_of_engine(rc), dkd_strerror(rc));
    }
}

static void stream_end(conn *c, const dkd_wire_header *h)
{
    req *r = req_find(c, h->request_id);
    if (r == NULL || !r->streaming || r->ended) {
        send_error(c, h->request_id, DKD_WIRE_E_UNKNOWN_REQUEST, "no open stream for this id");
        return;
    }
    if (r->failed) {
        req_release(r);
        return;
    }
    r->ended = true;
    req_try_finish(r);
}

static void add_stat(dkd_wire_stat *st, size_t *n, const char *name, uint64_t v)
{
    st[*n].name = dkd__span_str(name);
    st[*n].value = v;
    (*n)++;
}

typedef struct stat_ctx {
    dkd_wire_stat *st;
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
    dkd_wire_stat st[64];
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
    dkd_wire_put_stats_reply(&c->pend, id, st, n);
    conn_queued(c);
}

static void hello(conn *c, const dkd_wire_header *h, dkd_span payload)
{
    dkd__server *srv = c->w->srv;
    dkd_wire_hello m;
    if (c->hello_done) {
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_PROTOCOL, "second HELLO");
        return;
    }
    if (dkd_wire_decode_hello(payload, &m) != 0) {
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "malformed HELLO");
        return;
    }
    if (m.min_version > DKD_WIRE_VERSION || m.max_version < DKD_WIRE_VERSION) {
        conn_fatal(c, LK_VERSION, DKD_WIRE_E_VERSION, "no common protocol version");
        return;
    }
    c->hello_done = true;
    uint64_t max_msg = srv->cfg.max_message_bytes;
    dkd_wire_hello_ok ok = {
        .version = DKD_WIRE_VERSION,
        .max_frame = srv->max_frame,
        .max_message = max_msg,
        .max_header_block = (uint32_t)srv->cfg.max_header_bytes,
        .max_inflight = srv->cfg.max_inflight,
        .max_chunk = (uint32_t)srv->cfg.max_body_chunk,
        .server_name = dkd__span_str("dkimd"),
    };
    dkd_wire_put_hello_ok(&c->pend, h->request_id, &ok);
    conn_queued(c);
}

/* on_frame dispatches one whole frame. The payload borrows the receive buffer. */
static void on_frame(conn *c, const dkd_wire_header *h, dkd_span payload)
{
    worker *w = c->w;
    if (!c->hello_done && h->type != DKD_WIRE_HELLO) {
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_PROTOCOL, "frame before HELLO");
        return;
    }
    switch (h->type) {
    case DKD_WIRE_HELLO:
        hello(c, h, payload);
        break;
    case DKD_WIRE_VERIFY:
    case DKD_WIRE_VERIFY_BEGIN:
        open_verify(c, h, payload);
        break;
    case DKD_WIRE_VERIFY_BODY:
        if (payload.len > w->srv->cfg.max_body_chunk) {
            conn_fatal(c, LK_TOO_LARGE, DKD_WIRE_E_TOO_LARGE, "VERIFY_BODY over max_chunk");
            break;
        }
        stream_body(c, h, payload);
        break;
    case DKD_WIRE_VERIFY_END:
        if (payload.len != 0) {
            conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "VERIFY_END with a payload");
            break;
        }
        stream_end(c, h);
        break;
    case DKD_WIRE_STATS:
        if (payload.len != 0 || h->request_id == 0) {
            conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "malformed STATS");
            break;
        }
        answer_stats(c, h->request_id);
        break;
    case DKD_WIRE_PING:
        if (payload.len > DKD_WIRE_MAX_PING || h->request_id == 0) {
            conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "malformed PING");
            break;
        }
        dkd_wire_put_data(&c->pend, DKD_WIRE_PONG, h->request_id, payload);
        conn_queued(c);
        break;
    default:
        conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED, "unknown frame type");
        break;
    }
}

/*
 * conn_process splits and handles every whole frame in the receive buffer, then keeps
 * the partial rest at the front and makes sure the buffer can hold the next frame.
 */
static void conn_process(conn *c)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    dkd_span in = dkd__span(c->rbuf, c->rlen);
    uint32_t need = 0;
    while (!c->close_after_send && !c->closing) {
        uint32_t limit = c->hello_done ? srv->max_frame : DKD_WIRE_PRE_HELLO_MAX;
        /* HELLO always carries version 1; afterwards the negotiated one (also 1). */
        dkd_wire_header h;
        dkd_span payload;
        int rc = dkd_wire_frame_split(&in, DKD_WIRE_VERSION, limit, &h, &payload);
        if (rc == 0) {
            if (in.len >= DKD_WIRE_HEADER_LEN) {
                need = DKD_WIRE_HEADER_LEN + h.payload_len;
            }
            break;
        }
        if (rc == DKD_WIRE_ERR_VERSION) {
            conn_fatal(c, LK_VERSION, DKD_WIRE_E_VERSION, "unsupported frame version");
            break;
        }
        if (rc < 0) {
            conn_fatal(c, LK_TOO_LARGE, DKD_WIRE_E_TOO_LARGE, "frame over max_frame");
            break;
        }
        on_frame(c, &h, payload);
    }
    if (c->closing) {
        return;
    }
    size_t used = (size_t)(in.ptr - c->rbuf);
    if (used > 0 && in.len > 0) {
        memmove(c->rbuf, in.ptr, in.len);
    }
    c->rlen = in.len;
    if (need > c->rcap && c->rlen == c->rcap) {
        /* Grow with the bytes that actually arrive (doubling), not to the size the
         * header claims: a client announcing a 64 MiB frame and trickling it would
         * otherwise pin 64 MiB of the budget for the price of 12 bytes. */
        size_t want = c->rcap * 2 < need ? c->rcap * 2 : need;
        uint64_t extra = want - c->rcap;
        uint8_t *nb = NULL;
        if (budget_take(srv, extra)) {
            nb = realloc(c->rbuf, want);
            if (nb == NULL) {
                budget_give(srv, extra);
            }
        }
        if (nb == NULL) {
            wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "no memory for a %u-byte frame", need);
            conn_fatal(c, LK_OVERLOADED, DKD_WIRE_E_OVERLOADED, "no memory for this frame");
            return;
        }
        c->rbuf = nb;
        c->rcap = want;
        c->charged += extra;
    } else if (c->rcap > srv->cfg.max_body_chunk + DKD_WIRE_HEADER_LEN &&
               c->rlen <= RBUF_BASE && need <= RBUF_BASE) {
        /* A whole-message frame is done: give its memory back. A buffer that only grew
         * to the body chunk size is kept, or a client streaming chunks a little over
         * 64 KiB would make us reallocate on every frame. */
        uint8_t *nb = realloc(c->rbuf, RBUF_BASE);
        if (nb != NULL) {
            c->rbuf = nb;
            budget_give(srv, c->charged);
            c->charged = 0;
            c->rcap = RBUF_BASE;
        }
    }
}

/* ---- connections ---- */

static void conn_arm_recv(conn *c)
{
    if (c->recv_armed || c->closing || c->close_after_send || c->draining) {
        return;
    }
    if (c->pend.len + (c->out.len - c->out_off) > SEND_HIGH_WATER) {
        return; /* re-armed when the send queue drains */
    }
    struct io_uring_sqe *sqe = get_sqe(c->w);
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    io_uring_sqe_set_data64(sqe, ud_make(c, OP_RECV));
    c->recv_armed = true;
    c->ops++;
}

static void conn_free(conn *c)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    close(c->fd);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    w->nconns--;
    budget_give(srv, c->charged + RBUF_BASE);
    free(c->rbuf);
    dkd_wbuf_free(&c->out);
    dkd_wbuf_free(&c->pend);
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
    CNT_SUB(w, connections_open, 1);
    free(c);
}

/* conn_begin_close drops the connection's requests and waits for its SQEs to finish. */
static void conn_begin_close(conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    while (c->reqs != NULL) {
        req_release(c->reqs);
    }
    /* shutdown() completes a pending recv with 0 and a pending send with an error, so the
     * connection's SQEs drain without a cancel round trip per operation. */
    shutdown(c->fd, SHUT_RDWR);
    if (c->ops == 0) {
        conn_free(c);
    }
}

static void conn_op_done(conn *c)
{
    c->ops--;
    if (c->closing && c->ops == 0) {
        conn_free(c);
    }
}

static void on_recv(worker *w, conn *c, int res)
{
    c->recv_armed = false;
    /* The completed SQE still counts in c->ops until the end, so nothing below can free
     * the connection under our feet. */
    if (c->closing) {
        conn_op_done(c);
        return;
    }
    if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
        c->ops--;
        conn_arm_recv(c);
        return;
    }
    if (res <= 0) {
        /* EOF or a reset: the client has gone; its open requests go with it. */
        conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    CNT_ADD(w, bytes_in, res);
    c->rlen += (size_t)res;
    c->last_rx_ms = now_ms();
    conn_process(c);
    if (!c->closing) {
        c->ops--;
        conn_arm_recv(c);
        return;
    }
    conn_op_done(c);
}

static void on_send(worker *w, conn *c, int res)
{
    c->send_armed = false;
    if (c->closing) {
        conn_op_done(c);
        return;
    }
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    if (res > 0) {
        CNT_ADD(w, bytes_out, res);
        c->out_off += (size_t)res;
    }
    conn_flush(c);
    if (!c->closing) {
        conn_arm_recv(c); /* the send queue may have dropped under the high-water mark */
    }
    conn_op_done(c);
}

static bool peer_allowed(dkd__server *srv, const struct ucred *cr)
{
    if (srv->cfg.n_allow_uids == 0 && srv->cfg.n_allow_gids == 0) {
        return true;
    }
    for (size_t i = 0; i < srv->cfg.n_allow_uids; i++) {
        if (srv->allow_uids[i] == cr->uid) {
            return true;
        }
    }
    for (size_t i = 0; i < srv->cfg.n_allow_gids; i++) {
        if (srv->allow_gids[i] == cr->gid) {
            return true;
        }
    }
    return false;
}

static void arm_accept(worker *w)
{
    if (w->accept_armed || w->stopping) {
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(w);
    if (w->multishot) {
        io_uring_prep_multishot_accept(sqe, w->srv->cfg.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } else {
        io_uring_prep_accept(sqe, w->srv->cfg.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    }
    io_uring_sqe_set_data64(sqe, ud_make(w, OP_ACCEPT));
    w->accept_armed = true;
}

static void refuse(worker *w, int fd, uint16_t code, const char *text)
{
    /* A short best-effort ERROR on a fresh socket: its send buffer is empty, so a
     * non-blocking send either takes the whole frame or fails; both are fine. */
    uint8_t mem[128];
    dkd_wbuf b;
    dkd_wbuf_init_fixed(&b, mem, sizeof mem);
    dkd_wire_put_error(&b, 0, code, dkd__span_str(text));
    if (dkd_wbuf_ok(&b) == 0) {
        ssize_t s = send(fd, b.ptr, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)s;
    }
    close(fd);
    CNT_ADD(w, connections_refused, 1);
}

static void on_accept(worker *w, struct io_uring_cqe *cqe)
{
    dkd__server *srv = w->srv;
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        w->accept_armed = false;
    }
    if (res == -EINVAL && w->multishot) {
        /* A kernel without multishot accept (before 5.19): fall back to one-shot. */
        w->multishot = false;
        w->accept_armed = false;
    }
    if (res < 0) {
        if (res != -ECANCELED && res != -EINVAL && res != -EAGAIN && res != -EINTR) {
            wlog(w, LK_SYSTEM, DKD__LOG_ERR, "accept: %s", strerror(-res));
        }
        arm_accept(w);
        return;
    }
    int fd = res;
    if (w->stopping) {
        refuse(w, fd, DKD_WIRE_E_SHUTTING_DOWN, "server is shutting down");
        return;
    }
    arm_accept(w);
    struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t crlen = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 || !peer_allowed(srv, &cr)) {
        wlog(w, LK_REFUSED, DKD__LOG_WARNING, "refused peer pid %ld uid %ld gid %ld: not allowed",
             (long)cr.pid, (long)cr.uid, (long)cr.gid);
        close(fd);
        CNT_ADD(w, connections_refused, 1);
        return;
    }
    uint64_t open = atomic_fetch_add_explicit(&srv->connections_open, 1, memory_order_relaxed);
    if (open >= srv->cfg.max_connections || !budget_take(srv, RBUF_BASE)) {
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "refused a connection: %llu open (limit %u)",
             (unsigned long long)open, srv->cfg.max_connections);
        refuse(w, fd, DKD_WIRE_E_OVERLOADED, "too many connections");
        return;
    }
    conn *c = calloc(1, sizeof *c);
    uint8_t *rb = malloc(RBUF_BASE);
    if (c == NULL || rb == NULL) {
        free(c);
        free(rb);
        budget_give(srv, RBUF_BASE);
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        refuse(w, fd, DKD_WIRE_E_OVERLOADED, "out of memory");
        return;
    }
    c->w = w;
    c->fd = fd;
    c->pid = cr.pid;
    c->uid = cr.uid;
    c->last_rx_ms = now_ms();
    c->rbuf = rb;
    c->rcap = RBUF_BASE;
    dkd_wbuf_init(&c->out);
    dkd_wbuf_init(&c->pend);
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;
    CNT_ADD(w, connections_total, 1);
    CNT_ADD(w, connections_open, 1);
    conn_arm_recv(c);
}

/* ---- shutdown ---- */

static void arm_tick(worker *w)
{
    if (w->tick_armed) {
        return;
    }
    w->tick_ts.tv_sec = 0;
    w->tick_ts.tv_nsec = TICK_MS * 1000000LL;
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, OP_TICK));
    w->tick_armed = true;
}

/*
 * drain_step runs every tick while stopping. A connection is finished once nothing it
 * has sent is unread (FIONREAD, a non-blocking ioctl), no whole request is left in its
 * buffer and no answer is pending: then its incomplete streams get ERROR 5, the
 * connection gets ERROR 5 on id 0, and it closes when that is sent (PROTOCOL.md 3).
 */
static void drain_step(worker *w)
{
    bool expired = now_ms() >= w->stop_deadline_ms;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->draining) {
            if (expired && !c->closing) {
                conn_begin_close(c);
            }
            continue;
        }
        if (expired) {
            conn_begin_close(c);
            continue;
        }
        int unread = 0;
        if (ioctl(c->fd, FIONREAD, &unread) != 0) {
            unread = 0;
        }
        if (unread > 0) {
            continue; /* the armed recv will complete with it */
        }
        bool busy = false;
        for (req *r = c->reqs; r != NULL; r = r->next) {
            if (r->ended && !r->failed) {
                busy = true; /* whole request waiting for keys: answer it first */
            }
        }
        if (busy) {
            continue;
        }
        c->draining = true;
        req *rn;
        for (req *r = c->reqs; r != NULL; r = rn) {
            rn = r->next;
            if (!r->failed) {
                send_error(c, r->id, DKD_WIRE_E_SHUTTING_DOWN, "server is shutting down");
            }
            if (c->closing) {
                break; /* out of memory queueing: every request is gone already */
            }
            req_release(r);
        }
        if (!c->closing) {
            send_error(c, 0, DKD_WIRE_E_SHUTTING_DOWN, "server is shutting down");
        }
    }
}

static void arm_sweep(worker *w)
{
    if (w->srv->cfg.stall_timeout_ms == 0 || w->stopping) {
        return;
    }
    w->sweep_ts.tv_sec = 1;
    w->sweep_ts.tv_nsec = 0;
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_timeout(sqe, &w->sweep_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, OP_SWEEP));
}

/*
 * sweep closes connections that stopped sending in the middle of a frame or of a
 * streamed message: each pins a buffer or a request, and a client that vanished
 * without closing (or a slowloris) would otherwise hold them for ever. Connections
 * that are merely idle between requests are left alone: MTAs keep them open.
 */
static void sweep(worker *w)
{
    int64_t limit = now_ms() - (int64_t)w->srv->cfg.stall_timeout_ms;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->close_after_send || c->last_rx_ms > limit) {
            continue;
        }
        bool stalled = c->rlen > 0;
        for (req *r = c->reqs; r != NULL && !stalled; r = r->next) {
            stalled = r->streaming && !r->ended;
        }
        if (stalled) {
            conn_fatal(c, LK_MALFORMED, DKD_WIRE_E_MALFORMED,
                       "incomplete frame or stream stalled past stall-timeout");
        }
    }
}

static void on_event(worker *w)
{
    drain_done_stack(w);
    if (!w->stopping && atomic_load_explicit(&w->srv->stop, memory_order_acquire)) {
        w->stopping = true;
        w->stop_deadline_ms = now_ms() + w->srv->cfg.shutdown_timeout_ms;
        if (w->accept_armed) {
            struct io_uring_sqe *sqe = get_sqe(w);
            io_uring_prep_cancel64(sqe, ud_make(w, OP_ACCEPT), 0);
            io_uring_sqe_set_data64(sqe, 0);
        }
        drain_step(w);
        arm_tick(w);
    }
}

static void arm_event(worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof w->efd_val, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, OP_EVENT));
}

/* ---- the worker loop ---- */

static void handle_cqe(worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    void *p = ud_ptr(ud);
    switch ((enum op)(ud & 7)) {
    case OP_NONE:
        break;
    case OP_ACCEPT:
        on_accept(w, cqe);
        break;
    case OP_RECV:
        on_recv(w, p, cqe->res);
        break;
    case OP_SEND:
        on_send(w, p, cqe->res);
        break;
    case OP_EVENT:
        on_event(w);
        arm_event(w);
        break;
    case OP_TIMER:
        on_timer(w, p, cqe->res);
        break;
    case OP_TICK:
        w->tick_armed = false;
        drain_done_stack(w);
        drain_step(w);
        break;
    case OP_SWEEP:
        if (!w->stopping) {
            sweep(w);
            arm_sweep(w);
        }
        break;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    tl_worker = w;
    arm_event(w);
    arm_accept(w);
    arm_sweep(w);
    for (;;) {
        if (w->stopping) {
            /* Lookups still out need not be waited for: their answers land on the
             * completion stack, which dkd__server_free drains after the key source has
             * been freed (and has completed them). */
            if (w->conns == NULL) {
                break;
            }
            arm_tick(w);
        }
        int rc = io_uring_submit_and_wait(&w->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            wlog(w, LK_SYSTEM, DKD__LOG_ERR, "io_uring_submit_and_wait: %s", strerror(-rc));
            break;
        }
        /* Reap every completion that is ready and advance the ring once. */
        struct io_uring_cqe *cqe;
        unsigned head, count = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            handle_cqe(w, cqe);
            count++;
        }
        io_uring_cq_advance(&w->ring, count);
    }
    /* Anything left (the deadline passed): close without waiting for the kernel. */
    while (w->conns != NULL) {
        conn *c = w->conns;
        c->closing = true;
        while (c->reqs != NULL) {
            req_release(c->reqs);
        }
        c->ops = 0;
        conn_free(c);
    }
    return NULL;
}

/* ---- set-up ---- */

void dkd__server_config_init(dkd__server_config *sc)
{
    *sc = (dkd__server_config){
        .listen_fd = -1,
        .workers = 0,
        .max_message_bytes = 64u << 20,
        .max_header_bytes = 0,
        .max_body_chunk = 1u << 20,
        .max_inflight = 256,
        .max_connections = 4096,
        .memory_budget = 1ull << 30,
        .key_timeout_ms = 5000,
        .shutdown_timeout_ms = 10000,
        .stall_timeout_ms = 30000,
        .authserv_id = "localhost",
        .log_level = DKD__LOG_INFO,
    };
}

/*
 * ring_init creates a worker's ring with the best flags the kernel takes. Called on the
 * worker's own thread because SINGLE_ISSUER binds the ring to its creating task.
 */
static int ring_init(struct io_uring *ring, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = flags;
    /* A CQ ring four times the SQ ring: a burst of recv/send/accept completions on many
     * connections must not overflow into the kernel's slower backlog list. */
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    return io_uring_queue_init_params(RING_ENTRIES, ring, &p);
}

static unsigned probe_ring_flags(void)
{
    /* SINGLE_ISSUER (6.0): only the worker submits, which lets the kernel skip locking.
     * DEFER_TASKRUN (6.1): completion work runs when the worker asks for events, not by
     * interrupting it mid-request; needs SINGLE_ISSUER. COOP_TASKRUN (5.19): no IPI to
     * run task work, since the worker enters the kernel often anyway. Older kernels
     * reject unknown flags with EINVAL, so try the richest set first. */
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring ring;
        if (ring_init(&ring, tries[i]) == 0) {
            io_uring_queue_exit(&ring);
            return tries[i];
        }
    }
    return UINT_MAX;
}

/* multishot accept is a flag on IORING_OP_ACCEPT, so it cannot be probed by opcode;
 * the kernel version decides (5.19), and on_accept falls back on EINVAL anyway. */
static bool probe_multishot(void)
{
    struct io_uring_probe *pr = io_uring_get_probe();
    if (pr == NULL) {
        return false;
    }
    /* IORING_OP_SOCKET arrived in 5.19 together with multishot accept. */
    bool ok = io_uring_opcode_supported(pr, IORING_OP_SOCKET);
    io_uring_free_probe(pr);
    return ok;
}

dkd__server *dkd__server_new(const dkd__server_config *sc, dkd_engine *eng, dkd_keysrc src,
                             char *err, size_t err_len)
{
    if (sc->listen_fd < 0) {
        snprintf(err, err_len, "no listening socket");
        return NULL;
    }
    if (sc->max_inflight == 0 || sc->max_connections == 0 || sc->max_body_chunk == 0) {
        snprintf(err, err_len, "limits must be positive");
        return NULL;
    }
    unsigned flags = probe_ring_flags();
    if (flags == UINT_MAX) {
        snprintf(err, err_len, "io_uring is not available (kernel too old or disabled)");
        return NULL;
    }
    dkd__server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        abort();
    }
    srv->cfg = *sc;
    srv->eng = eng;
    srv->src = src;
    srv->ring_flags = flags;
    srv->multishot = probe_multishot();
    if (srv->cfg.log == NULL) {
        srv->cfg.log = default_log;
    }
    atomic_store(&srv->log_level, sc->log_level);
    if (srv->cfg.max_header_bytes == 0) {
        srv->cfg.max_header_bytes = dkd_engine_config(eng)->max_header_bytes;
    }
    srv->authserv_id = strdup(sc->authserv_id != NULL ? sc->authserv_id : "localhost");
    srv->allow_uids = calloc(sc->n_allow_uids + 1, sizeof(uid_t));
    srv->allow_gids = calloc(sc->n_allow_gids + 1, sizeof(gid_t));
    if (srv->authserv_id == NULL || srv->allow_uids == NULL || srv->allow_gids == NULL) {
        abort();
    }
    if (sc->n_allow_uids) {
        memcpy(srv->allow_uids, sc->allow_uids, sc->n_allow_uids * sizeof(uid_t));
    }
    if (sc->n_allow_gids) {
        memcpy(srv->allow_gids, sc->allow_gids, sc->n_allow_gids * sizeof(gid_t));
    }
    srv->cfg.authserv_id = srv->authserv_id;
    /* max_frame: a whole message with the largest option block (1 + 2 + 255 + 1 + 2 + 8
     * bytes plus the count) must fit, as must a header block or a body chunk. */
    uint64_t mf = srv->cfg.max_message_bytes + 512;
    if (mf < srv->cfg.max_header_bytes + 512) {
        mf = srv->cfg.max_header_bytes + 512;
    }
    if (mf < srv->cfg.max_body_chunk) {
        mf = srv->cfg.max_body_chunk;
    }
    if (mf > UINT32_MAX) {
        mf = UINT32_MAX;
    }
    srv->max_frame = (uint32_t)mf;
    unsigned n = sc->workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
    }
    srv->nworkers = n;
    srv->workers = calloc(n, sizeof *srv->workers);
    if (srv->workers == NULL) {
        abort();
    }
    for (unsigned i = 0; i < n; i++) {
        worker *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->multishot = srv->multishot;
        w->efd = eventfd(0, EFD_CLOEXEC);
        if (w->efd < 0) {
            snprintf(err, err_len, "eventfd: %s", strerror(errno));
            srv->nworkers = i;
            dkd__server_free(srv);
            return NULL;
        }
        dkd_wbuf_init(&w->scratch);
    }
    return srv;
}

typedef struct start_sync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;
    int err;
} start_sync;

typedef struct start_arg {
    worker *w;
    start_sync *sync;
} start_arg;

static void *worker_entry(void *arg)
{
    start_arg sa = *(start_arg *)arg;
    worker *w = sa.w;
    int rc = ring_init(&w->ring, w->srv->ring_flags);
    pthread_mutex_lock(&sa.sync->mu);
    if (rc < 0) {
        sa.sync->err = rc;
    } else {
        w->ring_ok = true;
    }
    sa.sync->ready++;
    pthread_cond_broadcast(&sa.sync->cv);
    pthread_mutex_unlock(&sa.sync->mu);
    free(arg);
    if (rc < 0) {
        return NULL;
    }
    worker_main(w);
    io_uring_queue_exit(&w->ring);
    return NULL;
}

int dkd__server_start(dkd__server *srv)
{
    start_sync sync = {.ready = 0, .err = 0};
    pthread_mutex_init(&sync.mu, NULL);
    pthread_cond_init(&sync.cv, NULL);
    unsigned started = 0;
    int err = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        start_arg *sa = malloc(sizeof *sa);
        if (sa == NULL) {
            abort();
        }
        *sa = (start_arg){&srv->workers[i], &sync};
        int rc = pthread_create(&srv->workers[i].thread, NULL, worker_entry, sa);
        if (rc != 0) {
            free(sa);
            err = -rc;
            break;
        }
        started++;
    }
    pthread_mutex_lock(&sync.mu);
    while (sync.ready < started) {
        pthread_cond_wait(&sync.cv, &sync.mu);
    }
    if (err == 0) {
        err = sync.err;
    }
    pthread_mutex_unlock(&sync.mu);
    srv->nstarted = started;
    srv->started = true;
    if (err != 0) {
        dkd__server_stop(srv);
    }
    srv_log(srv, DKD__LOG_INFO, "%u workers, ring flags 0x%x, %s accept", started,
            srv->ring_flags, srv->multishot ? "multishot" : "single-shot");
    return err;
}

void dkd__server_stop(dkd__server *srv)
{
    atomic_store_explicit(&srv->stop, true, memory_order_release);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;
        ssize_t wr = write(srv->workers[i].efd, &one, sizeof one);
        (void)wr;
    }
}

void dkd__server_set_log_level(dkd__server *srv, int level)
{
    atomic_store(&srv->log_level, level);
}

void dkd__server_join(dkd__server *srv)
{
    if (!srv->started) {
        return;
    }
    for (unsigned i = 0; i < srv->nstarted; i++) {
        pthread_join(srv->workers[i].thread, NULL);
    }
    srv->started = false;
}

void dkd__server_free(dkd__server *srv)
{
    if (srv == NULL) {
        return;
    }
    for (unsigned i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        /* Answers that arrived after the worker left: release their keys. */
        lookup *lk = atomic_exchange(&w->done_stack, NULL);
        while (lk != NULL) {
            lookup *next = lk->next;
            dkd_key_unref(lk->key);
            free(lk);
            lk = next;
        }
        while (w->free_lookups != NULL) {
            lookup *l = w->free_lookups;
            w->free_lookups = l->next;
            free(l);
        }
        while (w->all_reqs != NULL) {
            req *r = w->all_reqs;
            w->all_reqs = r->all_next;
            dkd_msg_free(r->m);
            free(r->key_wait);
            free(r);
        }
        dkd_wbuf_free(&w->scratch);
        if (w->efd >= 0) {
            close(w->efd);
        }
    }
    free(srv->workers);
    free(srv->allow_uids);
    free(srv->allow_gids);
    free(srv->authserv_id);
    free(srv);
}

void dkd__server_stats_get(dkd__server *srv, dkd__server_stats *out)
{
    memset(out, 0, sizeof *out);
#define SUM(f) out->f += atomic_load_explicit(&w->cnt.f, memory_order_relaxed)
    for (unsigned i = 0; i < srv->nworkers; i++) {
        worker *w = &srv->workers[i];
        SUM(connections_total);
        SUM(connections_open);
        SUM(connections_refused);
        SUM(requests);
        SUM(requests_inflight);
        SUM(results);
        SUM(signatures);
        SUM(errors_malformed);
        SUM(errors_too_large);
        SUM(errors_overloaded);
        SUM(errors_version);
        SUM(errors_shutdown);
        SUM(errors_message);
        SUM(key_lookups);
        SUM(key_timeouts);
        SUM(bytes_in);
        SUM(bytes_out);
    }
#undef SUM
    out->memory_used = atomic_load_explicit(&srv->memory_used, memory_order_relaxed);
}
