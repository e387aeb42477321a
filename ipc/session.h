/*
 * session.h - the contract between the transport (transport.c: rings, sockets, buffers,
 * timers) and a protocol session (session_wire.c: the dkimd protocol; the milter
 * next). The transport knows no protocol and a session knows no ring.
 *
 * The transport calls a session through its dkd__sess_ops, as Redis's ae.c calls its
 * handlers: bytes received, a key lookup finished, a timer fired, the client shut down
 * its side, a stall check, a shutdown step, the end. The session answers by appending
 * bytes to the output buffer it was given and by asking for actions through its
 * dkd__sess_env: look a key up, arm or cancel a timer, close. It never blocks, never
 * makes a system call and never sees a socket, so a test or a fuzz target can drive it
 * with no daemon and no ring (tests/ipc/session_fuzz.c does).
 *
 * Calls into a session are never nested, with one exception: a key source that answers
 * synchronously (the zone file) completes a lookup inside env->lookup, so ops->key may
 * run while the session is handling input. A session that asks for a lookup must be
 * ready for that. After the session asks to close, or after ops->close, the transport
 * makes no further call for that connection; answers to its lookups and its timers
 * that arrive later are dropped by the transport.
 *
 * Threads: everything here runs on one worker thread. The worker context (open's wctx)
 * is shared by all sessions of one worker, never across workers.
 */
#ifndef DKIMD_IPC_SESSION_H
#define DKIMD_IPC_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <dkimd/engine.h>

#include "wire.h"

/* Log levels, as in syslog: lower is more severe. */
enum { DKD__LOG_ERR = 3, DKD__LOG_WARNING = 4, DKD__LOG_INFO = 6, DKD__LOG_DEBUG = 7 };

/* Problems that are logged; each kind at most once per second per worker. */
enum dkd__log_kind {
    DKD__LK_MALFORMED,
    DKD__LK_VERSION,
    DKD__LK_TOO_LARGE,
    DKD__LK_OVERLOADED,
    DKD__LK_REFUSED,
    DKD__LK_MESSAGE,
    DKD__LK_SYSTEM,
    DKD__LK_COUNT,
};

/* Per-worker counters: written by the owning worker only (transport and sessions
 * alike), read by any thread with relaxed loads and summed. */
typedef struct dkd__counters {
    _Atomic uint64_t connections_total, connections_open, connections_refused;
    _Atomic uint64_t requests, requests_inflight, results, signatures;
    _Atomic uint64_t errors_malformed, errors_too_large, errors_overloaded, errors_version,
        errors_shutdown, errors_message;
    _Atomic uint64_t key_lookups, key_timeouts;
    _Atomic uint64_t bytes_in, bytes_out;
    _Atomic uint64_t shm_attached, shm_requests, shm_bytes;
    _Atomic uint64_t milter_messages, milter_verified, milter_signed, milter_unsigned,
        milter_aborted, milter_tempfailed, milter_errors;
} dkd__counters;

/* Single-writer increment: no locked instruction, since only the owner writes. */
#define DKD__CNT_ADD(cnt, f, n)                                                                    \
    atomic_store_explicit(&(cnt)->f,                                                               \
                          atomic_load_explicit(&(cnt)->f, memory_order_relaxed) + (uint64_t)(n),   \
                          memory_order_relaxed)
#define DKD__CNT_SUB(cnt, f, n) DKD__CNT_ADD(cnt, f, -(uint64_t)(n))

/* The whole server's figures for a STATS answer. */
typedef struct dkd__server_stats {
    uint64_t connections_total, connections_open, connections_refused;
    uint64_t requests, requests_inflight, results, signatures;
    uint64_t errors_malformed, errors_too_large, errors_overloaded, errors_version, errors_shutdown,
        errors_message;
    uint64_t key_lookups, key_timeouts;
    uint64_t bytes_in, bytes_out;
    uint64_t shm_attached, shm_requests, shm_bytes;
    uint64_t milter_messages, milter_verified, milter_signed, milter_unsigned, milter_aborted,
        milter_tempfailed, milter_errors;
    uint64_t memory_used;
    uint64_t workers;
    uint64_t cpu_user_us, cpu_system_us, max_rss_kib;
} dkd__server_stats;

/* How a session asks the transport to end its connection. */
enum dkd__close_mode {
    DKD__CLOSE_NOW,        /* drop unsent output: the client has gone or cannot read */
    DKD__CLOSE_AFTER_SEND, /* stop reading; close once the queued output has been sent */
};

