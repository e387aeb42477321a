/*
 * milter.c - the milter protocol codec (ipc/milter.h): framing, the MTA's commands, the
 * filter's replies, option negotiation.
 *
 * Pure functions over spans and byte builders: no I/O, no globals, no allocation. The
 * daemon runs every packet an MTA sends through these parsers, so each one checks the
 * command's whole shape (every NUL, every integer) before it reports success, and
 * writes its outputs only then: a parser that fails leaves them as they were.
 *
 * Strictness: a packet has one shape and the parsers accept exactly it (no bytes left
 * over), except where a peer is known to vary: OPTNEG may carry a v6 filter's macro
 * lists after its three words, and CONNECT of an unknown family ('U') comes with or
 * without a port and address. The encoders refuse what their parser would read
 * differently (a NUL inside a string, a REPLYCODE the MTA would reject), so whatever
 * they write parses back to the same fields; the fuzz target checks that.
 *
 * Workload: a dozen small packets per message plus body chunks of up to 64 KiB, which
 * are borrowed, never copied or scanned here.
 */
#include "milter.h"

#include <limits.h>
#include <string.h>

/* ---- framing ---- */

long dkd__milter_frame(const uint8_t *p, size_t n, size_t max_len, dkd__milter_packet *pkt,
                       size_t *need)
{
    *need = 0;
    dkd_span in = dkd__span(p, n);
    uint32_t len;
    if (!dkd__span_get_u32be(&in, &len)) {
        return 0;
    }
    /* Decided on the length alone, so a receiver never waits for (or buffers) a packet
     * it is going to refuse. */
    if (len == 0) {
        return DKD__MILTER_ERR_EMPTY;
    }
    if (len > max_len) {
        return DKD__MILTER_ERR_TOO_LONG;
    }
#if LONG_MAX < 0xFFFFFFFF + 4LL
    /* Where long is 32 bits the size on the wire must still fit the result. */
    if (len > (uint32_t)(LONG_MAX - 4)) {
        return DKD__MILTER_ERR_TOO_LONG;
    }
#endif
    dkd_span body;
    if (!dkd__span_get_bytes(&in, len, &body)) {
        *need = 4 + (size_t)len;
        return 0;
    }
    dkd__span_get_u8(&body, &pkt->cmd); /* cannot fail: len >= 1 */
    pkt->data = body;
    return (long)(4 + (size_t)len);
}

/* ---- reading ---- */

bool dkd__milter_parse_optneg(dkd_span data, dkd__milter_optneg *out)
{
    dkd__milter_optneg o;
    if (!dkd__span_get_u32be(&data, &o.version) || !dkd__span_get_u32be(&data, &o.actions) ||
        !dkd__span_get_u32be(&data, &o.protocol)) {
        return false;
    }
    *out = o;
    return true;
}

bool dkd__milter_next_string(dkd_span *rest, dkd_span *out)
{
    return dkd__span_get_until(rest, 0, out);
}

/* get_strings2 takes two strings that must be all of data. */
static bool get_strings2(dkd_span data, dkd_span *a, dkd_span *b)
{
    dkd_span x, y;
    if (!dkd__milter_next_string(&data, &x) || !dkd__milter_next_string(&data, &y) ||
        data.len != 0) {
        return false;
    }
    *a = x;
    *b = y;
    return true;
}

bool dkd__milter_parse_macro(dkd_span data, uint8_t *stage, dkd_span *pairs)
{
    uint8_t st;
    if (!dkd__span_get_u8(&data, &st)) {
        return false;
    }
    *stage = st;
    *pairs = data;
    return true;
}

bool dkd__milter_next_macro(dkd_span *pairs, dkd_span *name, dkd_span *value)
{
    dkd_span t = *pairs, n, v;
    if (!dkd__milter_next_string(&t, &n) || !dkd__milter_next_string(&t, &v)) {
        return false;
    }
    *name = n;
    *value = v;
    *pairs = t;
    return true;
}

