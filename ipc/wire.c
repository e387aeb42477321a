/*
 * wire.c - the reference codec of the dkimd wire protocol (ipc/PROTOCOL.md).
 *
 * Pure functions over spans and byte builders: no I/O, no globals, no allocation when
 * decoding. The daemon decodes every frame a client sends with it, so every length read
 * from the wire is checked against the bytes actually there before use, and decoding is
 * exact (no trailing bytes), which lets the fuzz target check decode -> encode == input.
 *
 * Workload: one or a few small frames per message (the message itself is borrowed, never
 * copied by the codec); RESULT encoding of up to max_signatures records.
 */
#include "wire.h"

#include <string.h>

/* ---- reading: span.h's getters, plus the protocol's rule for strings ---- */

/* Strings are NUL-free so a receiver can hand them out as C strings without loss. */
static bool no_nul(dkd_span v)
{
    return v.len == 0 || memchr(v.ptr, 0, v.len) == NULL;
}

/* get_str8 / get_str16: a length-prefixed string without NUL; *s unchanged on failure. */
static bool get_str8(dkd_span *s, dkd_span *out)
{
    dkd_span t = *s;
    if (!dkd__span_get_u8_prefixed(&t, out) || !no_nul(*out)) {
        return false;
    }
    *s = t;
    return true;
}

static bool get_str16(dkd_span *s, dkd_span *out)
{
    dkd_span t = *s;
    if (!dkd__span_get_u16_prefixed(&t, out) || !no_nul(*out)) {
        return false;
    }
    *s = t;
    return true;
}

/* ---- frames ---- */

bool dkd__wire_header_decode(dkd_span in, dkd__wire_header *hdr)
{
    if (in.len < DKD__WIRE_HEADER_LEN) {
        return false;
    }
    dkd_span s = in;
    /* Cannot fail: 12 bytes were checked above. */
    dkd__span_get_u8(&s, &hdr->version);
    dkd__span_get_u8(&s, &hdr->type);
    dkd__span_get_u16be(&s, &hdr->flags);
    dkd__span_get_u32be(&s, &hdr->request_id);
    dkd__span_get_u32be(&s, &hdr->payload_len);
    return true;
}

int dkd__wire_frame_split(dkd_span *in, uint8_t expect_version, uint32_t max_payload,
                          dkd__wire_header *hdr, dkd_span *payload)
{
    if (!dkd__wire_header_decode(*in, hdr)) {
        return 0;
    }
    /* Decided on the header alone: a receiver must not wait for (or buffer) a payload
     * it is going to refuse anyway. */
    if (expect_version != 0 && hdr->version != expect_version) {
        return DKD__WIRE_ERR_VERSION;
    }
    if (hdr->payload_len > max_payload) {
        return DKD__WIRE_ERR_TOO_LARGE;
    }
    if (in->len - DKD__WIRE_HEADER_LEN < hdr->payload_len) {
        return 0;
    }
    /* Cannot fail: both lengths were checked above. */
    dkd__span_skip(in, DKD__WIRE_HEADER_LEN);
    dkd__span_get_bytes(in, hdr->payload_len, payload);
    return 1;
}

/* ---- payload decoders ---- */

