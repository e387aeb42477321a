/*
 * dkimd_config.c - dkimd's configuration: the embedded default, the "key = value"
 * configuration file, the command-line flags (the same keys as long options, see
 * tools/dkimd.conf.example), --print-config and --check-config.
 *
 * Workload: once at start-up, and the log level again on each SIGHUP; a few dozen
 * lines. The embedded default is applied first, then the --config file, then the
 * command line, so a flag always wins; any problem is printed with where it was found
 * (file and line, or flag) and ends the start-up.
 */
#include "dkimd_config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>

#include "server.h"

static const char default_config[] =
    "# dkimd embedded defaults (dkimd --print-config shows them)\n"
    "socket = /run/dkimd/dkimd.sock\n"
    "socket-mode = 0660\n"
    "workers = 0\n"
    "max-message = 64m\n"
    "max-chunk = 1m\n"
    "max-shm = 1g\n"
    "max-inflight = 256\n"
    "max-connections = 4096\n"
    "memory-budget = 1g\n"
    "key-deadline = 5000\n"
    "dns-timeout = 2000\n"
    "shutdown-timeout = 10000\n"
    "stall-timeout = 30000\n"
    "authserv-id = localhost\n"
    "milter-on-temperror = accept\n"
    "milter-on-error = tempfail\n"
    "sign-daemon = ORIGINATING\n"
    "log = stderr\n"
    "log-level = info\n";

static const char usage_text[] =
    "usage: dkimd [OPTIONS]\n"
    "\n"
    "DKIM verification daemon: answers the dkimd protocol (ipc/PROTOCOL.md) on a Unix\n"
    "socket, and the milter protocol of Postfix and Sendmail (--milter). Every option\n"
    "is also a configuration-file key (key = value).\n"
    "\n"
    "  --config FILE            read this configuration file (flags override it)\n"
    "  --socket PATH            listening socket (default /run/dkimd/dkimd.sock; '' = none,\n"
    "                           with --milter); under systemd socket activation\n"
    "                           (LISTEN_FDS) the passed sockets are used instead\n"
    "  --milter SPEC            also serve the milter protocol: unix:/path (local:/path),\n"
    "                           inet:PORT@ADDR or inet:ADDR:PORT, inet6:PORT@ADDR\n"
    "  --milter-on-temperror accept|tempfail  a key lookup failed temporarily: deliver\n"
    "                           with dkim=temperror (default) or answer 451\n"
    "  --milter-on-error accept|tempfail  overload or internal failure (default tempfail)\n"
    "  --internal-hosts CIDR,.. mail from these clients is signed, not verified\n"
    "  --sign-daemon NAME,..    mail through these {daemon_name}s is signed (ORIGINATING)\n"
    "  --sign-key DOMAIN:SELECTOR:KEYFILE  key of a From domain (repeatable; the file\n"
    "                           must not be readable by others; re-read on SIGHUP)\n"
    "  --socket-mode OCTAL      socket file mode (default 0660)\n"
    "  --socket-owner USER      socket file owner     --socket-group GROUP  its group\n"
    "  --allow-uid UID|USER     only these peers may connect (repeatable; SO_PEERCRED)\n"
    "  --allow-gid GID|GROUP    ... or peers in these groups (repeatable)\n"
    "  --workers N              worker threads (default 0 = one per CPU)\n"
    "  --zone FILE              answer key lookups from a DNS master file (offline)\n"
    "  --resolver ADDR[@PORT]   forward key lookups to this DNS resolver (repeatable);\n"
    "                           without --zone or --resolver: full recursion\n"
    "  --resolv-conf            use the resolvers of /etc/resolv.conf (also --resolver-conf)\n"
    "  --resolver-option 'NAME: VALUE'  a libunbound option (repeatable)\n"
    "  --trust-anchor FILE      DNSSEC trust anchor ('' = no validation)\n"
    "  --dns-timeout MS         one DNS query (default 2000)\n"
    "  --key-deadline MS        all keys of one message, then dns-timeout (default 5000)\n"
    "  --cache-entries N        key cache size (default 100000)\n"
    "  --max-message SIZE       largest message (default 64m)\n"
    "  --max-header SIZE        largest header block (default 1m)\n"
    "  --max-chunk SIZE         largest streamed body chunk (default 1m)\n"
    "  --max-shm SIZE           largest shared memory region a client may attach\n"
    "                           (default 1g; 0 = messages over the socket only)\n"
    "  --max-inflight N         requests in flight per connection (default 256)\n"
    "  --max-connections N      connections in all (default 4096)\n"
    "  --memory-budget SIZE     buffers and requests in all (default 1g)\n"
    "  --shutdown-timeout MS    SIGTERM: longest wait for in-flight requests (10000)\n"
    "  --stall-timeout MS       close a client silent mid-frame or mid-stream (30000)\n"
    "  --authserv-id ID         authserv-id of Authentication-Results (default localhost)\n"
    "  --allow-sha1             verify rsa-sha1 instead of refusing it (RFC 8301)\n"
    "  --min-rsa-bits N         RSA keys shorter than N bits never pass (default 1024)\n"
    "  --max-signatures N       signatures evaluated per message (default 8)\n"
    "  --log FILE|stderr        log destination (reopened on SIGHUP)\n"
    "  --log-level LEVEL        err, warning, info or debug (re-read on SIGHUP)\n"
    "  --print-config           print the embedded default configuration and exit\n"
    "  --check-config           parse the configuration and flags, then exit (0 = valid)\n"
    "  -h, --help               this text\n"
    "\n"
    "signals: SIGTERM/SIGINT stop accepting, answer requests in flight and exit;\n"
    "SIGHUP reopens the log, reloads the zone file, the signing keys and the log level.\n"
    "Mail from an authenticated client ({auth_authen}), an internal host or a sign-daemon\n"
    "is signed with the sign-key of its From domain; all other mail is verified.\n";

