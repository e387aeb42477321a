/*
 * session_milter_msg.c - the message half of the milter session: rebuilds the header
 * block from the MTA's header fields, notes the Authentication-Results fields that
 * claim our authserv-id, decides whether the message is verified or signed, feeds the
 * body to the engine or the signer as its chunks arrive, takes the key answers, and at
 * the end of the message writes the actions: delete the forged fields, insert our
 * Authentication-Results field or DKIM-Signature at the top, and the verdict.
 *
 * Memory: the header block (bounded by max_header_bytes, charged to the budget) and
 * fixed state, whatever the body's size: the body is hashed as it passes.
 *
 * Tokens: a key lookup's token is the message's generation and the key's index; a
 * timer's has the index MS_KEY_TIMER. The transport drops answers for a connection that
 * has gone; the generation drops those for a message that has.
 */
#include "session_milter_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authres.h"

enum { HDR_CHARGE_STEP = 16 * 1024 };

static uint64_t token_of(const milter_sess *s, unsigned key)
{
    return (uint64_t)s->gen << 16 | key;
}

/* ---- engine message states, pooled per worker ---- */

static dkd_msg *msg_get(milter_sess *s)
{
    milter_worker *mw = s->mw;
    if (mw->nfree > 0) {
        return mw->free_msgs[--mw->nfree];
    }
    return dkd_msg_new(mw->eng);
}

void dkd__ms_release_engine(milter_sess *s)
{
    milter_worker *mw = s->mw;
    if (s->m == NULL) {
        return;
    }
    dkd_msg_reset(s->m);
    if (mw->nfree == mw->free_cap) {
        size_t cap = mw->free_cap ? mw->free_cap * 2 : 16;
        dkd_msg **p = realloc(mw->free_msgs, cap * sizeof *p);
        if (p == NULL) {
            dkd_msg_free(s->m);
            s->m = NULL;
            return;
        }
        mw->free_msgs = p;
        mw->free_cap = cap;
    }
    mw->free_msgs[mw->nfree++] = s->m;
    s->m = NULL;
}

/* dkd__ms_msg_reset forgets the message in progress (not the connection's state). */
void dkd__ms_msg_reset(milter_sess *s)
{
    s->gen++;
    if (s->timer != 0) {
        s->env.timer_cancel(s->env.ctx, s->timer);
        s->timer = 0;
    }
    if (s->m != NULL) {
        dkd_msg_reset(s->m);
    }
    dkd_signer_free(s->signer);
    s->signer = NULL;
    dkd__signtab_unref(s->tab);
    s->tab = NULL;
    s->sign_entry = NULL;
    s->env.budget_give(s->env.ctx, s->charged);
    s->charged = 0;
    if (s->hdr.cap > 4 * HDR_CHARGE_STEP) {
        dkd__buf_free(&s->hdr); /* a huge header block does not pin its memory */
    }
    dkd__buf_reset(&s->hdr);
    dkd__buf_reset(&s->mail_from);
    dkd__buf_reset(&s->rcpts);
    s->nrcpt = 0;
    s->hdr_too_large = false;
    s->error = NULL;
    s->mode = MODE_UNDECIDED;
    s->ar_seen = 0;
    s->n_ours = 0;
    s->ar_overflow = false;
    s->body_bytes = 0;
    s->begun = false;
    s->starting_lookups = false;
    s->nkeys = 0;
    s->keys_pending = 0;
}

/* ---- which path: verify inbound, sign outbound ---- */

static bool outbound(milter_sess *s)
{
    const dkd__milter_cfg *cfg = s->mw->cfg;
    if (dkd__ms_macro(s, "{auth_authen}").len > 0) {
        return true;
    }
    if (cfg->internal_hosts != NULL && s->client_addr.len > 0 &&
        dkd__netlist_match(cfg->internal_hosts, dkd__span(s->client_addr.ptr, s->client_addr.len))) {
        return true;
    }
    dkd_span daemon = dkd__ms_macro(s, "{daemon_name}");
    for (size_t i = 0; i < cfg->n_sign_daemons && daemon.len > 0; i++) {
        if (dkd__span_eq_str(daemon, cfg->sign_daemons[i])) {
            return true;
        }
    }
    return false;
}

