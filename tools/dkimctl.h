/*
 * dkimctl.h - subcommands of dkimctl and the helpers they share.
 */
#ifndef DKIMCTL_H
#define DKIMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>

/* Exit statuses shared by every subcommand. */
enum {
    DKIMCTL_OK = 0,      /* done (whatever the DKIM results) */
    DKIMCTL_FAILED = 1,  /* some input could not be processed */
    DKIMCTL_USAGE = 2,   /* bad command line */
};

int dkimctl_verify(int argc, char **argv);
int dkimctl_keygen(int argc, char **argv);
int dkimctl_sign(int argc, char **argv);
int dkimctl_check_record(int argc, char **argv);
int dkimctl_explain(int argc, char **argv);
int dkimctl_stats(int argc, char **argv);

/* read_file reads a whole file into a malloc'd buffer. NULL (errno set) on failure. */
uint8_t *read_file(const char *path, size_t *len);

/* dkimctl_read_stdin reads all of standard input like read_file. */
uint8_t *dkimctl_read_stdin(size_t *len);

/* dkimctl_parse_uint parses a decimal number (digits only) no greater than max. */
bool dkimctl_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

/* dkimctl_name_valid checks a domain or selector given on the command line: labels of
 * letters, digits, '-' and '_', separated by single dots, at most 253 bytes. */
bool dkimctl_name_valid(const char *s);

/* dkimctl_check_names checks the --domain and --selector every key subcommand takes:
 * both given and both valid names. false after printing why, prefixed with cmd. */
bool dkimctl_check_names(const char *cmd, const char *domain, const char *selector);

/*
 * Key source flags shared by the subcommands that look keys up (check-record, explain;
 * verify parses the same flags): --zone FILE, --resolver ADDR[@PORT] (repeatable),
 * --resolver-conf, --resolver-option 'NAME: VALUE' (repeatable), --dns-timeout MS.
 * Add DKIMCTL_KEYSRC_LONGOPTS to a getopt_long table and pass every option to
 * dkimctl_keysrc_option first.
 */
#define DKIMCTL_KEYSRC_LONGOPTS                                                              \
    {"zone", required_argument, NULL, 0x100}, {"resolver", required_argument, NULL, 0x101},  \
        {"resolver-conf", no_argument, NULL, 0x102},                                         \
        {"resolver-option", required_argument, NULL, 0x103},                                 \
        {"dns-timeout", required_argument, NULL, 0x104}

#define DKIMCTL_KEYSRC_HELP                                                                  \
    "  --zone FILE          answer key lookups from a DNS master file of TXT records\n"      \
    "                       (directives '; @nxdomain|@servfail|@timeout NAME' honoured)\n"   \
    "  --resolver ADDR[@PORT]  look keys up through this DNS server (repeatable)\n"         \
    "  --resolver-conf      look keys up through the servers in /etc/resolv.conf\n"         \
    "  --resolver-option 'NAME: VALUE'  a libunbound option (repeatable), e.g.\n"          \
    "                       'do-not-query-localhost: no' for a server on 127.0.0.1\n"      \
    "  --dns-timeout MS     give up on one DNS query after MS milliseconds (default 2000)\n" \
    "  (none of these: full recursion from the root hints, DNSSEC-validated when a trust\n"  \
    "   anchor is installed)\n"

typedef struct dkimctl_keysrc_opts {
    const char *zone_path;
    dkd_resolver_config rc;
    bool use_dns; /* --resolver or --resolver-conf given */
} dkimctl_keysrc_opts;

void dkimctl_keysrc_opts_init(dkimctl_keysrc_opts *o);

/* dkimctl_keysrc_option handles getopt code c: 1 when it was a key source flag, 0 when
 * not, -1 on a bad value (message printed, prefixed with cmd). */
int dkimctl_keysrc_option(dkimctl_keysrc_opts *o, const char *cmd, int c, const char *arg);

/* The opened source: the zone, or the resolver with its blocking key source. */
typedef struct dkimctl_keys {
    dkd_zone *zone;
    dkd_resolver *resolver;
    dkd_keysrc src;
} dkimctl_keys;

/* dkimctl_keys_open loads the zone or starts the resolver. false (message printed) on
 * failure or on conflicting flags. */
bool dkimctl_keys_open(const dkimctl_keysrc_opts *o, const char *cmd, dkimctl_keys *k);
void dkimctl_keys_close(dkimctl_keys *k);

/* json_string writes s (n bytes) as a JSON string. Invalid UTF-8 bytes are written as
 * \u00XX (their Latin-1 reading) so the output is always valid JSON. */
void json_string(FILE *out, const char *s, size_t n);
void json_cstring(FILE *out, const char *s);

struct dkd_sig_result;
/* json_sig_fields writes one verdict's fields ("d": ..., "s": ..., through key and l=
 * facts) without the surrounding braces, so verify and explain print them alike and
 * explain can add its own fields after them. */
void json_sig_fields(FILE *out, const struct dkd_sig_result *r);

#endif
