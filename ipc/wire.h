/*
 * ipc/wire.h - the dkimd wire protocol: frame layout, payload structures, and a pure
 * codec (no I/O, no allocation on the decode side) shared by the server and libdkimd.
 *
 * ipc/PROTOCOL.md is the normative text; this header is its C mirror. In short:
 *
 *   frame   = header (12 bytes) + payload (payload_len bytes); integers big-endian
 *   header  = u8 version | u8 type | u16 flags | u32 request_id | u32 payload_len
 *
 * Decoding: dkd__wire_frame_split() cuts one frame off the front of the bytes received so
 * far, checking the header against the negotiated limits before the payload has even
 * arrived; the typed decoders (dkd__wire_decode_*) then read one payload. Every decoder
 * checks every length against its span and rejects trailing bytes, so a payload that
 * decodes re-encodes to exactly the same bytes. Decoded structures borrow spans of the
 * payload: they are valid as long as the receive buffer is.
 *
 * Encoding: dkd__wire_put_* append one whole frame (header included) to a dkd__wbuf, the
 * engine's byte builder (buf.h) with a sticky error: appends return void and
 * dkd__wbuf_ok() reports once.
 * A wbuf either grows with realloc or writes into caller memory of a fixed size (for
 * registered io_uring buffers); in the fixed mode an overflow sets the error.
 *
 * Threads: every function is reentrant; a dkd__wbuf belongs to one thread at a time.
 */
#ifndef DKD_IPC_WIRE_H
#define DKD_IPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"  /* engine/core/buf.h: dkd_buf */
#include "span.h" /* engine/core/span.h: dkd_span */

#include <dkimd/engine.h>
#include <dkimd/reason.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants ---- */

enum {
    DKD__WIRE_VERSION = 1,     /* the only protocol version defined so far */
    DKD__WIRE_HEADER_LEN = 12, /* bytes of a frame header */
    /* A peer that has not yet received HELLO_OK limits frames to this payload size. */
    DKD__WIRE_PRE_HELLO_MAX = 4096,
    DKD__WIRE_MAX_NAME = 255,     /* client/server name in HELLO/HELLO_OK */
    DKD__WIRE_MAX_AUTHSERV = 255, /* authserv-id option */
    DKD__WIRE_MAX_PING = 256,     /* PING/PONG opaque data */
};

/* Frame types. Bit 0x80 set = sent by the server. */
enum dkd__wire_type {
    DKD__WIRE_HELLO = 0x01,
    DKD__WIRE_HELLO_OK = 0x81,
    DKD__WIRE_VERIFY = 0x02,       /* whole message in one frame */
    DKD__WIRE_VERIFY_BEGIN = 0x03, /* header block; starts a streamed request */
    DKD__WIRE_VERIFY_BODY = 0x04,  /* one body chunk of a streamed request */
    DKD__WIRE_VERIFY_END = 0x05,   /* end of a streamed request; the RESULT follows */
    DKD__WIRE_RESULT = 0x83,
    DKD__WIRE_STATS = 0x06,
    DKD__WIRE_STATS_REPLY = 0x86,
    DKD__WIRE_PING = 0x07,
    DKD__WIRE_PONG = 0x87,
    DKD__WIRE_SHM_ATTACH = 0x08,    /* a shared memory region (its fd rides along) */
    DKD__WIRE_SHM_ATTACH_OK = 0x88, /* the region is mapped */
    DKD__WIRE_VERIFY_SHM = 0x09,    /* options + where the message lies in the region */
    DKD__WIRE_ERROR = 0xFF,
};

/* Frame header flags of HELLO_OK (every other frame: 0). A client that does not know a
 * flag ignores it, so a server may announce features without a new version. */
enum {
    DKD__WIRE_F_SHM = 1u << 0, /* the server takes SHM_ATTACH and VERIFY_SHM (4.9) */
};

/* ERROR frame codes (u16 on the wire). request_id 0 = about the whole connection. */
enum dkd__wire_errcode {
    DKD__WIRE_E_MALFORMED = 1,       /* frame or payload does not follow PROTOCOL.md */
    DKD__WIRE_E_VERSION = 2,         /* unsupported protocol version */
    DKD__WIRE_E_TOO_LARGE = 3,       /* frame, message or header block over a limit */
    DKD__WIRE_E_OVERLOADED = 4,      /* too many requests/connections/memory: retry later */
    DKD__WIRE_E_SHUTTING_DOWN = 5,   /* server is stopping: reconnect later */
    DKD__WIRE_E_UNKNOWN_REQUEST = 6, /* BODY/END for an id with no streamed request */
    DKD__WIRE_E_INTERNAL = 7,        /* server-side failure; the request may be retried */
    DKD__WIRE_E_PROTOCOL = 8,        /* frame not valid now: before HELLO, id in use, ... */
};