/* get_port_addr reads what follows the family: port and address, all of data. */
static bool get_port_addr(dkd_span data, uint16_t *port, dkd_span *addr)
{
    uint16_t pt;
    dkd_span a;
    if (!dkd__span_get_u16be(&data, &pt) || !dkd__milter_next_string(&data, &a) || data.len != 0) {
        return false;
    }
    *port = pt;
    *addr = a;
    return true;
}

bool dkd__milter_parse_connect(dkd_span data, dkd__milter_connect *out)
{
    dkd__milter_connect c = {0};
    if (!dkd__milter_next_string(&data, &c.host) || !dkd__span_get_u8(&data, &c.family)) {
        return false;
    }
    /* Postfix sends nothing after 'U'; libmilter's own test MTAs send a port and an empty
     * address. Any other family, known or not, has both: an MTA that invents a family
     * still gets through, and the session decides what the address means. */
    bool bare = c.family == 'U' && data.len == 0;
    if (!bare && !get_port_addr(data, &c.port, &c.addr)) {
        return false;
    }
    if (bare) {
        c.addr = dkd__span(data.ptr, 0);
    }
    *out = c;
    return true;
}

bool dkd__milter_parse_helo(dkd_span data, dkd_span *helo)
{
    dkd_span h;
    if (!dkd__milter_next_string(&data, &h) || data.len != 0) {
        return false;
    }
    *helo = h;
    return true;
}

bool dkd__milter_parse_envelope(dkd_span data, dkd_span *addr, dkd_span *args)
{
    dkd_span a, s;
    if (!dkd__milter_next_string(&data, &a)) {
        return false;
    }
    /* The arguments must be whole strings, so a caller's dkd__milter_next_string loop
     * over *args always ends on an empty span, never on a fragment. */
    for (dkd_span t = data; t.len > 0;) {
        if (!dkd__milter_next_string(&t, &s)) {
            return false;
        }
    }
    *addr = a;
    *args = data;
    return true;
}

bool dkd__milter_parse_header(dkd_span data, dkd_span *name, dkd_span *value)
{
    return get_strings2(data, name, value);
}

bool dkd__milter_parse_modify(const dkd__milter_packet *pkt, uint32_t *index, dkd_span *name,
                              dkd_span *value)
{
    dkd_span d = pkt->data, n, v;
    uint32_t i = 0;
    if (pkt->cmd == DKD__MILTER_R_INSHEADER || pkt->cmd == DKD__MILTER_R_CHGHEADER) {
        if (!dkd__span_get_u32be(&d, &i)) {
            return false;
        }
    } else if (pkt->cmd != DKD__MILTER_R_ADDHEADER) {
        return false;
    }
    /* A field without a name cannot be added or found; the encoder refuses one too. */
    if (!get_strings2(d, &n, &v) || n.len == 0) {
        return false;
    }
    *index = i;
    *name = n;
    *value = v;
    return true;
}

/* reply_code_ok: Postfix's test of a REPLYCODE (milter8.c), which turns anything else
 * into a configuration error: "4" or "5", two digits, a space or a hyphen (multi-line),
 * then an enhanced status code of the same class. The text carries no NUL. */
static bool reply_code_ok(dkd_span t)
{
    if (t.len < 5 || memchr(t.ptr, 0, t.len) != NULL) {
        return false;
    }
    const uint8_t *c = t.ptr;
    return (c[0] == '4' || c[0] == '5') && c[1] >= '0' && c[1] <= '9' && c[2] >= '0' &&
           c[2] <= '9' && (c[3] == ' ' || c[3] == '-') && c[4] == c[0];
}

bool dkd__milter_parse_replycode(dkd_span data, dkd_span *text)
{
    dkd_span t;
    if (!dkd__milter_next_string(&data, &t) || data.len != 0 || !reply_code_ok(t)) {
        return false;
    }
    *text = t;
    return true;
}

/* ---- negotiation ---- */

/* The protocol bits each version defines, as Postfix's MILTER8_V*_PROTO_MASK: an MTA of
 * an older version would misread the newer ones (a no-reply flag it does not know means
 * it waits for a reply that never comes). */
