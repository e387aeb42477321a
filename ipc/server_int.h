/*
 * server_int.h - what the two halves of the server share: the worker, connection,
 * request and lookup structures, and the functions that cross between server.c (rings,
 * connections, accept, shutdown, set-up) and server_req.c (frames, requests, key
 * lookups, answers). Internal to ipc/; everything here belongs to one worker thread
 * unless it says otherwise.
 */
#ifndef DKIMD_IPC_SERVER_INT_H
#define DKIMD_IPC_SERVER_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "server.h"
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

static inline uint64_t ud_make(void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

static inline void *ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ~(uint64_t)7);
}

enum {
    RBUF_BASE = 64 * 1024,       /* receive buffer of every connection */
    OUT_SHARE_MIN = 16 * 1024,   /* a connection may always queue this much output */
    OUT_KEEP = 64 * 1024,        /* send buffers larger than this are freed once sent */
    SHUTDOWN_FLUSH_MS = 1000,    /* after the shutdown timeout: time to send the answers */
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
    _Atomic uint64_t shm_attached, shm_requests, shm_bytes;
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
    int64_t last_frame_ms; /* a stream's latest frame: the stall timeout bounds the gap */
    unsigned keys_pending;
    size_t nkeys;
    size_t wait_cap;
    bool *key_wait;      /* key_wait[i]: key i not delivered yet */
    uint64_t bytes;      /* header block + body so far */
    uint64_t charged;    /* bytes charged to the memory budget */
    struct __kernel_timespec ts;
    char authserv[DKD__WIRE_MAX_AUTHSERV + 1];
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
    bool rx_paused;   /* back-pressure: its share of output is queued; frames wait */
    bool rx_eof;      /* the client shut down its side: answer what is whole, then close */
    pid_t pid;
    uid_t uid;
    /* The stall timeout bounds each of these, not the gap between bytes: a client that
     * trickles a frame a byte at a time must not hold a connection for ever. */
    int64_t accepted_ms;      /* until HELLO */
    int64_t partial_since_ms; /* the incomplete frame at the end of rbuf began; 0 = none */
    int64_t tx_wait_ms;       /* output queued and not sent since; 0 = nothing queued */
    uint8_t *rbuf;
    size_t rcap, rlen;
    size_t rpos;      /* unprocessed bytes are rbuf[rpos..rlen): frames are not moved */
    bool in_process;  /* frames being handled: answers queue, one send at the end */
    dkd__wbuf out;     /* being sent: out.ptr[out_off..out.len) */
    size_t out_off;
    dkd__wbuf pend;    /* queued while a send is in flight */
    uint64_t out_charged; /* out.cap + pend.cap, charged to the memory budget */
    req *reqs;        /* open requests */
    unsigned nreqs;
    uint64_t charged; /* receive buffer growth charged to the budget */
    /* Receives are recvmsg so that a descriptor passed with SHM_ATTACH (SCM_RIGHTS) is
     * taken, not silently closed by the kernel. */
    struct msghdr rmsg;
    struct iovec riov;
    _Alignas(struct cmsghdr) char rctl[CMSG_SPACE(sizeof(int) * 4)];
    int passed_fd;          /* received and not yet claimed by an SHM_ATTACH; -1 = none */
    bool fd_excess;         /* more than one descriptor arrived: a protocol error */
    bool fd_fresh;          /* the receive being handled brought passed_fd */
    bool fd_claim_next;     /* the next whole frame must be the SHM_ATTACH it came with */
    /* Streams refused at VERIFY_BEGIN whose END has not arrived: their BODY and END are
     * discarded and their ids stay in use (PROTOCOL.md 4.4). At most max_inflight. */
    uint32_t *refused;
    unsigned nrefused;
    const uint8_t *shm;     /* the attached region (PROT_READ), NULL = none */
    uint64_t shm_size;
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
    bool deadline_done;  /* the shutdown timeout expired and every request was answered */
    int64_t now_ms;      /* CLOCK_MONOTONIC, read once per batch of completions */
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
    dkd__wbuf scratch;
    /* VERIFY_SHM header blocks are copied here before parsing: the client can write to
     * the region while we read it, and the header parser makes several passes. */
    uint8_t *hdr_copy;
    size_t hdr_copy_cap;
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
    size_t authserv_len; /* at most DKD__WIRE_MAX_AUTHSERV (longer ids are cut, as before) */
    dkd_engine *eng;
    dkd_keysrc src;
    unsigned ring_flags;
    bool multishot;
    uint32_t max_frame;
    uint64_t out_share; /* output one connection may queue before it is no longer read */
    worker *workers;
    unsigned nworkers; /* fixed in dkd__server_new: the workers read it */
    unsigned nstarted; /* threads to join */
    bool started;
    atomic_bool stop;
    atomic_int log_level;
    _Atomic uint64_t memory_used;
    _Atomic uint64_t connections_open;
};

/* The worker running on this thread (NULL elsewhere), and the request whose
 * dkd_msg_begin is running (its verification time, for dkd__server_clock). */
extern _Thread_local worker *dkd__tl_worker;
extern _Thread_local const req *dkd__tl_req;

/* ---- server.c ---- */

/* dkd__wlog logs one problem line, at most one per kind per second per worker. */
void dkd__wlog(worker *w, enum log_kind kind, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* dkd__budget_take charges n bytes to the global memory budget; false when over it. */
bool dkd__budget_take(dkd__server *srv, uint64_t n);
void dkd__budget_give(dkd__server *srv, uint64_t n);
/* dkd__budget_force charges memory that is already allocated (queued answers): it can
 * take the budget over its limit, which then refuses new requests until it drops. */
void dkd__budget_force(dkd__server *srv, uint64_t n);
/* dkd__get_sqe returns a submission entry, flushing a full queue first; never NULL. */
struct io_uring_sqe *dkd__get_sqe(worker *w);
/* dkd__conn_begin_close drops c's requests; c is freed once no SQE refers to it. */
void dkd__conn_begin_close(conn *c);

/* ---- server_req.c ---- */

/* dkd__conn_flush starts sending queued output unless a send is already in flight. */
void dkd__conn_flush(conn *c);
/* dkd__send_error queues an ERROR; on request_id 0 the connection closes once sent. */
void dkd__send_error(conn *c, uint32_t id, uint16_t code, const char *text);
/* dkd__conn_fatal logs (rate-limited), sends ERROR on request_id 0, then closes. */
void dkd__conn_fatal(conn *c, enum log_kind kind, uint16_t code, const char *text);
/* dkd__req_release ends a request; its state returns to the pool (after its timer). */
void dkd__req_release(req *r);
/* dkd__req_timer handles the CQE of a request's key deadline timer. */
void dkd__req_timer(worker *w, req *r, int res);
/* dkd__drain_done_stack applies the key answers other threads posted to w. */
void dkd__drain_done_stack(worker *w);
/* dkd__conn_process handles every whole frame received and sizes the buffer; it stops
 * early (rx_paused) when the connection's output reaches its share. */
void dkd__conn_process(conn *c);
/* dkd__conn_out_queued: bytes of answers waiting to be sent. */
size_t dkd__conn_out_queued(const conn *c);
/* dkd__conn_eof handles the client's shutdown of its side (a recv of 0 bytes). */
void dkd__conn_eof(conn *c);
/* dkd__conn_deadline answers every whole request with its verdict so far (keys not
 * found yet: temperror), every other with ERROR 5, then ERROR 5 on id 0 and close. */
void dkd__conn_deadline(conn *c);

#endif