/* Verify option tags (TLV block of VERIFY / VERIFY_BEGIN), in the order they must appear. */
enum {
    DKD__WIRE_OPT_AUTHSERV_ID = 1, /* 1..255 bytes, printable ASCII */
    DKD__WIRE_OPT_TIME = 2,        /* 8 bytes: i64 Unix seconds, two's complement */
};

/* Per-signature flag bits in RESULT. */
enum {
    DKD__WIRE_SIG_TESTING = 1u << 0, /* key record has t=y */
    DKD__WIRE_SIG_HAS_L = 1u << 1,   /* signature has l= */
    DKD__WIRE_SIG_STALE = 1u << 2,   /* key served stale during a DNS failure */
};

/* DNSSEC state of the key answer in RESULT. */
enum dkd__wire_dnssec {
    DKD__WIRE_DNSSEC_INSECURE = 0, /* not validated, or no key used */
    DKD__WIRE_DNSSEC_SECURE = 1,
    DKD__WIRE_DNSSEC_BOGUS = 2,
};

/*
 * Decoder status codes. Actions return 0 or one of these (all below -4096, so never a
 * -errno). dkd__wire_errcode_of() maps each to the ERROR code to send back.
 */
enum {
    DKD__WIRE_ERR_MALFORMED = -4300, /* bad payload layout, trailing bytes, bad value */
    DKD__WIRE_ERR_VERSION = -4301,   /* header version is not the expected one */
    DKD__WIRE_ERR_TOO_LARGE = -4302, /* payload_len over the receiver's limit */
    DKD__WIRE_ERR_NOMEM = -4303,     /* a dkd__wbuf could not grow or overflowed */
};

/* ---- decoded structures (spans borrow the received bytes) ---- */

typedef struct dkd__wire_header {
    uint8_t version;
    uint8_t type;
    uint16_t flags;      /* none defined in version 1: senders send 0, receivers ignore */
    uint32_t request_id; /* client-chosen; 0 = connection-level */
    uint32_t payload_len;
} dkd__wire_header;

typedef struct dkd__wire_hello {
    uint8_t min_version, max_version; /* the client speaks every version in between */
    dkd_span client_name;             /* 0..255 bytes, informational (logs) */
} dkd__wire_hello;

typedef struct dkd__wire_hello_ok {
    uint8_t version;           /* chosen: used by every later frame of both sides */
    uint32_t max_frame;        /* largest payload_len the server accepts */
    uint64_t max_message;      /* largest message, VERIFY or header block + all chunks */
    uint32_t max_header_block; /* largest header block (VERIFY_BEGIN data) */
    uint32_t max_inflight;     /* requests in flight per connection */
    uint32_t max_chunk;        /* largest VERIFY_BODY payload */
    dkd_span server_name;      /* 0..255 bytes, informational */
    /* DKD__WIRE_F_*: travels in the frame header's flags, not in the payload, so the
     * encoder writes it there and a decoding client copies it from the header. */
    uint16_t features;
} dkd__wire_hello_ok;

typedef struct dkd__wire_verify_opts {
    bool has_authserv_id;
    bool has_time;
    dkd_span authserv_id;
    int64_t time;
} dkd__wire_verify_opts;

/* VERIFY (data = whole message) and VERIFY_BEGIN (data = header block). */
typedef struct dkd__wire_verify {
    dkd__wire_verify_opts opts;
    dkd_span data;
} dkd__wire_verify;

/* VERIFY_SHM: the message is bytes [offset, offset + length) of the attached region. */
typedef struct dkd__wire_verify_shm {
    dkd__wire_verify_opts opts;
    uint64_t offset, length;
} dkd__wire_verify_shm;

/* One signature of a RESULT. Strings are ASCII/UTF-8 without NUL, 0..65535 bytes. */
typedef struct dkd__wire_sig {
    uint8_t result;  /* enum dkd_result */
    uint8_t dnssec;  /* enum dkd__wire_dnssec */
    uint16_t reason; /* enum dkd_reason; a newer server may send codes this build lacks */
    uint16_t flags;  /* DKD__WIRE_SIG_* */
    uint32_t key_bits;
    uint64_t body_signed, body_total; /* canonical body bytes covered / in all */
    dkd_span explanation, detail, d, s, i, a, b_prefix;
} dkd__wire_sig;

/* RESULT: nsigs signatures (validated; walk them with dkd__wire_sig_next) + A-R header. */
typedef struct dkd__wire_result {
    uint16_t nsigs;
    dkd_span sigs;    /* the encoded signatures; cursor for dkd__wire_sig_next */
    dkd_span authres; /* Authentication-Results field, name included, no final CRLF */
} dkd__wire_result;

