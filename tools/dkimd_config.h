/*
 * dkimd_config.h - dkimd's settings: the flags, the configuration file and the embedded
 * default, read into one dkimd_settings that the start-up in dkimd.c turns into the
 * engine, key source and server configurations. Internal to the dkimd executable.
 *
 * Called from the main thread only, at start-up and on SIGHUP.
 */
#ifndef DKIMD_CONFIG_H
#define DKIMD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <dkimd/resolver.h>

enum { DKIMD_MAX_LIST = 64 };

typedef struct dkimd_settings {
    char *socket_path;
    unsigned socket_mode;
    char *socket_owner, *socket_group;
    uid_t allow_uids[DKIMD_MAX_LIST];
    size_t n_uids;
    gid_t allow_gids[DKIMD_MAX_LIST];
    size_t n_gids;
    unsigned workers;
    char *zone;
    char *resolvers[DKD_RESOLVER_MAX_FORWARDERS];
    size_t n_resolvers;
    char *resolver_opts[DKD_RESOLVER_MAX_OPTIONS];
    size_t n_resolver_opts;
    bool resolv_conf;
    char *trust_anchor;
    unsigned dns_timeout, key_deadline;
    uint64_t cache_entries;
    bool have_cache_entries;
    uint64_t max_message, max_header, max_chunk, max_shm, memory_budget;
    unsigned max_inflight, max_connections, shutdown_timeout, stall_timeout;
    char *authserv_id;
    /* The milter front end (empty milter: none). */
    char *milter;
    bool milter_temperror_tempfail, milter_error_tempfail;
    char *internal_hosts; /* CIDR list, the values of every internal-hosts key joined */
    char *sign_daemons[DKIMD_MAX_LIST];
    size_t n_sign_daemons;
    char *sign_keys[DKIMD_MAX_LIST]; /* DOMAIN:SELECTOR:KEYFILE */
    size_t n_sign_keys;
    bool allow_sha1;
    unsigned min_rsa_bits, max_signatures;
    char *log_path;
    int log_level;
    const char *config_path; /* the --config file, NULL without one */
    char *config_text;       /* its text as read at start-up, owned */
} dkimd_settings;

/*
 * dkimd_settings_parse fills *s from the embedded default, then the --config file, then
 * the command line, so a flag always wins. It handles --help, --print-config and
 * --check-config itself. Returns -1 when the daemon should start (the caller then owns
 * *s and frees it with dkimd_settings_free), or the exit status to end with after the
 * problem or the requested text has been printed.
 */
int dkimd_settings_parse(dkimd_settings *s, int argc, char **argv);

/* dkimd_settings_reread_log_level re-reads log-level alone from the --config file
 * (SIGHUP). Returns true when s->log_level was read anew, false when there is no config
 * file or it could not be read or parsed (the problem is printed; s keeps its level). */
bool dkimd_settings_reread_log_level(dkimd_settings *s);

/* dkimd_settings_free frees what *s owns. */
void dkimd_settings_free(dkimd_settings *s);

/* dkimd_parse_u64 reads a decimal number of at most max; false if s is not one. */
bool dkimd_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* dkimd_parse_uid and dkimd_parse_gid read a number or a user (group) name. */
bool dkimd_parse_uid(const char *v, uid_t *out);
bool dkimd_parse_gid(const char *v, gid_t *out);

#endif
