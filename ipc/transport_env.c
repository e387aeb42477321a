/*
 * transport_env.c - what the transport gives each session (session.h's dkd__sess_env):
 * key lookups and their answers (applied at once on the owning worker, else posted to
 * its completion stack and applied when its eventfd wakes it), timers, closing, the
 * memory budget, logging, statistics, and the mapping of a client's shared memory.
 *
 * Workload: a lookup and a timer per message with uncached keys, answered on the
 * resolver's thread; everything else here is a few instructions per call.
 */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t env_now(void *ctx)
{
    return ((conn *)ctx)->w->now_ms;
}

static int64_t env_unix_time(void *ctx)
{
    (void)ctx;
    return (int64_t)time(NULL);
}

static void lookup_apply(worker *w, lookup *lk, dkd_key *key)
{
    conn *c = lk->c;
    bool live = c->gen == lk->conn_gen && dkd__sess_live(c);
    uint64_t token = lk->token;
    lk->next = w->free_lookups;
    w->free_lookups = lk;
    if (!live) {
        dkd_key_unref(key);
        return;
    }
    dkd__sess_enter(c);
    c->lst->ops->key(c->sess, token, key);
    dkd__sess_leave(c);
}

/* key_done is the key source's callback: on the owner thread apply now, else post. */
static void key_done(void *arg, dkd_key *key)
{
    lookup *lk = arg;
    worker *w = lk->w;
    if (dkd__tl_worker == w) {
        lookup_apply(w, lk, key);
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
        lookup_apply(w, lk, lk->key);
        lk = next;
    }
}

static int env_lookup(void *ctx, uint64_t token, const char *name)
{
    conn *c = ctx;
    worker *w = c->w;
    dkd__server *srv = w->srv;
    lookup *lk = w->free_lookups;
    if (lk != NULL) {
        w->free_lookups = lk->next;
    } else {
        lk = malloc(sizeof *lk);
        if (lk == NULL) {
            return -ENOMEM;
        }
    }
    *lk = (lookup){.w = w, .c = c, .conn_gen = c->gen, .token = token};
    int rc = srv->src.lookup(srv->src.impl, name, key_done, lk);
    if (rc < 0) {
        /* done will never be called */
        lk->next = w->free_lookups;
        w->free_lookups = lk;
    }
    return rc;
}

static uint64_t env_timer_arm(void *ctx, uint64_t token, unsigned ms)
{
    conn *c = ctx;
    worker *w = c->w;
    timer *t = w->free_timers;
    if (t != NULL) {
        w->free_timers = t->next;
    } else {
        if (w->ntimers == w->timers_cap) {
            uint32_t cap = w->timers_cap ? w->timers_cap * 2 : 64;
            timer **nt = realloc(w->timers, cap * sizeof *nt);
            if (nt == NULL) {
                return 0;
            }
            w->timers = nt;
            w->timers_cap = cap;
        }
        t = calloc(1, sizeof *t);
        if (t == NULL) {
            return 0;
        }
        t->index = w->ntimers;
        w->timers[w->ntimers++] = t;
    }
    t->c = c;
    t->conn_gen = c->gen;
    t->token = token;
    t->armed = true;
    t->cancelled = false;
    t->ts.tv_sec = ms / 1000;
    t->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
    io_uring_prep_timeout(sqe, &t->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(t, OP_TIMER));
    return (uint64_t)t->index << 32 | t->gen | (uint64_t)1 << 63;
}

static void env_timer_cancel(void *ctx, uint64_t handle)
{
    conn *c = ctx;
    worker *w = c->w;
    uint32_t index = (uint32_t)((handle >> 32) & 0x7fffffff);
    if (index >= w->ntimers) {
        return;
    }
    timer *t = w->timers[index];
    if (t->gen != (uint32_t)handle || !t->armed || t->cancelled) {
        return;
    }
    t->cancelled = true;
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
    io_uring_prep_timeout_remove(sqe, ud_make(t, OP_TIMER), 0);
    io_uring_sqe_set_data64(sqe, 0);
}

