/*
 * wire_test.c - tests of the wire codec (ipc/wire.c): every frame type round-trips;
 * truncated, padded, oversized and garbage payloads are refused with the right status;
 * the builder's sticky error; the reason numbers of PROTOCOL.md section 5; and the hex
 * dump of PROTOCOL.md section 6, which this program generates (`wire_test --dump`) and
 * checks against the committed text. Decoder inputs sit against a guard page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "wire.h"

#include <dkimd/engine.h>

static dkd_span S(const char *s)
{
    return dkd__span_str(s);
}

static bool span_eq(dkd_span a, dkd_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* split_one cuts the single frame in b and returns its payload, placed against a guard
 * page so a decoder reading past it crashes. */
static dkd_span split_one(const dkd__wbuf *b, dkd__wire_header *h)
{
    assert_int_equal(dkd__wbuf_ok(b), 0);
    dkd_span in = dkd__span(b->ptr, b->len);
    dkd_span payload;
    assert_int_equal(dkd__wire_frame_split(&in, DKD__WIRE_VERSION, UINT32_MAX, h, &payload), 1);
    assert_int_equal(in.len, 0);
    return dkd__span(guard_copy(payload.ptr, payload.len), payload.len);
}

typedef int (*decode_fn)(dkd_span p, void *out);

/* check_exact: the payload decodes, every proper prefix and every one-byte extension of
 * it do not (exact decoding: lengths are checked against the span both ways). */
static void check_exact(dkd_span p, decode_fn decode, void *out)
{
    /* p may itself live in the guard slot, which every guard_copy reuses: work on a copy
     * and, at the end, leave the original payload decoded into out. */
    uint8_t *copy = malloc(p.len + 1);
    memcpy(copy, p.ptr, p.len);
    assert_int_equal(decode(dkd__span(guard_copy(copy, p.len), p.len), out), 0);
    for (size_t n = 0; n < p.len; n++) {
        int rc = decode(dkd__span(guard_copy(copy, n), n), out);
        assert_int_equal(rc, DKD__WIRE_ERR_MALFORMED);
    }
    copy[p.len] = 0x00;
    assert_int_equal(decode(dkd__span(guard_copy(copy, p.len + 1), p.len + 1), out),
                     DKD__WIRE_ERR_MALFORMED);
    /* Decode again so out describes the original (the loop clobbered it); the spans in
     * out then point into the guard slot, valid until the next guard_copy. */
    assert_int_equal(decode(dkd__span(guard_copy(copy, p.len), p.len), out), 0);
    free(copy);
}

static int dec_hello(dkd_span p, void *o)
{
    return dkd__wire_decode_hello(p, o);
}
static int dec_hello_ok(dkd_span p, void *o)
{
    return dkd__wire_decode_hello_ok(p, o);
}
static int dec_result(dkd_span p, void *o)
{
    return dkd__wire_decode_result(p, o);
}
static int dec_stats(dkd_span p, void *o)
{
    return dkd__wire_decode_stats_reply(p, o);
}
static int dec_error(dkd_span p, void *o)
{
    return dkd__wire_decode_error(p, o);
}
static int dec_verify_shm(dkd_span p, void *o)
{
    return dkd__wire_decode_verify_shm(p, o);
}
static int dec_shm_attach(dkd_span p, void *o)
{
    return dkd__wire_decode_shm_attach(p, o);
}

/* ---- frames ---- */

