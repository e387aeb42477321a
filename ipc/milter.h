/*
 * milter.h - the milter protocol codec (Sendmail's libmilter wire format, versions 2 to 6,
 * as Postfix and Sendmail speak it): packet framing, the commands an MTA sends, the
 * replies a filter sends, and option negotiation. Pure: no I/O, no allocation, no
 * state; the session (session_milter.c) keeps the state.
 *
 * A packet is a 4-byte big-endian length, then that many bytes: a command or reply
 * byte and its data. Strings in data are NUL-terminated; integers are big-endian.
 *
 * Decoding reads from borrowed bytes into spans (engine/core/span.h): nothing is
 * copied, and every parser returns false on data that does not have the command's
 * shape (a missing NUL, a short integer, bytes left over) without writing its outputs.
 * Encoding appends whole packets to a dkd__wbuf (the sticky-error builder): the
 * filter's replies, and, for tests, fuzzers and tools, the MTA's commands too, so
 * every parser has an encoder to round-trip against.
 *
 * Internal to dkimd (dkd__ prefix). Threads: every function is reentrant.
 */
#ifndef DKIMD_IPC_MILTER_H
#define DKIMD_IPC_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"
#include "wire.h" /* dkd__wbuf */

#ifdef __cplusplus
extern "C" {
#endif

/* Commands, MTA to filter (SMFIC_*). */
enum {
    DKD__MILTER_C_ABORT = 'A',
    DKD__MILTER_C_BODY = 'B',
    DKD__MILTER_C_CONNECT = 'C',
    DKD__MILTER_C_MACRO = 'D',
    DKD__MILTER_C_BODYEOB = 'E',
    DKD__MILTER_C_HELO = 'H',
    DKD__MILTER_C_QUIT_NC = 'K', /* quit this message's filter, keep the connection */
    DKD__MILTER_C_HEADER = 'L',
    DKD__MILTER_C_MAIL = 'M',
    DKD__MILTER_C_EOH = 'N',
    DKD__MILTER_C_OPTNEG = 'O',
    DKD__MILTER_C_QUIT = 'Q',
    DKD__MILTER_C_RCPT = 'R',
    DKD__MILTER_C_DATA = 'T',
    DKD__MILTER_C_UNKNOWN = 'U',
};

/* Replies, filter to MTA (SMFIR_*). */
enum {
    DKD__MILTER_R_ADDRCPT = '+',
    DKD__MILTER_R_DELRCPT = '-',
    DKD__MILTER_R_ACCEPT = 'a',
    DKD__MILTER_R_REPLBODY = 'b',
    DKD__MILTER_R_CONTINUE = 'c',
    DKD__MILTER_R_DISCARD = 'd',
    DKD__MILTER_R_CHGFROM = 'e',
    DKD__MILTER_R_ADDHEADER = 'h',
    DKD__MILTER_R_INSHEADER = 'i',
    DKD__MILTER_R_CHGHEADER = 'm',
    DKD__MILTER_R_PROGRESS = 'p',
    DKD__MILTER_R_QUARANTINE = 'q',
    DKD__MILTER_R_REJECT = 'r',
    DKD__MILTER_R_SKIP = 's',
    DKD__MILTER_R_TEMPFAIL = 't',
    DKD__MILTER_R_REPLYCODE = 'y',
    DKD__MILTER_R_OPTNEG = 'O',
};

/* Actions a filter may take (SMFIF_*), negotiated in OPTNEG. */
enum {
    DKD__MILTER_A_ADDHDRS = 0x01,
    DKD__MILTER_A_CHGBODY = 0x02,
    DKD__MILTER_A_ADDRCPT = 0x04,
    DKD__MILTER_A_DELRCPT = 0x08,
    DKD__MILTER_A_CHGHDRS = 0x10,
    DKD__MILTER_A_QUARANTINE = 0x20,
    DKD__MILTER_A_CHGFROM = 0x40,
    DKD__MILTER_A_ADDRCPT_PAR = 0x80,
    DKD__MILTER_A_SETSYMLIST = 0x100,
};

/* Protocol steps and no-reply flags (SMFIP_*), negotiated in OPTNEG. */
enum {
    DKD__MILTER_P_NOCONNECT = 0x1,
    DKD__MILTER_P_NOHELO = 0x2,
    DKD__MILTER_P_NOMAIL = 0x4,
    DKD__MILTER_P_NORCPT = 0x8,
    DKD__MILTER_P_NOBODY = 0x10,
    DKD__MILTER_P_NOHDRS = 0x20,
    DKD__MILTER_P_NOEOH = 0x40,
    DKD__MILTER_P_NR_HDR = 0x80,
    DKD__MILTER_P_NOUNKNOWN = 0x100,
    DKD__MILTER_P_NODATA = 0x200,
    DKD__MILTER_P_SKIP = 0x400,
    DKD__MILTER_P_RCPT_REJ = 0x800,
    DKD__MILTER_P_NR_CONN = 0x1000,
    DKD__MILTER_P_NR_HELO = 0x2000,
    DKD__MILTER_P_NR_MAIL = 0x4000,
    DKD__MILTER_P_NR_RCPT = 0x8000,
    DKD__MILTER_P_NR_DATA = 0x10000,
    DKD__MILTER_P_NR_UNKN = 0x20000,
    DKD__MILTER_P_NR_EOH = 0x40000,
    DKD__MILTER_P_NR_BODY = 0x80000,
    DKD__MILTER_P_HDR_LEADSPC = 0x100000,
};

/* Macro stages (SMFIM_*) of the lists a version 6 filter may ask for in its OPTNEG. */
enum {
    DKD__MILTER_M_CONNECT = 0,
    DKD__MILTER_M_HELO = 1,
    DKD__MILTER_M_ENVFROM = 2,
    DKD__MILTER_M_ENVRCPT = 3,
    DKD__MILTER_M_DATA = 4,
    DKD__MILTER_M_EOM = 5,
    DKD__MILTER_M_EOH = 6,
};

enum {
    DKD__MILTER_VERSION = 6,     /* the newest version we speak */
    DKD__MILTER_VERSION_MIN = 2, /* the oldest (libmilter's floor) */
    DKD__MILTER_CHUNK = 65535,   /* the largest BODY chunk an MTA sends (MILTER_CHUNK_SIZE) */
};

/* One packet: the command or reply byte and its data (borrowed). */
typedef struct dkd__milter_packet {
    uint8_t cmd;
    dkd_span data;
} dkd__milter_packet;

/* Framing results. */
enum {
    DKD__MILTER_ERR_EMPTY = -4401,    /* a length of 0: no command byte */
    DKD__MILTER_ERR_TOO_LONG = -4402, /* a length over the caller's limit */
};

/*
 * dkd__milter_frame looks for one whole packet at the front of p[0..n). Returns the
 * packet's size on the wire (4 + length) with *pkt filled, 0 when more bytes are needed
 * (*need = the whole packet's size once the length is known, else 0), or a negative
 * DKD__MILTER_ERR_* when the length is 0 or over max_len (which counts the command
 * byte and data, as the length field does).
 */
long dkd__milter_frame(const uint8_t *p, size_t n, size_t max_len, dkd__milter_packet *pkt,
                       size_t *need);

/* ---- decoding the MTA's commands ---- */

typedef struct dkd__milter_optneg {
    uint32_t version, actions, protocol;
} dkd__milter_optneg;

/* OPTNEG: three 32-bit words; anything after them (a version 6 filter's macro lists
 * in a reply) is ignored. */
bool dkd__milter_parse_optneg(dkd_span data, dkd__milter_optneg *out);

/*
 * dkd__milter_next_string takes one NUL-terminated string from the front of *rest into
 * *out (without the NUL). False, *rest unchanged, when no NUL is left.
 */
bool dkd__milter_next_string(dkd_span *rest, dkd_span *out);

/*
 * MACRO: *stage is the command code the macros go with ('C', 'H', 'M', 'R', 'T', 'N',
 * 'E', ...), *pairs the name/value strings that follow, for
 * dkd__milter_next_macro. False when data is empty.
 */
bool dkd__milter_parse_macro(dkd_span data, uint8_t *stage, dkd_span *pairs);
/* dkd__milter_next_macro takes the next name and value from *pairs; false at the end or
 * when a name has no value (the rest is then ignored). Names keep their braces as sent
 * ("{auth_authen}", "i"). */
bool dkd__milter_next_macro(dkd_span *pairs, dkd_span *name, dkd_span *value);

/* CONNECT: host name, family ('U' unknown, 'L' Unix, '4', '6'), port and address
 * (port 0 and an empty address for 'U', as Postfix sends). After 'U' the port and
 * address may also be present; after any other family (even one not listed) they must
 * be. Nothing may follow the address. */
typedef struct dkd__milter_connect {
    dkd_span host;
    uint8_t family;
    uint16_t port;
    dkd_span addr;
} dkd__milter_connect;
bool dkd__milter_parse_connect(dkd_span data, dkd__milter_connect *out);

/* HELO: one string, nothing after it. MAIL and RCPT: the address (first string) and the
 * ESMTP arguments (the strings after it, for dkd__milter_next_string); the data must
 * end in a NUL. */
bool dkd__milter_parse_helo(dkd_span data, dkd_span *helo);
bool dkd__milter_parse_envelope(dkd_span data, dkd_span *addr, dkd_span *args);

/* HEADER: the name and value strings. The value is as the MTA sent it: with the leading
 * space when HDR_LEADSPC was negotiated, folded lines joined by bare LF (Postfix) or
 * CRLF (Sendmail). */
bool dkd__milter_parse_header(dkd_span data, dkd_span *name, dkd_span *value);

/* ---- decoding the filter's replies (tests, tools) ---- */

/* INSHEADER, CHGHEADER: a 32-bit index, then name and value. ADDHEADER: name and
 * value, *index set to 0. False for any other reply, an empty name or bytes after the
 * value. */
bool dkd__milter_parse_modify(const dkd__milter_packet *pkt, uint32_t *index, dkd_span *name,
                              dkd_span *value);

/* REPLYCODE: the text, which must pass dkd__milter_put_replycode's test; nothing may
 * follow its NUL. */
bool dkd__milter_parse_replycode(dkd_span data, dkd_span *text);

/* ---- negotiation ---- */

/*
 * dkd__milter_negotiate answers the MTA's OPTNEG as libmilter does: the version is the
 * lower of the MTA's and ours (refused below DKD__MILTER_VERSION_MIN); the actions are
 * want_actions, all of which the MTA must offer; the protocol is what we want of what
 * the MTA offers (want_protocol & mta->protocol), with the bits that need version 6
 * (the NR_* no-reply flags, SKIP, HDR_LEADSPC, RCPT_REJ) dropped below version 6, and
 * NOUNKNOWN below 3 and NODATA below 4 (Postfix's per-version masks). On refusal
 * returns false, *reply untouched, and *why (a static string) says what the MTA lacks:
 * its version, or the lowest missing action by its SMFIF_ name.
 */
bool dkd__milter_negotiate(const dkd__milter_optneg *mta, uint32_t want_actions,
                           uint32_t want_protocol, dkd__milter_optneg *reply, const char **why);

/* ---- encoding ---- */

/* dkd__milter_put appends a packet of cmd and data bytes. A length over 4 GiB sets the
 * buffer's error. */
void dkd__milter_put(dkd__wbuf *b, uint8_t cmd, const void *data, size_t len);
/* Replies with no data: CONTINUE, ACCEPT, TEMPFAIL, REJECT, DISCARD, PROGRESS, SKIP. */
void dkd__milter_put_reply(dkd__wbuf *b, uint8_t reply);
void dkd__milter_put_optneg(dkd__wbuf *b, uint8_t cmd, const dkd__milter_optneg *o);
/* INSHEADER and CHGHEADER (index first), ADDHEADER (index ignored). A NUL inside name or
 * value sets the buffer's error (the peer would read it as the end), as do an empty
 * name and any other reply code. A CHGHEADER with an empty value deletes the field. */
void dkd__milter_put_modify(dkd__wbuf *b, uint8_t reply, uint32_t index, dkd_span name,
                            dkd_span value);
/* REPLYCODE: "451 4.7.1 text", which must start with a 4xx or 5xx code, then a space
 * (or '-' for a multi-line reply) and an enhanced status code of the same class, as
 * Postfix demands; anything else (or a NUL inside) sets the buffer's error. */
void dkd__milter_put_replycode(dkd__wbuf *b, dkd_span text);

/* The MTA's side, for tests and fuzzers: a packet of NUL-terminated strings (each span
 * written followed by a NUL), and the macro packet. A NUL inside a string sets the
 * buffer's error. put_connect writes Postfix's short form (nothing after the family)
 * for 'U' with port 0 and an empty address. */
void dkd__milter_put_strings(dkd__wbuf *b, uint8_t cmd, const dkd_span *strings, size_t n);
void dkd__milter_put_macro(dkd__wbuf *b, uint8_t stage, const dkd_span *names,
                           const dkd_span *values, size_t n);
void dkd__milter_put_connect(dkd__wbuf *b, const dkd__milter_connect *c);

#ifdef __cplusplus
}
#endif

#endif
