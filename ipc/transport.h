/*
 * transport.h - what the transport (transport.c) and the server's set-up (server.c)
 * share: the worker, connection, timer and lookup structures. Internal to ipc/;
 * everything here belongs to one worker thread unless it says otherwise. Sessions never
 * see these: they get a dkd__sess_env (session.h).
 */
#ifndef DKIMD_IPC_TRANSPORT_H
#define DKIMD_IPC_TRANSPORT_H

#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "server.h"
#include "session.h"
#include "session_wire.h"

/* ---- user_data: a pointer (8-byte aligned) with the operation in its low 3 bits ---- */

enum op {
    OP_NONE = 0, /* cancels and timer removals: nothing to do on completion */
    OP_ACCEPT = 1,
    OP_RECV = 2,
    OP_SEND = 3,
    OP_EVENT = 4, /* eventfd read: cross-thread wake-up */
    OP_TIMER = 5, /* a session's timer */
    OP_TICK = 6,  /* the worker's drain tick during shutdown */
    OP_SWEEP = 7, /* the worker's once-a-second check for stalled clients */
};

static inline uint64_t ud_make(void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

static inline void *ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ~(uint64_t)7);
}

enum {
    RBUF_BASE = 64 * 1024,     /* receive buffer of every connection */
    OUT_SHARE_MIN = 16 * 1024, /* a connection may always queue this much output */
    OUT_KEEP = 64 * 1024,      /* send buffers larger than this are freed once sent */
    SHUTDOWN_FLUSH_MS = 1000,  /* after the shutdown timeout: time to send the answers */
    RING_ENTRIES = 1024,
    TICK_MS = 20,
    MAX_LISTENERS = 4,
};

typedef struct worker worker;
typedef struct conn conn;

/* A listening socket and the protocol its connections speak. */
typedef struct listener {
    int fd;
    const dkd__sess_ops *ops;
    const void *cfg; /* the protocol's configuration, for ops->worker_new */
    bool is_unix;    /* AF_UNIX: peers have credentials; otherwise TCP */
} listener;

/* One key lookup in progress. Created and freed on the owning worker. */
typedef struct lookup {
    struct lookup *next; /* free list, or the completion stack */
    worker *w;
    conn *c;
    uint32_t conn_gen; /* the answer is dropped if the connection was reused */
    uint64_t token;
    dkd_key *key; /* set by a cross-thread completion */
} lookup;

/* One session timer. It stays allocated until its CQE, whatever happens to its
 * connection; the handle a session holds carries the generation, so a stale cancel is
 * harmless. */
typedef struct timer {
    struct timer *next; /* free list */
    conn *c;
    uint32_t conn_gen;
    uint32_t gen;
    uint32_t index;
    bool armed;     /* its timeout SQE is in the ring */
    bool cancelled; /* its firing must be ignored */
    uint64_t token;
    struct __kernel_timespec ts;
} timer;

enum conn_state {
    CONN_OPEN,    /* reading and writing */
    CONN_RX_DONE, /* the client shut down its side; the session still answers */
    CONN_LINGER,  /* the session asked to close once the queued output is sent */
    CONN_CLOSING, /* shut down; freed once no SQE refers to it */
    CONN_FREE,    /* in the worker's pool */
};

struct conn {
    conn *next, *prev; /* in worker->conns, or the free list */
    worker *w;
    uint32_t gen; /* bumped when freed: lookups and timers of a former life see it */
    enum conn_state state;
    int fd;
    unsigned ops; /* SQEs in the ring that refer to this connection */
    bool recv_armed, send_armed;
    bool rx_paused; /* back-pressure: its share of output is queued; input waits */
    const listener *lst;
    void *sess;
    unsigned in_sess;  /* calls into the session under way (a nested key answer: 2) */
    bool sess_closed;  /* ops->close has run */
    dkd__sess_env env; /* what the session was given */
    /* The stall timeout bounds each of these, not the gap between bytes: a client that
     * trickles a frame a byte at a time must not hold a connection for ever. */
    int64_t partial_since_ms; /* the incomplete input at the front began; 0 = none */
    int64_t tx_wait_ms;       /* output queued and not sent since; 0 = nothing queued */
    uint8_t *rbuf;
    size_t rcap, rlen;
    size_t rpos;      /* unconsumed bytes are rbuf[rpos..rlen): input is not moved */
    uint64_t charged; /* receive buffer growth charged to the budget */
    dkd__wbuf out;    /* being sent: out.ptr[out_off..out.len) */
    size_t out_off;
    dkd__wbuf pend;       /* queued while a send is in flight: the session's env.out */
    uint64_t out_charged; /* out.cap + pend.cap, charged to the memory budget */
    /* Receives are recvmsg so that a descriptor passed with SHM_ATTACH (SCM_RIGHTS) is
     * taken, not silently closed by the kernel. */
    struct msghdr rmsg;
    struct iovec riov;
    _Alignas(struct cmsghdr) char rctl[CMSG_SPACE(sizeof(int) * 4)];
    int rx_fd;      /* arrived with the last receive, for the session; -1 = none */
    bool fd_excess; /* more than one descriptor arrived with it (closed) */
};

