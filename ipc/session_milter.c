/*
 * session_milter.c - the milter protocol session: splits the MTA's bytes into packets
 * (milter.h), negotiates the protocol, keeps the macros of the connection and the
 * message, the client and the envelope, and passes the message's parts to the message
 * half (session_milter_msg.c), which verifies or signs it and writes the end-of-message
 * actions. It knows no ring and no socket (session.h).
 *
 * Workload: one session per SMTP connection the MTA filters, a handful of packets per
 * message before its body. We ask for no reply to every command that allows it (the
 * version 6 no-reply flags), so a message's header fields and body chunks cost the MTA
 * no round trip: the only replies are OPTNEG's and end of message's.
 *
 * States: waiting for OPTNEG, idle (connected), in a message's envelope and header,
 * in its body, and waiting at its end for key answers. While waiting the session takes
 * no input (input returns paused): the MTA sends nothing before our answer, and what a
 * broken one sends is read once the answer has gone.
 *
 * Bad input (a malformed packet, a command out of order, a packet over the limit)
 * closes this connection only; the MTA then applies its own default action
 * (Postfix's milter_default_action) to the message in progress.
 */
#include "session_milter_int.h"

#include <stdlib.h>
#include <string.h>

/* The actions we take: insert our Authentication-Results field or DKIM-Signature at the
 * top (ADDHDRS), delete forged Authentication-Results fields (CHGHDRS). */
static const uint32_t WANT_ACTIONS = DKD__MILTER_A_ADDHDRS | DKD__MILTER_A_CHGHDRS;

/* No reply to anything but end of message; header values with their leading space, so
 * the header block is rebuilt exactly as it was signed; no UNKNOWN commands. */
static const uint32_t WANT_PROTOCOL =
    DKD__MILTER_P_NR_CONN | DKD__MILTER_P_NR_HELO | DKD__MILTER_P_NR_MAIL |
    DKD__MILTER_P_NR_RCPT | DKD__MILTER_P_NR_DATA | DKD__MILTER_P_NR_UNKN |
    DKD__MILTER_P_NR_EOH | DKD__MILTER_P_NR_HDR | DKD__MILTER_P_NR_BODY |
    DKD__MILTER_P_HDR_LEADSPC | DKD__MILTER_P_NOUNKNOWN;

static const char STAGES[MS_NSTAGES] = {'C', 'H', 'M', 'R', 'T', 'N', 'E'};

static int stage_index(uint8_t code)
{
    for (int i = 0; i < MS_NSTAGES; i++) {
        if ((uint8_t)STAGES[i] == code) {
            return i;
        }
    }
    return -1;
}

/* dkd__ms_close asks the transport to end the connection; the message in progress goes. */
void dkd__ms_close(milter_sess *s, enum dkd__close_mode mode)
{
    if (s->state == MS_CLOSED) {
        return;
    }
    s->state = MS_CLOSED;
    dkd__ms_msg_reset(s);
    s->env.close(s->env.ctx, mode);
}

static void fatal(milter_sess *s, const char *why)
{
    if (s->state == MS_CLOSED) {
        return;
    }
    DKD__CNT_ADD(s->env.cnt, milter_errors, 1);
    s->env.log(s->env.ctx, DKD__LK_MALFORMED, DKD__LOG_WARNING, "milter client %.*s: %s; closing",
               (int)s->client_addr.len, s->client_addr.ptr ? (const char *)s->client_addr.ptr : "",
               why);
    dkd__ms_close(s, DKD__CLOSE_NOW);
}

static void set_text(dkd_buf *b, dkd_span v)
{
    dkd__buf_reset(b);
    dkd__buf_append(b, v.ptr, v.len);
}

/* strip_braces: "{auth_authen}" and "auth_authen" name the same macro. */
static dkd_span strip_braces(dkd_span n)
{
    if (n.len >= 2 && n.ptr[0] == '{' && n.ptr[n.len - 1] == '}') {
        return dkd__span(n.ptr + 1, n.len - 2);
    }
    return n;
}

/* dkd__ms_macro returns a macro's value, from the latest stage that defines it (the
 * message's own before the connection's); empty when none does. */
dkd_span dkd__ms_macro(const milter_sess *s, const char *name)
{
    dkd_span want = strip_braces(dkd__span_str(name));
    for (int i = MS_NSTAGES - 1; i >= 0; i--) {
        dkd_span pairs = dkd__span(s->macros[i].ptr, s->macros[i].len), n, v;
        while (dkd__milter_next_macro(&pairs, &n, &v)) {
            if (dkd__span_eq_nocase(strip_braces(n), want)) {
                return v;
            }
        }
    }
    return dkd__span(NULL, 0);
}

/* clear_macros_from forgets the macros of stage first and later ones: a new message
 * (from MAIL) or a new SMTP connection (from CONNECT) must not see the last one's. */
