/*
 * session_wire.h - the dkimd protocol (ipc/PROTOCOL.md) as a protocol session for the
 * transport (session.h): frames in, verification through the engine, RESULT, STATS,
 * PONG and ERROR frames out.
 */
#ifndef DKIMD_IPC_SESSION_WIRE_H
#define DKIMD_IPC_SESSION_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"

/* The protocol's limits and defaults, fixed when the server is set up. */
typedef struct dkd__wire_cfg {
    uint64_t max_message_bytes; /* VERIFY data, or header block plus streamed chunks */
    size_t max_header_bytes;    /* one header block */
    size_t max_body_chunk;      /* one VERIFY_BODY */
    uint64_t max_shm_bytes;     /* one SHM_ATTACH region; 0 = shared memory off */
    uint32_t max_frame;         /* largest payload_len after HELLO */
    unsigned max_inflight;      /* requests per connection */
    unsigned key_timeout_ms;    /* all keys of one message; 0 = no deadline */
    const char *authserv_id;    /* the default authserv-id, at most 255 bytes */
    size_t authserv_len;
} dkd__wire_cfg;

extern const dkd__sess_ops dkd__wire_session;

#endif
