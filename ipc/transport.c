/*
 * transport.c - the workers' io_uring loop: accept, receive, send, timers, key lookup
 * completions, back-pressure, stall checks and the shutdown drain, for connections whose
 * protocol it does not know. Each connection's bytes go to its protocol session through
 * the session's ops (session.h); what the session answers is sent from here, and the
 * actions it asks for (look a key up, arm or cancel a timer, close) are carried out
 * here. Every io_uring submission of the server is made in this file.
 *
 * Workload: a few MTA processes keep long-lived connections and pipeline many small
 * messages (tens of KiB) on each, with the occasional multi-megabyte message streamed in
 * chunks. The hot path is recv -> session input (frames -> engine -> answers) -> send,
 * all on one thread with no lock: a connection lives on the worker that accepted it, and
 * so do its session, its timers and its output.
 *
 * Accept: every worker keeps a multishot accept on each listening socket and the kernel
 * hands each connection to one of them (SO_REUSEPORT does not exist for Unix sockets,
 * and a dedicated acceptor thread would add a hop and a hand-off). Kernels without
 * multishot accept get single-shot accepts re-armed after each completion.
 *
 * Receive: one plain recvmsg per connection into a per-connection buffer. Provided
 * buffer rings would save memory on idle connections, but every frame that straddles two
 * buffers would then have to be copied out anyway; the buffer is 64 KiB and grows only
 * for a frame that needs it (a whole-message VERIFY), charged to the memory budget, and
 * shrinks back once that frame is done. The session reads its input where it lies (no
 * copy); input is moved only when the next frame would not fit.
 *
 * Key lookups: the key source may answer synchronously (the zone file) or later from
 * another thread (the resolver). A later answer is pushed on the owning worker's
 * lock-free completion stack and the worker is woken through an eventfd read that sits
 * in its ring, so the worker never blocks.
 *
 * Lifetimes: connection objects are pooled per worker and carry a generation, so a
 * lookup answer or a timer of a connection that has gone finds a newer generation and
 * is dropped. A connection goes back to the pool only when no SQE refers to it (ops ==
 * 0); a timer object only when its own CQE has arrived.
 */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The worker running on this thread (NULL elsewhere): a key answer given on it is
 * applied at once. */
_Thread_local worker *dkd__tl_worker;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dkd__srv_log(dkd__server *srv, int level, const char *fmt, ...)
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
 * dkd__wlog_v logs one problem line from a worker, at most one per kind per second: a hostile
 * or broken client must not be able to fill the disk. The line after a quiet second says
 * how many were suppressed.
 */
void dkd__wlog_v(worker *w, enum dkd__log_kind kind, int level, const char *fmt, va_list ap)
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
    vsnprintf(msg, sizeof msg, fmt, ap);
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

static void wlog(worker *w, enum dkd__log_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void wlog(worker *w, enum dkd__log_kind kind, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dkd__wlog_v(w, kind, level, fmt, ap);
    va_end(ap);
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

/* ---- calls into sessions ---- */

static void conn_flush(conn *c);

void dkd__sess_enter(conn *c)
{
    c->in_sess++;
}

/* dkd__sess_leave ends a call into the session: a close it asked for takes effect, and
 * what it queued goes out. */
void dkd__sess_leave(conn *c)
{
    c->in_sess--;
    if (c->in_sess > 0) {
        return;
    }
    if (c->state == CONN_CLOSING) {
        if (!c->sess_closed) {
            c->sess_closed = true;
            c->lst->ops->close(c->sess);
        }
        return;
    }
    conn_flush(c);
}

/* dkd__sess_live: the transport may still call this connection's session. */
bool dkd__sess_live(const conn *c)
{
    return c->state != CONN_CLOSING && c->state != CONN_FREE && !c->sess_closed;
}

/* ---- output ---- */

static size_t out_queued(const conn *c)
{
    return c->pend.len + (c->out.len - c->out_off);
}

/* account_out keeps the memory budget's charge equal to what the send buffers hold:
 * answers a client has not read yet are memory like any other. It can take the budget
 * over its limit (the memory is already in use), which then refuses new requests. */
static void account_out(conn *c)
{
    dkd__server *srv = c->w->srv;
    uint64_t held = (uint64_t)c->out.cap + c->pend.cap;
    if (held > c->out_charged) {
        atomic_fetch_add_explicit(&srv->memory_used, held - c->out_charged, memory_order_relaxed);
    } else if (held < c->out_charged) {
        dkd__budget_give(srv, c->out_charged - held);
    }
    c->out_charged = held;
}

/* conn_flush starts sending queued output unless a send is already in flight. */
static void conn_flush(conn *c)
{
    if (c->send_armed || c->state == CONN_CLOSING || c->state == CONN_FREE) {
        return;
    }
    if (dkd__wbuf_ok(&c->pend) != 0) {
        /* Out of memory for an answer: the connection cannot be kept consistent. */
        wlog(c->w, DKD__LK_SYSTEM, DKD__LOG_ERR, "out of memory queueing an answer; closing");
        dkd__conn_begin_close(c);
        return;
    }
    if (c->pend.len > 0 && c->tx_wait_ms == 0) {
        c->tx_wait_ms = c->w->now_ms;
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
            if (c->state == CONN_LINGER) {
                dkd__conn_begin_close(c);
            }
            return;
        }
        dkd__wbuf t = c->out;
        c->out = c->pend;
        c->pend = t;
    }
    account_out(c);
    struct io_uring_sqe *sqe = dkd__get_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(c, OP_SEND));
    c->send_armed = true;
    c->ops++;
}

