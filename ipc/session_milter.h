/*
 * session_milter.h - the milter protocol (Sendmail's and Postfix's mail filter
 * interface, versions 2 to 6; codec in milter.h) as a protocol session for the
 * transport (session.h). Inbound mail is verified and gets an Authentication-Results
 * field; outbound mail (an authenticated client, an internal host, or a service named
 * in sign_daemons) is signed with the key of its From domain instead.
 */
#ifndef DKIMD_IPC_SESSION_MILTER_H
#define DKIMD_IPC_SESSION_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netmatch.h"
#include "session.h"
#include "signtab.h"

/* What the MTA is told to do with a message that could not be verified as it should. */
enum dkd__milter_action {
    DKD__MILTER_ACCEPT,   /* deliver it (with what the Authentication-Results field says) */
    DKD__MILTER_TEMPFAIL, /* 4xx: the sender tries again later */
};

/* The milter's settings, fixed when the server is set up (the signing keys excepted:
 * they are reloaded through the holder). */
typedef struct dkd__milter_cfg {
    const char *authserv_id;
    size_t max_header_bytes;    /* the header block of one message */
    uint64_t max_message_bytes; /* header block and body; larger mail is passed unverified */
    unsigned key_timeout_ms;    /* from the end of the message; 0 = none */
    enum dkd__milter_action on_temperror; /* a key lookup failed temporarily */
    enum dkd__milter_action on_error;     /* overload or an internal failure */
    const dkd__netlist *internal_hosts;   /* clients whose mail is signed; may be NULL */
    const char *const *sign_daemons;      /* {daemon_name} values whose mail is signed */
    size_t n_sign_daemons;
    dkd__signtab_holder *keys; /* may be NULL: nothing is signed */
} dkd__milter_cfg;

extern const dkd__sess_ops dkd__milter_session;

#endif