bool dkimd_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0])) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* parse_size reads N, Nk, Nm or Ng (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0])) {
        return false;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'k' || *end == 'K') {
        shift = 10;
    } else if (*end == 'm' || *end == 'M') {
        shift = 20;
    } else if (*end == 'g' || *end == 'G') {
        shift = 30;
    }
    if (shift) {
        end++;
    }
    if (errno != 0 || *end != '\0' || v > (UINT64_MAX >> shift)) {
        return false;
    }
    *out = (uint64_t)v << shift;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "")) {
        *out = true;
    } else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0")) {
        *out = false;
    } else {
        return false;
    }
    return true;
}

static int parse_level(const char *s)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"err", DKD__LOG_ERR},     {"error", DKD__LOG_ERR},
                  {"warning", DKD__LOG_WARNING}, {"info", DKD__LOG_INFO},
                  {"debug", DKD__LOG_DEBUG}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (!strcmp(s, levels[i].name)) {
            return levels[i].level;
        }
    }
    return -1;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    if (*dst == NULL) {
        abort();
    }
}

bool dkimd_parse_uid(const char *v, uid_t *out)
{
    uint64_t n;
    if (dkimd_parse_u64(v, UINT32_MAX - 1, &n)) {
        *out = (uid_t)n;
        return true;
    }
    struct passwd *pw = getpwnam(v);
    if (pw == NULL) {
        return false;
    }
    *out = pw->pw_uid;
    return true;
}

bool dkimd_parse_gid(const char *v, gid_t *out)
{
    uint64_t n;
    if (dkimd_parse_u64(v, UINT32_MAX - 1, &n)) {
        *out = (gid_t)n;
        return true;
    }
    struct group *gr = getgrnam(v);
    if (gr == NULL) {
        return false;
    }
    *out = gr->gr_gid;
    return true;
}