/* ---- connections ---- */

static void conn_arm_recv(conn *c)
{
    if (c->recv_armed || c->state != CONN_OPEN) {
        return;
    }
    /* Back-pressure: a client that does not read its answers is not read either (its
     * sends block in its kernel buffer), so its queued output stays within its share.
     * on_send resumes it. */
    if (c->rx_paused || out_queued(c) >= c->w->srv->out_share) {
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

/* conn_free returns a connection to the worker's pool; its generation changes, so late
 * lookup answers and timers find it gone. */
static void conn_free(conn *c)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    if (!c->sess_closed) {
        c->sess_closed = true;
        c->lst->ops->close(c->sess);
    }
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
    if (c->rx_fd >= 0) {
        close(c->rx_fd);
    }
    free(c->rbuf);
    dkd__wbuf_free(&c->out);
    dkd__wbuf_free(&c->pend);
    atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
    DKD__CNT_SUB(&w->cnt, connections_open, 1);
    c->state = CONN_FREE;
    c->gen++;
    c->next = w->free_conns;
    w->free_conns = c;
}

/* dkd__conn_begin_close stops the connection: its session ends (now, or when the call into
 * it that asked returns) and the connection is freed once no SQE refers to it. */
void dkd__conn_begin_close(conn *c)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE) {
        return;
    }
    c->state = CONN_CLOSING;
    if (c->in_sess == 0 && !c->sess_closed) {
        c->sess_closed = true;
        c->lst->ops->close(c->sess);
    }
    /* shutdown() completes a pending recv with 0 and a pending send with an error, so the
     * connection's SQEs drain without a cancel round trip per operation. */
    shutdown(c->fd, SHUT_RDWR);
    if (c->ops == 0 && c->in_sess == 0) {
        conn_free(c);
    }
}

static void conn_op_done(conn *c)
{
    c->ops--;
    if (c->state == CONN_CLOSING && c->ops == 0 && c->in_sess == 0) {
        conn_free(c);
    }
}

/* take_fds keeps the first descriptor a client passes and closes any other: a client
 * may not pin more than one of our descriptors at a time. */
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
            if (c->rx_fd < 0) {
                c->rx_fd = fd;
            } else {
                close(fd);
                c->fd_excess = true;
            }
        }
    }
}

/*
 * conn_input hands the unconsumed input to the session, then makes sure the buffer can
 * hold the rest of the partial frame, if any.
 *
 * The partial frame at the end stays in place while the buffer has room for the whole
 * of it; it is moved to the front only when it would not fit (or its length is not
 * known yet). (Stopping the recv at a large frame's end, so that the next frame always
 * starts at the front, was tried: it cost 0.27 more recvs per 200 KB message than the
 * few KB it saved moving.)
 */