/* ---- the header block ---- */

/* hdr_room makes sure n more bytes fit within the limit and the budget. */
static bool hdr_room(milter_sess *s, size_t n)
{
    const dkd__milter_cfg *cfg = s->mw->cfg;
    if (s->hdr_too_large || s->hdr.len + n > cfg->max_header_bytes) {
        s->hdr_too_large = true;
        return false;
    }
    if (s->hdr.len + n > s->charged) {
        uint64_t step = s->hdr.len + n - s->charged;
        step = (step + HDR_CHARGE_STEP - 1) / HDR_CHARGE_STEP * HDR_CHARGE_STEP;
        if (!s->env.budget_take(s->env.ctx, step)) {
            s->error = "memory budget exhausted";
            return false;
        }
        s->charged += step;
    }
    return true;
}

static bool is_authres(dkd_span name)
{
    return dkd__span_eq_str_nocase(name, "Authentication-Results");
}

/*
 * dkd__ms_header appends one field as it was on the wire: name, colon, value (with its
 * leading space when the MTA sends it, HDR_LEADSPC; one space otherwise, the usual
 * form), CRLF. Folded lines come joined by bare LF (Postfix) or CRLF (Sendmail); the
 * engine reads a bare LF as CRLF, so both hash as the sender's CRLF did.
 *
 * Authentication-Results fields are counted whether or not the block still fits: the
 * MTA numbers them among all fields of that name, and a forged one must go even from a
 * message too large to verify.
 */
void dkd__ms_header(milter_sess *s, dkd_span name, dkd_span value)
{
    if (s->mode == MODE_UNDECIDED) {
        s->mode = outbound(s) ? MODE_SIGN : MODE_VERIFY;
    }
    if (is_authres(name)) {
        s->ar_seen++;
        dkd_span id = dkd__span_str(s->mw->cfg->authserv_id);
        if (dkd__authres_servid_is(value, id)) {
            if (s->n_ours < MS_MAX_AR_DELETE) {
                s->ar_ours[s->n_ours++] = s->ar_seen;
            } else {
                s->ar_overflow = true;
            }
        }
    }
    bool space = (s->protocol & DKD__MILTER_P_HDR_LEADSPC) == 0;
    if (s->error != NULL || !hdr_room(s, name.len + 1 + space + value.len + 2)) {
        return;
    }
    dkd__buf_append(&s->hdr, name.ptr, name.len);
    dkd__buf_append(&s->hdr, space ? ": " : ":", space ? 2 : 1);
    dkd__buf_append(&s->hdr, value.ptr, value.len);
    dkd__buf_append(&s->hdr, "\r\n", 2);
    if (dkd__buf_failed(&s->hdr)) {
        s->error = "out of memory for the header block";
    }
}

/* ---- verifying ---- */

static void keys_start(milter_sess *s)
{
    size_t n = dkd_msg_key_count(s->m);
    if (n > s->key_wait_cap) {
        bool *w = realloc(s->key_wait, n * sizeof *w);
        if (w == NULL) {
            s->error = "out of memory";
            return;
        }
        s->key_wait = w;
        s->key_wait_cap = n;
    }
    s->nkeys = n;
    s->keys_pending = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        s->key_wait[i] = true;
    }
    /* A synchronous key source answers inside lookup: ops->key must not finish the
     * message under us. */
    s->starting_lookups = true;
    for (size_t i = 0; i < n && s->state != MS_CLOSED; i++) {
        DKD__CNT_ADD(s->env.cnt, key_lookups, 1);
        if (s->env.lookup(s->env.ctx, token_of(s, (unsigned)i), dkd_msg_key_name(s->m, i)) < 0 &&
            s->key_wait[i]) {
            dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_ERROR, "key lookup not started");
            if (k == NULL) {
                s->error = "out of memory";
                break;
            }
            s->key_wait[i] = false;
            s->keys_pending--;
            dkd_msg_key_ready(s->m, i, k);
        }
    }
    s->starting_lookups = false;
}