/* apply sets one key. Returns NULL or a message saying what is wrong. */
static const char *apply(dkimd_settings *s, const char *key, const char *v)
{
    uint64_t n;
    bool b;
#define KEY(k) (!strcmp(key, k))
#define NUM(field, max)                                                                     \
    do {                                                                                    \
        if (!dkimd_parse_u64(v, (max), &n)) {                                                     \
            return "wants a number";                                                        \
        }                                                                                   \
        s->field = (unsigned)n;                                                             \
    } while (0)
#define SIZE(field)                                                                         \
    do {                                                                                    \
        if (!parse_size(v, &n) || n == 0) {                                                 \
            return "wants a size (N, Nk, Nm or Ng)";                                        \
        }                                                                                   \
        s->field = n;                                                                       \
    } while (0)
    if (KEY("socket")) {
        set_str(&s->socket_path, v);
    } else if (KEY("socket-mode")) {
        char *end;
        errno = 0;
        unsigned long m = strtoul(v, &end, 8);
        if (errno || *end || end == v || m > 07777) {
            return "wants an octal mode such as 0660";
        }
        s->socket_mode = (unsigned)m;
    } else if (KEY("socket-owner")) {
        set_str(&s->socket_owner, v);
    } else if (KEY("socket-group")) {
        set_str(&s->socket_group, v);
    } else if (KEY("allow-uid")) {
        if (s->n_uids == DKIMD_MAX_LIST || !dkimd_parse_uid(v, &s->allow_uids[s->n_uids])) {
            return "wants a known user or uid (at most 64)";
        }
        s->n_uids++;
    } else if (KEY("allow-gid")) {
        if (s->n_gids == DKIMD_MAX_LIST || !dkimd_parse_gid(v, &s->allow_gids[s->n_gids])) {
            return "wants a known group or gid (at most 64)";
        }
        s->n_gids++;
    } else if (KEY("workers")) {
        NUM(workers, 1024);
    } else if (KEY("zone")) {
        set_str(&s->zone, v);
    } else if (KEY("resolver")) {
        if (s->n_resolvers == DKD_RESOLVER_MAX_FORWARDERS) {
            return "at most 16 resolvers";
        }
        s->resolvers[s->n_resolvers] = NULL;
        set_str(&s->resolvers[s->n_resolvers++], v);
    } else if (KEY("resolver-option")) {
        if (s->n_resolver_opts == DKD_RESOLVER_MAX_OPTIONS) {
            return "at most 64 resolver options";
        }
        s->resolver_opts[s->n_resolver_opts] = NULL;
        set_str(&s->resolver_opts[s->n_resolver_opts++], v);
    } else if (KEY("resolv-conf") || KEY("resolver-conf")) { /* dkimctl spells it so */
        if (!parse_bool(v, &b)) {
            return "wants yes or no";
        }
        s->resolv_conf = b;
    } else if (KEY("trust-anchor")) {
        set_str(&s->trust_anchor, v);
    } else if (KEY("dns-timeout")) {
        NUM(dns_timeout, 600000);
    } else if (KEY("key-deadline")) {
        NUM(key_deadline, 600000);
    } else if (KEY("cache-entries")) {
        if (!dkimd_parse_u64(v, UINT32_MAX, &n)) {
            return "wants a number";
        }
        s->cache_entries = n;
        s->have_cache_entries = true;
    } else if (KEY("max-message")) {
        SIZE(max_message);
    } else if (KEY("max-header")) {
        SIZE(max_header);
        if (n > (1u << 30)) {
            return "at most 1g";
        }
    } else if (KEY("max-chunk")) {
        SIZE(max_chunk);
        if (n > (1u << 30)) {
            return "at most 1g";
        }
    } else if (KEY("max-shm")) {
        if (!parse_size(v, &n)) {
            return "wants a size (N, Nk, Nm or Ng; 0 = off)";
        }
        s->max_shm = n;
    } else if (KEY("memory-budget")) {
        SIZE(memory_budget);
    } else if (KEY("max-inflight")) {
        NUM(max_inflight, 65536);
    } else if (KEY("max-connections")) {
        NUM(max_connections, 1u << 24);
    } else if (KEY("shutdown-timeout")) {
        NUM(shutdown_timeout, 3600000);
    } else if (KEY("stall-timeout")) {
        NUM(stall_timeout, 3600000);
    } else if (KEY("authserv-id")) {
        if (*v == '\0' || strlen(v) > 255) {
            return "wants 1..255 characters";
        }
        for (const char *p = v; *p; p++) {
            if (*p <= 0x20 || *p >= 0x7f) {
                return "wants printable ASCII without spaces";
            }
        }
        set_str(&s->authserv_id, v);
    } else if (KEY("milter")) {
        if (*v != '\0' && strncmp(v, "unix:", 5) != 0 && strncmp(v, "local:", 6) != 0 &&
            strncmp(v, "inet:", 5) != 0 && strncmp(v, "inet6:", 6) != 0) {
            return "wants unix:/path, inet:PORT@ADDR or inet6:PORT@ADDR";
        }
        set_str(&s->milter, v);
    } else if (KEY("milter-on-temperror") || KEY("milter-on-error")) {
        if (strcmp(v, "accept") != 0 && strcmp(v, "tempfail") != 0) {
            return "wants accept or tempfail";
        }
        *(KEY("milter-on-error") ? &s->milter_error_tempfail : &s->milter_temperror_tempfail) =
            !strcmp(v, "tempfail");
    } else if (KEY("internal-hosts")) {
        /* Repeated keys add to the list, as a long list is easier read over lines. */
        size_t old = s->internal_hosts ? strlen(s->internal_hosts) : 0;
        char *j = realloc(s->internal_hosts, old + strlen(v) + 2);
        if (j == NULL) {
            abort();
        }
        snprintf(j + old, strlen(v) + 2, "%s%s", old ? "," : "", v);
        s->internal_hosts = j;
    } else if (KEY("sign-daemon")) {
        /* The list is replaced, not added to: naming a service drops the default. */
        for (size_t i = 0; i < s->n_sign_daemons; i++) {
            free(s->sign_daemons[i]);
        }
        s->n_sign_daemons = 0;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", v);
        for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            if (s->n_sign_daemons == DKIMD_MAX_LIST) {
                return "at most 64 names";
            }
            s->sign_daemons[s->n_sign_daemons] = NULL;
            set_str(&s->sign_daemons[s->n_sign_daemons++], t);
        }
    } else if (KEY("sign-key")) {
        if (s->n_sign_keys == DKIMD_MAX_LIST) {
            return "at most 64 signing keys";
        }
        if (strchr(v, ':') == NULL || strchr(strchr(v, ':') + 1, ':') == NULL) {
            return "wants DOMAIN:SELECTOR:KEYFILE";
        }
        s->sign_keys[s->n_sign_keys] = NULL;
        set_str(&s->sign_keys[s->n_sign_keys++], v);
    } else if (KEY("allow-sha1")) {
        if (!parse_bool(v, &b)) {
            return "wants yes or no";
        }
        s->allow_sha1 = b;
    } else if (KEY("min-rsa-bits")) {
        NUM(min_rsa_bits, 16384);
    } else if (KEY("max-signatures")) {
        NUM(max_signatures, 1024);
    } else if (KEY("log")) {
        set_str(&s->log_path, v);
    } else if (KEY("log-level")) {
        int l = parse_level(v);
        if (l < 0) {
            return "wants err, warning, info or debug";
        }
        s->log_level = l;
    } else {
        return "unknown key";
    }
    return NULL;