static void conn_input(conn *c)
{
    worker *w = c->w;
    dkd__server *srv = w->srv;
    size_t queued = out_queued(c);
    size_t room = queued < srv->out_share ? srv->out_share - queued : 0;
    int fd = c->rx_fd;
    unsigned flags = c->fd_excess ? DKD__IN_FD_EXCESS : 0;
    c->rx_fd = -1;
    c->fd_excess = false;
    dkd__sess_enter(c);
    dkd__sess_input in =
        c->lst->ops->input(c->sess, c->rbuf + c->rpos, c->rlen - c->rpos, fd, flags, room);
    c->rx_paused = in.paused && dkd__sess_live(c);
    dkd__sess_leave(c);
    if (c->state != CONN_OPEN && c->state != CONN_RX_DONE) {
        return;
    }
    c->rpos += in.consumed;
    size_t left = c->rlen - c->rpos;
    if (left == 0) {
        c->partial_since_ms = 0;
    } else if (!c->rx_paused && (in.consumed > 0 || c->partial_since_ms == 0)) {
        c->partial_since_ms = w->now_ms; /* a new frame began in this receive */
    }
    size_t need = in.paused ? 0 : in.need;
    if (left == 0) {
        c->rpos = c->rlen = 0;
    } else if (need == 0 || c->rpos + need > c->rcap) {
        memmove(c->rbuf, c->rbuf + c->rpos, left);
        c->rpos = 0;
        c->rlen = left;
    }
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
            wlog(w, DKD__LK_OVERLOADED, DKD__LOG_WARNING, "no memory for a %zu-byte frame; closing",
                 need);
            dkd__conn_begin_close(c);
            return;
        }
        c->rbuf = nb;
        c->rcap = want;
        c->charged += extra;
    } else if (c->rcap > RBUF_BASE && c->rlen <= RBUF_BASE && c->rpos + need <= RBUF_BASE &&
               c->rcap > srv->cfg.max_body_chunk + DKD__WIRE_HEADER_LEN) {
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

static void on_recv(worker *w, conn *c, int res)
{
    c->recv_armed = false;
    /* The completed SQE still counts in c->ops until the end, so nothing below can free
     * the connection under our feet. */
    if (c->state != CONN_OPEN) {
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
        c->state = CONN_RX_DONE;
        c->partial_since_ms = 0;
        dkd__sess_enter(c);
        c->lst->ops->eof(c->sess);
        dkd__sess_leave(c);
        conn_op_done(c);
        return;
    }
    if (res < 0) {
        /* A reset: the client has gone; its open requests go with it. */
        dkd__conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    DKD__CNT_ADD(&w->cnt, bytes_in, res);
    c->rlen += (size_t)res;
    take_fds(c);
    conn_input(c);
    if (c->state == CONN_OPEN) {
        c->ops--;
        conn_arm_recv(c);
        return;
    }
    conn_op_done(c);
}

static void on_send(worker *w, conn *c, int res)
{
    c->send_armed = false;
    if (c->state == CONN_CLOSING) {
        conn_op_done(c);
        return;
    }
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        dkd__conn_begin_close(c);
        conn_op_done(c);
        return;
    }
    if (res > 0) {
        DKD__CNT_ADD(&w->cnt, bytes_out, res);
        c->out_off += (size_t)res;
        c->tx_wait_ms = w->now_ms; /* progress: the stall clock of its output restarts */
    }
    conn_flush(c);
    /* Resume a paused client once half its share has drained (not at once, or every
     * send would resume it for a single frame). */
    if (c->rx_paused && dkd__sess_live(c) && out_queued(c) <= w->srv->out_share / 2) {
        c->rx_paused = false;
        conn_input(c);
    }
    conn_arm_recv(c);
    conn_op_done(c);
}

/* ---- accept ---- */

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

static void arm_accept(worker *w, unsigned li)
{
    if (w->accept_armed[li] || w->stopping) {
        return;
    }
    struct io_uring_sqe *sqe = dkd__get_sqe(w);
    int fd = w->srv->listeners[li].fd;
    if (w->multishot) {
        io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    } else {
        io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    }
    /* The listener's address, 8-byte aligned inside the server, names it in user_data. */
    io_uring_sqe_set_data64(sqe, ud_make(&w->srv->listeners[li], OP_ACCEPT));
    w->accept_armed[li] = true;
}

static void refuse(worker *w, const listener *l, int fd, bool shutting_down, const char *text)
{
    /* A short best-effort answer on a fresh socket: its send buffer is empty, so a
     * non-blocking send either takes the whole of it or fails; both are fine. */
    uint8_t mem[128];
    dkd__wbuf b;
    dkd__wbuf_init_fixed(&b, mem, sizeof mem);
    l->ops->refuse(&b, shutting_down, text);
    if (dkd__wbuf_ok(&b) == 0) {
        ssize_t s = send(fd, b.ptr, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)s;
    }
    close(fd);
    DKD__CNT_ADD(&w->cnt, connections_refused, 1);
}

static conn *conn_new(worker *w)
{
    conn *c = w->free_conns;
    if (c != NULL) {
        w->free_conns = c->next;
        uint32_t gen = c->gen;
        memset(c, 0, sizeof *c);
        c->gen = gen;
    } else {
        c = calloc(1, sizeof *c);
    }
    return c;
}

static void on_accept(worker *w, const listener *l, struct io_uring_cqe *cqe)
{
    dkd__server *srv = w->srv;
    unsigned li = (unsigned)(l - srv->listeners);
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        w->accept_armed[li] = false;
    }
    if (res == -EINVAL && w->multishot) {
        /* A kernel without multishot accept (before 5.19): fall back to one-shot. */
        w->multishot = false;
        w->accept_armed[li] = false;
    }
    if (res < 0) {
        if (res != -ECANCELED && res != -EINVAL && res != -EAGAIN && res != -EINTR) {
            wlog(w, DKD__LK_SYSTEM, DKD__LOG_ERR, "accept: %s", strerror(-res));
        }
        arm_accept(w, li);
        return;
    }
    int fd = res;
    if (w->stopping) {
        refuse(w, l, fd, true, "server is shutting down");
        return;
    }
    arm_accept(w, li);
    struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t crlen = sizeof cr;
    if (!l->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
               !peer_allowed(srv, &cr)) {
        wlog(w, DKD__LK_REFUSED, DKD__LOG_WARNING,
             "refused peer pid %ld uid %ld gid %ld: not allowed", (long)cr.pid, (long)cr.uid,
             (long)cr.gid);
        close(fd);
        DKD__CNT_ADD(&w->cnt, connections_refused, 1);
        return;
    }
    uint64_t open = atomic_fetch_add_explicit(&srv->connections_open, 1, memory_order_relaxed);
    if (open >= srv->cfg.max_connections) {
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        wlog(w, DKD__LK_OVERLOADED, DKD__LOG_WARNING, "refused a connection: %llu open (limit %u)",
             (unsigned long long)open, srv->cfg.max_connections);
        refuse(w, l, fd, false, "too many connections");
        return;
    }
    if (!dkd__budget_take(srv, RBUF_BASE)) {
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        wlog(w, DKD__LK_OVERLOADED, DKD__LOG_WARNING,
             "refused a connection: memory budget of %llu bytes exhausted",
             (unsigned long long)srv->cfg.memory_budget);
        refuse(w, l, fd, false, "server memory budget exhausted");
        return;
    }
    conn *c = conn_new(w);
    uint8_t *rb = malloc(RBUF_BASE);
    if (c == NULL || rb == NULL) {
        if (c != NULL) {
            c->state = CONN_FREE;
            c->next = w->free_conns;
            w->free_conns = c;
        }
        free(rb);
        dkd__budget_give(srv, RBUF_BASE);
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        refuse(w, l, fd, false, "out of memory");
        return;
    }
    c->w = w;
    c->lst = l;
    c->fd = fd;
    c->rx_fd = -1;
    c->state = CONN_OPEN;
    c->rbuf = rb;
    c->rcap = RBUF_BASE;
    dkd__wbuf_init(&c->out);
    dkd__wbuf_init(&c->pend);
    dkd__conn_env_init(c, cr.pid, cr.uid);
    c->sess = l->ops->open(w->sess_worker[li], &c->env);
    if (c->sess == NULL) {
        free(rb);
        dkd__wbuf_free(&c->out);
        dkd__wbuf_free(&c->pend);
        c->state = CONN_FREE;
        c->next = w->free_conns;
        w->free_conns = c;
        dkd__budget_give(srv, RBUF_BASE);
        atomic_fetch_sub_explicit(&srv->connections_open, 1, memory_order_relaxed);
        refuse(w, l, fd, false, "out of memory");
        return;
    }
    c->next = w->conns;
    c->prev = NULL;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;
    DKD__CNT_ADD(&w->cnt, connections_total, 1);
    DKD__CNT_ADD(&w->cnt, connections_open, 1);
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
 * drain_step runs every tick while stopping. A connection's session is asked to finish
 * once nothing the client has sent is unread (FIONREAD, a non-blocking ioctl): it
 * answers what it can and asks to close (PROTOCOL.md 3). At the shutdown timeout every
 * session must finish at once; SHUTDOWN_FLUSH_MS later, connections whose client has not
 * read its last answers are closed anyway.
 */
static void drain_step(worker *w)
{
    int64_t t = now_ms();
    bool expired = t >= w->stop_deadline_ms;
    bool hard = t >= w->stop_deadline_ms + SHUTDOWN_FLUSH_MS;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_CLOSING) {
            continue;
        }
        if (hard) {
            dkd__conn_begin_close(c);
            continue;
        }
        if (c->state == CONN_LINGER) {
            continue;
        }
        if (!expired) {
            int unread = 0;
            if (ioctl(c->fd, FIONREAD, &unread) != 0) {
                unread = 0;
            }
            if (unread > 0) {
                continue; /* the armed recv will complete with it */
            }
        }
        dkd__sess_enter(c);
        c->lst->ops->drain(c->sess, expired);
        dkd__sess_leave(c);
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
 * by the stall timeout as a whole: answers the client does not read (closed here, since
 * an error would not be read either), and input cut off in the middle of a frame
 * however slowly its bytes trickle in (the session answers that with its protocol's
 * error). The session bounds what only it can see (a HELLO that has not arrived, a
 * stream with no frame). Connections merely idle between requests stay: MTAs keep them.
 */
static void sweep(worker *w)
{
    int64_t limit = now_ms() - (int64_t)w->srv->cfg.stall_timeout_ms;
    conn *next;
    for (conn *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_CLOSING) {
            continue;
        }
        if (c->tx_wait_ms != 0 && c->tx_wait_ms <= limit) {
            wlog(w, DKD__LK_MALFORMED, DKD__LOG_WARNING,
                 "client pid %ld uid %ld: answers unread past stall-timeout; closing",
                 (long)c->env.peer_pid, (long)c->env.peer_uid);
            dkd__conn_begin_close(c);
            continue;
        }
        if (c->state == CONN_LINGER) {
            continue;
        }
        bool stalled = !c->rx_paused && c->partial_since_ms != 0 && c->partial_since_ms <= limit;
        dkd__sess_enter(c);
        c->lst->ops->tick(c->sess, limit, stalled);
        dkd__sess_leave(c);
    }
}