static void test_header_and_split(void **state)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_header h = {
        .version = 1, .type = 0x83, .flags = 0xBEEF, .request_id = 0x01020304, .payload_len = 3};
    dkd__wire_put_header(&b, &h);
    dkd__wbuf_append(&b, "abc", 3);
    static const uint8_t want[] = {0x01, 0x83, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04,
                                   0x00, 0x00, 0x00, 0x03, 'a',  'b',  'c'};
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.ptr, want, sizeof want);

    dkd__wire_header g;
    dkd_span payload;
    /* Every truncation needs more bytes and leaves the input alone. */
    for (size_t n = 0; n < sizeof want; n++) {
        dkd_span in = dkd__span(guard_copy(want, n), n);
        dkd_span before = in;
        assert_int_equal(dkd__wire_frame_split(&in, 1, 100, &g, &payload), 0);
        assert_ptr_equal(in.ptr, before.ptr);
        assert_int_equal(in.len, before.len);
        if (n >= DKD__WIRE_HEADER_LEN) {
            assert_int_equal(g.payload_len, 3); /* the header is readable already */
        }
    }
    dkd_span in = dkd__span(guard_copy(want, sizeof want), sizeof want);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 3, &g, &payload), 1);
    assert_int_equal(g.version, 1);
    assert_int_equal(g.type, 0x83);
    assert_int_equal(g.flags, 0xBEEF);
    assert_int_equal(g.request_id, 0x01020304);
    assert_int_equal(in.len, 0);
    assert_true(span_eq(payload, S("abc")));

    /* Limits are decided from the header, before the payload is there. */
    in = dkd__span(want, DKD__WIRE_HEADER_LEN);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 2, &g, &payload), DKD__WIRE_ERR_TOO_LARGE);
    assert_int_equal(dkd__wire_frame_split(&in, 2, 100, &g, &payload), DKD__WIRE_ERR_VERSION);
    assert_int_equal(dkd__wire_frame_split(&in, 0, 100, &g, &payload), 0); /* any version */
    assert_int_equal(dkd__wire_errcode_of(DKD__WIRE_ERR_TOO_LARGE), DKD__WIRE_E_TOO_LARGE);
    assert_int_equal(dkd__wire_errcode_of(DKD__WIRE_ERR_VERSION), DKD__WIRE_E_VERSION);
    assert_int_equal(dkd__wire_errcode_of(DKD__WIRE_ERR_MALFORMED), DKD__WIRE_E_MALFORMED);

    /* An absurd length (4 GiB - 1) is refused, not waited for. */
    static const uint8_t absurd[] = {1, 2, 0, 0, 0, 0, 0, 9, 0xFF, 0xFF, 0xFF, 0xFF};
    in = dkd__span(guard_copy(absurd, sizeof absurd), sizeof absurd);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 1 << 20, &g, &payload), DKD__WIRE_ERR_TOO_LARGE);

    /* Two frames back to back come out one at a time. */
    dkd__wbuf_reset(&b);
    dkd__wire_put_data(&b, DKD__WIRE_PING, 7, S("x"));
    dkd__wire_put_data(&b, DKD__WIRE_STATS, 8, dkd__span(NULL, 0));
    in = dkd__span(b.ptr, b.len);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 100, &g, &payload), 1);
    assert_int_equal(g.request_id, 7);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 100, &g, &payload), 1);
    assert_int_equal(g.type, DKD__WIRE_STATS);
    assert_int_equal(payload.len, 0);
    assert_int_equal(dkd__wire_frame_split(&in, 1, 100, &g, &payload), 0);
    dkd__wbuf_free(&b);
    (void)state;
}

static void test_hello(void **state)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_hello m = {.min_version = 1, .max_version = 3, .client_name = S("postfix/3.8")};
    dkd__wire_put_hello(&b, 0, &m);
    dkd__wire_header h;
    dkd_span p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_HELLO);
    assert_int_equal(h.request_id, 0);
    dkd__wire_hello d;
    check_exact(p, dec_hello, &d);
    assert_int_equal(d.min_version, 1);
    assert_int_equal(d.max_version, 3);
    assert_true(span_eq(d.client_name, S("postfix/3.8")));

    /* min 0, min > max, and a NUL in the name are malformed. */
    static const uint8_t v0[] = {0, 1, 0}, inv[] = {2, 1, 0}, nul[] = {1, 1, 2, 'a', 0};
    assert_int_equal(dkd__wire_decode_hello(dkd__span(v0, 3), &d), DKD__WIRE_ERR_MALFORMED);
    assert_int_equal(dkd__wire_decode_hello(dkd__span(inv, 3), &d), DKD__WIRE_ERR_MALFORMED);
    assert_int_equal(dkd__wire_decode_hello(dkd__span(nul, 5), &d), DKD__WIRE_ERR_MALFORMED);

    /* A name over 255 bytes cannot be encoded: the builder reports it. */
    char big[300];
    memset(big, 'n', sizeof big);
    dkd__wbuf_reset(&b);
    m.client_name = dkd__span(big, sizeof big);
    dkd__wire_put_hello(&b, 0, &m);
    assert_int_equal(dkd__wbuf_ok(&b), DKD__WIRE_ERR_NOMEM);
    dkd__wbuf_free(&b);
    (void)state;
}

