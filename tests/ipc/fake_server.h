/*
 * fake_server.h - the fake dkimd that client_test.c runs libdkimd against: a thread that
 * speaks the protocol through the same codec and verifies with the engine and
 * samples/keys.zone, answering each batch of requests in reverse order (so pipelined
 * answers arrive out of order). Modes make it misbehave.
 */
#ifndef DKIMD_TESTS_FAKE_SERVER_H
#define DKIMD_TESTS_FAKE_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <dkimd/engine.h>

#include "wire.h"

enum mode {
    MODE_NORMAL,
    MODE_ERROR_VERIFY, /* every VERIFY gets ERROR overloaded */
    MODE_CLOSE_AFTER,  /* close the connection after each batch of answers */
    MODE_GARBAGE,      /* answer VERIFY with an undecodable RESULT */
    MODE_SILENT,       /* never answer VERIFY */
    MODE_EARLY_ERROR,  /* answer VERIFY_BEGIN with ERROR too large at once */
    MODE_SHUTDOWN,     /* on VERIFY: connection-level ERROR shutting down, then close */
    MODE_RANDOM,       /* on VERIFY: a frame of random type and payload, then close */
};

enum { NOW = 1764003600 }; /* the fake server's default verification time */

typedef struct stream {
    uint32_t id;
    dkd_msg *m;
    bool discarding; /* answered early: BODY/END are dropped until END */
} stream;

typedef struct fake {
    char path[108];
    int lfd;
    int stop[2];
    pthread_t th;
    uint32_t max_frame, max_chunk, max_inflight;
    _Atomic int mode;
    dkd_engine *eng;
    dkd_zone *zone;
    int64_t now;
    atomic_int connections, begins, bodies, ends_discarded, verifies, served;
} fake;

/* root: the source tree (DKD_SOURCE_ROOT, else the current directory). */
const char *root(void);
/* fake_start starts a fake server on a fresh socket at f->path; fake_stop ends it. */
fake *fake_start(uint32_t max_frame, uint32_t max_chunk, uint32_t max_inflight);
void fake_stop(fake *f);

#endif
