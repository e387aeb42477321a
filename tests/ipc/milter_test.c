/*
 * milter_test.c - tests of the milter codec (ipc/milter.c): framing of whole, split,
 * empty and oversized packets; every parser on good data and on each way to break it
 * (a missing NUL, a short integer, bytes left over), with its outputs untouched when it
 * refuses; negotiation against the offers of Postfix and of older MTAs; every encoder
 * read back by its parser, and the arguments encoders must refuse. Parser inputs sit
 * against a guard page.
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
#include "milter.h"

static dkd_span S(const char *s)
{
    return dkd__span_str(s);
}

/* B: a span of n literal bytes (they may hold NULs, so no strlen). */
#define B(lit) dkd__span((lit), sizeof(lit) - 1)

/* G: the bytes of lit copied against the guard page (valid until the next G). */
#define G(lit) dkd__span(guard_copy((lit), sizeof(lit) - 1), sizeof(lit) - 1)

static bool span_eq(dkd_span a, dkd_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

#define assert_span(a, s) assert_true(span_eq((a), S(s)))

/* A span no parser writes, to see that a refusing parser left its output alone. */
static const uint8_t sentinel_byte = 0xEE;
static const dkd_span SENTINEL = {&sentinel_byte, 1};

static bool is_sentinel(dkd_span s)
{
    return s.ptr == SENTINEL.ptr && s.len == SENTINEL.len;
}

/* one_packet frames the single packet in b (the whole buffer) and returns it with its
 * data copied against the guard page. */
static dkd__milter_packet one_packet(const dkd__wbuf *b)
{
    assert_int_equal(dkd__wbuf_ok(b), 0);
    dkd__milter_packet pkt;
    size_t need = 1;
    long used = dkd__milter_frame(b->ptr, b->len, UINT32_MAX, &pkt, &need);
    assert_int_equal(used, (long)b->len);
    assert_int_equal(need, 0);
    pkt.data = dkd__span(guard_copy(pkt.data.ptr, pkt.data.len), pkt.data.len);
    return pkt;
}

/* ---- framing ---- */

static void test_frame(void **state)
{
    (void)state;
    static const uint8_t two[] = "\0\0\0\x05Hmx1\0"
                                 "\0\0\0\x01N";
    size_t n = sizeof two - 1;
    const uint8_t *p = guard_copy(two, n);
    dkd__milter_packet pkt;
    size_t need;

    long used = dkd__milter_frame(p, n, 1024, &pkt, &need);
    assert_int_equal(used, 9);
    assert_int_equal(pkt.cmd, 'H');
    assert_true(span_eq(pkt.data, B("mx1\0")));
    assert_ptr_equal(pkt.data.ptr, p + 5);

    used = dkd__milter_frame(p + 9, n - 9, 1024, &pkt, &need);
    assert_int_equal(used, 5);
    assert_int_equal(pkt.cmd, 'N');
    assert_int_equal(pkt.data.len, 0);

    /* Every proper prefix asks for more: for nothing in particular until the length is
     * there, then for the whole packet. */
    for (size_t k = 0; k < 9; k++) {
        const uint8_t *q = guard_copy(two, k);
        need = 77;
        assert_int_equal(dkd__milter_frame(q, k, 1024, &pkt, &need), 0);
        assert_int_equal(need, k < 4 ? 0 : 9);
    }
    assert_int_equal(dkd__milter_frame(NULL, 0, 1024, &pkt, &need), 0);
    assert_int_equal(need, 0);
}

static void test_frame_limits(void **state)
{
    (void)state;
    dkd__milter_packet pkt;
    size_t need = 5;
    /* Decided on the four length bytes alone. */
    dkd_span zero = G("\0\0\0\0");
    assert_int_equal(dkd__milter_frame(zero.ptr, zero.len, 1024, &pkt, &need),
                     DKD__MILTER_ERR_EMPTY);
    assert_int_equal(need, 0);

    dkd_span big = G("\0\0\x04\x01");
    assert_int_equal(dkd__milter_frame(big.ptr, big.len, 1024, &pkt, &need),
                     DKD__MILTER_ERR_TOO_LONG);
    /* The largest length with no limit: waited for where long holds its size. */
    dkd_span huge = G("\xff\xff\xff\xff");
    long rc = dkd__milter_frame(huge.ptr, huge.len, SIZE_MAX, &pkt, &need);
    if (sizeof(long) > 4) {
        assert_int_equal(rc, 0);
        assert_int_equal(need, (uint64_t)UINT32_MAX + 4);
    } else {
        assert_int_equal(rc, DKD__MILTER_ERR_TOO_LONG);
    }

    /* max_len counts the command byte: a limit of 3 takes a command and 2 bytes. */
    dkd_span at = G("\0\0\0\x03"
                    "Bxy");
    assert_int_equal(dkd__milter_frame(at.ptr, at.len, 3, &pkt, &need), 7);
    assert_true(span_eq(pkt.data, S("xy")));
    assert_int_equal(dkd__milter_frame(at.ptr, at.len, 2, &pkt, &need), DKD__MILTER_ERR_TOO_LONG);
    /* A body chunk of the largest size an MTA sends, framed whole. */
    size_t len = 1 + DKD__MILTER_CHUNK;
    uint8_t *chunk = calloc(1, 4 + len);
    chunk[1] = (uint8_t)(len >> 16);
    chunk[2] = (uint8_t)(len >> 8);
    chunk[3] = (uint8_t)len;
    chunk[4] = 'B';
    assert_int_equal(dkd__milter_frame(chunk, 4 + len, len, &pkt, &need), (long)(4 + len));
    assert_int_equal(pkt.data.len, DKD__MILTER_CHUNK);
    assert_int_equal(dkd__milter_frame(chunk, 4 + len - 1, len, &pkt, &need), 0);
    assert_int_equal(need, 4 + len);
    free(chunk);
}

/* ---- parsers ---- */

static void test_optneg(void **state)
{
    (void)state;
    dkd__milter_optneg o;
    assert_true(dkd__milter_parse_optneg(G("\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"), &o));
    assert_int_equal(o.version, 6);
    assert_int_equal(o.actions, 0x1ff);
    assert_int_equal(o.protocol, 0x1fffff);
    /* A v6 filter's reply may carry macro lists: ignored. */
    assert_true(dkd__milter_parse_optneg(G("\0\0\0\x06\0\0\0\x11\0\0\0\0"
                                           "\0\0\0\x05{i}\0"),
                                         &o));
    assert_int_equal(o.actions, 0x11);
    static const uint8_t full[12] = {0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3};
    for (size_t k = 0; k < 12; k++) {
        o = (dkd__milter_optneg){7, 7, 7};
        assert_false(dkd__milter_parse_optneg(dkd__span(guard_copy(full, k), k), &o));
        assert_true(o.version == 7 && o.actions == 7 && o.protocol == 7);
    }
}

static void test_next_string(void **state)
{
    (void)state;
    dkd_span rest = G("a\0\0bc"), s;
    assert_true(dkd__milter_next_string(&rest, &s));
    assert_span(s, "a");
    assert_true(dkd__milter_next_string(&rest, &s));
    assert_int_equal(s.len, 0);
    /* "bc" has no NUL: refused, the rest left as it was. */
    dkd_span before = rest;
    s = SENTINEL;
    assert_false(dkd__milter_next_string(&rest, &s));
    assert_true(rest.ptr == before.ptr && rest.len == 2);
    assert_true(is_sentinel(s));
    rest = dkd__span(NULL, 0);
    assert_false(dkd__milter_next_string(&rest, &s));
}

static void test_macro(void **state)
{
    (void)state;
    uint8_t stage = 0;
    dkd_span pairs, name, value;
    assert_true(
        dkd__milter_parse_macro(G("Cj\0mx.example\0{daemon_name}\0smtpd\0"), &stage, &pairs));
    assert_int_equal(stage, 'C');
    assert_true(dkd__milter_next_macro(&pairs, &name, &value));
    assert_span(name, "j");
    assert_span(value, "mx.example");
    assert_true(dkd__milter_next_macro(&pairs, &name, &value));
    assert_span(name, "{daemon_name}");
    assert_span(value, "smtpd");
    assert_false(dkd__milter_next_macro(&pairs, &name, &value));
    assert_int_equal(pairs.len, 0);

    /* A name with no value ends the list; the cursor stays before it. */
    assert_true(dkd__milter_parse_macro(G("Mi\0QID\0{auth_authen}\0"), &stage, &pairs));
    assert_true(dkd__milter_next_macro(&pairs, &name, &value));
    dkd_span before = pairs;
    name = value = SENTINEL;
    assert_false(dkd__milter_next_macro(&pairs, &name, &value));
    assert_true(pairs.ptr == before.ptr && pairs.len == before.len);
    assert_true(is_sentinel(name) && is_sentinel(value));
    /* A value without its NUL, the same. */
    assert_true(dkd__milter_parse_macro(G("Ti\0QID"), &stage, &pairs));
    assert_false(dkd__milter_next_macro(&pairs, &name, &value));

    /* The stage alone: no macros. No stage: refused, outputs untouched. */
    assert_true(dkd__milter_parse_macro(G("E"), &stage, &pairs));
    assert_int_equal(stage, 'E');
    assert_int_equal(pairs.len, 0);
    stage = 9;
    pairs = SENTINEL;
    assert_false(dkd__milter_parse_macro(dkd__span(guard_copy("", 0), 0), &stage, &pairs));
    assert_true(stage == 9 && is_sentinel(pairs));
}

static void test_connect(void **state)
{
    (void)state;
    dkd__milter_connect c;
    assert_true(dkd__milter_parse_connect(G("mail.example.org\0"
                                            "4\x30\x39"
                                            "192.0.2.7\0"),
                                          &c));
    assert_span(c.host, "mail.example.org");
    assert_int_equal(c.family, '4');
    assert_int_equal(c.port, 12345);
    assert_span(c.addr, "192.0.2.7");

    assert_true(dkd__milter_parse_connect(G("[2001:db8::1]\0"
                                            "6\x00\x19"
                                            "2001:db8::1\0"),
                                          &c));
    assert_int_equal(c.family, '6');
    assert_int_equal(c.port, 25);
    assert_span(c.addr, "2001:db8::1");

    /* Postfix on a Unix socket: port 0 and the socket's path. */
    assert_true(dkd__milter_parse_connect(G("localhost\0L\0\0/run/smtpd\0"), &c));
    assert_int_equal(c.family, 'L');
    assert_int_equal(c.port, 0);
    assert_span(c.addr, "/run/smtpd");

    /* Unknown family: Postfix sends nothing after it; the long form is read too. */
    assert_true(dkd__milter_parse_connect(G("unknown\0U"), &c));
    assert_int_equal(c.family, 'U');
    assert_int_equal(c.port, 0);
    assert_int_equal(c.addr.len, 0);
    assert_true(dkd__milter_parse_connect(G("unknown\0U\0\0\0"), &c));
    assert_int_equal(c.addr.len, 0);

    /* An empty host name is a shape, not an error. */
    assert_true(dkd__milter_parse_connect(G("\0"
                                            "4\0\x19"
                                            "10.0.0.1\0"),
                                          &c));
    assert_int_equal(c.host.len, 0);

    static const struct {
        const char *why;
        const char *data;
        size_t len;
    } bad[] = {
#define BAD(why, lit) {why, lit, sizeof(lit) - 1}
        BAD("empty", ""),
        BAD("host without NUL", "mail.example.org"),
        BAD("no family", "mail.example.org\0"),
        BAD("4 without port", "h\0"
                              "4"),
        BAD("short port", "h\0"
                          "4\x01"),
        BAD("no address", "h\0"
                          "4\0\x19"),
        BAD("address without NUL", "h\0"
                                   "4\0\x19"
                                   "10.0.0.1"),
        BAD("bytes after the address", "h\0"
                                       "4\0\x19"
                                       "10.0.0.1\0x"),
        BAD("U with a short port", "h\0U\x01"),
        BAD("U with port, no address", "h\0U\0\0"),
        BAD("L without port", "h\0L"),
#undef BAD
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        c = (dkd__milter_connect){.host = SENTINEL, .family = 1, .port = 2, .addr = SENTINEL};
        bool ok = dkd__milter_parse_connect(
            dkd__span(guard_copy(bad[k].data, bad[k].len), bad[k].len), &c);
        if (ok) {
            fail_msg("CONNECT accepted: %s", bad[k].why);
        }
        assert_true(is_sentinel(c.host) && c.family == 1 && c.port == 2 && is_sentinel(c.addr));
    }
}

static void test_helo_envelope(void **state)
{
    (void)state;
    dkd_span helo = SENTINEL, addr, args, s;
    assert_true(dkd__milter_parse_helo(G("client.example\0"), &helo));
    assert_span(helo, "client.example");
    helo = SENTINEL;
    assert_false(dkd__milter_parse_helo(G("client.example"), &helo));
    assert_false(dkd__milter_parse_helo(G("client.example\0x\0"), &helo));
    assert_false(dkd__milter_parse_helo(G(""), &helo));
    assert_true(is_sentinel(helo));

    assert_true(
        dkd__milter_parse_envelope(G("<a@example.org>\0SIZE=1000\0BODY=8BITMIME\0"), &addr, &args));
    assert_span(addr, "<a@example.org>");
    assert_true(dkd__milter_next_string(&args, &s));
    assert_span(s, "SIZE=1000");
    assert_true(dkd__milter_next_string(&args, &s));
    assert_span(s, "BODY=8BITMIME");
    assert_int_equal(args.len, 0);

    assert_true(dkd__milter_parse_envelope(G("<>\0"), &addr, &args));
    assert_span(addr, "<>");
    assert_int_equal(args.len, 0);

    addr = args = SENTINEL;
    assert_false(dkd__milter_parse_envelope(G("<a@example.org>"), &addr, &args));
    assert_false(dkd__milter_parse_envelope(G("<a@example.org>\0SIZE=1"), &addr, &args));
    assert_false(dkd__milter_parse_envelope(G(""), &addr, &args));
    assert_true(is_sentinel(addr) && is_sentinel(args));
}

static void test_header(void **state)
{
    (void)state;
    dkd_span name, value;
    /* With HDR_LEADSPC the value keeps its space; Postfix joins folded lines with LF. */
    assert_true(dkd__milter_parse_header(G("Subject\0 hello\n\tworld\0"), &name, &value));
    assert_span(name, "Subject");
    assert_span(value, " hello\n\tworld");
    assert_true(dkd__milter_parse_header(G("X-Empty\0\0"), &name, &value));
    assert_int_equal(value.len, 0);

    name = value = SENTINEL;
    assert_false(dkd__milter_parse_header(G("Subject\0 hello"), &name, &value));
    assert_false(dkd__milter_parse_header(G("Subject"), &name, &value));
    assert_false(dkd__milter_parse_header(G("Subject\0 a\0b"), &name, &value));
    assert_false(dkd__milter_parse_header(G("Subject\0 a\0b\0"), &name, &value));
    assert_true(is_sentinel(name) && is_sentinel(value));
}

static void test_modify_parse(void **state)
{
    (void)state;
    uint32_t index = 42;
    dkd_span name, value;
    dkd__milter_packet p = {DKD__MILTER_R_INSHEADER, G("\0\0\0\x01"
                                                       "Authentication-Results\0 mx; none\0")};
    assert_true(dkd__milter_parse_modify(&p, &index, &name, &value));
    assert_int_equal(index, 1);
    assert_span(name, "Authentication-Results");
    assert_span(value, " mx; none");

    p = (dkd__milter_packet){DKD__MILTER_R_CHGHEADER, G("\0\0\0\x02X-A\0\0")};
    assert_true(dkd__milter_parse_modify(&p, &index, &name, &value));
    assert_int_equal(index, 2);
    assert_int_equal(value.len, 0);

    index = 9;
    p = (dkd__milter_packet){DKD__MILTER_R_ADDHEADER, G("X-A\0b\0")};
    assert_true(dkd__milter_parse_modify(&p, &index, &name, &value));
    assert_int_equal(index, 0);
    assert_span(value, "b");

    static const struct {
        uint8_t cmd;
        const char *data;
        size_t len;
    } bad[] = {
#define BAD(cmd, lit) {cmd, lit, sizeof(lit) - 1}
        BAD(DKD__MILTER_R_INSHEADER, "\0\0\0"),    BAD(DKD__MILTER_R_INSHEADER, "\0\0\0\x01X-A\0"),
        BAD(DKD__MILTER_R_CHGHEADER, "X-A\0b\0"),  BAD(DKD__MILTER_R_ADDHEADER, "X-A\0b"),
        BAD(DKD__MILTER_R_ADDHEADER, "X-A\0b\0c"), BAD(DKD__MILTER_R_ADDHEADER, "\0b\0"),
        BAD(DKD__MILTER_R_REPLYCODE, "X-A\0b\0"),
#undef BAD
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        index = 77;
        name = value = SENTINEL;
        p = (dkd__milter_packet){bad[k].cmd,
                                 dkd__span(guard_copy(bad[k].data, bad[k].len), bad[k].len)};
        assert_false(dkd__milter_parse_modify(&p, &index, &name, &value));
        assert_true(index == 77 && is_sentinel(name) && is_sentinel(value));
    }
}

/* ---- negotiation ---- */

/* What the session asks for (session_milter.c): add and change header fields; no reply
 * but to end of message, leading spaces kept, no UNKNOWN. */
static const uint32_t WANT_A = DKD__MILTER_A_ADDHDRS | DKD__MILTER_A_CHGHDRS;
static const uint32_t WANT_P =
    DKD__MILTER_P_NR_CONN | DKD__MILTER_P_NR_HELO | DKD__MILTER_P_NR_MAIL | DKD__MILTER_P_NR_RCPT |
    DKD__MILTER_P_NR_DATA | DKD__MILTER_P_NR_UNKN | DKD__MILTER_P_NR_EOH | DKD__MILTER_P_NR_HDR |
    DKD__MILTER_P_NR_BODY | DKD__MILTER_P_HDR_LEADSPC | DKD__MILTER_P_NOUNKNOWN;

/* Bits defined only from version 6 on. */
static const uint32_t V6_ONLY =
    DKD__MILTER_P_NR_HDR | DKD__MILTER_P_SKIP | DKD__MILTER_P_RCPT_REJ | DKD__MILTER_P_NR_CONN |
    DKD__MILTER_P_NR_HELO | DKD__MILTER_P_NR_MAIL | DKD__MILTER_P_NR_RCPT | DKD__MILTER_P_NR_DATA |
    DKD__MILTER_P_NR_UNKN | DKD__MILTER_P_NR_EOH | DKD__MILTER_P_NR_BODY |
    DKD__MILTER_P_HDR_LEADSPC;

static void test_negotiate_postfix(void **state)
{
    (void)state;
    /* Postfix 3's offer: milter_protocol = 6, every action, every step. */
    dkd__milter_optneg mta = {6, 0x1ff, 0x1fffff}, reply;
    const char *why = NULL;
    assert_true(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_int_equal(reply.version, 6);
    assert_int_equal(reply.actions, WANT_A);
    assert_int_equal(reply.protocol, WANT_P);
    assert_null(why);

    /* Only what the MTA offers: without HDR_LEADSPC (an older Postfix) it is not asked. */
    mta.protocol = 0x0fffff;
    assert_true(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_int_equal(reply.protocol, WANT_P & ~(uint32_t)DKD__MILTER_P_HDR_LEADSPC);

    /* A newer MTA gets our version. */
    mta = (dkd__milter_optneg){7, 0x1ff, 0x1fffff};
    assert_true(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_int_equal(reply.version, DKD__MILTER_VERSION);

    /* The reply encodes as Postfix reads it: 'O' and three words. */
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    dkd__milter_put_optneg(&b, DKD__MILTER_R_OPTNEG, &reply);
    assert_int_equal(b.len, 17);
    assert_memory_equal(b.ptr, "\0\0\0\x0dO\0\0\0\x06\0\0\0\x11", 13);
    dkd__wbuf_free(&b);
}

static void test_negotiate_old(void **state)
{
    (void)state;
    for (uint32_t v = 2; v <= 5; v++) {
        /* An old MTA that (wrongly) offers every bit still gets none it does not know. */
        dkd__milter_optneg mta = {v, 0x3f, 0x1fffff}, reply;
        const char *why = NULL;
        uint32_t want = WANT_P | DKD__MILTER_P_NODATA | DKD__MILTER_P_SKIP |
                        DKD__MILTER_P_RCPT_REJ | DKD__MILTER_P_NOHELO;
        assert_true(dkd__milter_negotiate(&mta, WANT_A, want, &reply, &why));
        assert_int_equal(reply.version, v);
        assert_int_equal(reply.actions, WANT_A);
        assert_int_equal(reply.protocol & V6_ONLY, 0);
        assert_true(reply.protocol & DKD__MILTER_P_NOHELO);
        assert_int_equal((reply.protocol & DKD__MILTER_P_NOUNKNOWN) != 0, v >= 3);
        assert_int_equal((reply.protocol & DKD__MILTER_P_NODATA) != 0, v >= 4);
        assert_int_equal(reply.protocol & ~want, 0);
    }
}

static void test_negotiate_refused(void **state)
{
    (void)state;
    dkd__milter_optneg mta = {1, 0x1ff, 0x1fffff};
    dkd__milter_optneg reply = {9, 9, 9};
    const char *why = NULL;
    assert_false(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_non_null(why);
    assert_non_null(strstr(why, "version 1"));
    assert_true(reply.version == 9 && reply.actions == 9 && reply.protocol == 9);
    mta.version = 0;
    assert_false(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_non_null(strstr(why, "version 0"));

    /* Actions: each missing one is named; more than one says so. */
    mta = (dkd__milter_optneg){6, DKD__MILTER_A_ADDHDRS, 0x1fffff};
    why = NULL;
    assert_false(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_non_null(strstr(why, "SMFIF_CHGHDRS"));
    assert_null(strstr(why, "and more"));
    mta.actions = DKD__MILTER_A_QUARANTINE;
    assert_false(dkd__milter_negotiate(&mta, WANT_A, WANT_P, &reply, &why));
    assert_non_null(strstr(why, "SMFIF_ADDHDRS"));
    assert_non_null(strstr(why, "and more"));
    mta.actions = 0x1ff;
    assert_false(dkd__milter_negotiate(&mta, 1u << 20, 0, &reply, &why));
    assert_non_null(why);
    assert_true(reply.version == 9);
    /* Nothing wanted: anything goes. */
    mta.actions = 0;
    assert_true(dkd__milter_negotiate(&mta, 0, 0, &reply, &why));
    assert_int_equal(reply.actions, 0);
    assert_int_equal(reply.protocol, 0);
}

/* ---- encoders, read back ---- */

static void test_put_commands(void **state)
{
    (void)state;
    dkd__wbuf b;
    dkd__wbuf_init(&b);

    dkd__milter_optneg o = {6, 0x1ff, 0x1fffff}, o2;
    dkd__milter_put_optneg(&b, DKD__MILTER_C_OPTNEG, &o);
    dkd__milter_packet p = one_packet(&b);
    assert_int_equal(p.cmd, 'O');
    assert_true(dkd__milter_parse_optneg(p.data, &o2));
    assert_memory_equal(&o, &o2, sizeof o);

    dkd_span names[] = {S("j"), S("{daemon_name}"), S("v")};
    dkd_span values[] = {S("mx.example"), S("smtpd"), S("")};
    dkd__wbuf_reset(&b);
    dkd__milter_put_macro(&b, 'C', names, values, 3);
    p = one_packet(&b);
    assert_int_equal(p.cmd, DKD__MILTER_C_MACRO);
    uint8_t stage;
    dkd_span pairs, n, v;
    assert_true(dkd__milter_parse_macro(p.data, &stage, &pairs));
    assert_int_equal(stage, 'C');
    for (size_t k = 0; k < 3; k++) {
        assert_true(dkd__milter_next_macro(&pairs, &n, &v));
        assert_true(span_eq(n, names[k]) && span_eq(v, values[k]));
    }
    assert_int_equal(pairs.len, 0);

    static const dkd__milter_connect conns[] = {
        {{(const uint8_t *)"mail.example.org", 16}, '4', 12345, {(const uint8_t *)"192.0.2.7", 9}},
        {{(const uint8_t *)"h6", 2}, '6', 25, {(const uint8_t *)"2001:db8::1", 11}},
        {{(const uint8_t *)"localhost", 9}, 'L', 0, {(const uint8_t *)"/run/smtpd", 10}},
        {{(const uint8_t *)"unknown", 7}, 'U', 0, {NULL, 0}},
        {{(const uint8_t *)"unknown", 7}, 'U', 7, {NULL, 0}},
    };
    for (size_t k = 0; k < sizeof conns / sizeof conns[0]; k++) {
        dkd__wbuf_reset(&b);
        dkd__milter_put_connect(&b, &conns[k]);
        p = one_packet(&b);
        assert_int_equal(p.cmd, DKD__MILTER_C_CONNECT);
        dkd__milter_connect c;
        assert_true(dkd__milter_parse_connect(p.data, &c));
        assert_true(span_eq(c.host, conns[k].host) && span_eq(c.addr, conns[k].addr));
        assert_int_equal(c.family, conns[k].family);
        assert_int_equal(c.port, conns[k].port);
    }
    /* Postfix's short form for 'U': host, NUL, family and nothing more. */
    dkd__wbuf_reset(&b);
    dkd__milter_put_connect(&b, &conns[3]);
    assert_int_equal(b.len, 4 + 1 + 8 + 1);

    dkd__wbuf_reset(&b);
    dkd_span helo = S("client.example");
    dkd__milter_put_strings(&b, DKD__MILTER_C_HELO, &helo, 1);
    p = one_packet(&b);
    dkd_span h;
    assert_true(dkd__milter_parse_helo(p.data, &h));
    assert_true(span_eq(h, helo));

    dkd_span env[] = {S("<a@example.org>"), S("SIZE=1000"), S("BODY=8BITMIME")};
    static const uint8_t env_cmds[] = {DKD__MILTER_C_MAIL, DKD__MILTER_C_RCPT};
    for (size_t e = 0; e < sizeof env_cmds; e++) {
        uint8_t cmd = env_cmds[e];
        dkd__wbuf_reset(&b);
        dkd__milter_put_strings(&b, cmd, env, 3);
        p = one_packet(&b);
        assert_int_equal(p.cmd, cmd);
        dkd_span addr, args, s;
        assert_true(dkd__milter_parse_envelope(p.data, &addr, &args));
        assert_true(span_eq(addr, env[0]));
        for (size_t k = 1; k < 3; k++) {
            assert_true(dkd__milter_next_string(&args, &s));
            assert_true(span_eq(s, env[k]));
        }
        assert_int_equal(args.len, 0);
    }

    dkd_span hdr[] = {S("Subject"), S(" hello\n\tworld")};
    dkd__wbuf_reset(&b);
    dkd__milter_put_strings(&b, DKD__MILTER_C_HEADER, hdr, 2);
    p = one_packet(&b);
    assert_true(dkd__milter_parse_header(p.data, &n, &v));
    assert_true(span_eq(n, hdr[0]) && span_eq(v, hdr[1]));

    /* BODY is raw bytes, NULs included. */
    dkd__wbuf_reset(&b);
    dkd__milter_put(&b, DKD__MILTER_C_BODY, "a\0b\r\n", 5);
    p = one_packet(&b);
    assert_int_equal(p.cmd, 'B');
    assert_true(span_eq(p.data, B("a\0b\r\n")));

    static const uint8_t bare[] = {DKD__MILTER_C_EOH, DKD__MILTER_C_BODYEOB, DKD__MILTER_C_ABORT,
                                   DKD__MILTER_C_QUIT};
    for (size_t k = 0; k < sizeof bare; k++) {
        dkd__wbuf_reset(&b);
        dkd__milter_put(&b, bare[k], NULL, 0);
        p = one_packet(&b);
        assert_int_equal(p.cmd, bare[k]);
        assert_int_equal(p.data.len, 0);
        assert_int_equal(b.len, 5);
    }
    dkd__wbuf_free(&b);
}

static void test_put_replies(void **state)
{
    (void)state;
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    static const uint8_t plain[] = {DKD__MILTER_R_CONTINUE, DKD__MILTER_R_ACCEPT,
                                    DKD__MILTER_R_TEMPFAIL, DKD__MILTER_R_REJECT,
                                    DKD__MILTER_R_DISCARD,  DKD__MILTER_R_PROGRESS,
                                    DKD__MILTER_R_SKIP};
    for (size_t k = 0; k < sizeof plain; k++) {
        dkd__wbuf_reset(&b);
        dkd__milter_put_reply(&b, plain[k]);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.ptr, "\0\0\0\x01", 4);
        assert_int_equal(b.ptr[4], plain[k]);
    }

    static const struct {
        uint8_t reply;
        uint32_t index;
        const char *name, *value;
    } mods[] = {
        {DKD__MILTER_R_INSHEADER, 1, "Authentication-Results", " mx; dkim=pass"},
        {DKD__MILTER_R_CHGHEADER, 3, "Authentication-Results", ""},
        {DKD__MILTER_R_ADDHEADER, 0, "X-Folded", " a\n\tb"},
        {DKD__MILTER_R_INSHEADER, UINT32_MAX, "X", "y"},
    };
    for (size_t k = 0; k < sizeof mods / sizeof mods[0]; k++) {
        dkd__wbuf_reset(&b);
        dkd__milter_put_modify(&b, mods[k].reply, mods[k].index, S(mods[k].name), S(mods[k].value));
        dkd__milter_packet p = one_packet(&b);
        assert_int_equal(p.cmd, mods[k].reply);
        uint32_t index;
        dkd_span n, v;
        assert_true(dkd__milter_parse_modify(&p, &index, &n, &v));
        assert_int_equal(index, mods[k].index);
        assert_span(n, mods[k].name);
        assert_span(v, mods[k].value);
    }
    /* The session deletes with a NULL empty value. */
    dkd__wbuf_reset(&b);
    dkd__milter_put_modify(&b, DKD__MILTER_R_CHGHEADER, 2, S("X"), dkd__span(NULL, 0));
    assert_int_equal(dkd__wbuf_ok(&b), 0);
    assert_int_equal(b.len, 4 + 1 + 4 + 2 + 1);
    /* ADDHEADER ignores the index. */
    dkd__wbuf_reset(&b);
    dkd__milter_put_modify(&b, DKD__MILTER_R_ADDHEADER, 5, S("X"), S("y"));
    assert_int_equal(b.len, 4 + 1 + 2 + 2);

    static const char *const codes[] = {
        "451 4.7.1 try again later",
        "550 5.7.1 DKIM signature did not verify",
        "421-4.3.0 first line\r\n421 4.3.0 second line",
        "450 4",
    };
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        dkd__wbuf_reset(&b);
        dkd__milter_put_replycode(&b, S(codes[k]));
        dkd__milter_packet p = one_packet(&b);
        assert_int_equal(p.cmd, DKD__MILTER_R_REPLYCODE);
        dkd_span t;
        assert_true(dkd__milter_parse_replycode(p.data, &t));
        assert_span(t, codes[k]);
        assert_int_equal(p.data.len, strlen(codes[k]) + 1);
    }
    dkd__wbuf_free(&b);
}

/* ---- arguments the encoders refuse ---- */

/* refused: b failed; reset for the next case. */
static void refused(dkd__wbuf *b)
{
    assert_int_equal(dkd__wbuf_ok(b), DKD__WIRE_ERR_NOMEM);
    dkd__wbuf_reset(b);
}

static void test_put_errors(void **state)
{
    (void)state;
    dkd__wbuf b;
    dkd__wbuf_init(&b);

    /* A NUL inside a name or value: the MTA would read it as the end. */
    dkd__milter_put_modify(&b, DKD__MILTER_R_INSHEADER, 0, B("X-A\0B"), S("v"));
    refused(&b);
    dkd__milter_put_modify(&b, DKD__MILTER_R_ADDHEADER, 0, S("X-A"), B("v\0w"));
    refused(&b);
    dkd__milter_put_modify(&b, DKD__MILTER_R_CHGHEADER, 0, S(""), S("v"));
    refused(&b);
    dkd__milter_put_modify(&b, DKD__MILTER_R_CONTINUE, 0, S("X"), S("v"));
    refused(&b);
    dkd_span hdr[] = {S("Subject"), B("a\0b")};
    dkd__milter_put_strings(&b, DKD__MILTER_C_HEADER, hdr, 2);
    refused(&b);
    dkd_span n = B("i\0"), v = S("x");
    dkd__milter_put_macro(&b, 'C', &n, &v, 1);
    refused(&b);
    dkd__milter_connect c = {S("h"), '4', 25, B("1.2.3.4\0")};
    dkd__milter_put_connect(&b, &c);
    refused(&b);
    c = (dkd__milter_connect){B("h\0"), 'U', 0, {NULL, 0}};
    dkd__milter_put_connect(&b, &c);
    refused(&b);

    /* REPLYCODE: the MTA takes only 4xx/5xx with a matching enhanced code. */
    static const char *const bad[] = {
        "",
        "4",
        "45",
        "451",
        "451 ",
        "250 2.0.0 ok",
        "351 3.0.0 go on",
        "4x1 4.7.1 t",
        "451 5.7.1 t",
        "451_4.7.1 t",
        "451 text only",
        "651 6.0.0 t",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        dkd__milter_put_replycode(&b, S(bad[k]));
        if (dkd__wbuf_ok(&b) == 0) {
            fail_msg("REPLYCODE accepted: \"%s\"", bad[k]);
        }
        assert_int_equal(b.len, 0);
        dkd__wbuf_reset(&b);
    }
    dkd__milter_put_replycode(&b, B("451 4.7.1 a\0b"));
    refused(&b);
    dkd_span t;
    assert_false(dkd__milter_parse_replycode(G("250 2.0.0 ok\0"), &t));
    assert_false(dkd__milter_parse_replycode(G("451 4.7.1 ok"), &t));
    assert_false(dkd__milter_parse_replycode(G("451 4.7.1 ok\0x"), &t));

    /* Over 4 GiB of data (never read: refused on its length). */
    static const uint8_t one = 'x';
    dkd__milter_put(&b, DKD__MILTER_C_BODY, &one, (size_t)UINT32_MAX);
    refused(&b);

    /* Nothing is half-written: a refused packet leaves the earlier ones intact. */
    dkd__milter_put_reply(&b, DKD__MILTER_R_CONTINUE);
    dkd__milter_put_modify(&b, DKD__MILTER_R_ADDHEADER, 0, S("X"), B("a\0"));
    assert_int_equal(b.len, 5);
    refused(&b);

    /* A fixed buffer too small for the packet. */
    uint8_t small[8];
    dkd__wbuf f;
    dkd__wbuf_init_fixed(&f, small, sizeof small);
    dkd__milter_put_reply(&f, DKD__MILTER_R_ACCEPT);
    assert_int_equal(dkd__wbuf_ok(&f), 0);
    dkd__milter_put_optneg(&f, DKD__MILTER_R_OPTNEG, &(dkd__milter_optneg){6, 0, 0});
    assert_int_equal(dkd__wbuf_ok(&f), DKD__WIRE_ERR_NOMEM);
    dkd__wbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),         cmocka_unit_test(test_frame_limits),
        cmocka_unit_test(test_optneg),        cmocka_unit_test(test_next_string),
        cmocka_unit_test(test_macro),         cmocka_unit_test(test_connect),
        cmocka_unit_test(test_helo_envelope), cmocka_unit_test(test_header),
        cmocka_unit_test(test_modify_parse),  cmocka_unit_test(test_negotiate_postfix),
        cmocka_unit_test(test_negotiate_old), cmocka_unit_test(test_negotiate_refused),
        cmocka_unit_test(test_put_commands),  cmocka_unit_test(test_put_replies),
        cmocka_unit_test(test_put_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