static void verify_begin(milter_sess *s)
{
    if (s->hdr_too_large || s->error != NULL) {
        return;
    }
    if (s->m == NULL && (s->m = msg_get(s)) == NULL) {
        s->error = "out of memory";
        return;
    }
    int rc = dkd_msg_begin(s->m, s->hdr.ptr, s->hdr.len, s->env.unix_time(s->env.ctx));
    if (rc == DKD_ERR_TOO_LARGE) {
        s->hdr_too_large = true; /* over the engine's field count */
        return;
    }
    if (rc != 0) {
        s->error = dkd_strerror(rc);
        return;
    }
    s->begun = true;
    /* The keys are looked up while the body arrives: by its end they are usually in. */
    keys_start(s);
}

/* ---- signing ---- */

static void sign_begin(milter_sess *s)
{
    const dkd__milter_cfg *cfg = s->mw->cfg;
    if (s->hdr_too_large || s->error != NULL) {
        s->mode = MODE_PASS;
        return;
    }
    char domain[256];
    dkd_from_domain(s->hdr.ptr, s->hdr.len, domain, sizeof domain);
    s->tab = cfg->keys != NULL ? dkd__signtab_holder_get(cfg->keys) : NULL;
    s->sign_entry = dkd__signtab_find(s->tab, dkd__span_str(domain));
    if (s->sign_entry == NULL) {
        DKD__CNT_ADD(s->env.cnt, milter_unsigned, 1);
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_INFO,
                   "milter: outbound mail from <%.*s> not signed: no sign-key for From domain '%s'",
                   (int)s->mail_from.len, s->mail_from.ptr ? (const char *)s->mail_from.ptr : "",
                   domain);
        s->mode = MODE_PASS;
        return;
    }
    dkd_sign_opts o;
    dkd_sign_opts_init(&o);
    o.domain = s->sign_entry->domain;
    o.selector = s->sign_entry->selector;
    o.timestamp = s->env.unix_time(s->env.ctx);
    char err[256];
    int rc = dkd_signer_begin(s->sign_entry->key, &o, s->hdr.ptr, s->hdr.len, &s->signer, err,
                              sizeof err);
    if (rc != 0) {
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING,
                   "milter: outbound mail from <%.*s> not signed: %s", (int)s->mail_from.len,
                   s->mail_from.ptr ? (const char *)s->mail_from.ptr : "", err);
        DKD__CNT_ADD(s->env.cnt, milter_unsigned, 1);
        s->mode = MODE_PASS;
    }
}

void dkd__ms_end_of_header(milter_sess *s)
{
    s->state = MS_BODY;
    if (s->mode == MODE_UNDECIDED) {
        s->mode = outbound(s) ? MODE_SIGN : MODE_VERIFY;
    }
    if (s->mode == MODE_SIGN) {
        sign_begin(s);
    } else {
        verify_begin(s);
    }
}

void dkd__ms_body(milter_sess *s, dkd_span chunk)
{
    s->body_bytes += chunk.len;
    if (s->error != NULL) {
        return;
    }
    int rc = 0;
    if (s->mode == MODE_VERIFY && s->begun) {
        rc = dkd_msg_body(s->m, chunk.ptr, chunk.len);
    } else if (s->mode == MODE_SIGN && s->signer != NULL) {
        rc = dkd_signer_body(s->signer, chunk.ptr, chunk.len);
    }
    if (rc != 0) {
        s->error = dkd_strerror(rc);
    }
}

/* ---- the end of the message ---- */

/* put_field inserts a whole "Name: value\r\n\tmore" field at the top, as the MTA wants
 * it: the value's folds as LF TAB, its leading space only when HDR_LEADSPC was agreed
 * (the MTA adds one otherwise), no final line end. */