void dkd__on_timer(worker *w, timer *t, int res)
{
    conn *c = t->c;
    bool fire = !t->cancelled && res == -ETIME && c->gen == t->conn_gen && dkd__sess_live(c);
    uint64_t token = t->token;
    t->armed = false;
    t->gen++;
    t->next = w->free_timers;
    w->free_timers = t;
    if (fire) {
        dkd__sess_enter(c);
        c->lst->ops->timer(c->sess, token);
        dkd__sess_leave(c);
    }
}

static void env_close(void *ctx, enum dkd__close_mode mode)
{
    conn *c = ctx;
    if (mode == DKD__CLOSE_NOW) {
        dkd__conn_begin_close(c);
    } else if (c->state == CONN_OPEN || c->state == CONN_RX_DONE) {
        c->state = CONN_LINGER; /* flushed, then closed, when the session call returns */
    }
}

static bool env_budget_take(void *ctx, uint64_t n)
{
    return dkd__budget_take(((conn *)ctx)->w->srv, n);
}

static void env_budget_give(void *ctx, uint64_t n)
{
    dkd__budget_give(((conn *)ctx)->w->srv, n);
}

static void env_log(void *ctx, enum dkd__log_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void env_log(void *ctx, enum dkd__log_kind kind, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dkd__wlog_v(((conn *)ctx)->w, kind, level, fmt, ap);
    va_end(ap);
}

static void env_stats(void *ctx, dkd__server_stats *out)
{
    dkd__server_stats_get(((conn *)ctx)->w->srv, out);
}

static void env_extra_stats(void *ctx, void (*add)(void *actx, const char *name, uint64_t v),
                            void *actx)
{
    dkd__server *srv = ((conn *)ctx)->w->srv;
    if (srv->cfg.extra_stats != NULL) {
        srv->cfg.extra_stats(srv->cfg.extra_stats_arg, add, actx);
    }
}

/* env_map_region maps a region the client passed, or says why it cannot. The seal
 * against shrinking is what makes reading it safe: a client that truncated a plain file
 * under our mapping would turn our next read into SIGBUS and take every connection down. */
static const char *env_map_region(void *ctx, int fd, uint64_t size, const uint8_t **out)
{
    (void)ctx;
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

static void env_unmap_region(void *ctx, const uint8_t *base, uint64_t size)
{
    (void)ctx;
    munmap((void *)base, (size_t)size);
}

static void env_close_fd(void *ctx, int fd)
{
    (void)ctx;
    close(fd);
}

/* dkd__conn_env_init gives a new connection's session what it may ask of us. */
void dkd__conn_env_init(conn *c, pid_t pid, uid_t uid)
{
    worker *w = c->w;
    c->env = (dkd__sess_env){
        .ctx = c,
        .out = &c->pend,
        .cnt = &w->cnt,
        .now_ms = env_now,
        .unix_time = env_unix_time,
        .lookup = env_lookup,
        .timer_arm = env_timer_arm,
        .timer_cancel = env_timer_cancel,
        .close = env_close,
        .budget_take = env_budget_take,
        .budget_give = env_budget_give,
        .log = env_log,
        .stats = env_stats,
        .extra_stats = env_extra_stats,
        .map_region = env_map_region,
        .unmap_region = env_unmap_region,
        .close_fd = env_close_fd,
        .peer_pid = pid,
        .peer_uid = uid,
    };
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
        SUM(shm_attached);
        SUM(shm_requests);
        SUM(shm_bytes);
        SUM(milter_messages);
        SUM(milter_verified);
        SUM(milter_signed);
        SUM(milter_unsigned);
        SUM(milter_aborted);
        SUM(milter_tempfailed);
        SUM(milter_errors);
    }
#undef SUM
    out->memory_used = atomic_load_explicit(&srv->memory_used, memory_order_relaxed);
    out->workers = srv->nworkers;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out->cpu_user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
    out->cpu_system_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    out->max_rss_kib = (uint64_t)ru.ru_maxrss;
}