enum {
    PROTO_V2 = DKD__MILTER_P_NOCONNECT | DKD__MILTER_P_NOHELO | DKD__MILTER_P_NOMAIL |
               DKD__MILTER_P_NORCPT | DKD__MILTER_P_NOBODY | DKD__MILTER_P_NOHDRS |
               DKD__MILTER_P_NOEOH,
    PROTO_V3 = PROTO_V2 | DKD__MILTER_P_NOUNKNOWN,
    PROTO_V4 = PROTO_V3 | DKD__MILTER_P_NODATA,
};

static uint32_t proto_allowed(uint32_t version)
{
    if (version >= 6) {
        return UINT32_MAX;
    }
    return version >= 4 ? PROTO_V4 : version >= 3 ? PROTO_V3 : PROTO_V2;
}

/* The reasons are static strings (the codec allocates nothing), one per action bit:
 * the lowest missing action is named, and "and more" says it is not the only one. */
#define LACKS(name, what) "the MTA does not offer milter action SMFIF_" name " (" what ")"
#define ACTION_WHY(name, what)                                                                     \
    {                                                                                              \
        LACKS(name, what), LACKS(name, what) " and more"                                           \
    }

static const struct {
    const char *one, *more;
} action_why[] = {
    ACTION_WHY("ADDHDRS", "add header fields"),
    ACTION_WHY("CHGBODY", "replace the body"),
    ACTION_WHY("ADDRCPT", "add recipients"),
    ACTION_WHY("DELRCPT", "remove recipients"),
    ACTION_WHY("CHGHDRS", "change or delete header fields"),
    ACTION_WHY("QUARANTINE", "quarantine the message"),
    ACTION_WHY("CHGFROM", "change the sender"),
    ACTION_WHY("ADDRCPT_PAR", "add recipients with ESMTP arguments"),
    ACTION_WHY("SETSYMLIST", "choose the macros sent"),
};

static const char *missing_why(uint32_t missing)
{
    for (unsigned k = 0; k < sizeof action_why / sizeof action_why[0]; k++) {
        if (missing & (1u << k)) {
            return (missing & ~(1u << k)) != 0 ? action_why[k].more : action_why[k].one;
        }
    }
    return "the MTA does not offer a milter action the filter needs";
}

bool dkd__milter_negotiate(const dkd__milter_optneg *mta, uint32_t want_actions,
                           uint32_t want_protocol, dkd__milter_optneg *reply, const char **why)
{
    if (mta->version < DKD__MILTER_VERSION_MIN) {
        *why = mta->version == 0 ? "the MTA speaks milter protocol version 0; the oldest "
                                   "the filter speaks is 2"
                                 : "the MTA speaks milter protocol version 1; the oldest "
                                   "the filter speaks is 2";
        return false;
    }
    uint32_t missing = want_actions & ~mta->actions;
    if (missing != 0) {
        *why = missing_why(missing);
        return false;
    }
    uint32_t version = mta->version < DKD__MILTER_VERSION ? mta->version : DKD__MILTER_VERSION;
    *reply = (dkd__milter_optneg){
        .version = version,
        .actions = want_actions,
        .protocol = want_protocol & mta->protocol & proto_allowed(version),
    };
    return true;
}

/* ---- writing ---- */

static bool has_nul(dkd_span v)
{
    return v.len != 0 && memchr(v.ptr, 0, v.len) != NULL;
}

/* put_head appends the length and command byte of a packet with len bytes of data;
 * false, with the error set, when the length field cannot hold it. */
static bool put_head(dkd__wbuf *b, uint8_t cmd, size_t len)
{
    if (len > (size_t)UINT32_MAX - 1) {
        dkd__buf_fail(b);
        return false;
    }
    dkd__buf_put_u32be(b, (uint32_t)(len + 1));
    dkd__buf_put_u8(b, cmd);
    return !dkd__buf_failed(b);
}