/* One STATS_REPLY counter. */
typedef struct dkd__wire_stat {
    dkd_span name; /* 1..255 bytes of [a-z0-9_.] */
    uint64_t value;
} dkd__wire_stat;

typedef struct dkd__wire_stats_reply {
    uint16_t count;
    dkd_span entries; /* cursor for dkd__wire_stat_next */
} dkd__wire_stats_reply;

typedef struct dkd__wire_error {
    uint16_t code;    /* enum dkd__wire_errcode; unknown codes are kept as they are */
    dkd_span message; /* 0..65535 bytes of human text without NUL */
} dkd__wire_error;

/* ---- decoding ---- */

/*
 * dkd__wire_frame_split cuts one frame off the front of *in. Returns 1 with *hdr and
 * *payload set and *in advanced past the frame; 0 when *in does not yet hold a whole
 * frame (*in unchanged; *hdr is set once the 12 header bytes are there, so a receiver
 * can size its buffer); or DKD__WIRE_ERR_VERSION when version != expect_version (pass 0
 * to accept any, e.g. for the first frame) or DKD__WIRE_ERR_TOO_LARGE when payload_len >
 * max_payload, both decided from the header alone.
 */
int dkd__wire_frame_split(dkd_span *in, uint8_t expect_version, uint32_t max_payload,
                          dkd__wire_header *hdr, dkd_span *payload);

/* dkd__wire_header_decode reads a 12-byte header; false if fewer bytes are given. */
bool dkd__wire_header_decode(dkd_span in, dkd__wire_header *hdr);

/*
 * Payload decoders: 0 on success, DKD__WIRE_ERR_MALFORMED otherwise (out is then
 * unspecified). Each takes exactly one frame's payload.
 */
int dkd__wire_decode_hello(dkd_span payload, dkd__wire_hello *out);
int dkd__wire_decode_hello_ok(dkd_span payload, dkd__wire_hello_ok *out);
int dkd__wire_decode_verify(dkd_span payload, dkd__wire_verify *out); /* VERIFY, BEGIN */
int dkd__wire_decode_verify_shm(dkd_span payload, dkd__wire_verify_shm *out);
/* SHM_ATTACH: the region's size in bytes (>= 1). */
int dkd__wire_decode_shm_attach(dkd_span payload, uint64_t *size);
int dkd__wire_decode_result(dkd_span payload, dkd__wire_result *out);
int dkd__wire_decode_stats_reply(dkd_span payload, dkd__wire_stats_reply *out);
int dkd__wire_decode_error(dkd_span payload, dkd__wire_error *out);
/* VERIFY_BODY data and PING/PONG data are the payload itself; STATS, VERIFY_END and
 * SHM_ATTACH_OK must have an empty payload (checked by the receiver: payload_len == 0). */

/*
 * dkd__wire_sig_next / dkd__wire_stat_next consume one entry from a cursor that starts as
 * dkd__wire_result.sigs / dkd__wire_stats_reply.entries. False at the end (or on a
 * malformed entry, which cannot happen after the payload decoder succeeded).
 */
bool dkd__wire_sig_next(dkd_span *cursor, dkd__wire_sig *out);
bool dkd__wire_stat_next(dkd_span *cursor, dkd__wire_stat *out);

/* dkd__wire_errcode_of maps a DKD__WIRE_ERR_* status to the ERROR code to send. */
enum dkd__wire_errcode dkd__wire_errcode_of(int status);

/* dkd__wire_type_name / dkd__wire_errcode_name: short names for logs; never NULL. */
const char *dkd__wire_type_name(uint8_t type);
const char *dkd__wire_errcode_name(uint16_t code);

/* ---- encoding ---- */

/*
 * dkd__wbuf is the engine's byte builder (engine/core/buf.h, header-only, so the codec
 * stays free of engine libraries) under the codec's names; the functions below are its
 * dkd__buf_* with the codec's error code.
 */
typedef dkd_buf dkd__wbuf;

/* dkd__wbuf_init: an empty growable buffer (realloc). Free with dkd__wbuf_free. */
static inline void dkd__wbuf_init(dkd__wbuf *b)
{
    dkd__buf_init(b);
}

/* dkd__wbuf_init_fixed: appends write into mem[0..cap); overflow sets the error. */
static inline void dkd__wbuf_init_fixed(dkd__wbuf *b, void *mem, size_t cap)
{
    dkd__buf_init_fixed(b, mem, cap);
}

/* dkd__wbuf_free releases a growable buffer's memory (no-op for fixed). */
static inline void dkd__wbuf_free(dkd__wbuf *b)
{
    dkd__buf_free(b);
}