static void clear_macros_from(milter_sess *s, int first)
{
    for (int i = first; i < MS_NSTAGES; i++) {
        dkd__buf_reset(&s->macros[i]);
        s->macro_fresh[i] = false;
    }
}

static void on_macro(milter_sess *s, dkd_span data)
{
    uint8_t stage;
    dkd_span pairs;
    if (!dkd__milter_parse_macro(data, &stage, &pairs)) {
        fatal(s, "malformed MACRO packet");
        return;
    }
    int i = stage_index(stage);
    if (i < 0) {
        return; /* macros for a command we keep none of (ABORT, UNKNOWN...) */
    }
    /* Macros come just before their command: the command that starts a new connection
     * or message must keep the ones sent for it, so the reset happens here. */
    if (stage == 'C') {
        clear_macros_from(s, 0);
    } else if (stage == 'M') {
        clear_macros_from(s, 2);
    }
    set_text(&s->macros[i], pairs);
    s->macro_fresh[i] = true;
}

/* take_macros: the command of stage code has come. Its macros are the ones sent for it,
 * or none: an MTA that sends no macro packet for this command must not leave the last
 * message's (or client's) in place. */
static void take_macros(milter_sess *s, uint8_t code)
{
    int i = stage_index(code);
    if (i >= 0 && !s->macro_fresh[i]) {
        dkd__buf_reset(&s->macros[i]);
    }
    if (i >= 0) {
        s->macro_fresh[i] = false;
    }
}

static void on_optneg(milter_sess *s, dkd_span data)
{
    dkd__milter_optneg mta, reply;
    const char *why = NULL;
    if (s->state != MS_NEGOTIATE) {
        fatal(s, "OPTNEG after negotiation");
        return;
    }
    if (!dkd__milter_parse_optneg(data, &mta)) {
        fatal(s, "malformed OPTNEG packet");
        return;
    }
    if (!dkd__milter_negotiate(&mta, WANT_ACTIONS, WANT_PROTOCOL, &reply, &why)) {
        fatal(s, why);
        return;
    }
    s->version = reply.version;
    s->protocol = reply.protocol;
    s->state = MS_IDLE;
    dkd__milter_put_optneg(s->env.out, DKD__MILTER_R_OPTNEG, &reply);
}

/* reply_bit: the no-reply flag of a command; 0 for one that always gets a reply. */
static uint32_t reply_bit(uint8_t cmd)
{
    switch (cmd) {
    case DKD__MILTER_C_CONNECT:
        return DKD__MILTER_P_NR_CONN;
    case DKD__MILTER_C_HELO:
        return DKD__MILTER_P_NR_HELO;
    case DKD__MILTER_C_MAIL:
        return DKD__MILTER_P_NR_MAIL;
    case DKD__MILTER_C_RCPT:
        return DKD__MILTER_P_NR_RCPT;
    case DKD__MILTER_C_DATA:
        return DKD__MILTER_P_NR_DATA;
    case DKD__MILTER_C_UNKNOWN:
        return DKD__MILTER_P_NR_UNKN;
    case DKD__MILTER_C_EOH:
        return DKD__MILTER_P_NR_EOH;
    case DKD__MILTER_C_HEADER:
        return DKD__MILTER_P_NR_HDR;
    case DKD__MILTER_C_BODY:
        return DKD__MILTER_P_NR_BODY;
    default:
        return 0;
    }
}

static void maybe_continue(milter_sess *s, uint8_t cmd)
{
    uint32_t bit = reply_bit(cmd);
    if (bit != 0 && (s->protocol & bit) == 0 && s->state != MS_CLOSED) {
        dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
    }
}

static void on_connect(milter_sess *s, dkd_span data)
{
    dkd__milter_connect c;
    if (!dkd__milter_parse_connect(data, &c)) {
        fatal(s, "malformed CONNECT packet");
        return;
    }
    dkd__ms_msg_reset(s);
    s->state = MS_IDLE;
    set_text(&s->client_host, c.host);
    set_text(&s->client_addr, c.addr);
    dkd__buf_reset(&s->helo);
    s->family = c.family;
}

static void on_mail(milter_sess *s, dkd_span data)
{
    dkd_span addr, args;
    if (!dkd__milter_parse_envelope(data, &addr, &args)) {
        fatal(s, "malformed MAIL packet");
        return;
    }
    /* MAIL without an end to the last message: that one was given up (Postfix sends
     * ABORT, but a filter must not rely on it). */
    dkd__ms_msg_reset(s);
    s->state = MS_ENVELOPE;
    set_text(&s->mail_from, addr);
    DKD__CNT_ADD(s->env.cnt, milter_messages, 1);
}