/* add_len adds a string and its NUL to *total; false on overflow or a NUL inside. */
static bool add_len(size_t *total, dkd_span s)
{
    if (has_nul(s) || s.len > SIZE_MAX - 1 - *total) {
        return false;
    }
    *total += s.len + 1;
    return true;
}

static void put_cstr(dkd__wbuf *b, dkd_span s)
{
    dkd__buf_append(b, s.ptr, s.len);
    dkd__buf_put_u8(b, 0);
}

void dkd__milter_put(dkd__wbuf *b, uint8_t cmd, const void *data, size_t len)
{
    if (put_head(b, cmd, len)) {
        dkd__buf_append(b, data, len);
    }
}

void dkd__milter_put_reply(dkd__wbuf *b, uint8_t reply)
{
    put_head(b, reply, 0);
}

void dkd__milter_put_optneg(dkd__wbuf *b, uint8_t cmd, const dkd__milter_optneg *o)
{
    if (put_head(b, cmd, 12)) {
        dkd__buf_put_u32be(b, o->version);
        dkd__buf_put_u32be(b, o->actions);
        dkd__buf_put_u32be(b, o->protocol);
    }
}

void dkd__milter_put_strings(dkd__wbuf *b, uint8_t cmd, const dkd_span *strings, size_t n)
{
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        if (!add_len(&len, strings[k])) {
            dkd__buf_fail(b);
            return;
        }
    }
    if (put_head(b, cmd, len)) {
        for (size_t k = 0; k < n; k++) {
            put_cstr(b, strings[k]);
        }
    }
}

void dkd__milter_put_modify(dkd__wbuf *b, uint8_t reply, uint32_t index, dkd_span name,
                            dkd_span value)
{
    bool indexed = reply == DKD__MILTER_R_INSHEADER || reply == DKD__MILTER_R_CHGHEADER;
    size_t len = indexed ? 4 : 0;
    /* Checked before anything is appended: a half-written reply would desynchronise
     * the MTA even if the caller ignored the error. */
    if ((!indexed && reply != DKD__MILTER_R_ADDHEADER) || name.len == 0 || !add_len(&len, name) ||
        !add_len(&len, value)) {
        dkd__buf_fail(b);
        return;
    }
    if (put_head(b, reply, len)) {
        if (indexed) {
            dkd__buf_put_u32be(b, index);
        }
        put_cstr(b, name);
        put_cstr(b, value);
    }
}

void dkd__milter_put_replycode(dkd__wbuf *b, dkd_span text)
{
    if (!reply_code_ok(text)) {
        dkd__buf_fail(b);
        return;
    }
    dkd__milter_put_strings(b, DKD__MILTER_R_REPLYCODE, &text, 1);
}

void dkd__milter_put_macro(dkd__wbuf *b, uint8_t stage, const dkd_span *names,
                           const dkd_span *values, size_t n)
{
    size_t len = 1;
    for (size_t k = 0; k < n; k++) {
        if (!add_len(&len, names[k]) || !add_len(&len, values[k])) {
            dkd__buf_fail(b);
            return;
        }
    }
    if (put_head(b, DKD__MILTER_C_MACRO, len)) {
        dkd__buf_put_u8(b, stage);
        for (size_t k = 0; k < n; k++) {
            put_cstr(b, names[k]);
            put_cstr(b, values[k]);
        }
    }
}

void dkd__milter_put_connect(dkd__wbuf *b, const dkd__milter_connect *c)
{
    /* The short form is Postfix's for an unknown family; it parses back to the same
     * port 0 and empty address. */
    bool bare = c->family == 'U' && c->port == 0 && c->addr.len == 0;
    size_t len = 1;
    if (!add_len(&len, c->host) || (!bare && !add_len(&len, c->addr))) {
        dkd__buf_fail(b);
        return;
    }
    len += bare ? 0 : 2;
    if (put_head(b, DKD__MILTER_C_CONNECT, len)) {
        put_cstr(b, c->host);
        dkd__buf_put_u8(b, c->family);
        if (!bare) {
            dkd__buf_put_u16be(b, c->port);
            put_cstr(b, c->addr);
        }
    }
}