static const dkd__wire_hello_ok sample_ok = {
    .version = 1,
    .max_frame = 1 << 20,
    .max_message = 64ull << 30,
    .max_header_block = 1 << 20,
    .max_inflight = 128,
    .max_chunk = 256 << 10,
    .server_name = {(const uint8_t *)"dkimd 0.1.0", 11},
};

static void test_hello_ok(void **state)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_put_hello_ok(&b, 0, &sample_ok);
    dkd__wire_header h;
    dkd_span p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_HELLO_OK);
    dkd__wire_hello_ok d;
    check_exact(p, dec_hello_ok, &d);
    assert_int_equal(d.version, 1);
    assert_int_equal(d.max_frame, 1 << 20);
    assert_true(d.max_message == 64ull << 30);
    assert_int_equal(d.max_header_block, 1 << 20);
    assert_int_equal(d.max_inflight, 128);
    assert_int_equal(d.max_chunk, 256 << 10);
    assert_true(span_eq(d.server_name, S("dkimd 0.1.0")));

    /* Reserved bytes must be zero; limits must make sense. */
    uint8_t *raw = malloc(p.len);
    memcpy(raw, p.ptr, p.len);
    raw[2] = 1;
    assert_int_equal(dkd__wire_decode_hello_ok(dkd__span(raw, p.len), &d), DKD__WIRE_ERR_MALFORMED);
    dkd__wire_hello_ok bad[4] = {sample_ok, sample_ok, sample_ok, sample_ok};
    bad[0].max_inflight = 0;
    bad[1].max_chunk = 0;
    bad[2].max_chunk = bad[2].max_frame + 1;
    bad[3].max_frame = 100;
    for (int k = 0; k < 4; k++) {
        dkd__wbuf_reset(&b);
        dkd__wire_put_hello_ok(&b, 0, &bad[k]);
        p = split_one(&b, &h);
        assert_int_equal(dkd__wire_decode_hello_ok(p, &d), DKD__WIRE_ERR_MALFORMED);
    }
    free(raw);

    /* Features ride in the header's flags; the payload does not change. */
    dkd__wire_hello_ok feat = sample_ok;
    feat.features = DKD__WIRE_F_SHM;
    dkd__wbuf_reset(&b);
    dkd__wire_put_hello_ok(&b, 0, &feat);
    p = split_one(&b, &h);
    assert_int_equal(h.flags, DKD__WIRE_F_SHM);
    check_exact(p, dec_hello_ok, &d);
    dkd__wbuf_free(&b);
    (void)state;
}

static void test_shm_frames(void **state)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_put_shm_attach(&b, 9, 1ull << 33);
    dkd__wire_header h;
    dkd_span p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_SHM_ATTACH);
    assert_int_equal(h.request_id, 9);
    assert_int_equal(p.len, 8);
    uint64_t size;
    check_exact(p, dec_shm_attach, &size);
    assert_true(size == 1ull << 33);
    static const uint8_t zero[8];
    assert_int_equal(dkd__wire_decode_shm_attach(dkd__span(zero, 8), &size),
                     DKD__WIRE_ERR_MALFORMED);

    dkd__wire_verify_shm v = {.opts = {.has_authserv_id = true,
                                       .authserv_id = S("mx.example.net"),
                                       .has_time = true,
                                       .time = -5},
                              .offset = 4096,
                              .length = 123456};
    dkd__wbuf_reset(&b);
    dkd__wire_put_verify_shm(&b, 10, &v);
    p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_VERIFY_SHM);
    dkd__wire_verify_shm d;
    check_exact(p, dec_verify_shm, &d);
    assert_true(d.offset == 4096 && d.length == 123456 && d.opts.time == -5);
    assert_true(span_eq(d.opts.authserv_id, S("mx.example.net")));
    /* A range that wraps around 2^64 is malformed. */
    v = (dkd__wire_verify_shm){.offset = UINT64_MAX - 3, .length = 4};
    dkd__wbuf_reset(&b);
    dkd__wire_put_verify_shm(&b, 11, &v);
    p = split_one(&b, &h);
    assert_int_equal(dkd__wire_decode_verify_shm(p, &d), DKD__WIRE_ERR_MALFORMED);
    v.offset = UINT64_MAX - 4;
    dkd__wbuf_reset(&b);
    dkd__wire_put_verify_shm(&b, 11, &v);
    p = split_one(&b, &h);
    check_exact(p, dec_verify_shm, &d);
    assert_string_equal(dkd__wire_type_name(DKD__WIRE_VERIFY_SHM), "VERIFY_SHM");
    assert_string_equal(dkd__wire_type_name(DKD__WIRE_SHM_ATTACH_OK), "SHM_ATTACH_OK");
    dkd__wbuf_free(&b);
    (void)state;
}