static void on_rcpt(milter_sess *s, dkd_span data)
{
    dkd_span addr, args;
    if (!dkd__milter_parse_envelope(data, &addr, &args)) {
        fatal(s, "malformed RCPT packet");
        return;
    }
    s->nrcpt++;
    if (s->rcpts.len + addr.len + 2 <= MS_MAX_RCPT_TEXT) {
        if (s->rcpts.len > 0) {
            dkd__buf_append(&s->rcpts, ", ", 2);
        }
        dkd__buf_append(&s->rcpts, addr.ptr, addr.len);
    }
}

/* in_message: the commands of a message's content need MAIL first. */
static bool in_message(milter_sess *s, const char *what)
{
    if (s->state == MS_ENVELOPE || s->state == MS_BODY) {
        return true;
    }
    fatal(s, what);
    return false;
}

static void on_packet(milter_sess *s, const dkd__milter_packet *p)
{
    if (s->state == MS_NEGOTIATE && p->cmd != DKD__MILTER_C_OPTNEG) {
        fatal(s, "command before OPTNEG");
        return;
    }
    dkd_span v, name;
    if (p->cmd == DKD__MILTER_C_CONNECT || p->cmd == DKD__MILTER_C_MAIL) {
        take_macros(s, p->cmd);
    }
    switch (p->cmd) {
    case DKD__MILTER_C_OPTNEG:
        on_optneg(s, p->data);
        return; /* its reply is the OPTNEG answer */
    case DKD__MILTER_C_MACRO:
        on_macro(s, p->data);
        return; /* never answered */
    case DKD__MILTER_C_CONNECT:
        on_connect(s, p->data);
        break;
    case DKD__MILTER_C_HELO:
        if (!dkd__milter_parse_helo(p->data, &v)) {
            fatal(s, "malformed HELO packet");
            return;
        }
        set_text(&s->helo, v);
        break;
    case DKD__MILTER_C_MAIL:
        on_mail(s, p->data);
        break;
    case DKD__MILTER_C_RCPT:
        if (in_message(s, "RCPT before MAIL")) {
            on_rcpt(s, p->data);
        }
        break;
    case DKD__MILTER_C_DATA:
    case DKD__MILTER_C_UNKNOWN:
        break;
    case DKD__MILTER_C_HEADER:
        if (!in_message(s, "header field outside a message")) {
            return;
        }
        if (s->state == MS_BODY) {
            fatal(s, "header field after the end of the header");
            return;
        }
        if (!dkd__milter_parse_header(p->data, &name, &v)) {
            fatal(s, "malformed HEADER packet");
            return;
        }
        dkd__ms_header(s, name, v);
        break;
    case DKD__MILTER_C_EOH:
        if (!in_message(s, "end of header outside a message")) {
            return;
        }
        if (s->state == MS_ENVELOPE) {
            dkd__ms_end_of_header(s);
        }
        break;
    case DKD__MILTER_C_BODY:
        if (!in_message(s, "body outside a message")) {
            return;
        }
        if (s->state == MS_ENVELOPE) {
            dkd__ms_end_of_header(s); /* an MTA told not to send EOH (never us) */
        }
        dkd__ms_body(s, p->data);
        break;
    case DKD__MILTER_C_BODYEOB:
        if (!in_message(s, "end of message outside a message")) {
            return;
        }
        if (s->state == MS_ENVELOPE) {
            dkd__ms_end_of_header(s);
        }
        if (p->data.len > 0) {
            dkd__ms_body(s, p->data); /* libmilter's last chunk may ride on EOB */
        }
        dkd__ms_end_of_message(s);
        /* The path was chosen at the first header field: the next message starts with
         * no message macros of this one. */
        clear_macros_from(s, 2);
        return; /* answered with the verdict's actions */
    case DKD__MILTER_C_ABORT:
        if (s->state == MS_ENVELOPE || s->state == MS_BODY) {
            DKD__CNT_ADD(s->env.cnt, milter_aborted, 1);
        }
        dkd__ms_msg_reset(s);
        clear_macros_from(s, 2);
        s->state = MS_IDLE;
        return; /* never answered */
    case DKD__MILTER_C_QUIT_NC:
        /* The MTA keeps the filter connection for its next SMTP client. */
        dkd__ms_msg_reset(s);
        clear_macros_from(s, 0);
        s->state = MS_IDLE;
        return;
    case DKD__MILTER_C_QUIT:
        dkd__ms_close(s, DKD__CLOSE_AFTER_SEND);
        return;
    default:
        fatal(s, "unknown milter command");
        return;
    }
    maybe_continue(s, p->cmd);
}

/*
 * ops->input splits and handles the whole packets at the front of p. It stops while a
 * message waits for its keys (the MTA waits for our answer) and when the output room
 * is used up.
 */
