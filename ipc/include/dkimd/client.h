/*
 * dkimd/client.h - libdkimd, the client library of the dkimd verification daemon.
 *
 * Blocking use, for simple callers:
 *
 *   dkd_client *c;
 *   if (dkd_client_connect("/run/dkimd/dkimd.sock", &c) != 0) ...
 *   dkd_client_result *r;
 *   int rc = dkd_client_verify(c, msg, len, NULL, &r);   // any size; large ones stream
 *   for (size_t i = 0; rc == 0 && i < r->nsigs; i++)
 *       use r->sigs[i].result, .reason, .d, ... and r->explanations[i]
 *   prepend r->authres (the Authentication-Results field) to the message
 *   dkd_client_result_free(r);
 *   dkd_client_close(c);
 *
 * Asynchronous use, for MTAs with an event loop: dkd_client_submit() (or _begin/_body/_end
 * for a message streamed in pieces) queues a request with a completion callback and a
 * user context and returns at once; poll dkd_client_fd() for dkd_client_events(); call
 * dkd_client_process() when it is ready: it sends what is queued, reads what arrived and
 * calls the callbacks. Many requests may be in flight at once (pipelining); completions
 * arrive in any order. Socket I/O in this API never blocks, except while (re)connecting
 * (the connect and the HELLO exchange, bounded by the timeout: a local socket answers at
 * once). The library starts no threads and installs no signal handlers (sends use
 * MSG_NOSIGNAL).
 *
 * Shared memory: after dkd_client_use_shm(c, bytes) the messages of c travel through a
 * sealed memfd the daemon maps, not through the socket (see that function); the API
 * above does not change.
 *
 * Reconnection: when the daemon closes the connection (restart, shutdown) the requests in
 * flight complete with DKD_CLIENT_ERR_CLOSED (or DKD_CLIENT_ERR_SHUTTING_DOWN); the next
 * submit reconnects. The blocking calls retry their request once on a new connection.
 *
 * Threads: a dkd_client belongs to one thread at a time (no internal locking); use one
 * client per thread, or serialise calls. Distinct clients are independent. Callbacks run
 * only inside dkd_client_process() (or inside a blocking call), on the caller's thread;
 * a callback may submit new requests but must not close the client.
 *
 * Errors: functions returning int give 0 or a negative code: -errno for system errors,
 * or a DKD_CLIENT_ERR_* code below. dkd_client_strerror() describes either.
 *
 * Verdicts: each signature's is a dkd_sig_result (<dkimd/result.h>, the one header this
 * one includes). libdkimd also exports that header's functions: dkd_result_name,
 * dkd_reason_code, dkd_reason_explanation, dkd_reason_fix and dkd_reason_from_code, the
 * same tables the daemon uses. Link with `pkg-config --libs libdkimd`.
 */
#ifndef DKIMD_CLIENT_H
#define DKIMD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <dkimd/result.h> /* dkd_sig_result, enum dkd_result, enum dkd_reason */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Error codes. The server's ERROR frame codes map to DKD_CLIENT_ERR_SERVER_BASE - code
 * (see ipc/PROTOCOL.md 4.8); the rest are the client's own.
 */
enum {
    DKD_CLIENT_ERR_SERVER_BASE = -4400,
    DKD_CLIENT_ERR_MALFORMED = -4401,       /* server: our frame was malformed */
    DKD_CLIENT_ERR_VERSION = -4402,         /* server: no common protocol version */
    DKD_CLIENT_ERR_TOO_LARGE = -4403,       /* server: message or header block too large */
    DKD_CLIENT_ERR_OVERLOADED = -4404,      /* server: overloaded, retry later */
    DKD_CLIENT_ERR_SHUTTING_DOWN = -4405,   /* server: stopping, retry on a new connection */
    DKD_CLIENT_ERR_UNKNOWN_REQUEST = -4406, /* server: no such streamed request */
    DKD_CLIENT_ERR_INTERNAL = -4407,        /* server: internal failure */
    DKD_CLIENT_ERR_PROTOCOL = -4408,        /* server: frame not valid in this state */
    DKD_CLIENT_ERR_BAD_REPLY = -4420,       /* the server sent something we cannot decode */
    DKD_CLIENT_ERR_CLOSED = -4421,          /* connection lost with the request in flight */
    DKD_CLIENT_ERR_BUSY = -4422,            /* max requests in flight reached: process first */
    DKD_CLIENT_ERR_STATE = -4423,           /* call out of order (body without begin, ...) */
    DKD_CLIENT_ERR_ARG = -4424,             /* bad argument (authserv-id not printable, ...) */
    DKD_CLIENT_ERR_UNSUPPORTED = -4425,     /* the daemon does not offer this (shared memory) */
};