static void test_verify(void **state)
{
    static const char msg[] = "From: a@example.com\r\n\r\nhi\r\n";
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_verify_opts variants[4] = {
        {0},
        {.has_authserv_id = true, .authserv_id = S("mx.example.net")},
        {.has_time = true, .time = -5},
        {.has_authserv_id = true, .authserv_id = S("x"), .has_time = true, .time = 1764003600},
    };
    for (int k = 0; k < 4; k++) {
        for (int type = DKD__WIRE_VERIFY; type <= DKD__WIRE_VERIFY_BEGIN; type++) {
            dkd__wbuf_reset(&b);
            dkd__wire_verify m = {.opts = variants[k], .data = S(msg)};
            dkd__wire_put_verify(&b, (uint8_t)type, 42, &m);
            assert_int_equal(b.len, dkd__wire_verify_head_len(&variants[k]) + strlen(msg));
            dkd__wire_header h;
            dkd_span p = split_one(&b, &h);
            assert_int_equal(h.type, type);
            assert_int_equal(h.request_id, 42);
            dkd__wire_verify d;
            assert_int_equal(dkd__wire_decode_verify(p, &d), 0);
            assert_int_equal(d.opts.has_authserv_id, variants[k].has_authserv_id);
            assert_int_equal(d.opts.has_time, variants[k].has_time);
            if (d.opts.has_authserv_id) {
                assert_true(span_eq(d.opts.authserv_id, variants[k].authserv_id));
            }
            if (d.opts.has_time) {
                assert_true(d.opts.time == variants[k].time);
            }
            assert_true(span_eq(d.data, S(msg)));
            /* Truncations that cut into the option block are malformed (later ones just
             * shorten the message, which is data). */
            size_t opt_end = 2 + dkd__wire_verify_head_len(&variants[k]) - 14;
            for (size_t n = 0; n < opt_end; n++) {
                assert_int_equal(dkd__wire_decode_verify(dkd__span(guard_copy(p.ptr, n), n), &d),
                                 DKD__WIRE_ERR_MALFORMED);
            }
        }
    }

    /* Garbage option blocks. */
    static const struct {
        const char *why;
        uint8_t bytes[32];
        size_t len;
    } bad[] = {
        {"unknown tag", {0, 3, 9, 0, 0}, 5},
        {"out of order", {0, 15, 2, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 'x'}, 17},
        {"repeated", {0, 8, 1, 0, 1, 'x', 1, 0, 1, 'y'}, 10},
        {"time of 4 bytes", {0, 7, 2, 0, 4, 0, 0, 0, 1}, 9},
        {"empty authserv", {0, 3, 1, 0, 0}, 5},
        {"authserv with space", {0, 5, 1, 0, 2, 'a', ' '}, 7},
        {"authserv with NUL", {0, 5, 1, 0, 2, 'a', 0}, 7},
        {"TLV overruns block", {0, 4, 1, 0, 2, 'a', 'b'}, 7},
        {"block overruns payload", {0, 9, 1, 0, 1, 'x'}, 6},
        {"one byte", {0}, 1},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        dkd__wire_verify d;
        int rc = dkd__wire_decode_verify(
            dkd__span(guard_copy(bad[k].bytes, bad[k].len), bad[k].len), &d);
        if (rc != DKD__WIRE_ERR_MALFORMED) {
            fail_msg("%s: accepted", bad[k].why);
        }
    }

    /* The encoder refuses what the decoder would. */
    dkd__wbuf_reset(&b);
    dkd__wire_verify_opts o = {.has_authserv_id = true, .authserv_id = S("has space")};
    dkd__wire_put_verify_head(&b, DKD__WIRE_VERIFY, 1, &o, 0);
    assert_int_equal(dkd__wbuf_ok(&b), DKD__WIRE_ERR_NOMEM);
    dkd__wbuf_free(&b);
    (void)state;
}