int dkd__wire_decode_hello(dkd_span p, dkd__wire_hello *out)
{
    if (!dkd__span_get_u8(&p, &out->min_version) || !dkd__span_get_u8(&p, &out->max_version) ||
        !get_str8(&p, &out->client_name) || p.len != 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    if (out->min_version < 1 || out->max_version < out->min_version) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

int dkd__wire_decode_hello_ok(dkd_span p, dkd__wire_hello_ok *out)
{
    dkd_span reserved;
    if (!dkd__span_get_u8(&p, &out->version) || !dkd__span_get_bytes(&p, 3, &reserved) ||
        !dkd__span_get_u32be(&p, &out->max_frame) || !dkd__span_get_u64be(&p, &out->max_message) ||
        !dkd__span_get_u32be(&p, &out->max_header_block) ||
        !dkd__span_get_u32be(&p, &out->max_inflight) || !dkd__span_get_u32be(&p, &out->max_chunk) ||
        !get_str8(&p, &out->server_name) || p.len != 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    /* The reserved bytes must be zero so that a later version may give them meaning. */
    if (reserved.ptr[0] | reserved.ptr[1] | reserved.ptr[2]) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    if (out->version < 1 || out->max_frame < DKD__WIRE_PRE_HELLO_MAX || out->max_inflight < 1 ||
        out->max_chunk < 1 || out->max_chunk > out->max_frame) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

static bool authserv_ok(dkd_span v)
{
    if (v.len < 1 || v.len > DKD__WIRE_MAX_AUTHSERV) {
        return false;
    }
    /* Printable ASCII without space: it is pasted into a header field. */
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < 0x21 || v.ptr[i] > 0x7E) {
            return false;
        }
    }
    return true;
}

static int decode_opts(dkd_span block, dkd__wire_verify_opts *o)
{
    *o = (dkd__wire_verify_opts){0};
    unsigned last_tag = 0;
    while (block.len > 0) {
        uint8_t tag;
        dkd_span v;
        if (!dkd__span_get_u8(&block, &tag) || !dkd__span_get_u16_prefixed(&block, &v)) {
            return DKD__WIRE_ERR_MALFORMED;
        }
        /* Ascending order, each tag once: one encoding per option set, so decoding is
         * exact and the fuzz round trip holds byte for byte. */
        if (tag <= last_tag) {
            return DKD__WIRE_ERR_MALFORMED;
        }
        last_tag = tag;
        if (tag == DKD__WIRE_OPT_AUTHSERV_ID) {
            if (!authserv_ok(v)) {
                return DKD__WIRE_ERR_MALFORMED;
            }
            o->has_authserv_id = true;
            o->authserv_id = v;
        } else if (tag == DKD__WIRE_OPT_TIME) {
            uint64_t t;
            if (v.len != 8 || !dkd__span_get_u64be(&v, &t)) {
                return DKD__WIRE_ERR_MALFORMED;
            }
            o->has_time = true;
            o->time = (int64_t)t; /* two's complement on every platform we build for */
        } else {
            return DKD__WIRE_ERR_MALFORMED;
        }
    }
    return 0;
}

/* The option block of VERIFY, VERIFY_BEGIN and VERIFY_SHM: u16 length, then TLVs. */
static int get_opts(dkd_span *p, dkd__wire_verify_opts *o)
{
    dkd_span block;
    if (!dkd__span_get_u16_prefixed(p, &block)) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return decode_opts(block, o);
}

int dkd__wire_decode_verify(dkd_span p, dkd__wire_verify *out)
{
    int rc = get_opts(&p, &out->opts);
    if (rc != 0) {
        return rc;
    }
    out->data = p;
    return 0;
}

int dkd__wire_decode_verify_shm(dkd_span p, dkd__wire_verify_shm *out)
{
    int rc = get_opts(&p, &out->opts);
    if (rc != 0) {
        return rc;
    }
    if (!dkd__span_get_u64be(&p, &out->offset) || !dkd__span_get_u64be(&p, &out->length) ||
        p.len != 0 || out->offset > UINT64_MAX - out->length) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

int dkd__wire_decode_shm_attach(dkd_span p, uint64_t *size)
{
    if (!dkd__span_get_u64be(&p, size) || p.len != 0 || *size == 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

/* Fixed part of a RESULT signature record: result, dnssec, reason, flags, key_bits,
 * body_signed, body_total. */
enum { SIG_FIXED_LEN = 1 + 1 + 2 + 2 + 4 + 8 + 8 };

bool dkd__wire_sig_next(dkd_span *cursor, dkd__wire_sig *o)
{
    dkd_span s = *cursor;
    if (!dkd__span_get_u8(&s, &o->result) || !dkd__span_get_u8(&s, &o->dnssec) ||
        !dkd__span_get_u16be(&s, &o->reason) || !dkd__span_get_u16be(&s, &o->flags) ||
        !dkd__span_get_u32be(&s, &o->key_bits) || !dkd__span_get_u64be(&s, &o->body_signed) ||
        !dkd__span_get_u64be(&s, &o->body_total) || !get_str16(&s, &o->explanation) ||
        !get_str16(&s, &o->detail) || !get_str16(&s, &o->d) || !get_str16(&s, &o->s) ||
        !get_str16(&s, &o->i) || !get_str16(&s, &o->a) || !get_str16(&s, &o->b_prefix)) {
        return false;
    }
    if (o->result > DKD_RESULT_TEMPERROR || o->dnssec > DKD__WIRE_DNSSEC_BOGUS ||
        (o->flags &
         ~(unsigned)(DKD__WIRE_SIG_TESTING | DKD__WIRE_SIG_HAS_L | DKD__WIRE_SIG_STALE)) != 0) {
        return false;
    }
    *cursor = s;
    return true;
}

int dkd__wire_decode_result(dkd_span p, dkd__wire_result *out)
{
    if (!dkd__span_get_u16be(&p, &out->nsigs)) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    /* Walk every record now so that consumers iterating later cannot meet a bad one. */
    const uint8_t *start = p.ptr;
    for (unsigned k = 0; k < out->nsigs; k++) {
        dkd__wire_sig sig;
        if (!dkd__wire_sig_next(&p, &sig)) {
            return DKD__WIRE_ERR_MALFORMED;
        }
    }
    out->sigs = dkd__span(start, (size_t)(p.ptr - start));
    if (!dkd__span_get_u32_prefixed(&p, &out->authres) || !no_nul(out->authres) || p.len != 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

static bool stat_name_ok(dkd_span n)
{
    if (n.len < 1) {
        return false;
    }
    for (size_t i = 0; i < n.len; i++) {
        uint8_t c = n.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

bool dkd__wire_stat_next(dkd_span *cursor, dkd__wire_stat *o)
{
    dkd_span s = *cursor;
    if (!get_str8(&s, &o->name) || !stat_name_ok(o->name) || !dkd__span_get_u64be(&s, &o->value)) {
        return false;
    }
    *cursor = s;
    return true;
}

int dkd__wire_decode_stats_reply(dkd_span p, dkd__wire_stats_reply *out)
{
    if (!dkd__span_get_u16be(&p, &out->count)) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    out->entries = p;
    /* Uniqueness of names is the sender's promise; checking it would be quadratic in a
     * hostile count and a duplicate harms no one. */
    for (unsigned k = 0; k < out->count; k++) {
        dkd__wire_stat st;
        if (!dkd__wire_stat_next(&p, &st)) {
            return DKD__WIRE_ERR_MALFORMED;
        }
    }
    if (p.len != 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

int dkd__wire_decode_error(dkd_span p, dkd__wire_error *out)
{
    if (!dkd__span_get_u16be(&p, &out->code) || !get_str16(&p, &out->message) || p.len != 0) {
        return DKD__WIRE_ERR_MALFORMED;
    }
    return 0;
}

enum dkd__wire_errcode dkd__wire_errcode_of(int status)
{
    switch (status) {
    case DKD__WIRE_ERR_MALFORMED:
        return DKD__WIRE_E_MALFORMED;
    case DKD__WIRE_ERR_VERSION:
        return DKD__WIRE_E_VERSION;
    case DKD__WIRE_ERR_TOO_LARGE:
        return DKD__WIRE_E_TOO_LARGE;
    default:
        return DKD__WIRE_E_INTERNAL;
    }
}

const char *dkd__wire_type_name(uint8_t type)
{
    switch (type) {
    case DKD__WIRE_HELLO:
        return "HELLO";
    case DKD__WIRE_HELLO_OK:
        return "HELLO_OK";
    case DKD__WIRE_VERIFY:
        return "VERIFY";
    case DKD__WIRE_VERIFY_BEGIN:
        return "VERIFY_BEGIN";
    case DKD__WIRE_VERIFY_BODY:
        return "VERIFY_BODY";
    case DKD__WIRE_VERIFY_END:
        return "VERIFY_END";
    case DKD__WIRE_RESULT:
        return "RESULT";
    case DKD__WIRE_STATS:
        return "STATS";
    case DKD__WIRE_STATS_REPLY:
        return "STATS_REPLY";
    case DKD__WIRE_PING:
        return "PING";
    case DKD__WIRE_PONG:
        return "PONG";
    case DKD__WIRE_SHM_ATTACH:
        return "SHM_ATTACH";
    case DKD__WIRE_SHM_ATTACH_OK:
        return "SHM_ATTACH_OK";
    case DKD__WIRE_VERIFY_SHM:
        return "VERIFY_SHM";
    case DKD__WIRE_ERROR:
        return "ERROR";
    default:
        return "unknown";
    }
}

const char *dkd__wire_errcode_name(uint16_t code)
{
    switch (code) {
    case DKD__WIRE_E_MALFORMED:
        return "malformed frame";
    case DKD__WIRE_E_VERSION:
        return "unsupported version";
    case DKD__WIRE_E_TOO_LARGE:
        return "too large";
    case DKD__WIRE_E_OVERLOADED:
        return "overloaded";
    case DKD__WIRE_E_SHUTTING_DOWN:
        return "shutting down";
    case DKD__WIRE_E_UNKNOWN_REQUEST:
        return "unknown request";
    case DKD__WIRE_E_INTERNAL:
        return "internal error";
    case DKD__WIRE_E_PROTOCOL:
        return "protocol violation";
    default:
        return "unknown error";
    }
}

/* ---- writing: buf.h's builder ---- */

/* put_str8 / put_str16: a length-prefixed string; one too long for its prefix sets the
 * error. */
static void put_str8(dkd__wbuf *b, dkd_span v)
{
    if (v.len > UINT8_MAX) {
        dkd__buf_fail(b);
        return;
    }
    dkd__buf_put_u8(b, (uint8_t)v.len);
    dkd__buf_append(b, v.ptr, v.len);
}

static void put_str16(dkd__wbuf *b, dkd_span v)
{
    if (v.len > UINT16_MAX) {
        dkd__buf_fail(b);
        return;
    }
    dkd__buf_put_u16be(b, (uint16_t)v.len);
    dkd__buf_append(b, v.ptr, v.len);
}

void dkd__wire_put_header(dkd__wbuf *b, const dkd__wire_header *h)
{
    dkd__buf_put_u8(b, h->version);
    dkd__buf_put_u8(b, h->type);
    dkd__buf_put_u16be(b, h->flags);
    dkd__buf_put_u32be(b, h->request_id);
    dkd__buf_put_u32be(b, h->payload_len);
}

/* put_frame_header_flags writes a version-1 header for a payload of len bytes. */
static void put_frame_header_flags(dkd__wbuf *b, uint8_t type, uint16_t flags, uint32_t request_id,
                                   size_t len)
{
    if (len > UINT32_MAX) {
        dkd__buf_fail(b);
        return;
    }
    dkd__wire_header h = {.version = DKD__WIRE_VERSION,
                          .type = type,
                          .flags = flags,
                          .request_id = request_id,
                          .payload_len = (uint32_t)len};
    dkd__wire_put_header(b, &h);
}

static void put_frame_header(dkd__wbuf *b, uint8_t type, uint32_t request_id, size_t len)
{
    put_frame_header_flags(b, type, 0, request_id, len);
}

void dkd__wire_put_hello(dkd__wbuf *b, uint32_t request_id, const dkd__wire_hello *m)
{
    put_frame_header(b, DKD__WIRE_HELLO, request_id, 2 + 1 + m->client_name.len);
    dkd__buf_put_u8(b, m->min_version);
    dkd__buf_put_u8(b, m->max_version);
    put_str8(b, m->client_name);
}

void dkd__wire_put_hello_ok(dkd__wbuf *b, uint32_t request_id, const dkd__wire_hello_ok *m)
{
    put_frame_header_flags(b, DKD__WIRE_HELLO_OK, m->features, request_id,
                           4 + 4 + 8 + 4 + 4 + 4 + 1 + m->server_name.len);
    dkd__buf_put_u8(b, m->version);
    static const uint8_t zero[3];
    dkd__buf_append(b, zero, 3);
    dkd__buf_put_u32be(b, m->max_frame);
    dkd__buf_put_u64be(b, m->max_message);
    dkd__buf_put_u32be(b, m->max_header_block);
    dkd__buf_put_u32be(b, m->max_inflight);
    dkd__buf_put_u32be(b, m->max_chunk);
    put_str8(b, m->server_name);
}

static size_t opts_len(const dkd__wire_verify_opts *o)
{
    size_t n = 0;
    if (o->has_authserv_id) {
        n += 3 + o->authserv_id.len;
    }
    if (o->has_time) {
        n += 3 + 8;
    }
    return n;
}

size_t dkd__wire_verify_head_len(const dkd__wire_verify_opts *opts)
{
    return DKD__WIRE_HEADER_LEN + 2 + opts_len(opts);
}

void dkd__wire_put_verify_head(dkd__wbuf *b, uint8_t type, uint32_t request_id,
                               const dkd__wire_verify_opts *o, size_t data_len)
{
    size_t olen = opts_len(o);
    /* An authserv-id the decoder would refuse is refused here too, so that what the
     * encoder produces always decodes. */
    if ((o->has_authserv_id && !authserv_ok(o->authserv_id)) || olen > UINT16_MAX ||
        data_len > SIZE_MAX - 2 - olen) {
        dkd__buf_fail(b);
        return;
    }
    put_frame_header(b, type, request_id, 2 + olen + data_len);
    dkd__buf_put_u16be(b, (uint16_t)olen);
    if (o->has_authserv_id) {
        dkd__buf_put_u8(b, DKD__WIRE_OPT_AUTHSERV_ID);
        put_str16(b, o->authserv_id);
    }
    if (o->has_time) {
        dkd__buf_put_u8(b, DKD__WIRE_OPT_TIME);
        dkd__buf_put_u16be(b, 8);
        dkd__buf_put_u64be(b, (uint64_t)o->time);
    }
}

void dkd__wire_put_verify(dkd__wbuf *b, uint8_t type, uint32_t request_id,
                          const dkd__wire_verify *m)
{
    dkd__wire_put_verify_head(b, type, request_id, &m->opts, m->data.len);
    dkd__buf_append(b, m->data.ptr, m->data.len);
}

void dkd__wire_put_verify_shm(dkd__wbuf *b, uint32_t request_id, const dkd__wire_verify_shm *m)
{
    dkd__wire_put_verify_head(b, DKD__WIRE_VERIFY_SHM, request_id, &m->opts, 16);
    dkd__buf_put_u64be(b, m->offset);
    dkd__buf_put_u64be(b, m->length);
}

void dkd__wire_put_shm_attach(dkd__wbuf *b, uint32_t request_id, uint64_t size)
{
    put_frame_header(b, DKD__WIRE_SHM_ATTACH, request_id, 8);
    dkd__buf_put_u64be(b, size);
}

void dkd__wire_put_data(dkd__wbuf *b, uint8_t type, uint32_t request_id, dkd_span data)
{
    put_frame_header(b, type, request_id, data.len);
    dkd__buf_append(b, data.ptr, data.len);
}

static size_t sig_len(const dkd__wire_sig *s)
{
    return SIG_FIXED_LEN + 7 * 2 + s->explanation.len + s->detail.len + s->d.len + s->s.len +
           s->i.len + s->a.len + s->b_prefix.len;
}

/* Unchecked writers for put_result, which adds the whole frame first. */
static uint8_t *w_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *w_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *w_bytes(uint8_t *p, dkd_span v)
{
    if (v.len != 0) {
        memcpy(p, v.ptr, v.len);
    }
    return p + v.len;
}

static uint8_t *w_str16(uint8_t *p, dkd_span v)
{
    return w_bytes(w_u16(p, (uint16_t)v.len), v);
}

/*
 * dkd__wire_put_result encodes a RESULT frame. It runs once per answered message, so the
 * frame is sized first, added once (dkd__buf_add_space) and written through a cursor,
 * instead of some 30 appends that each check the room left.
 */
void dkd__wire_put_result(dkd__wbuf *b, uint32_t request_id, const dkd__wire_sig *sigs,
                          size_t nsigs, dkd_span authres)
{
    if (nsigs > UINT16_MAX || authres.len > UINT32_MAX) {
        dkd__buf_fail(b);
        return;
    }
    size_t len = 2 + 4 + authres.len;
    for (size_t k = 0; k < nsigs; k++) {
        const dkd__wire_sig *s = &sigs[k];
        if (s->explanation.len > UINT16_MAX || s->detail.len > UINT16_MAX ||
            s->d.len > UINT16_MAX || s->s.len > UINT16_MAX || s->i.len > UINT16_MAX ||
            s->a.len > UINT16_MAX || s->b_prefix.len > UINT16_MAX) {
            dkd__buf_fail(b);
            return;
        }
        len += sig_len(s);
    }
    if (len > UINT32_MAX) {
        dkd__buf_fail(b);
        return;
    }
    uint8_t *p = dkd__buf_add_space(b, DKD__WIRE_HEADER_LEN + len);
    if (p == NULL) {
        return;
    }
    *p++ = DKD__WIRE_VERSION;
    *p++ = DKD__WIRE_RESULT;
    p = w_u16(p, 0);
    p = w_u32(p, request_id);
    p = w_u32(p, (uint32_t)len);
    p = w_u16(p, (uint16_t)nsigs);
    for (size_t k = 0; k < nsigs; k++) {
        const dkd__wire_sig *s = &sigs[k];
        *p++ = s->result;
        *p++ = s->dnssec;
        p = w_u16(p, s->reason);
        p = w_u16(p, s->flags);
        p = w_u32(p, s->key_bits);
        p = w_u32(p, (uint32_t)(s->body_signed >> 32));
        p = w_u32(p, (uint32_t)s->body_signed);
        p = w_u32(p, (uint32_t)(s->body_total >> 32));
        p = w_u32(p, (uint32_t)s->body_total);
        p = w_str16(p, s->explanation);
        p = w_str16(p, s->detail);
        p = w_str16(p, s->d);
        p = w_str16(p, s->s);
        p = w_str16(p, s->i);
        p = w_str16(p, s->a);
        p = w_str16(p, s->b_prefix);
    }
    p = w_u32(p, (uint32_t)authres.len);
    w_bytes(p, authres);
}

void dkd__wire_put_stats_reply(dkd__wbuf *b, uint32_t request_id, const dkd__wire_stat *stats,
                               size_t count)
{
    if (count > UINT16_MAX) {
        dkd__buf_fail(b);
        return;
    }
    size_t len = 2;
    for (size_t k = 0; k < count; k++) {
        len += 1 + stats[k].name.len + 8;
    }
    put_frame_header(b, DKD__WIRE_STATS_REPLY, request_id, len);
    dkd__buf_put_u16be(b, (uint16_t)count);
    for (size_t k = 0; k < count; k++) {
        put_str8(b, stats[k].name);
        dkd__buf_put_u64be(b, stats[k].value);
    }
}

void dkd__wire_put_error(dkd__wbuf *b, uint32_t request_id, uint16_t code, dkd_span message)
{
    put_frame_header(b, DKD__WIRE_ERROR, request_id, 2 + 2 + message.len);
    dkd__buf_put_u16be(b, code);
    put_str16(b, message);
}
