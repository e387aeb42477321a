/*
 * server.h - the dkimd server: a pool of worker threads, each with its own io_uring ring,
 * serving the framed protocol of ipc/PROTOCOL.md on a Unix stream socket and the milter
 * protocol (session_milter.h) on a Unix or TCP socket, either or both.
 *
 * Usage (tools/dkimd.c):
 *
 *   dkd__server_config sc;
 *   dkd__server_config_init(&sc);
 *   sc.listen_fd = fd;                               // a bound, listening socket
 *   dkd__server *srv = dkd__server_new(&sc, eng, keysrc, err, sizeof err);
 *   dkd__server_start(srv);                          // spawns the workers
 *   ... on SIGTERM: dkd__server_stop(srv);           // stop accepting, drain, exit
 *   dkd__server_join(srv); dkd__server_free(srv);
 *
 * Threads: config, new, start, join and free belong to the thread that owns the server
 * (the daemon's main thread). stop and stats may be called from any thread. The key
 * source's lookup is called on worker threads; its done callback may run on any thread
 * (the server posts it back to the owning worker).
 *
 * Internal to dkimd (dkd__ prefix): not installed, no ABI promise.
 */
#ifndef DKIMD_IPC_SERVER_H
#define DKIMD_IPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <dkimd/engine.h>

#include "session.h" /* log levels, dkd__server_stats */

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*dkd__log_fn)(void *arg, int level, const char *line);

typedef struct dkd__server_config {
    int listen_fd;                /* listening socket of the dkimd protocol; -1 = none */
    int milter_fd;                /* listening socket of the milter protocol; -1 = none
                                     (at least one of the two is required) */
    const void *milter_cfg;       /* the milter's settings (dkd__milter_cfg), borrowed */
    unsigned workers;             /* worker threads; 0 = number of online CPUs */
    uint64_t max_message_bytes;   /* whole VERIFY payload and streamed total (default 64 MiB) */
    size_t max_header_bytes;      /* header block of one message (default: engine's) */
    size_t max_body_chunk;        /* largest VERIFY_BODY frame (default 1 MiB) */
    uint64_t max_shm_bytes;       /* largest region a connection may attach with SHM_ATTACH
                                     (default 1 GiB; 0 = no shared memory transport) */
    unsigned max_inflight;        /* open requests per connection (default 256) */
    unsigned max_connections;     /* all workers together (default 4096) */
    uint64_t memory_budget;       /* receive buffers + open requests (default 1 GiB) */
    unsigned key_timeout_ms;      /* per-message key deadline (default 5000) */
    unsigned shutdown_timeout_ms; /* SIGTERM drain limit (default 10000) */
    unsigned stall_timeout_ms;    /* a partial frame or open stream with no byte for this
                                     long closes the connection (default 30000; 0 = never) */
    const char *authserv_id;      /* default authserv-id (default "localhost"); copied */
    const uid_t *allow_uids;      /* peer uid allow-list (SO_PEERCRED); copied; */
    size_t n_allow_uids;          /*   with the gid list empty too, everyone may connect */
    const gid_t *allow_gids;
    size_t n_allow_gids;
    /* extra_stats adds the key source's counters to a STATS_REPLY: it calls add once per
     * counter (name: 1..255 bytes of [a-z0-9_.], a literal). Called on a worker. */
    void (*extra_stats)(void *arg, void (*add)(void *ctx, const char *name, uint64_t v), void *ctx);
    void *extra_stats_arg;
    dkd__log_fn log; /* NULL = stderr */
    void *log_arg;
    int log_level; /* lines above this level are dropped (default INFO) */
} dkd__server_config;

void dkd__server_config_init(dkd__server_config *sc);

typedef struct dkd__server dkd__server;

/*
 * dkd__server_new prepares the server: validates sc, probes io_uring features and
 * creates one ring per worker (no threads yet). NULL on error with a message in err.
 * eng and src are borrowed and must outlive the server.
 */
dkd__server *dkd__server_new(const dkd__server_config *sc, dkd_engine *eng, dkd_keysrc src,
                             char *err, size_t err_len);

/* dkd__server_start spawns the workers. 0 or -errno. */
int dkd__server_start(dkd__server *srv);

/*
 * dkd__server_stop asks for a graceful stop: accepting ends, requests already sent by
 * clients are answered, then connections close and the workers exit (bounded by
 * shutdown_timeout_ms). Async-signal-unsafe; any thread.
 */
void dkd__server_stop(dkd__server *srv);

/* dkd__server_set_log_level changes the level of later lines (SIGHUP). Any thread. */
void dkd__server_set_log_level(dkd__server *srv, int level);

/* dkd__server_join waits for every worker to exit. */
void dkd__server_join(dkd__server *srv);
void dkd__server_free(dkd__server *srv);

/* dkd__server_stats_get sums the workers' counters (relaxed reads: a consistent
 * snapshot is not needed) and adds the process's CPU time and peak RSS. Any thread. */
void dkd__server_stats_get(dkd__server *srv, dkd__server_stats *out);

#ifdef __cplusplus
}
#endif

#endif
