/*
 * session_wire_int.h - what the two files of the dkimd protocol session share: the
 * session, worker and request structures, and the request half's functions
 * (session_wire_req.c: admission, the engine, key answers, deadlines, answers) that
 * the frame half (session_wire.c: frames, the shared memory transport, STATS, life)
 * calls. Internal to ipc/.
 */
#ifndef DKIMD_IPC_SESSION_WIRE_INT_H
#define DKIMD_IPC_SESSION_WIRE_INT_H

#include "session_wire.h"

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

void dkd__ws_send_error(wire_sess *s, uint32_t id, uint16_t code, const char *text);
void dkd__ws_fatal(wire_sess *s, enum dkd__log_kind kind, uint16_t code, const char *text);
void dkd__ws_sess_close(wire_sess *s, enum dkd__close_mode mode);
void dkd__ws_maybe_finish(wire_sess *s);
void dkd__ws_req_release(req *r);
req *dkd__ws_req_find(const wire_sess *s, uint32_t id);
bool dkd__ws_refused_has(const wire_sess *s, uint32_t id);
void dkd__ws_refused_remove(wire_sess *s, uint32_t id);
bool dkd__ws_id_in_use(const wire_sess *s, uint32_t id);
bool dkd__ws_check_id(wire_sess *s, uint32_t id);
void dkd__ws_req_fail(req *r, uint16_t code, const char *text);
void dkd__ws_req_try_finish(req *r);
req *dkd__ws_begin_request(wire_sess *s, uint32_t id, const dkd__wire_verify_opts *opts, bool whole,
                           uint64_t len, size_t hlen);
void dkd__ws_feed_message(req *r, const uint8_t *hdr, size_t hlen, const uint8_t *body,
                          size_t body_len);
bool dkd__ws_expire_keys(req *r, enum dkd_reason reason, const char *why);
void dkd__ws_sess_key(void *sp, uint64_t token, dkd_key *key);
void dkd__ws_sess_timer(void *sp, uint64_t token);
uint16_t dkd__ws_errcode_of_engine(int rc);

#endif