static void put_field(milter_sess *s, const char *field)
{
    const char *colon = strchr(field, ':');
    if (colon == NULL) {
        return;
    }
    dkd_span name = dkd__span(field, (size_t)(colon - field));
    const char *v = colon + 1;
    if ((s->protocol & DKD__MILTER_P_HDR_LEADSPC) == 0 && *v == ' ') {
        v++;
    }
    size_t n = strlen(v);
    char stack[4096];
    char *val = n < sizeof stack ? stack : malloc(n + 1);
    if (val == NULL) {
        s->error = "out of memory";
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '\r') {
            val[len++] = v[i];
        }
    }
    while (len > 0 && val[len - 1] == '\n') {
        len--;
    }
    dkd__milter_put_modify(s->env.out, DKD__MILTER_R_INSHEADER, 0, name, dkd__span(val, len));
    if (val != stack) {
        free(val);
    }
}

/* delete_ours removes the fields naming our authserv-id, highest index first: an MTA
 * that renumbers the remaining fields after a deletion (and one that does not) then
 * deletes exactly the ones we counted, never a neighbour. */
static void delete_ours(milter_sess *s)
{
    for (uint32_t i = s->n_ours; i-- > 0;) {
        dkd__milter_put_modify(s->env.out, DKD__MILTER_R_CHGHEADER, s->ar_ours[i],
                               dkd__span_str("Authentication-Results"), dkd__span(NULL, 0));
    }
}

static void put_replycode(milter_sess *s, const char *text)
{
    dkd__milter_put_replycode(s->env.out, dkd__span_str(text));
}

/* simple_authres: our field for a message the engine could not judge. */
static void put_simple_authres(milter_sess *s, const char *result, const char *why)
{
    char field[512];
    snprintf(field, sizeof field, "Authentication-Results: %s;\r\n\tdkim=%s reason=\"%s\"",
             s->mw->cfg->authserv_id, result, why);
    put_field(s, field);
}

/* fail_message: an internal failure or overload; --milter-on-error decides. */
static void fail_message(milter_sess *s)
{
    s->env.log(s->env.ctx, DKD__LK_OVERLOADED, DKD__LOG_WARNING,
               "milter: message from <%.*s> not processed: %s", (int)s->mail_from.len,
               s->mail_from.ptr ? (const char *)s->mail_from.ptr : "", s->error);
    if (s->mw->cfg->on_error == DKD__MILTER_TEMPFAIL) {
        DKD__CNT_ADD(s->env.cnt, milter_tempfailed, 1);
        put_replycode(s, "451 4.3.0 DKIM filter temporarily unable to process the message");
        return;
    }
    delete_ours(s);
    if (s->mode == MODE_VERIFY) {
        put_simple_authres(s, "temperror", "internal error in the verifier");
    }
    dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
}

static bool any_temperror(const dkd_sig_result *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].result == DKD_RESULT_TEMPERROR) {
            return true;
        }
    }
    return false;
}

static void finish_verify(milter_sess *s)
{
    const dkd__milter_cfg *cfg = s->mw->cfg;
    if (s->hdr_too_large) {
        delete_ours(s);
        put_simple_authres(s, "permerror", "header block too large to verify");
        dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
        return;
    }
    int rc = dkd_msg_end(s->m);
    if (rc != 0) {
        s->error = dkd_strerror(rc);
        fail_message(s);
        return;
    }
    size_t n = 0;
    const dkd_sig_result *res = dkd_msg_results(s->m, &n);
    DKD__CNT_ADD(s->env.cnt, signatures, n);
    if (cfg->on_temperror == DKD__MILTER_TEMPFAIL && any_temperror(res, n)) {
        DKD__CNT_ADD(s->env.cnt, milter_tempfailed, 1);
        put_replycode(s, "451 4.4.3 DKIM key lookup failed temporarily; try again later");
        return;
    }
    const char *ar = dkd_msg_authres(s->m, cfg->authserv_id);
    if (ar == NULL) {
        s->error = "out of memory";
        fail_message(s);
        return;
    }
    DKD__CNT_ADD(s->env.cnt, milter_verified, 1);
    delete_ours(s);
    put_field(s, ar);
    dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
}

static void finish_sign(milter_sess *s)
{
    char *field = NULL;
    char err[256];
    int rc = dkd_signer_end(s->signer, &field, err, sizeof err);
    if (rc != 0) {
        s->error = "signing failed";
        s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING, "milter: signing failed: %s",
                   err);
        fail_message(s);
        return;
    }
    DKD__CNT_ADD(s->env.cnt, milter_signed, 1);
    delete_ours(s);
    put_field(s, field);
    free(field);
    dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
}