#undef KEY
#undef NUM
#undef SIZE
}

/*
 * apply_text applies "key = value" lines. only_key, when not NULL, restricts it to that
 * key (SIGHUP re-reads the log level alone). Returns false after printing the problem.
 */
static bool apply_text(dkimd_settings *s, const char *text, const char *origin,
                       const char *only_key)
{
    unsigned lineno = 0;
    const char *p = text;
    while (*p) {
        lineno++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[4096];
        if (len >= sizeof line) {
            fprintf(stderr, "dkimd: %s:%u: line too long\n", origin, lineno);
            return false;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (eol ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *k = line;
        while (isspace((unsigned char)*k)) {
            k++;
        }
        if (*k == '\0') {
            continue;
        }
        char *eq = strchr(k, '=');
        if (eq == NULL) {
            fprintf(stderr, "dkimd: %s:%u: expected 'key = value'\n", origin, lineno);
            return false;
        }
        char *ke = eq;
        while (ke > k && isspace((unsigned char)ke[-1])) {
            ke--;
        }
        *ke = '\0';
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) {
            v++;
        }
        char *ve = v + strlen(v);
        while (ve > v && isspace((unsigned char)ve[-1])) {
            ve--;
        }
        *ve = '\0';
        if (only_key != NULL && strcmp(k, only_key) != 0) {
            continue;
        }
        const char *why = apply(s, k, v);
        if (why != NULL) {
            fprintf(stderr, "dkimd: %s:%u: %s: %s\n", origin, lineno, k, why);
            return false;
        }
    }
    return true;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t r = fread(buf + len, 1, cap - len - 1, fp);
        len += r;
        if (r == 0) {
            break;
        }
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(fp) ? EIO : 0;
    fclose(fp);
    if (buf == NULL || err) {
        free(buf);
        errno = err ? err : ENOMEM;
        return NULL;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        errno = EINVAL;
        return NULL;
    }
    return buf;
}

int dkimd_settings_parse(dkimd_settings *s, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 0},
        {"socket", required_argument, NULL, 0},
        {"socket-mode", required_argument, NULL, 0},
        {"socket-owner", required_argument, NULL, 0},
        {"socket-group", required_argument, NULL, 0},
        {"allow-uid", required_argument, NULL, 0},
        {"allow-gid", required_argument, NULL, 0},
        {"workers", required_argument, NULL, 0},
        {"zone", required_argument, NULL, 0},
        {"resolver", required_argument, NULL, 0},
        {"resolv-conf", optional_argument, NULL, 0},
        {"resolver-conf", optional_argument, NULL, 0},
        {"resolver-option", required_argument, NULL, 0},
        {"trust-anchor", required_argument, NULL, 0},
        {"dns-timeout", required_argument, NULL, 0},
        {"key-deadline", required_argument, NULL, 0},
        {"cache-entries", required_argument, NULL, 0},
        {"max-message", required_argument, NULL, 0},
        {"max-header", required_argument, NULL, 0},
        {"max-chunk", required_argument, NULL, 0},
        {"max-shm", required_argument, NULL, 0},
        {"max-inflight", required_argument, NULL, 0},
        {"max-connections", required_argument, NULL, 0},
        {"memory-budget", required_argument, NULL, 0},
        {"shutdown-timeout", required_argument, NULL, 0},
        {"stall-timeout", required_argument, NULL, 0},
        {"authserv-id", required_argument, NULL, 0},
        {"milter", required_argument, NULL, 0},
        {"milter-on-temperror", required_argument, NULL, 0},
        {"milter-on-error", required_argument, NULL, 0},
        {"internal-hosts", required_argument, NULL, 0},
        {"sign-daemon", required_argument, NULL, 0},
        {"sign-key", required_argument, NULL, 0},
        {"allow-sha1", optional_argument, NULL, 0},
        {"min-rsa-bits", required_argument, NULL, 0},
        {"max-signatures", required_argument, NULL, 0},
        {"log", required_argument, NULL, 0},
        {"log-level", required_argument, NULL, 0},
        {"print-config", no_argument, NULL, 0},
        {"check-config", no_argument, NULL, 0},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *s = (dkimd_settings){.log_level = DKD__LOG_INFO};
    dkd_config ecfg;
    dkd_config_init(&ecfg);
    s->max_header = ecfg.max_header_bytes;
    s->min_rsa_bits = ecfg.min_rsa_bits;
    s->max_signatures = ecfg.max_signatures;
    if (!apply_text(s, default_config, "(embedded defaults)", NULL)) {
        return 1;
    }
    /* Pass 1: --config, --help and --print-config, so the file applies before flags. */
    bool check_only = false;
    int c, idx;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            return 0;
        }
        if (c == 0 && !strcmp(longopts[idx].name, "config")) {
            s->config_path = optarg;
        } else if (c == 0 && !strcmp(longopts[idx].name, "check-config")) {
            check_only = true;
        } else if (c == 0 && !strcmp(longopts[idx].name, "print-config")) {
            fputs(default_config, stdout);
            return 0;
        } else if (c == '?') {
            fprintf(stderr, "dkimd: bad option %s; see dkimd --help\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dkimd: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (s->config_path != NULL) {
        s->config_text = slurp(s->config_path);
        if (s->config_text == NULL) {
            fprintf(stderr, "dkimd: %s: %s\n", s->config_path, strerror(errno));
            return 1;
        }
        if (!apply_text(s, s->config_text, s->config_path, NULL)) {
            return 1;
        }
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        const char *name = longopts[idx].name;
        if (!strcmp(name, "config") || !strcmp(name, "print-config") ||
            !strcmp(name, "check-config")) {
            continue;
        }
        const char *why = apply(s, name, optarg != NULL ? optarg : "yes");
        if (why != NULL) {
            fprintf(stderr, "dkimd: --%s: %s\n", name, why);
            return 2;
        }
    }
    if (s->zone != NULL && (s->n_resolvers > 0 || s->resolv_conf)) {
        fprintf(stderr, "dkimd: give either a zone or resolvers, not both\n");
        return 2;
    }
    if ((s->socket_path == NULL || s->socket_path[0] == '\0') &&
        (s->milter == NULL || s->milter[0] == '\0')) {
        fprintf(stderr, "dkimd: nothing to listen on: give a socket or a milter\n");
        return 2;
    }
    if (check_only) {
        printf("configuration ok\n");
        dkimd_settings_free(s);
        return 0;
    }
    return -1;
}

bool dkimd_settings_reread_log_level(dkimd_settings *s)
{
    if (s->config_text == NULL) {
        return false;
    }
    char *t = slurp(s->config_path);
    bool ok = t != NULL && apply_text(s, t, s->config_path, "log-level");
    free(t);
    return ok;
}

void dkimd_settings_free(dkimd_settings *s)
{
    free(s->socket_path);
    free(s->socket_owner);
    free(s->socket_group);
    free(s->zone);
    for (size_t i = 0; i < s->n_resolvers; i++) {
        free(s->resolvers[i]);
    }
    for (size_t i = 0; i < s->n_resolver_opts; i++) {
        free(s->resolver_opts[i]);
    }
    free(s->trust_anchor);
    free(s->authserv_id);
    free(s->milter);
    free(s->internal_hosts);
    for (size_t i = 0; i < s->n_sign_daemons; i++) {
        free(s->sign_daemons[i]);
    }
    for (size_t i = 0; i < s->n_sign_keys; i++) {
        free(s->sign_keys[i]);
    }
    free(s->log_path);
    free(s->config_text);
}