/* dkd_client_strerror describes any code returned by a dkd_client_ call. Never NULL. */
const char *dkd_client_strerror(int err);

typedef struct dkd_client dkd_client;

/* Per-request options. A NULL options pointer means all defaults. */
typedef struct dkd_client_opts {
    const char *authserv_id; /* NULL: the daemon's configured authserv-id */
    bool has_time;           /* verify as of time (Unix seconds) instead of now */
    int64_t time;
} dkd_client_opts;

/*
 * dkd_client_result: the daemon's answer to one verify request. One allocation owned by
 * whoever received it; free with dkd_client_result_free. sigs[] are in top-down header
 * order (none for an unsigned message); their strings point into the result.
 * b_prefix carries header.b; explanations[i] is the daemon's text for sigs[i].reason,
 * useful when the daemon is newer than this library and sends a reason it lacks.
 */
typedef struct dkd_client_result {
    size_t nsigs;
    dkd_sig_result *sigs;
    const char **explanations;
    const char *authres; /* Authentication-Results field, name included, no final CRLF */
} dkd_client_result;

void dkd_client_result_free(dkd_client_result *r);

/* Limits the daemon announced in its HELLO_OK. */
typedef struct dkd_client_limits {
    uint32_t max_frame, max_header_block, max_inflight, max_chunk;
    uint64_t max_message;
} dkd_client_limits;

/*
 * dkd_client_connect connects to the daemon's Unix socket at path and performs the HELLO
 * exchange (blocking, at most the default timeout of 30 s). On success *out owns a new
 * client. On failure returns a negative code and *out is NULL.
 */
int dkd_client_connect(const char *path, dkd_client **out);

/* dkd_client_close closes the connection and frees c. Pending callbacks are not called. */
void dkd_client_close(dkd_client *c);

/* dkd_client_set_timeout sets the timeout of blocking calls and of (re)connecting, in
 * milliseconds (default 30000; < 0 = no timeout). */
void dkd_client_set_timeout(dkd_client *c, int timeout_ms);

/* dkd_client_limits returns the limits of the current connection. */
dkd_client_limits dkd_client_get_limits(const dkd_client *c);

/*
 * dkd_client_use_shm makes messages travel through a shared memory region of `bytes`
 * (a sealed memfd mapped by both sides) instead of through the socket: a submitted
 * message is copied into the region and only its place is sent, so the daemon reads it
 * where it lies instead of copying it out of a socket buffer (at 200 KB messages that
 * copy is a fifth of the daemon's CPU per message). Messages that do not fit the free
 * part of the region at that moment go over the socket as before, so the region bounds
 * memory, not message size; a region of 4 x (requests in flight) x (typical message)
 * keeps most of them in it. Blocking (one exchange with the daemon); re-attached on
 * every reconnection. Returns 0, DKD_CLIENT_ERR_UNSUPPORTED when the daemon does not
 * offer it (everything then keeps using the socket), or another negative code.
 */
int dkd_client_use_shm(dkd_client *c, size_t bytes);

/* ---- blocking API ---- */

/*
 * dkd_client_verify verifies one whole message (CRLF or LF line ends) and waits for the
 * answer. Messages too large for one frame are streamed (header block, body chunks).
 * On success returns 0 and *result owns the answer; otherwise a negative code and
 * *result is NULL. If the connection was lost (daemon restarted) the request is retried
 * once on a new connection. Must not be called from a callback.
 */
