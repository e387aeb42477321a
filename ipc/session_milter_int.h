/*
 * session_milter_int.h - what the two files of the milter session share: the session
 * and worker structures, and the message half's functions (session_milter_msg.c: the
 * header block, verification, signing, key answers and the end-of-message actions)
 * that the protocol half (session_milter.c: packets, negotiation, macros, the envelope,
 * life) calls. Internal to ipc/.
 */
#ifndef DKIMD_IPC_SESSION_MILTER_INT_H
#define DKIMD_IPC_SESSION_MILTER_INT_H

#include <dkimd/sign.h>

#include "milter.h"
#include "session_milter.h"

enum {
    MS_MAX_PACKET = 1024 * 1024,   /* largest packet we take (Postfix's largest is 64 KiB) */
    MS_MAX_RCPT_TEXT = 4096,       /* recipients kept for the log; all are counted */
    MS_MAX_AR_DELETE = 1024,       /* our forged fields deleted per message */
    MS_NSTAGES = 7,                /* macro stages kept: C H M R T N E */
    MS_KEY_TIMER = 0xffff,         /* the key index of a timer token */
};

enum ms_state {
    MS_NEGOTIATE, /* connected: only OPTNEG is valid */
    MS_IDLE,      /* negotiated, no message open (CONNECT, HELO, macros) */
    MS_ENVELOPE,  /* MAIL seen: recipients, DATA, header fields */
    MS_BODY,      /* end of header seen: body chunks */
    MS_WAIT,      /* end of message seen: waiting for keys before answering */
    MS_CLOSED,    /* asked the transport to close */
};

enum ms_mode {
    MODE_UNDECIDED, /* no header field yet */
    MODE_VERIFY,
    MODE_SIGN,
    MODE_PASS, /* outbound without a key, or nothing the engine can do: only our fields go */
};

typedef struct milter_worker {
    const dkd__milter_cfg *cfg;
    dkd_engine *eng;
    dkd_msg **free_msgs; /* engine message states, kept for the worker's next sessions */
    size_t nfree, free_cap;
} milter_worker;

typedef struct milter_sess {
    milter_worker *mw;
    dkd__sess_env env;
    enum ms_state state;
    int64_t opened_ms;
    uint32_t version, protocol; /* negotiated */
    /* The connection: the latest macros of each stage, the client. */
    dkd_buf macros[MS_NSTAGES];
    bool macro_fresh[MS_NSTAGES]; /* sent since that stage's command last came */
    dkd_buf client_host, client_addr, helo;
    uint8_t family;
    /* The message. */
    uint32_t gen; /* bumped per message: stale key answers and timers see the change */
    dkd_buf mail_from, rcpts;
    unsigned nrcpt;
    dkd_buf hdr; /* the header block, rebuilt byte for byte */
    uint64_t charged; /* header block memory charged to the budget */
    bool hdr_too_large;
    const char *error; /* an internal failure: on_error applies */
    enum ms_mode mode;
    uint32_t ar_seen;  /* Authentication-Results fields so far (their 1-based indexes) */
    uint32_t ar_ours[MS_MAX_AR_DELETE]; /* indexes of those naming our authserv-id */
    uint32_t n_ours;
    bool ar_overflow;  /* more of ours than we can delete: the message is refused */
    uint64_t body_bytes;
    dkd_msg *m;
    bool begun;
    bool starting_lookups;
    size_t nkeys;
    unsigned keys_pending;
    bool *key_wait;
    size_t key_wait_cap;
    uint64_t timer;
    dkd__signtab *tab;
    const dkd__signtab_entry *sign_entry;
    dkd_signer *signer;
} milter_sess;

/* session_milter.c */
void dkd__ms_close(milter_sess *s, enum dkd__close_mode mode);
dkd_span dkd__ms_macro(const milter_sess *s, const char *name);

/* session_milter_msg.c */
void dkd__ms_msg_reset(milter_sess *s);
void dkd__ms_header(milter_sess *s, dkd_span name, dkd_span value);
void dkd__ms_end_of_header(milter_sess *s);
void dkd__ms_body(milter_sess *s, dkd_span chunk);
void dkd__ms_end_of_message(milter_sess *s);
void dkd__ms_expire_keys(milter_sess *s, const char *why);
void dkd__ms_key(void *sp, uint64_t token, dkd_key *key);
void dkd__ms_timer(void *sp, uint64_t token);
void dkd__ms_release_engine(milter_sess *s);

#endif