static const dkd__wire_sig sample_sigs[2] = {
    {.result = DKD_RESULT_PASS,
     .dnssec = DKD__WIRE_DNSSEC_SECURE,
     .reason = DKD_REASON_OK,
     .flags = DKD__WIRE_SIG_HAS_L,
     .key_bits = 2048,
     .body_signed = 100,
     .body_total = 120,
     .explanation = {(const uint8_t *)"signature verified", 18},
     .detail = {(const uint8_t *)"", 0},
     .d = {(const uint8_t *)"example.com", 11},
     .s = {(const uint8_t *)"sel", 3},
     .i = {(const uint8_t *)"@example.com", 12},
     .a = {(const uint8_t *)"rsa-sha256", 10},
     .b_prefix = {(const uint8_t *)"abcdefgh", 8}},
    {.result = DKD_RESULT_TEMPERROR,
     .dnssec = DKD__WIRE_DNSSEC_BOGUS,
     .reason = DKD_REASON_DNSSEC_BOGUS,
     .flags = DKD__WIRE_SIG_TESTING,
     .key_bits = 0,
     .body_signed = 0,
     .body_total = 0,
     .explanation = {(const uint8_t *)"key record failed DNSSEC validation", 35},
     .detail = {(const uint8_t *)"bogus", 5},
     .d = {(const uint8_t *)"b.example", 9},
     .s = {(const uint8_t *)"s2", 2},
     .i = {(const uint8_t *)"", 0},
     .a = {(const uint8_t *)"ed25519-sha256", 14},
     .b_prefix = {(const uint8_t *)"", 0}},
};

static bool sig_eq(const dkd__wire_sig *a, const dkd__wire_sig *b)
{
    return a->result == b->result && a->dnssec == b->dnssec && a->reason == b->reason &&
           a->flags == b->flags && a->key_bits == b->key_bits && a->body_signed == b->body_signed &&
           a->body_total == b->body_total && span_eq(a->explanation, b->explanation) &&
           span_eq(a->detail, b->detail) && span_eq(a->d, b->d) && span_eq(a->s, b->s) &&
           span_eq(a->i, b->i) && span_eq(a->a, b->a) && span_eq(a->b_prefix, b->b_prefix);
}

static void test_result(void **state)
{
    static const char ar[] = "Authentication-Results: mx; dkim=pass header.d=example.com";
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    for (size_t n = 0; n <= 2; n++) {
        dkd__wbuf_reset(&b);
        dkd__wire_put_result(&b, 9, sample_sigs, n, S(ar));
        dkd__wire_header h;
        dkd_span p = split_one(&b, &h);
        assert_int_equal(h.type, DKD__WIRE_RESULT);
        dkd__wire_result d;
        check_exact(p, dec_result, &d);
        assert_int_equal(d.nsigs, n);
        assert_true(span_eq(d.authres, S(ar)));
        dkd_span cur = d.sigs;
        for (size_t k = 0; k < n; k++) {
            dkd__wire_sig s;
            assert_true(dkd__wire_sig_next(&cur, &s));
            assert_true(sig_eq(&s, &sample_sigs[k]));
        }
        dkd__wire_sig s;
        assert_false(dkd__wire_sig_next(&cur, &s));
    }
    /* Out-of-range values in a signature record are malformed. */
    dkd__wire_sig bad[4] = {sample_sigs[0], sample_sigs[0], sample_sigs[0], sample_sigs[0]};
    bad[0].result = DKD_RESULT_TEMPERROR + 1;
    bad[1].dnssec = 3;
    bad[2].flags = 8; /* bits 0-2 are defined; bit 3 is not */
    bad[3].detail = dkd__span("a\0b", 3);
    for (int k = 0; k < 4; k++) {
        dkd__wbuf_reset(&b);
        dkd__wire_put_result(&b, 9, &bad[k], 1, S(ar));
        dkd__wire_header h;
        dkd_span p = split_one(&b, &h);
        dkd__wire_result d;
        assert_int_equal(dkd__wire_decode_result(p, &d), DKD__WIRE_ERR_MALFORMED);
    }
    /* A count larger than the records present. */
    static const uint8_t lie[] = {0xFF, 0xFF, 0, 0, 0, 0};
    dkd__wire_result d;
    assert_int_equal(dkd__wire_decode_result(dkd__span(guard_copy(lie, 6), 6), &d),
                     DKD__WIRE_ERR_MALFORMED);
    /* An unknown reason number passes: a newer server may know more reasons. */
    dkd__wire_sig newer = sample_sigs[1];
    newer.reason = 999;
    dkd__wbuf_reset(&b);
    dkd__wire_put_result(&b, 9, &newer, 1, S(ar));
    dkd__wire_header h;
    assert_int_equal(dkd__wire_decode_result(split_one(&b, &h), &d), 0);
    dkd__wbuf_free(&b);
    (void)state;
}