int dkd_client_verify(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_result **result);

/* One counter of dkd_client_stats. */
typedef struct dkd_client_stat {
    const char *name;
    uint64_t value;
} dkd_client_stat;

typedef struct dkd_client_counters {
    size_t count;
    dkd_client_stat *v; /* in the daemon's order; names point into the allocation */
} dkd_client_counters;

/*
 * dkd_client_stats asks the daemon for its counters and waits. On success *out owns them
 * (free with dkd_client_counters_free). Retries once on a new connection, like verify.
 */
int dkd_client_stats(dkd_client *c, dkd_client_counters **out);
void dkd_client_counters_free(dkd_client_counters *s);

/* dkd_client_ping sends a PING and waits for its PONG (a liveness check). */
int dkd_client_ping(dkd_client *c);

/* ---- asynchronous API ---- */

/*
 * A completion: status is 0 and result non-NULL on success (the callback owns result and
 * frees it with dkd_client_result_free), or status is a negative code and result NULL.
 * Called exactly once per accepted request, from dkd_client_process (or when the client
 * notices the connection is gone), never from the submitting call.
 */
typedef void (*dkd_client_done_fn)(void *user, int status, dkd_client_result *result);

/*
 * dkd_client_submit queues the verification of a whole message. msg is copied; the caller
 * may reuse it on return. The message must fit one frame (see dkd_client_max_whole());
 * larger ones go through dkd_client_begin. Returns 0 (done will be called) or a negative
 * code (done will never be called): DKD_CLIENT_ERR_BUSY when max_inflight requests are
 * in flight, DKD_CLIENT_ERR_TOO_LARGE, or a reconnection failure.
 */
int dkd_client_submit(dkd_client *c, const uint8_t *msg, size_t len, const dkd_client_opts *opts,
                      dkd_client_done_fn done, void *user);

/* dkd_client_max_whole: the largest message dkd_client_submit accepts with opts. */
size_t dkd_client_max_whole(const dkd_client *c, const dkd_client_opts *opts);

/*
 * Streaming: dkd_client_begin queues the header block (everything before the empty line)
 * and returns a request handle in *req; dkd_client_body queues body bytes (any split,
 * copied; cut into chunks of max_chunk); dkd_client_end closes the stream. done is called
 * once, after end (or earlier with an error, after which body/end on req return
 * DKD_CLIENT_ERR_STATE and the caller stops). Bytes queue in memory until sent: a caller
 * streaming a large message watches dkd_client_queued() and lets dkd_client_process()
 * drain it before queueing more.
 */
int dkd_client_begin(dkd_client *c, const uint8_t *hdr, size_t len, const dkd_client_opts *opts,
                     dkd_client_done_fn done, void *user, uint32_t *req);
int dkd_client_body(dkd_client *c, uint32_t req, const uint8_t *chunk, size_t len);
int dkd_client_end(dkd_client *c, uint32_t req);

/* dkd_client_fd: the socket to poll; -1 while disconnected. May change on reconnect. */
int dkd_client_fd(const dkd_client *c);

/* dkd_client_events: poll events to wait for (POLLIN, plus POLLOUT while bytes queue). */
short dkd_client_events(const dkd_client *c);

/* dkd_client_queued: bytes queued and not yet written to the socket. */
size_t dkd_client_queued(const dkd_client *c);

/* dkd_client_inflight: requests submitted whose callback has not yet been called. */
size_t dkd_client_inflight(const dkd_client *c);

/*
 * dkd_client_process writes queued bytes and reads answers without blocking, calling the
 * callbacks of completed requests. Returns the number of callbacks called, or a negative
 * code when the connection failed (requests in flight have then been completed with an
 * error and the client is disconnected; the next submit reconnects).
 */
int dkd_client_process(dkd_client *c);

#ifdef __cplusplus
}
#endif

#endif
