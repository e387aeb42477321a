/*
 * wire_fuzz.c - libFuzzer target for the wire codec (ipc/wire.c).
 *
 * The input is read twice:
 *  - as a stream of frames, the way the daemon reads a client (and libdkimd a server):
 *    each frame's payload goes to the decoder of its type;
 *  - whole, as the payload of each decoder in turn.
 * Whenever a decoder accepts a payload, re-encoding the decoded structure must give the
 * same bytes back (decoding is exact: no field is skipped, no alternative encodings), and
 * every span it returns must lie inside the payload.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void inside(dkd_span s, dkd_span p)
{
    if (s.len > 0) {
        CHECK(s.ptr >= p.ptr && s.ptr + s.len <= p.ptr + p.len);
    }
}

/* same_payload: b holds one frame of type whose payload must equal p. */
static void same_payload(dkd__wbuf *b, uint8_t type, dkd_span p)
{
    CHECK(dkd__wbuf_ok(b) == 0);
    dkd__wire_header h;
    CHECK(dkd__wire_header_decode(dkd__span(b->ptr, b->len), &h));
    CHECK(h.type == type && h.version == DKD__WIRE_VERSION && h.request_id == 1);
    CHECK(h.payload_len == p.len && b->len == DKD__WIRE_HEADER_LEN + p.len);
    CHECK(p.len == 0 || memcmp(b->ptr + DKD__WIRE_HEADER_LEN, p.ptr, p.len) == 0);
}

static void roundtrip(uint8_t type, dkd_span p)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    switch (type) {
    case DKD__WIRE_HELLO: {
        dkd__wire_hello m;
        if (dkd__wire_decode_hello(p, &m) == 0) {
            inside(m.client_name, p);
            CHECK(m.min_version >= 1 && m.min_version <= m.max_version);
            dkd__wire_put_hello(&b, 1, &m);
            same_payload(&b, type, p);
        }
        break;
    }
    case DKD__WIRE_HELLO_OK: {
        dkd__wire_hello_ok m;
        if (dkd__wire_decode_hello_ok(p, &m) == 0) {
            inside(m.server_name, p);
            CHECK(m.max_chunk >= 1 && m.max_chunk <= m.max_frame && m.max_inflight >= 1);
            dkd__wire_put_hello_ok(&b, 1, &m);
            same_payload(&b, type, p);
        }
        break;
    }
    case DKD__WIRE_VERIFY:
    case DKD__WIRE_VERIFY_BEGIN: {
        dkd__wire_verify m;
        if (dkd__wire_decode_verify(p, &m) == 0) {
            inside(m.data, p);
            inside(m.opts.authserv_id, p);
            CHECK(!m.opts.has_authserv_id || m.opts.authserv_id.len >= 1);
            dkd__wire_put_verify(&b, type, 1, &m);
            same_payload(&b, type, p);
            CHECK(dkd__wire_verify_head_len(&m.opts) + m.data.len == b.len);
        }
        break;
    }
    case DKD__WIRE_VERIFY_SHM: {
        dkd__wire_verify_shm m;
        if (dkd__wire_decode_verify_shm(p, &m) == 0) {
            inside(m.opts.authserv_id, p);
            CHECK(m.offset <= UINT64_MAX - m.length);
            dkd__wire_put_verify_shm(&b, 1, &m);
            same_payload(&b, type, p);
        }
        break;
    }
    case DKD__WIRE_SHM_ATTACH: {
        uint64_t size;
        if (dkd__wire_decode_shm_attach(p, &size) == 0) {
            CHECK(size >= 1);
            dkd__wire_put_shm_attach(&b, 1, size);
            same_payload(&b, type, p);
        }
        break;
    }
    case DKD__WIRE_RESULT: {
        dkd__wire_result m;
        if (dkd__wire_decode_result(p, &m) == 0) {
            inside(m.sigs, p);
            inside(m.authres, p);
            dkd__wire_sig *sigs = calloc(m.nsigs ? m.nsigs : 1, sizeof *sigs);
            dkd_span cur = m.sigs;
            for (unsigned k = 0; k < m.nsigs; k++) {
                CHECK(dkd__wire_sig_next(&cur, &sigs[k]));
                inside(sigs[k].d, p);
                inside(sigs[k].b_prefix, p);
                CHECK(sigs[k].result <= DKD_RESULT_TEMPERROR);
            }
            CHECK(cur.len == 0);
            dkd__wire_put_result(&b, 1, sigs, m.nsigs, m.authres);
            same_payload(&b, type, p);
            free(sigs);
        }
        break;
    }
    case DKD__WIRE_STATS_REPLY: {
        dkd__wire_stats_reply m;
        if (dkd__wire_decode_stats_reply(p, &m) == 0) {
            dkd__wire_stat *st = calloc(m.count ? m.count : 1, sizeof *st);
            dkd_span cur = m.entries;
            for (unsigned k = 0; k < m.count; k++) {
                CHECK(dkd__wire_stat_next(&cur, &st[k]));
                inside(st[k].name, p);
                CHECK(st[k].name.len >= 1);
            }
            CHECK(cur.len == 0);
            dkd__wire_put_stats_reply(&b, 1, st, m.count);
            same_payload(&b, type, p);
            free(st);
        }
        break;
    }
    case DKD__WIRE_ERROR: {
        dkd__wire_error m;
        if (dkd__wire_decode_error(p, &m) == 0) {
            inside(m.message, p);
            CHECK(dkd__wire_errcode_name(m.code) != NULL);
            dkd__wire_put_error(&b, 1, m.code, m.message);
            same_payload(&b, type, p);
        }
        break;
    }
    default:
        /* Data frames (BODY, PING, PONG) and empty ones carry the payload as is. */
        dkd__wire_put_data(&b, type, 1, p);
        same_payload(&b, type, p);
        break;
    }
    dkd__wbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dkd_span in = dkd__span(data, size);
    for (;;) {
        dkd__wire_header h;
        dkd_span payload;
        size_t before = in.len;
        int rc = dkd__wire_frame_split(&in, 0, 1 << 20, &h, &payload);
        if (rc != 1) {
            CHECK(in.len == before);
            CHECK(rc == 0 || rc == DKD__WIRE_ERR_TOO_LARGE);
            CHECK(rc != DKD__WIRE_ERR_TOO_LARGE || h.payload_len > (1u << 20));
            break;
        }
        CHECK(before - in.len == DKD__WIRE_HEADER_LEN + (size_t)h.payload_len);
        CHECK(payload.len == h.payload_len);
        roundtrip(h.type, payload);
        /* The header itself re-encodes to its bytes. */
        dkd__wbuf b;
        dkd__wbuf_init(&b);
        dkd__wire_put_header(&b, &h);
        CHECK(b.len == DKD__WIRE_HEADER_LEN &&
              memcmp(b.ptr, payload.ptr - DKD__WIRE_HEADER_LEN, DKD__WIRE_HEADER_LEN) == 0);
        dkd__wbuf_free(&b);
    }
    static const uint8_t types[] = {DKD__WIRE_HELLO,      DKD__WIRE_HELLO_OK,  DKD__WIRE_VERIFY,
                                    DKD__WIRE_VERIFY_SHM, DKD__WIRE_SHM_ATTACH, DKD__WIRE_RESULT,
                                    DKD__WIRE_STATS_REPLY, DKD__WIRE_ERROR};
    for (size_t k = 0; k < sizeof types; k++) {
        roundtrip(types[k], dkd__span(data, size));
    }
    return 0;
}
