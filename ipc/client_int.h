/*
 * client_int.h - libdkimd's insides, shared by its files:
 *   client.c         requests: the slot table, answers, submitting, the blocking calls;
 *   client_conn.c    the connection: socket I/O, connecting and HELLO, the shared region;
 *   client_result.c  the answers as the caller receives them, and the error texts;
 *   client_ring.c    the shared region's allocator (client_ring.h).
 * Nothing here is part of the ABI: libdkimd.map keeps every dkd__ name local.
 */
#ifndef DKD_CLIENT_INT_H
#define DKD_CLIENT_INT_H

#include <dkimd/client.h>

#include "client_ring.h"
#include "wire.h"

enum {
    DKD__CLIENT_DEFAULT_TIMEOUT_MS = 30000,
    /* Answers are small (a RESULT is a few hundred bytes per signature); anything above
     * this is a broken or hostile server, not a reply worth buffering. */
    DKD__CLIENT_MAX_REPLY = 16u << 20,
};

enum dkd__client_slot_kind {
    DKD__SLOT_FREE = 0,
    DKD__SLOT_VERIFY,
    DKD__SLOT_STATS,
    DKD__SLOT_PING,
};
enum dkd__client_stream { DKD__STREAM_NONE = 0, DKD__STREAM_OPEN };

typedef void (*dkd__client_stats_fn)(void *user, int status, dkd_client_counters *s);

/* One request in flight. */
typedef struct dkd__client_slot {
    uint32_t id;
    uint8_t kind;   /* enum dkd__client_slot_kind */
    uint8_t stream; /* enum dkd__client_stream */
    dkd_client_done_fn done; /* DKD__SLOT_VERIFY, DKD__SLOT_PING; NULL = abandoned */
    dkd__client_stats_fn stats_done;
    void *user;
    int32_t shm_pos; /* its record in the region's ring (dkd__client_ring_push); -1 = none */
} dkd__client_slot;

/* The shared region: a sealed memfd mapped here and by the daemon. */
typedef struct dkd__client_shm {
    int fd; /* -1 = not in use */
    uint8_t *base;
    bool attached; /* to the current connection */
    dkd__client_ring ring; /* over the region; its records (one per slot) are ours */
} dkd__client_shm;

struct dkd_client {
    char *path;
    int fd;
    int timeout_ms;
    int pending_err; /* a send failed outside process(): reported by the next process() */
    bool in_process; /* process() is on the stack: no reentry, no reconnect */
    uint8_t version;
    dkd_client_limits lim;
    dkd__wbuf out;
    size_t out_off;
    uint8_t *in;
    size_t in_len, in_cap;
    dkd__client_slot *slots;
    uint32_t nslots;
    uint32_t *free_ids; /* stack of free slot indexes */
    uint32_t nfree;
    uint16_t gen;
    size_t inflight;
    uint16_t features; /* DKD__WIRE_F_* of the current connection's HELLO_OK */
    dkd__client_shm shm;
};

/* ---- client.c ---- */

/* dkd__client_slots_init sizes the slot table (and the ring's records) for n requests;
 * called with nothing in flight. 0 or -ENOMEM. */
int dkd__client_slots_init(dkd_client *c, uint32_t n);

/* dkd__client_fail_all disconnects and completes every request in flight with status;
 * returns the number of callbacks called. */
int dkd__client_fail_all(dkd_client *c, int status);

/* ---- client_conn.c ---- */

/* Monotonic deadline of a blocking call started now (-1 = none), and milliseconds left
 * until it for poll(). */
int64_t dkd__client_deadline(const dkd_client *c);

/* dkd__client_disconnect closes the socket and drops what was queued or half read. */
void dkd__client_disconnect(dkd_client *c);

/* dkd__client_ensure_connected connects when disconnected (blocking, bounded by the
 * timeout), except from a callback. 0 or a negative code. */
int dkd__client_ensure_connected(dkd_client *c);

/* dkd__client_flush writes queued bytes until the socket would block. 0 or -errno. */
int dkd__client_flush(dkd_client *c);

/* dkd__client_fill reads what the socket has into the input buffer, growing it to have
 * room for want bytes: 1 when bytes arrived, 0 at EOF, -EAGAIN, or -errno. */
int dkd__client_fill(dkd_client *c, size_t want);

/* dkd__client_wait_fd polls fd for events until deadline: 0, -ETIMEDOUT or -errno. */
int dkd__client_wait_fd(int fd, short events, int64_t deadline);

/* ---- client_result.c ---- */

/* dkd__client_server_err maps an ERROR frame's code to DKD_CLIENT_ERR_*. */
int dkd__client_server_err(uint16_t code);

/* dkd__client_result_from_wire and dkd__client_counters_from_wire copy a decoded answer
 * into one allocation the caller owns (free with dkd_client_result_free /
 * dkd_client_counters_free). NULL when out of memory. */
dkd_client_result *dkd__client_result_from_wire(const dkd__wire_result *wr);
dkd_client_counters *dkd__client_counters_from_wire(const dkd__wire_stats_reply *wr);

#endif