struct worker {
    dkd__server *srv;
    unsigned index;
    pthread_t thread;
    struct io_uring ring;
    bool ring_ok;
    int efd;
    uint64_t efd_val;
    bool accept_armed[MAX_LISTENERS];
    bool multishot;
    bool stopping; /* saw the server's stop flag */
    bool tick_armed;
    int64_t now_ms; /* CLOCK_MONOTONIC, read once per batch of completions */
    struct __kernel_timespec tick_ts;
    struct __kernel_timespec sweep_ts;
    int64_t stop_deadline_ms;
    conn *conns;
    unsigned nconns;
    conn *free_conns;
    lookup *free_lookups;
    _Atomic(lookup *) done_stack; /* completions from other threads */
    timer **timers;               /* by index */
    uint32_t ntimers, timers_cap;
    timer *free_timers;
    void *sess_worker[MAX_LISTENERS]; /* each protocol's worker context */
    dkd__counters cnt;
    int64_t log_last[DKD__LK_COUNT];
    unsigned log_suppressed[DKD__LK_COUNT];
    char pad[64];
};

/* ud_make packs these pointers with the op in the low 3 bits: each must be 8-byte
 * aligned, and every op must fit in those bits. */
_Static_assert(OP_SWEEP <= 7, "user_data ops must fit in the low 3 bits");
_Static_assert(_Alignof(conn) >= 8, "conn pointers are packed into user_data");
_Static_assert(_Alignof(worker) >= 8, "worker pointers are packed into user_data");
_Static_assert(_Alignof(timer) >= 8, "timer pointers are packed into user_data");
_Static_assert(_Alignof(listener) >= 8, "listener pointers are packed into user_data");

struct dkd__server {
    dkd__server_config cfg;
    uid_t *allow_uids;
    gid_t *allow_gids;
    char *authserv_id;
    dkd_engine *eng;
    dkd_keysrc src;
    unsigned ring_flags;
    bool multishot;
    uint64_t out_share; /* output one connection may queue before it is no longer read */
    dkd__wire_cfg wire; /* the dkimd protocol's limits */
    listener listeners[MAX_LISTENERS];
    unsigned nlisteners;
    worker *workers;
    unsigned nworkers; /* fixed in dkd__server_new: the workers read it */
    unsigned nstarted; /* threads to join */
    bool started;
    atomic_bool stop;
    atomic_int log_level;
    _Atomic uint64_t memory_used;
    _Atomic uint64_t connections_open;
};

/* dkd__worker_main runs a worker's loop until it has stopped and every connection is
 * gone; then it frees what its connections held. On the worker's thread. */
void *dkd__worker_main(void *arg);
/* dkd__worker_free releases what is left of a worker after its thread has ended. */
void dkd__worker_free(worker *w);
/* dkd__srv_log logs a line from the server (not rate-limited: set-up only). */
void dkd__srv_log(dkd__server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- transport.c, for transport_env.c ---- */

extern _Thread_local worker *dkd__tl_worker; /* the worker on this thread, else NULL */
/* A call into a connection's session: a close it asks for waits for the outermost
 * leave, which also sends what it queued. */
void dkd__sess_enter(conn *c);
void dkd__sess_leave(conn *c);
bool dkd__sess_live(const conn *c); /* the session may still be called */
void dkd__conn_begin_close(conn *c);
bool dkd__budget_take(dkd__server *srv, uint64_t n); /* false when over the budget */
void dkd__budget_give(dkd__server *srv, uint64_t n);
void dkd__wlog_v(worker *w, enum dkd__log_kind kind, int level, const char *fmt, va_list ap);
struct io_uring_sqe *dkd__get_sqe(worker *w); /* never NULL: flushes a full queue */

/* ---- transport_env.c ---- */

void dkd__conn_env_init(conn *c, pid_t pid, uid_t uid);
void dkd__drain_done_stack(worker *w); /* apply the answers other threads posted */
void dkd__on_timer(worker *w, timer *t, int res);

#endif
