/*
 * server.c - the dkimd server's set-up: validates the configuration, probes io_uring
 * features, creates the workers (one thread and one ring each, transport.c) and the
 * listener with its protocol session (session_wire.c), and stops and frees them.
 *
 * Workload: runs once at start and once at exit, on the daemon's main thread; nothing
 * here is on the request path.
 */
#include "server.h"

#include <errno.h>
#include <liburing.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session_milter.h"
#include "session_wire.h"
#include "transport.h"

static void default_log(void *arg, int level, const char *line)
{
    (void)arg;
    (void)level;
    fprintf(stderr, "%s\n", line);
}

/* ---- set-up ---- */

void dkd__server_config_init(dkd__server_config *sc)
{
    *sc = (dkd__server_config){
        .listen_fd = -1,
        .milter_fd = -1,
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

/* add_listener: a socket and its protocol. Only Unix sockets carry peer credentials
 * (the uid and gid allow-lists); TCP ones get no Nagle delay, since a milter's replies
 * are small packets the MTA waits for. */
static void add_listener(dkd__server *srv, int fd, const dkd__sess_ops *ops, const void *cfg)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    bool is_unix = getsockname(fd, (struct sockaddr *)&ss, &len) != 0 || ss.ss_family == AF_UNIX;
    srv->listeners[srv->nlisteners++] = (listener){fd, ops, cfg, is_unix};
}

dkd__server *dkd__server_new(const dkd__server_config *sc, dkd_engine *eng, dkd_keysrc src,
                             char *err, size_t err_len)
{
    if (sc->listen_fd < 0 && sc->milter_fd < 0) {
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
    size_t authserv_len = strlen(srv->authserv_id);
    if (authserv_len > DKD__WIRE_MAX_AUTHSERV) {
        authserv_len = DKD__WIRE_MAX_AUTHSERV; /* longer ids are cut */
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
    srv->wire = (dkd__wire_cfg){
        .max_message_bytes = srv->cfg.max_message_bytes,
        .max_header_bytes = srv->cfg.max_header_bytes,
        .max_body_chunk = srv->cfg.max_body_chunk,
        .max_shm_bytes = srv->cfg.max_shm_bytes,
        .max_frame = (uint32_t)mf,
        .max_inflight = srv->cfg.max_inflight,
        .key_timeout_ms = srv->cfg.key_timeout_ms,
        .authserv_id = srv->authserv_id,
        .authserv_len = authserv_len,
    };
    if (sc->listen_fd >= 0) {
        add_listener(srv, sc->listen_fd, &dkd__wire_session, &srv->wire);
    }
    if (sc->milter_fd >= 0) {
        add_listener(srv, sc->milter_fd, &dkd__milter_session, sc->milter_cfg);
    }
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
        for (unsigned li = 0; li < srv->nlisteners; li++) {
            const listener *l = &srv->listeners[li];
            w->sess_worker[li] = l->ops->worker_new(l->cfg, eng);
        }
        w->efd = eventfd(0, EFD_CLOEXEC);
        if (w->efd < 0) {
            snprintf(err, err_len, "eventfd: %s", strerror(errno));
            srv->nworkers = i + 1;
            dkd__server_free(srv);
            return NULL;
        }
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
    dkd__worker_main(w);
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
    dkd__srv_log(srv, DKD__LOG_INFO, "%u workers, ring flags 0x%x, %s accept", started,
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
        dkd__worker_free(&srv->workers[i]);
    }
    free(srv->workers);
    free(srv->allow_uids);
    free(srv->allow_gids);
    free(srv->authserv_id);
    free(srv);
}