/* dkd__wbuf_reset empties the buffer and clears the error; memory is kept. */
static inline void dkd__wbuf_reset(dkd__wbuf *b)
{
    dkd__buf_reset(b);
}

/* dkd__wbuf_ok: 0, or DKD__WIRE_ERR_NOMEM if any append since the last reset failed. */
static inline int dkd__wbuf_ok(const dkd__wbuf *b)
{
    return dkd__buf_failed(b) ? DKD__WIRE_ERR_NOMEM : 0;
}

/* dkd__wbuf_append appends raw bytes (used for payload data sent after a put_*_head). */
static inline void dkd__wbuf_append(dkd__wbuf *b, const void *p, size_t n)
{
    dkd__buf_append(b, p, n);
}

/*
 * Frame encoders. Each appends one frame with version DKD__WIRE_VERSION and flags 0 (use
 * dkd__wire_put_header for anything else). Arguments that would not fit their wire field
 * (a name over 255 bytes, a string over 65535, a payload over 4 GiB) set the error.
 */
void dkd__wire_put_header(dkd__wbuf *b, const dkd__wire_header *hdr);
void dkd__wire_put_hello(dkd__wbuf *b, uint32_t request_id, const dkd__wire_hello *m);
void dkd__wire_put_hello_ok(dkd__wbuf *b, uint32_t request_id, const dkd__wire_hello_ok *m);
/* type is DKD__WIRE_VERIFY (data = message) or DKD__WIRE_VERIFY_BEGIN (header block). */
void dkd__wire_put_verify(dkd__wbuf *b, uint8_t type, uint32_t request_id,
                          const dkd__wire_verify *m);
/*
 * dkd__wire_put_verify_head appends the header and the option block of a VERIFY or
 * VERIFY_BEGIN whose data_len bytes of data the caller sends next (writev), so a large
 * message is never copied into the buffer.
 */
void dkd__wire_put_verify_head(dkd__wbuf *b, uint8_t type, uint32_t request_id,
                               const dkd__wire_verify_opts *opts, size_t data_len);
/* dkd__wire_verify_head_len: bytes put_verify_head appends for these options. */
size_t dkd__wire_verify_head_len(const dkd__wire_verify_opts *opts);
void dkd__wire_put_verify_shm(dkd__wbuf *b, uint32_t request_id, const dkd__wire_verify_shm *m);
void dkd__wire_put_shm_attach(dkd__wbuf *b, uint32_t request_id, uint64_t size);
/* VERIFY_BODY, PING, PONG: the payload is data itself. VERIFY_END, STATS, SHM_ATTACH_OK:
 * empty. */
void dkd__wire_put_data(dkd__wbuf *b, uint8_t type, uint32_t request_id, dkd_span data);
void dkd__wire_put_result(dkd__wbuf *b, uint32_t request_id, const dkd__wire_sig *sigs,
                          size_t nsigs, dkd_span authres);
void dkd__wire_put_stats_reply(dkd__wbuf *b, uint32_t request_id, const dkd__wire_stat *stats,
                               size_t count);
void dkd__wire_put_error(dkd__wbuf *b, uint32_t request_id, uint16_t code, dkd_span message);

/*
 * dkd__wire_sig_from_result fills a wire signature from an engine verdict (spans borrow
 * r's strings; explanation is the engine's text for r->reason). Inline so that the
 * client library, which never links the engine, does not need dkd_reason_explanation.
 */
static inline dkd__wire_sig dkd__wire_sig_from_result(const dkd_sig_result *r)
{
    dkd__wire_sig w = {
        .result = (uint8_t)r->result,
        .dnssec = r->reason == DKD_REASON_DNSSEC_BOGUS
                      ? DKD__WIRE_DNSSEC_BOGUS
                      : (r->dnssec_secure ? DKD__WIRE_DNSSEC_SECURE : DKD__WIRE_DNSSEC_INSECURE),
        .reason = (uint16_t)r->reason,
        .flags = (uint16_t)((r->key_testing ? DKD__WIRE_SIG_TESTING : 0) |
                            (r->has_l ? DKD__WIRE_SIG_HAS_L : 0) |
                            (r->key_stale ? DKD__WIRE_SIG_STALE : 0)),
        .key_bits = r->key_bits,
        .body_signed = r->body_signed,
        .body_total = r->body_total,
        .explanation = dkd__span_str(dkd_reason_explanation(r->reason)),
        .detail = dkd__span_str(r->detail),
        .d = dkd__span_str(r->d),
        .s = dkd__span_str(r->s),
        .i = dkd__span_str(r->i),
        .a = dkd__span_str(r->a),
        .b_prefix = dkd__span_str(r->b_prefix != NULL ? r->b_prefix : ""),
    };
    return w;
}

#ifdef __cplusplus
}
#endif

#endif
