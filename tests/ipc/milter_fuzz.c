/*
 * milter_fuzz.c - libFuzzer target for the milter codec (ipc/milter.c).
 *
 * The input is read twice:
 *  - as a stream of packets, the way the session reads an MTA: framed with a bounded
 *    length (every proper prefix of a packet must ask for more, with the right size),
 *    each packet's data to the parser of its command;
 *  - whole, as the data of each parser in turn, so the parsers meet shapes without
 *    first needing a valid length.
 * Whenever a parser accepts data, the matching encoder must write a packet that frames
 * whole and parses back to the same fields; where the format has one encoding (HELO,
 * HEADER, MAIL/RCPT, BODY...) the bytes must be the input's. Every span a parser returns
 * must lie inside its input. The OPTNEG words also go through negotiation, whose answer
 * must keep the rules of milter.h. Any broken property is an abort().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The framing limit: a body chunk and its command byte, plus room for longer packets
 * the fuzzer builds, small enough that a hostile length is refused. */
enum { MAX_LEN = DKD__MILTER_CHUNK + 1 + 1024 };

static void inside(dkd_span s, dkd_span p)
{
    if (s.len > 0) {
        CHECK(s.ptr >= p.ptr && s.ptr + s.len <= p.ptr + p.len);
    }
}

static bool span_eq(dkd_span a, dkd_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* reframe: b holds exactly one packet of cmd; returns its data. */
static dkd_span reframe(const dkd__wbuf *b, uint8_t cmd)
{
    CHECK(dkd__wbuf_ok(b) == 0);
    dkd__milter_packet pkt;
    size_t need;
    long used = dkd__milter_frame(b->ptr, b->len, SIZE_MAX, &pkt, &need);
    CHECK(used > 0 && (size_t)used == b->len && pkt.cmd == cmd);
    return pkt.data;
}

/* same_bytes: the packet in b carries exactly data d. */
static void same_bytes(const dkd__wbuf *b, uint8_t cmd, dkd_span d)
{
    CHECK(span_eq(reframe(b, cmd), d));
}

static void rt_optneg(dkd__wbuf *b, uint8_t cmd, dkd_span d)
{
    dkd__milter_optneg o, o2;
    if (!dkd__milter_parse_optneg(d, &o)) {
        CHECK(d.len < 12);
        return;
    }
    dkd__milter_put_optneg(b, cmd, &o);
    CHECK(dkd__milter_parse_optneg(reframe(b, cmd), &o2));
    CHECK(o.version == o2.version && o.actions == o2.actions && o.protocol == o2.protocol);

    /* Negotiate with wants taken from the input too: whatever the offer, the answer keeps
     * the rules. */
    uint32_t want_a = o.protocol & 0x1ff, want_p = o.actions ^ o.protocol;
    dkd__milter_optneg r = {0xdead, 0xbeef, 0xf00d};
    const char *why = NULL;
    if (dkd__milter_negotiate(&o, want_a, want_p, &r, &why)) {
        CHECK(o.version >= DKD__MILTER_VERSION_MIN);
        CHECK(r.version == (o.version < 6 ? o.version : 6));
        CHECK(r.actions == want_a && (want_a & ~o.actions) == 0);
        CHECK((r.protocol & ~(want_p & o.protocol)) == 0);
        /* Below 6, only the "don't send" steps: v2's seven, NOUNKNOWN from 3, NODATA
         * from 4. */
        uint32_t allowed = r.version >= 6   ? UINT32_MAX
                           : r.version >= 4 ? 0x37f
                           : r.version >= 3 ? 0x17f
                                            : 0x7f;
        CHECK((r.protocol & ~allowed) == 0);
        CHECK(r.protocol == (want_p & o.protocol & allowed));
    } else {
        CHECK(why != NULL && why[0] != '\0');
        CHECK(o.version < DKD__MILTER_VERSION_MIN || (want_a & ~o.actions) != 0);
        CHECK(r.version == 0xdead && r.actions == 0xbeef && r.protocol == 0xf00d);
    }
}

static void rt_macro(dkd__wbuf *b, dkd_span d)
{
    uint8_t stage, stage2;
    dkd_span pairs, pairs2, n, v;
    if (!dkd__milter_parse_macro(d, &stage, &pairs)) {
        CHECK(d.len == 0);
        return;
    }
    inside(pairs, d);
    size_t count = 0;
    for (dkd_span t = pairs; dkd__milter_next_macro(&t, &n, &v);) {
        count++;
    }
    dkd_span *names = malloc((count ? count : 1) * sizeof *names);
    dkd_span *values = malloc((count ? count : 1) * sizeof *values);
    CHECK(names != NULL && values != NULL);
    dkd_span t = pairs;
    for (size_t k = 0; k < count; k++) {
        CHECK(dkd__milter_next_macro(&t, &names[k], &values[k]));
        inside(names[k], d);
        inside(values[k], d);
    }
    /* What is left is a name with no value, or nothing. */
    CHECK(!dkd__milter_next_macro(&t, &n, &v));
    dkd__milter_put_macro(b, stage, names, values, count);
    dkd_span d2 = reframe(b, DKD__MILTER_C_MACRO);
    CHECK(dkd__milter_parse_macro(d2, &stage2, &pairs2));
    CHECK(stage == stage2);
    for (size_t k = 0; k < count; k++) {
        CHECK(dkd__milter_next_macro(&pairs2, &n, &v));
        CHECK(span_eq(n, names[k]) && span_eq(v, values[k]));
    }
    CHECK(pairs2.len == 0);
    if (t.len == 0) {
        CHECK(span_eq(d2, d));
    }
    free(names);
    free(values);
}

static void rt_connect(dkd__wbuf *b, dkd_span d)
{
    dkd__milter_connect c, c2;
    if (!dkd__milter_parse_connect(d, &c)) {
        return;
    }
    inside(c.host, d);
    inside(c.addr, d);
    dkd__milter_put_connect(b, &c);
    dkd_span d2 = reframe(b, DKD__MILTER_C_CONNECT);
    CHECK(dkd__milter_parse_connect(d2, &c2));
    CHECK(span_eq(c.host, c2.host) && c.family == c2.family && c.port == c2.port &&
          span_eq(c.addr, c2.addr));
    /* One encoding, but for 'U' with port 0 and no address, which has two. */
    CHECK((c.family == 'U' && c.port == 0 && c.addr.len == 0) || span_eq(d2, d));
}

static void rt_helo(dkd__wbuf *b, dkd_span d)
{
    dkd_span h;
    if (dkd__milter_parse_helo(d, &h)) {
        inside(h, d);
        dkd__milter_put_strings(b, DKD__MILTER_C_HELO, &h, 1);
        same_bytes(b, DKD__MILTER_C_HELO, d);
    }
}

static void rt_envelope(dkd__wbuf *b, uint8_t cmd, dkd_span d)
{
    dkd_span addr, args, s;
    if (!dkd__milter_parse_envelope(d, &addr, &args)) {
        return;
    }
    inside(addr, d);
    inside(args, d);
    size_t count = 1;
    for (dkd_span t = args; dkd__milter_next_string(&t, &s);) {
        count++;
    }
    dkd_span *all = malloc(count * sizeof *all);
    CHECK(all != NULL);
    all[0] = addr;
    dkd_span t = args;
    for (size_t k = 1; k < count; k++) {
        CHECK(dkd__milter_next_string(&t, &all[k]));
        inside(all[k], d);
    }
    CHECK(t.len == 0); /* the data ends in a NUL: no partial string is left */
    dkd__milter_put_strings(b, cmd, all, count);
    same_bytes(b, cmd, d);
    free(all);
}

static void rt_header(dkd__wbuf *b, dkd_span d)
{
    dkd_span hv[2];
    if (!dkd__milter_parse_header(d, &hv[0], &hv[1])) {
        return;
    }
    inside(hv[0], d);
    inside(hv[1], d);
    dkd__milter_put_strings(b, DKD__MILTER_C_HEADER, hv, 2);
    same_bytes(b, DKD__MILTER_C_HEADER, d);
    /* The same field as an ADDHEADER reply reads back as itself. */
    if (hv[0].len > 0) {
        dkd__wbuf_reset(b);
        dkd__milter_put_modify(b, DKD__MILTER_R_ADDHEADER, 0, hv[0], hv[1]);
        dkd__milter_packet p = {DKD__MILTER_R_ADDHEADER, reframe(b, DKD__MILTER_R_ADDHEADER)};
        uint32_t index;
        dkd_span n, v;
        CHECK(dkd__milter_parse_modify(&p, &index, &n, &v));
        CHECK(index == 0 && span_eq(n, hv[0]) && span_eq(v, hv[1]));
    }
}

static void rt_modify(dkd__wbuf *b, uint8_t cmd, dkd_span d)
{
    dkd__milter_packet p = {cmd, d};
    uint32_t index, index2;
    dkd_span n, v, n2, v2;
    if (!dkd__milter_parse_modify(&p, &index, &n, &v)) {
        return;
    }
    inside(n, d);
    inside(v, d);
    CHECK(n.len > 0 && (cmd != DKD__MILTER_R_ADDHEADER || index == 0));
    dkd__milter_put_modify(b, cmd, index, n, v);
    dkd__milter_packet p2 = {cmd, reframe(b, cmd)};
    CHECK(span_eq(p2.data, d));
    CHECK(dkd__milter_parse_modify(&p2, &index2, &n2, &v2));
    CHECK(index == index2 && span_eq(n, n2) && span_eq(v, v2));
}

static void rt_replycode(dkd__wbuf *b, dkd_span d)
{
    dkd_span t, t2;
    if (!dkd__milter_parse_replycode(d, &t)) {
        return;
    }
    inside(t, d);
    CHECK(t.len >= 5 && (t.ptr[0] == '4' || t.ptr[0] == '5'));
    dkd__milter_put_replycode(b, t);
    dkd_span d2 = reframe(b, DKD__MILTER_R_REPLYCODE);
    CHECK(span_eq(d2, d));
    CHECK(dkd__milter_parse_replycode(d2, &t2) && span_eq(t, t2));
}

/* roundtrip runs the parser of cmd over d; commands with no parser (BODY, EOH, ABORT,
 * QUIT, the plain replies...) carry their data as it is. */
static void roundtrip(uint8_t cmd, dkd_span d)
{
    dkd__wbuf b;
    dkd__wbuf_init(&b);
    switch (cmd) {
    case DKD__MILTER_C_OPTNEG: /* also DKD__MILTER_R_OPTNEG: the same letter */
        rt_optneg(&b, cmd, d);
        break;
    case DKD__MILTER_C_MACRO:
        rt_macro(&b, d);
        break;
    case DKD__MILTER_C_CONNECT:
        rt_connect(&b, d);
        break;
    case DKD__MILTER_C_HELO:
        rt_helo(&b, d);
        break;
    case DKD__MILTER_C_MAIL:
    case DKD__MILTER_C_RCPT:
        rt_envelope(&b, cmd, d);
        break;
    case DKD__MILTER_C_HEADER:
        rt_header(&b, d);
        break;
    case DKD__MILTER_R_INSHEADER:
    case DKD__MILTER_R_CHGHEADER:
    case DKD__MILTER_R_ADDHEADER:
        rt_modify(&b, cmd, d);
        break;
    case DKD__MILTER_R_REPLYCODE:
        rt_replycode(&b, d);
        break;
    default:
        dkd__milter_put(&b, cmd, d.ptr, d.len);
        same_bytes(&b, cmd, d);
        break;
    }
    dkd__wbuf_free(&b);
}

/* check_prefixes: every proper prefix of the packet at p (used bytes) asks for more. */
static void check_prefixes(const uint8_t *p, size_t used)
{
    for (size_t k = 0; k < used; k++) {
        dkd__milter_packet pkt;
        size_t need = 1;
        CHECK(dkd__milter_frame(p, k, MAX_LEN, &pkt, &need) == 0);
        CHECK(need == (k < 4 ? 0 : used));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    for (;;) {
        dkd__milter_packet pkt;
        size_t need = 1;
        long used = dkd__milter_frame(data + off, size - off, MAX_LEN, &pkt, &need);
        if (used <= 0) {
            if (used == 0) {
                CHECK(need == 0 ? size - off < 4 : need > size - off && need <= 4 + MAX_LEN);
            } else {
                CHECK(used == DKD__MILTER_ERR_EMPTY || used == DKD__MILTER_ERR_TOO_LONG);
            }
            break;
        }
        CHECK((size_t)used <= size - off && (size_t)used == 5 + pkt.data.len);
        CHECK(pkt.cmd == data[off + 4] && pkt.data.ptr == data + off + 5);
        check_prefixes(data + off, (size_t)used);
        roundtrip(pkt.cmd, pkt.data);
        off += (size_t)used;
    }
    static const uint8_t cmds[] = {
        DKD__MILTER_C_OPTNEG,    DKD__MILTER_C_MACRO,     DKD__MILTER_C_CONNECT,
        DKD__MILTER_C_HELO,      DKD__MILTER_C_MAIL,      DKD__MILTER_C_HEADER,
        DKD__MILTER_R_INSHEADER, DKD__MILTER_R_ADDHEADER, DKD__MILTER_R_REPLYCODE,
    };
    for (size_t k = 0; k < sizeof cmds; k++) {
        roundtrip(cmds[k], dkd__span(data, size));
    }
    return 0;
}