static void on_event(worker *w)
{
    dkd__drain_done_stack(w);
    if (!w->stopping && atomic_load_explicit(&w->srv->stop, memory_order_acquire)) {
        w->stopping = true;
        w->stop_deadline_ms = now_ms() + w->srv->cfg.shutdown_timeout_ms;
        for (unsigned li = 0; li < w->srv->nlisteners; li++) {
            if (w->accept_armed[li]) {
                struct io_uring_sqe *sqe = dkd__get_sqe(w);
                io_uring_prep_cancel64(sqe, ud_make(&w->srv->listeners[li], OP_ACCEPT), 0);
                io_uring_sqe_set_data64(sqe, 0);
            }
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
        on_accept(w, p, cqe);
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
        dkd__on_timer(w, p, cqe->res);
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

void *dkd__worker_main(void *arg)
{
    worker *w = arg;
    dkd__tl_worker = w;
    w->now_ms = now_ms();
    arm_event(w);
    for (unsigned li = 0; li < w->srv->nlisteners; li++) {
        arm_accept(w, li);
    }
    arm_sweep(w);
    for (;;) {
        if (w->stopping) {
            /* Lookups still out need not be waited for: their answers land on the
             * completion stack, which dkd__worker_free drains after the key source has
             * been freed (and has completed them). */
            if (w->conns == NULL) {
                break;
            }
            arm_tick(w);
        }
        int rc = io_uring_submit_and_wait(&w->ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            wlog(w, DKD__LK_SYSTEM, DKD__LOG_ERR, "io_uring_submit_and_wait: %s", strerror(-rc));
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
    /* Anything left (the loop failed): close without waiting for the kernel. */
    while (w->conns != NULL) {
        conn *c = w->conns;
        c->state = CONN_CLOSING;
        c->ops = 0;
        conn_free(c);
    }
    return NULL;
}

void dkd__worker_free(worker *w)
{
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
    while (w->free_conns != NULL) {
        conn *c = w->free_conns;
        w->free_conns = c->next;
        free(c);
    }
    for (uint32_t i = 0; i < w->ntimers; i++) {
        free(w->timers[i]);
    }
    free(w->timers);
    for (unsigned li = 0; li < w->srv->nlisteners; li++) {
        w->srv->listeners[li].ops->worker_free(w->sess_worker[li]);
    }
    if (w->efd >= 0) {
        close(w->efd);
    }
}