static void test_stats_error_data(void **state)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__wire_stat st[3] = {
        {S("connections"), 3}, {S("keycache.hits"), UINT64_MAX}, {S("requests_served"), 0}};
    dkd__wire_put_stats_reply(&b, 5, st, 3);
    dkd__wire_header h;
    dkd_span p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_STATS_REPLY);
    dkd__wire_stats_reply r;
    check_exact(p, dec_stats, &r);
    assert_int_equal(r.count, 3);
    dkd_span cur = r.entries;
    for (int k = 0; k < 3; k++) {
        dkd__wire_stat g;
        assert_true(dkd__wire_stat_next(&cur, &g));
        assert_true(span_eq(g.name, st[k].name));
        assert_true(g.value == st[k].value);
    }
    static const uint8_t upper[] = {0, 1, 1, 'A', 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t empty[] = {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(dkd__wire_decode_stats_reply(dkd__span(upper, sizeof upper), &r),
                     DKD__WIRE_ERR_MALFORMED);
    assert_int_equal(dkd__wire_decode_stats_reply(dkd__span(empty, sizeof empty), &r),
                     DKD__WIRE_ERR_MALFORMED);

    dkd__wbuf_reset(&b);
    dkd__wire_put_error(&b, 0, DKD__WIRE_E_OVERLOADED, S("too many requests"));
    p = split_one(&b, &h);
    assert_int_equal(h.type, DKD__WIRE_ERROR);
    assert_int_equal(h.request_id, 0);
    dkd__wire_error e;
    check_exact(p, dec_error, &e);
    assert_int_equal(e.code, DKD__WIRE_E_OVERLOADED);
    assert_true(span_eq(e.message, S("too many requests")));
    assert_string_equal(dkd__wire_errcode_name(DKD__WIRE_E_SHUTTING_DOWN), "shutting down");
    assert_string_equal(dkd__wire_errcode_name(999), "unknown error");

    /* Data frames carry their payload as is. */
    for (int t = 0; t < 5; t++) {
        static const uint8_t types[] = {DKD__WIRE_VERIFY_BODY, DKD__WIRE_VERIFY_END,
                                        DKD__WIRE_STATS, DKD__WIRE_PING, DKD__WIRE_PONG};
        dkd__wbuf_reset(&b);
        dkd_span data = types[t] == DKD__WIRE_VERIFY_END || types[t] == DKD__WIRE_STATS
                            ? dkd__span(NULL, 0)
                            : S("chunk\r\n");
        dkd__wire_put_data(&b, types[t], 77, data);
        p = split_one(&b, &h);
        assert_int_equal(h.type, types[t]);
        assert_int_equal(h.request_id, 77);
        assert_true(span_eq(p, data));
        assert_string_not_equal(dkd__wire_type_name(types[t]), "unknown");
    }
    dkd__wbuf_free(&b);
    (void)state;
}

static void test_wbuf(void **state)
{
    uint8_t mem[20];
    dkd__wbuf b;
    dkd__wbuf_init_fixed(&b, mem, sizeof mem);
    dkd__wire_put_data(&b, DKD__WIRE_PING, 1, S("12345678"));
    assert_int_equal(dkd__wbuf_ok(&b), 0);
    assert_int_equal(b.len, 20);
    assert_ptr_equal(b.ptr, mem);
    dkd__wire_put_data(&b, DKD__WIRE_PING, 1, dkd__span(NULL, 0));
    assert_int_equal(dkd__wbuf_ok(&b), DKD__WIRE_ERR_NOMEM); /* sticky until reset */
    dkd__wbuf_append(&b, "", 0);
    assert_int_equal(dkd__wbuf_ok(&b), DKD__WIRE_ERR_NOMEM);
    dkd__wbuf_reset(&b);
    assert_int_equal(dkd__wbuf_ok(&b), 0);
    dkd__wbuf_free(&b); /* no-op for caller memory */

    /* A growable buffer takes a large append. */
    dkd__wbuf_init(&b);
    size_t n = 3u << 20;
    uint8_t *big = calloc(1, n);
    dkd__wire_put_data(&b, DKD__WIRE_VERIFY_BODY, 1, dkd__span(big, n));
    assert_int_equal(dkd__wbuf_ok(&b), 0);
    assert_int_equal(b.len, n + 12);
    free(big);
    dkd__wbuf_free(&b);
    (void)state;
}

/* PROTOCOL.md section 5 lists reason numbers; they must be the engine's. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static char *protocol_md(void)
{
    const char *root = getenv("DKD_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/ipc/PROTOCOL.md", root != NULL ? root : ".");
    return read_text(path);
}

static void test_reason_table(void **state)
{
    char *md = protocol_md();
    if (md == NULL) {
        skip();
    }
    char *sec = strstr(md, "## 5. Reason codes");
    assert_non_null(sec);
    unsigned seen = 0;
    for (int r = 0; r < DKD_REASON__COUNT; r++) {
        char cell[96];
        snprintf(cell, sizeof cell, "| %d | %s |", r, dkd_reason_code((enum dkd_reason)r));
        char *at = strstr(sec, cell);
        if (at == NULL) {
            fail_msg("PROTOCOL.md section 5 lacks '%s'", cell);
        }
        seen++;
    }
    assert_int_equal(seen, DKD_REASON__COUNT);
    free(md);
    (void)state;
}

/* ---- the exchange dump of PROTOCOL.md section 6 ---- */

static void hexdump(dkd__wbuf *out, const char *dir, const uint8_t *p, size_t n)
{
    dkd__wire_header h;
    dkd__wire_header_decode(dkd__span(p, n), &h);
    char line[160];
    int k = snprintf(line, sizeof line,
                     "%s %s: version %u, flags 0x%04x, request_id %u, payload_len %u\n", dir,
                     dkd__wire_type_name(h.type), h.version, h.flags, h.request_id, h.payload_len);
    dkd__wbuf_append(out, line, (size_t)k);
    for (size_t off = 0; off < n; off += 16) {
        k = snprintf(line, sizeof line, "  %04zx ", off);
        for (size_t j = 0; j < 16; j++) {
            if (off + j < n) {
                k += snprintf(line + k, sizeof line - (size_t)k, " %02x", p[off + j]);
            } else {
                k += snprintf(line + k, sizeof line - (size_t)k, "   ");
            }
        }
        k += snprintf(line + k, sizeof line - (size_t)k, "  |");
        for (size_t j = 0; j < 16 && off + j < n; j++) {
            uint8_t c = p[off + j];
            line[k++] = c >= 0x20 && c < 0x7F ? (char)c : '.';
        }
        line[k++] = '|';
        line[k++] = '\n';
        dkd__wbuf_append(out, line, (size_t)k);
    }
    dkd__wbuf_append(out, "\n", 1);
}

/*
 * make_dump builds the section-6 text: HELLO, HELLO_OK, a VERIFY of samples/02 (ed25519)
 * with authserv-id and time options, the RESULT the engine gives for it, then PING/PONG.
 * Every frame is also decoded back, so the dump can only show what the codec accepts.
 */
static char *make_dump(void)
{
    const char *root = getenv("DKD_SOURCE_ROOT");
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/samples/02-pass-ed25519.eml", root ? root : ".");
    char *msg = read_text(path);
    snprintf(path, sizeof path, "%s/samples/keys.zone", root ? root : ".");
    dkd_zone *zone = dkd_zone_load(path, err, sizeof err);
    if (msg == NULL || zone == NULL) {
        free(msg);
        dkd_zone_free(zone);
        return NULL;
    }
    int64_t now = 1764003600;
    dkd_config cfg;
    dkd_config_init(&cfg);
    dkd_engine *eng = dkd_engine_new(&cfg);
    dkd_msg *m = dkd_msg_new(eng);
    dkd_keysrc src = dkd_zone_keysrc(zone);

    dkd__wbuf out, f;
    dkd__wbuf_init(&out);
    dkd__wbuf_init(&f);
    dkd__wire_hello hello = {
        .min_version = 1, .max_version = 1, .client_name = S("libdkimd/0.1.0")};
    dkd__wire_put_hello(&f, 0, &hello);
    hexdump(&out, ">", f.ptr, f.len);

    dkd__wbuf_reset(&f);
    dkd__wire_put_hello_ok(&f, 0, &sample_ok);
    hexdump(&out, "<", f.ptr, f.len);

    dkd__wbuf_reset(&f);
    dkd__wire_verify v = {.opts = {.has_authserv_id = true,
                                   .authserv_id = S("mx.example.net"),
                                   .has_time = true,
                                   .time = now},
                          .data = S(msg)};
    dkd__wire_put_verify(&f, DKD__WIRE_VERIFY, 1, &v);
    hexdump(&out, ">", f.ptr, f.len);

    /* What a server does with it: decode, verify, encode the RESULT. */
    dkd_span in = dkd__span(f.ptr, f.len), payload;
    dkd__wire_header h;
    dkd__wire_verify dv;
    bool ok = dkd__wire_frame_split(&in, 1, UINT32_MAX, &h, &payload) == 1 &&
              dkd__wire_decode_verify(payload, &dv) == 0 &&
              dkd_verify_message(m, &src, dv.data.ptr, dv.data.len, now) == 0;
    size_t n = 0;
    const dkd_sig_result *res = ok ? dkd_msg_results(m, &n) : NULL;
    char asid[64];
    snprintf(asid, sizeof asid, "%.*s", (int)dv.opts.authserv_id.len, dv.opts.authserv_id.ptr);
    const char *ar = ok ? dkd_msg_authres(m, asid) : NULL;
    ok = ok && n == 1 && ar != NULL && res[0].result == DKD_RESULT_PASS;
    if (ok) {
        dkd__wire_sig ws = dkd__wire_sig_from_result(&res[0]);
        dkd__wbuf_reset(&f);
        dkd__wire_put_result(&f, h.request_id, &ws, 1, S(ar));
        hexdump(&out, "<", f.ptr, f.len);
        dkd__wire_result wr;
        in = dkd__span(f.ptr, f.len);
        ok = dkd__wire_frame_split(&in, 1, UINT32_MAX, &h, &payload) == 1 &&
             dkd__wire_decode_result(payload, &wr) == 0;
    }
    dkd__wbuf_reset(&f);
    dkd__wire_put_data(&f, DKD__WIRE_PING, 2, S("ping"));
    hexdump(&out, ">", f.ptr, f.len);
    dkd__wbuf_reset(&f);
    dkd__wire_put_data(&f, DKD__WIRE_PONG, 2, S("ping"));
    hexdump(&out, "<", f.ptr, f.len);
    dkd__wbuf_append(&out, "", 1); /* NUL */

    dkd__wbuf_free(&f);
    dkd_msg_free(m);
    dkd_engine_free(eng);
    dkd_zone_free(zone);
    free(msg);
    if (!ok || dkd__wbuf_ok(&out) != 0) {
        dkd__wbuf_free(&out);
        return NULL;
    }
    return (char *)out.ptr;
}

static void test_protocol_dump(void **state)
{
    char *md = protocol_md();
    char *dump = make_dump();
    if (md == NULL) {
        skip();
    }
    assert_non_null(dump);
    char *begin = strstr(md, "<!-- exchange-dump-begin -->\n```\n");
    char *end = strstr(md, "```\n<!-- exchange-dump-end -->");
    if (begin == NULL || end == NULL) {
        fail_msg("PROTOCOL.md lacks the dump markers; regenerate with wire_test --dump");
    }
    begin += strlen("<!-- exchange-dump-begin -->\n```\n");
    size_t len = (size_t)(end - begin);
    if (len != strlen(dump) || memcmp(begin, dump, len) != 0) {
        fail_msg("PROTOCOL.md section 6 differs from the codec; regenerate with wire_test "
                 "--dump");
    }
    free(dump);
    free(md);
    (void)state;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--dump") == 0) {
        char *dump = make_dump();
        if (dump == NULL) {
            fprintf(stderr, "wire_test: cannot build the dump (set DKD_SOURCE_ROOT)\n");
            return 1;
        }
        fputs(dump, stdout);
        free(dump);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_split), cmocka_unit_test(test_hello),
        cmocka_unit_test(test_hello_ok),         cmocka_unit_test(test_verify),
        cmocka_unit_test(test_shm_frames),       cmocka_unit_test(test_result),
        cmocka_unit_test(test_stats_error_data), cmocka_unit_test(test_wbuf),
        cmocka_unit_test(test_reason_table),     cmocka_unit_test(test_protocol_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