/*
 * What the transport offers one session. ctx is the transport's connection, passed back
 * on every call. out is where the session appends bytes to send: the transport sends
 * them after the call that queued them returns (a sticky out-of-memory error on it
 * closes the connection). Every call is valid until the session has asked to close.
 */
typedef struct dkd__sess_env {
    void *ctx;
    dkd__wbuf *out;
    dkd__counters *cnt;
    int64_t (*now_ms)(void *ctx);    /* CLOCK_MONOTONIC milliseconds, cached per batch */
    int64_t (*unix_time)(void *ctx); /* wall-clock seconds: a verification's default time */
    /* lookup starts a key lookup; ops->key(token, key) follows exactly once (maybe inside
     * this call). A negative return: not started, no completion will come. */
    int (*lookup)(void *ctx, uint64_t token, const char *name);
    /* timer_arm: ops->timer(token) in ms milliseconds unless cancelled; returns a handle
     * for timer_cancel (0 = could not arm: no call will come). */
    uint64_t (*timer_arm)(void *ctx, uint64_t token, unsigned ms);
    void (*timer_cancel)(void *ctx, uint64_t handle);
    void (*close)(void *ctx, enum dkd__close_mode mode);
    /* The memory budget shared by every connection: take fails when over it. */
    bool (*budget_take)(void *ctx, uint64_t n);
    void (*budget_give)(void *ctx, uint64_t n);
    void (*log)(void *ctx, enum dkd__log_kind kind, int level, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
    void (*stats)(void *ctx, dkd__server_stats *out);
    /* extra counters from outside the server (the key source); add is called per name */
    void (*extra_stats)(void *ctx, void (*add)(void *actx, const char *name, uint64_t v),
                        void *actx);
    /* map_region maps size bytes of a client's descriptor read-only (PROTOCOL.md 4.9);
     * NULL on success, else why not. The descriptor is the session's to close with
     * close_fd either way. */
    const char *(*map_region)(void *ctx, int fd, uint64_t size, const uint8_t **base);
    void (*unmap_region)(void *ctx, const uint8_t *base, uint64_t size);
    void (*close_fd)(void *ctx, int fd);
    pid_t peer_pid;
    uid_t peer_uid;
} dkd__sess_env;

/* What one ops->input call did with the bytes it was given. */
typedef struct dkd__sess_input {
    size_t consumed; /* bytes of whole frames handled (the transport drops them) */
    size_t need;     /* bytes the frame at the front needs in all, when known; else 0 */
    bool paused;     /* stopped because the output room ran out: call again later */
} dkd__sess_input;

/* Flags of ops->input. */
enum {
    DKD__IN_FD_EXCESS = 1u << 0, /* more than one descriptor arrived (the rest closed) */
};

/* A protocol session's entry points. Each returns nothing: its answers are in env->out
 * and its actions went through env. */
typedef struct dkd__sess_ops {
    const char *name;
    /* The worker's context (pools shared by the worker's sessions); cfg is the
     * protocol's configuration, borrowed for the server's life. */
    void *(*worker_new)(const void *cfg, dkd_engine *eng);
    void (*worker_free)(void *wctx);
    /* open: a new connection; NULL when out of memory (the transport refuses it). */
    void *(*open)(void *wctx, const dkd__sess_env *env);
    /* input: bytes received (they stay where they are until consumed); fd is a
     * descriptor that came with them, now the session's (-1: none). out_room is how
     * much more output may be queued before the session must pause. */
    dkd__sess_input (*input)(void *s, const uint8_t *p, size_t n, int fd, unsigned flags,
                             size_t out_room);
    void (*key)(void *s, uint64_t token, dkd_key *key); /* takes the reference */
    void (*timer)(void *s, uint64_t token);
    void (*eof)(void *s); /* the client shut down its sending side */
    /* tick: once a second while a stall timeout is set; limit_ms is now minus that
     * timeout. input_stalled: bytes of an incomplete frame (packet) have waited since
     * before limit_ms, which the session ends with its protocol's error. */
    void (*tick)(void *s, int64_t limit_ms, bool input_stalled);
    /* drain: shutdown, called until the session closes; expired once the shutdown
     * timeout has passed (answer everything now). */
    void (*drain)(void *s, bool expired);
    void (*close)(void *s); /* the connection is gone: free everything */
    /* refuse writes what a connection that is not taken gets before its close (too many
     * connections, no memory, shutting down); the text says why. */
    void (*refuse)(dkd__wbuf *out, bool shutting_down, const char *text);
} dkd__sess_ops;

#endif