/* finish writes the actions and the verdict of the message, then forgets it. */
static void finish(milter_sess *s)
{
    if (s->timer != 0) {
        s->env.timer_cancel(s->env.ctx, s->timer);
        s->timer = 0;
    }
    if (s->ar_overflow) {
        /* We could not remove every forged field: passing it on would let one through. */
        s->error = "too many Authentication-Results fields with our authserv-id";
        fail_message(s);
    } else if (s->error != NULL) {
        fail_message(s);
    } else if (s->mode == MODE_SIGN && s->signer != NULL) {
        finish_sign(s);
    } else if (s->mode == MODE_VERIFY) {
        finish_verify(s);
    } else {
        delete_ours(s);
        dkd__milter_put_reply(s->env.out, DKD__MILTER_R_CONTINUE);
    }
    s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_DEBUG,
               "milter: message from <%.*s> to %u recipient(s) <%.*s>: %s, %u forged field(s) "
               "removed",
               (int)s->mail_from.len, s->mail_from.ptr ? (const char *)s->mail_from.ptr : "",
               s->nrcpt, (int)s->rcpts.len, s->rcpts.ptr ? (const char *)s->rcpts.ptr : "",
               s->mode == MODE_SIGN ? "signed" : s->mode == MODE_VERIFY ? "verified" : "passed",
               s->n_ours);
    dkd__ms_msg_reset(s);
    if (s->state != MS_CLOSED) {
        s->state = MS_IDLE;
    }
}

void dkd__ms_end_of_message(milter_sess *s)
{
    if (s->mode == MODE_VERIFY && s->begun && s->error == NULL && s->keys_pending > 0) {
        s->state = MS_WAIT;
        unsigned ms = s->mw->cfg->key_timeout_ms;
        if (ms > 0) {
            s->timer = s->env.timer_arm(s->env.ctx, token_of(s, MS_KEY_TIMER), ms);
        }
        return;
    }
    finish(s);
}

/* dkd__ms_expire_keys gives every key still out a dns-timeout failure and answers. */
void dkd__ms_expire_keys(milter_sess *s, const char *why)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        if (!s->key_wait[i]) {
            continue;
        }
        dkd_key *k = dkd_key_from_failure(DKD_REASON_DNS_TIMEOUT, why);
        if (k == NULL) {
            s->error = "out of memory";
            break;
        }
        s->key_wait[i] = false;
        s->keys_pending--;
        dkd_msg_key_ready(s->m, i, k);
    }
    if (s->state == MS_WAIT) {
        finish(s);
    }
}

/* ops->key: a lookup's answer, for this message or dropped. */
void dkd__ms_key(void *sp, uint64_t token, dkd_key *key)
{
    milter_sess *s = sp;
    unsigned idx = (unsigned)(token & 0xffff);
    if (s->state == MS_CLOSED || (uint32_t)(token >> 16) != s->gen || !s->begun ||
        idx >= s->nkeys || !s->key_wait[idx]) {
        dkd_key_unref(key);
        return;
    }
    s->key_wait[idx] = false;
    s->keys_pending--;
    dkd_msg_key_ready(s->m, idx, key);
    if (s->keys_pending == 0 && s->state == MS_WAIT && !s->starting_lookups) {
        finish(s);
    }
}

/* ops->timer: the key deadline after the end of the message passed. */
void dkd__ms_timer(void *sp, uint64_t token)
{
    milter_sess *s = sp;
    if (s->state != MS_WAIT || (uint32_t)(token >> 16) != s->gen ||
        (token & 0xffff) != MS_KEY_TIMER) {
        return;
    }
    s->timer = 0;
    DKD__CNT_ADD(s->env.cnt, key_timeouts, 1);
    s->env.log(s->env.ctx, DKD__LK_MESSAGE, DKD__LOG_WARNING,
               "milter: key lookup deadline (%u ms) passed", s->mw->cfg->key_timeout_ms);
    dkd__ms_expire_keys(s, "key lookup deadline passed");
}
