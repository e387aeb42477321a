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
 * shrinks back once that frame is done. A VERIFY's message is verified where it lies in
 * that buffer (no copy); frames are moved only when the next one would not fit.
 *
 * Key lookups: the key source may answer synchronously (the zone file) or later from
 * another thread (the resolver). A later answer is pushed on the owning worker's
 * lock-free completion stack and the worker is woken through an eventfd read that sits
 * in its ring, so the worker never blocks. Each lookup carries the request's generation:
 * an answer for a request that has gone (client left, deadline passed) is dropped.
 *
 * Lifetimes: a connection is freed only when no SQE refers to it (ops == 0); a request
 * goes back to the worker's pool only when its deadline timer is no longer in the ring.
 *
 * This file holds the rings, connections, accept, shutdown and set-up; frames, requests
 * and key lookups are in server_req.c.
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
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"

_Thread_local worker *dkd__tl_worker;
_Thread_local const req *dkd__tl_req;

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
    if (dkd__tl_req != NULL && dkd__tl_req->has_time) {
        return dkd__tl_req->time;
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
 * dkd__wlog logs one problem line from a worker, at most one per kind per second: a hostile
 * or broken client must not be able to fill the disk. The line after a quiet second says
 * how many were suppressed.
 */
void dkd__wlog(worker *w, enum log_kind kind, int level, const char *fmt, ...)
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

/* dkd__budget_take charges n bytes to the global memory budget; false when over it. */
bool dkd__budget_take(dkd__server *srv, uint64_t n)
{
    uint64_t used = atomic_fetch_add_explicit(&srv->memory_used, n, memory_order_relaxed);
    if (used + n > srv->cfg.memory_budget) {
        atomic_fetch_sub_explicit(&srv->memory_used, n, memory_order_relaxed);
        return false;
    }
    return true;
}

void dkd__budget_give(dkd__server *srv, uint64_t n)
{
    atomic_fetch_sub_explicit(&srv->memory_used, n, memory_order_relaxed);
}

void dkd__budget_force(dkd__server *srv, uint64_t n)
{
    atomic_fetch_add_explicit(&srv->memory_used, n, memory_order_relaxed);
}

/* dkd__get_sqe never fails: a full submission queue is flushed to the kernel first. */
struct io_uring_sqe *dkd__get_sqe(worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    while (sqe == NULL) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

/* ---- connections ---- */

static void conn_arm_recv(conn *c)
{
    if (c->recv_armed || c->closing || c->close_after_send || c->draining || c->rx_eof) {
        return;
    }
    /* Back-pressure: a client that does not read its answers is not read either (its
     * sends block in its kernel buffer), so its queued output stays within its share.
     * on_send resumes it. */
    if (c->rx_paused || dkd__conn_out_queued(c) >= c->w->srv->out_share) {
        return;
    }
    struct io_uring_sqe *sqe = dkd__get_sqe(c->w);
    c->riov = (struct iovec){.iov_base = c->rbuf + c->rlen, .iov_len = c->rcap - c->rlen};
    /* Zeroed so that take_fds reads no stale header whatever the kernel writes back. */
    memset(c->rctl, 0, sizeof c->rctl);
    c->rmsg = (struct msghdr){.msg_iov = &c->riov,
                              .msg_iovlen = 1,
                              .msg_control = c->rctl,
                              .msg_controllen = sizeof c->rctl};
    io_uring_prep_recvmsg(sqe, c->fd, &c->rmsg, MSG_CMSG_CLOEXEC);
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
    dkd__budget_give(srv, c->charged + RBUF_BASE + c->out_charged);
    free(c->refused);
    if (c->passed_fd >= 0) {
        close(c->passed_fd);
    }
    if (c->shm != NULL) {
        munmap((void *)c->shm, c->shm_size);
    }
    free(c->rbuf);
    dkd__wbuf_free(&c->out);
    dkd__wbuf_free(&c->pend);
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
    CNT_SUB(w, connections_open, 1);
    free(c);
}

/* dkd__conn_begin_close drops the connection's requests and waits for its SQEs to finish. */
void dkd__conn_begin_close(conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    while (c->reqs != NULL) {
        dkd__req_release(c->reqs);
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

/* take_fds keeps the first descriptor a client passes (for SHM_ATTACH) and closes any
 * other: a client may not pin more than one of our descriptors at a time. */
static void take_fds(conn *c)
{
    if (c->rmsg.msg_flags & MSG_CTRUNC) {
        c->fd_excess = true; /* the kernel closed what did not fit */
    }
    c->rmsg.msg_control = c->rctl;
    if (c->rmsg.msg_controllen > sizeof c->rctl) {
        c->rmsg.msg_controllen = sizeof c->rctl;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&c->rmsg); cm != NULL && cm->cmsg_len >= CMSG_LEN(0);
         cm = CMSG_NXTHDR(&c->rmsg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < n; k++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
            if (c->passed_fd < 0) {
                c->passed_fd = fd;
                c->fd_fresh = true;
            } else {
                close(fd);
                c->fd_excess = true;
            }
        }
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
    if (res == 0) {
        /* EOF: the client may only have shut down its sending side and still wait for
         * the answers to what it sent (PROTOCOL.md 3). */
        dkd__conn_eof(c);
        conn_op_done(c);
        return;
    }
    if (res < 0) {
        /* A reset: the client has gone; its open requests go with it. */
        dkd__conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    CNT_ADD(w, bytes_in, res);
    c->rlen += (size_t)res;
    take_fds(c);
    if (c->fd_excess) {
        dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_PROTOCOL,
                        "more than one file descriptor passed");
    } else {
        dkd__conn_process(c);
    }
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
        dkd__conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    if (res > 0) {
        CNT_ADD(w, bytes_out, res);
        c->out_off += (size_t)res;
        c->tx_wait_ms = w->now_ms; /* progress: the stall clock of its output restarts */
    }
    dkd__conn_flush(c);
    /* Resume a paused client once half its share has drained (not at once, or every
     * send would resume it for a single frame). */
    if (!c->closing && c->rx_paused && dkd__conn_out_queued(c) <= w->srv->out_share / 2) {
        c->rx_paused = false;
        dkd__conn_process(c);
    }
    if (!c->closing) {
        conn_arm_recv(c);
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
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
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
    dkd__wbuf b;
    dkd__wbuf_init_fixed(&b, mem, sizeof mem);
    dkd__wire_put_error(&b, 0, code, dkd__span_str(text));
    if (dkd__wbuf_ok(&b) == 0) {
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
            dkd__wlog(w, LK_SYSTEM, DKD__LOG_ERR, "accept: %s", strerror(-res));
        }
        arm_accept(w);
        return;
    }
    int fd = res;
    if (w->stopping) {
        refuse(w, fd, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
        return;
    }
    arm_accept(w);
    struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t crlen = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 || !peer_allowed(srv, &cr)) {
        dkd__wlog(w, LK_REFUSED, DKD__LOG_WARNING,
                  "refused peer pid %ld uid %ld gid %ld: not allowed", (long)cr.pid, (long)cr.uid,
                  (long)cr.gid);
        close(fd);
        CNT_ADD(w, connections_refused, 1);
        return;
    }
    uint64_t open = atomic_fetch_add_explicit(&srv->connections_open, 1, memory_order_relaxed);
    if (open >= srv->cfg.max_connections) {
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        dkd__wlog(w, LK_OVERLOADED, DKD__LOG_WARNING, "refused a connection: %llu open (limit %u)",
                  (unsigned long long)open, srv->cfg.max_connections);
        refuse(w, fd, DKD__WIRE_E_OVERLOADED, "too many connections");
        return;
    }
    if (!dkd__budget_take(srv, RBUF_BASE)) {
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        dkd__wlog(w, LK_OVERLOADED, DKD__LOG_WARNING,
                  "refused a connection: memory budget of %llu bytes exhausted",
                  (unsigned long long)srv->cfg.memory_budget);
        refuse(w, fd, DKD__WIRE_E_OVERLOADED, "server memory budget exhausted");
        return;
    }
    conn *c = calloc(1, sizeof *c);
    uint8_t *rb = malloc(RBUF_BASE);
    if (c == NULL || rb == NULL) {
        free(c);
        free(rb);
        dkd__budget_give(srv, RBUF_BASE);
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        refuse(w, fd, DKD__WIRE_E_OVERLOADED, "out of memory");
        return;
    }
    c->w = w;
    c->fd = fd;
    c->passed_fd = -1;
    c->pid = cr.pid;
    c->uid = cr.uid;
    c->accepted_ms = w->now_ms;
    c->rbuf = rb;
    c->rcap = RBUF_BASE;
    dkd__wbuf_init(&c->out);
    dkd__wbuf_init(&c->pend);
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
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
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
    int64_t t = now_ms();
    bool expired = t >= w->stop_deadline_ms;
    bool hard = t >= w->stop_deadline_ms + SHUTDOWN_FLUSH_MS;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing) {
            continue;
        }
        if (hard) {
            /* Answers queued at the deadline had their time to go out: a client that
             * still has not read them does not hold up the exit. */
            dkd__conn_begin_close(c);
            continue;
        }
        if (c->draining) {
            continue;
        }
        if (expired) {
            dkd__conn_deadline(c);
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
                dkd__send_error(c, r->id, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
            }
            if (c->closing) {
                break; /* out of memory queueing: every request is gone already */
            }
            dkd__req_release(r);
        }
        if (!c->closing) {
            dkd__send_error(c, 0, DKD__WIRE_E_SHUTTING_DOWN, "server is shutting down");
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
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
    io_uring_prep_timeout(sqe, &w->sweep_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, OP_SWEEP));
}

/*
 * sweep closes connections that hold memory without making progress, each case bounded
 * by the stall timeout as a whole: a HELLO that has not arrived, a frame begun and not
 * finished (however slowly its bytes trickle in), a streamed message with no frame for
 * that long (a stream may follow a slow SMTP transfer, so its frames, not the whole
 * stream, are bounded), and answers the client does not read. Each pins a buffer or a
 * request, and a client that vanished without closing, or a slowloris, would otherwise
 * hold them for ever. Connections merely idle between requests stay: MTAs keep them.
 */
static void sweep(worker *w)
{
    int64_t t = now_ms();
    int64_t limit = t - (int64_t)w->srv->cfg.stall_timeout_ms;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing) {
            continue;
        }
        if (c->tx_wait_ms != 0 && c->tx_wait_ms <= limit) {
            /* It does not read: an ERROR would not reach it either. */
            dkd__wlog(w, LK_MALFORMED, DKD__LOG_WARNING,
                      "client pid %ld uid %ld: answers unread past stall-timeout; closing",
                      (long)c->pid, (long)c->uid);
            dkd__conn_begin_close(c);
            continue;
        }
        if (c->close_after_send) {
            continue;
        }
        const char *why = NULL;
        if (!c->hello_done && c->accepted_ms <= limit) {
            why = "no HELLO within stall-timeout";
        } else if (!c->rx_paused && c->partial_since_ms != 0 && c->partial_since_ms <= limit) {
            why = "frame not completed within stall-timeout";
        }
        for (req *r = c->reqs; r != NULL && why == NULL; r = r->next) {
            if (r->streaming && !r->ended && r->last_frame_ms <= limit) {
                why = "streamed message stalled past stall-timeout";
            }
        }
        if (why != NULL) {
            dkd__conn_fatal(c, LK_MALFORMED, DKD__WIRE_E_MALFORMED, why);
        }
    }
}

static void on_event(worker *w)
{
    dkd__drain_done_stack(w);
    if (!w->stopping && atomic_load_explicit(&w->srv->stop, memory_order_acquire)) {
        w->stopping = true;
        w->stop_deadline_ms = now_ms() + w->srv->cfg.shutdown_timeout_ms;
        if (w->accept_armed) {
            struct io_uring_sqe *sqe = dkd__get_sqe(w);
            io_uring_prep_cancel64(sqe, ud_make(w, OP_ACCEPT), 0);
            io_uring_sqe_set_data64(sqe, 0);
        }
        drain_step(w);
        arm_tick(w);
    }
}

static void arm_event(worker *w)
{
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
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
        dkd__req_timer(w, p, cqe->res);
        break;
    case OP_TICK:
        w->tick_armed = false;
        dkd__drain_done_stack(w);
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
    dkd__tl_worker = w;
    w->now_ms = now_ms();
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
            dkd__wlog(w, LK_SYSTEM, DKD__LOG_ERR, "io_uring_submit_and_wait: %s", strerror(-rc));
            break;
        }
        /* One clock read per batch: the stall bookkeeping needs only milliseconds. */
        w->now_ms = now_ms();
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
            dkd__req_release(c->reqs);
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
        .max_shm_bytes = 1ull << 30,
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
    srv->authserv_len = strlen(srv->authserv_id);
    if (srv->authserv_len > DKD__WIRE_MAX_AUTHSERV) {
        srv->authserv_len = DKD__WIRE_MAX_AUTHSERV;
    }
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
    /* An even split of the budget, less the receive buffer, over four: a connection at
     * its share holds two send buffers (one being sent, one filling), each up to twice
     * what it holds as it grows by doubling. So all connections at their shares fit in
     * the budget together and a client that never reads cannot crowd out the others.
     * Answers are small (a RESULT is well under 16 KiB), so even the 16 KiB floor holds
     * a few; at the defaults (1 GiB, 4096 connections) the share is 48 KiB. */
    uint64_t even = srv->cfg.memory_budget / srv->cfg.max_connections;
    srv->out_share = even > RBUF_BASE ? (even - RBUF_BASE) / 4 : 0;
    if (srv->out_share < OUT_SHARE_MIN) {
        srv->out_share = OUT_SHARE_MIN;
    }
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
        dkd__wbuf_init(&w->scratch);
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
    srv_log(srv, DKD__LOG_INFO, "%u workers, ring flags 0x%x, %s accept", started, srv->ring_flags,
            srv->multishot ? "multishot" : "single-shot");
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
        dkd__wbuf_free(&w->scratch);
        free(w->hdr_copy);
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
        SUM(shm_attached);
        SUM(shm_requests);
        SUM(shm_bytes);
    }
#undef SUM
    out->memory_used = atomic_load_explicit(&srv->memory_used, memory_order_relaxed);
}