static dkd__sess_input sess_input(void *sp, const uint8_t *p, size_t n, int fd, unsigned flags,
                                  size_t out_room)
{
    milter_sess *s = sp;
    dkd__sess_input res = {0, 0, false};
    (void)flags;
    if (fd >= 0) {
        s->env.close_fd(s->env.ctx, fd); /* the milter protocol passes no descriptors */
        fatal(s, "a file descriptor was passed");
        return res;
    }
    size_t out_start = s->env.out->len, off = 0;
    while (s->state != MS_CLOSED && off < n) {
        if (s->state == MS_WAIT || s->env.out->len - out_start >= out_room) {
            res.paused = true;
            break;
        }
        dkd__milter_packet pkt;
        size_t need = 0;
        long used = dkd__milter_frame(p + off, n - off, MS_MAX_PACKET, &pkt, &need);
        if (used == 0) {
            res.need = need;
            break;
        }
        if (used < 0) {
            fatal(s, used == DKD__MILTER_ERR_EMPTY ? "packet of length 0"
                                                   : "packet over the size limit");
            break;
        }
        off += (size_t)used;
        on_packet(s, &pkt);
    }
    res.consumed = off;
    return res;
}

/* ops->eof: the MTA has gone (it closes its side after QUIT, or when it gives up). */
static void sess_eof(void *sp)
{
    dkd__ms_close(sp, DKD__CLOSE_AFTER_SEND);
}

/* ops->tick: a packet begun and not finished within the stall timeout, or no OPTNEG in
 * that time, closes the connection. An idle connection is not closed: the MTA holds it
 * for the whole SMTP session, which may pause for minutes between commands. */
static void sess_tick(void *sp, int64_t limit_ms, bool input_stalled)
{
    milter_sess *s = sp;
    if (s->state == MS_CLOSED) {
        return;
    }
    if (input_stalled) {
        fatal(s, "packet not completed within stall-timeout");
    } else if (s->state == MS_NEGOTIATE && s->opened_ms <= limit_ms) {
        fatal(s, "no OPTNEG within stall-timeout");
    }
}

/*
 * ops->drain, while the server stops. A message waiting for its keys is answered (at
 * the shutdown timeout with the keys still out counting as temperror); any other
 * connection closes now, and the MTA applies its default action to a message whose
 * end has not arrived.
 */
static void sess_drain(void *sp, bool expired)
{
    milter_sess *s = sp;
    if (s->state == MS_CLOSED) {
        return;
    }
    if (s->state == MS_WAIT) {
        if (expired) {
            dkd__ms_expire_keys(s, "server shutting down");
        }
        return;
    }
    dkd__ms_close(s, DKD__CLOSE_AFTER_SEND);
}

/* ---- life ---- */

static void *sess_worker_new(const void *cfg, dkd_engine *eng)
{
    milter_worker *mw = calloc(1, sizeof *mw);
    if (mw == NULL) {
        abort(); /* set-up */
    }
    mw->cfg = cfg;
    mw->eng = eng;
    return mw;
}

static void sess_worker_free(void *wp)
{
    milter_worker *mw = wp;
    if (mw == NULL) {
        return;
    }
    for (size_t i = 0; i < mw->nfree; i++) {
        dkd_msg_free(mw->free_msgs[i]);
    }
    free(mw->free_msgs);
    free(mw);
}

static void *sess_open(void *wp, const dkd__sess_env *env)
{
    milter_sess *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->mw = wp;
    s->env = *env;
    s->state = MS_NEGOTIATE;
    s->opened_ms = env->now_ms(env->ctx);
    return s;
}

static void sess_free(void *sp)
{
    milter_sess *s = sp;
    dkd__ms_msg_reset(s);
    dkd__ms_release_engine(s);
    for (int i = 0; i < MS_NSTAGES; i++) {
        dkd__buf_free(&s->macros[i]);
    }
    dkd__buf_free(&s->client_host);
    dkd__buf_free(&s->client_addr);
    dkd__buf_free(&s->helo);
    dkd__buf_free(&s->mail_from);
    dkd__buf_free(&s->rcpts);
    dkd__buf_free(&s->hdr);
    free(s->key_wait);
    free(s);
}

/* A connection we cannot take is closed unanswered: the milter protocol has no
 * greeting to refuse with, and the MTA applies its default action. */
static void sess_refuse(dkd__wbuf *out, bool shutting_down, const char *text)
{
    (void)out;
    (void)shutting_down;
    (void)text;
}

const dkd__sess_ops dkd__milter_session = {
    .name = "milter",
    .worker_new = sess_worker_new,
    .worker_free = sess_worker_free,
    .open = sess_open,
    .input = sess_input,
    .key = dkd__ms_key,
    .timer = dkd__ms_timer,
    .eof = sess_eof,
    .tick = sess_tick,
    .drain = sess_drain,
    .close = sess_free,
    .refuse = sess_refuse,
};
