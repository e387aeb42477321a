/*
 * dkimd.c - the DKIM verification daemon: configuration, the listening socket, the key
 * source (zone file or DNS resolver), logging and signals around the io_uring worker
 * pool of ipc/server.c.
 *
 * The main thread does no request work: it sets everything up, starts the workers and
 * then waits on a signalfd (blocking here is fine: it is not a worker). SIGTERM/SIGINT
 * stop the server gracefully; SIGHUP reopens the log file, re-reads the log level from
 * the configuration file and reloads the zone file.
 *
 * Configuration: one format, "key = value" lines ('#' comments), the same keys as the
 * long options (see tools/dkimd.conf.example). An embedded default is applied first,
 * then the --config file, then the command line, so a flag always wins.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <dkimd/engine.h>
#include <dkimd/resolver.h>

#include "server.h"

/*
 * jemalloc options, read by jemalloc at start-up (ignored in sanitizer builds, which use
 * the system allocator):
 *   background_thread:true  purge unused dirty pages on jemalloc's own thread, so the
 *                           workers never pay for madvise on the request path;
 *   dirty_decay_ms:5000     keep freed pages 5 s for reuse: a burst of large streamed
 *                           messages reuses them instead of faulting in new ones, and
 *                           the RSS still falls back when the burst is over.
 */
const char *malloc_conf = "background_thread:true,dirty_decay_ms:5000";

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
    "log = stderr\n"
    "log-level = info\n";

static const char usage_text[] =
    "usage: dkimd [OPTIONS]\n"
    "\n"
    "DKIM verification daemon: answers the dkimd protocol (ipc/PROTOCOL.md) on a Unix\n"
    "socket. Every option is also a configuration-file key (key = value).\n"
    "\n"
    "  --config FILE            read this configuration file (flags override it)\n"
    "  --socket PATH            listening socket (default /run/dkimd/dkimd.sock); ignored\n"
    "                           under systemd socket activation (LISTEN_FDS)\n"
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
    "SIGHUP reopens the log, reloads the zone file and the log level.\n";

enum { MAX_LIST = 64 };

typedef struct settings {
    char *socket_path;
    unsigned socket_mode;
    char *socket_owner, *socket_group;
    uid_t allow_uids[MAX_LIST];
    size_t n_uids;
    gid_t allow_gids[MAX_LIST];
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
    bool allow_sha1;
    unsigned min_rsa_bits, max_signatures;
    char *log_path;
    int log_level;
} settings;

/* ---- logging: one FILE, reopened on SIGHUP, lines serialised by a mutex ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_fp;
static const char *log_path;

static void log_line(void *arg, int level, const char *line)
{
    (void)arg;
    static const char *const names[] = {"emerg", "alert", "crit", "err",
                                        "warning", "notice", "info", "debug"};
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* Lines are rare (rate-limited problems, start and stop): a mutex and a blocking
     * write on a local file cost nothing measurable. */
    pthread_mutex_lock(&log_mu);
    FILE *fp = log_fp != NULL ? log_fp : stderr;
    fprintf(fp, "%s dkimd[%ld] %s: %s\n", ts, (long)getpid(),
            level >= 0 && level <= 7 ? names[level] : "?", line);
    fflush(fp);
    pthread_mutex_unlock(&log_mu);
}

static void logf_(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(int level, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_line(NULL, level, line);
}

static int log_open(const char *path)
{
    FILE *fp = NULL;
    if (path != NULL && strcmp(path, "stderr") != 0) {
        fp = fopen(path, "ae");
        if (fp == NULL) {
            return -errno;
        }
    }
    pthread_mutex_lock(&log_mu);
    FILE *old = log_fp;
    log_fp = fp;
    log_path = path;
    pthread_mutex_unlock(&log_mu);
    if (old != NULL) {
        fclose(old);
    }
    return 0;
}

/* ---- configuration ---- */

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
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

static bool parse_uid(const char *v, uid_t *out)
{
    uint64_t n;
    if (parse_u64(v, UINT32_MAX - 1, &n)) {
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

static bool parse_gid(const char *v, gid_t *out)
{
    uint64_t n;
    if (parse_u64(v, UINT32_MAX - 1, &n)) {
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
static const char *apply(settings *s, const char *key, const char *v)
{
    uint64_t n;
    bool b;
#define KEY(k) (!strcmp(key, k))
#define NUM(field, max)                                                                     \
    do {                                                                                    \
        if (!parse_u64(v, (max), &n)) {                                                     \
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
        if (s->n_uids == MAX_LIST || !parse_uid(v, &s->allow_uids[s->n_uids])) {
            return "wants a known user or uid (at most 64)";
        }
        s->n_uids++;
    } else if (KEY("allow-gid")) {
        if (s->n_gids == MAX_LIST || !parse_gid(v, &s->allow_gids[s->n_gids])) {
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
        if (!parse_u64(v, UINT32_MAX, &n)) {
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
static bool apply_text(settings *s, const char *text, const char *origin, const char *only_key)
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

/* ---- the zone key source, reloadable on SIGHUP ---- */

/*
 * Lookups read the zone under a read lock; SIGHUP swaps in a new zone under the write
 * lock. Zone lookups are in-memory and short (no I/O under the lock), and the write
 * lock is taken once per reload, so readers practically never wait.
 */
typedef struct zone_holder {
    pthread_rwlock_t lock;
    dkd_zone *zone;
    dkd_keysrc src;
    const char *path;
} zone_holder;

static int zone_lookup(void *impl, const char *qname, dkd_key_done_fn done, void *done_arg)
{
    zone_holder *zh = impl;
    pthread_rwlock_rdlock(&zh->lock);
    int rc = zh->src.lookup(zh->src.impl, qname, done, done_arg);
    pthread_rwlock_unlock(&zh->lock);
    return rc;
}

static bool zone_reload(zone_holder *zh)
{
    char err[512];
    dkd_zone *z = dkd_zone_load(zh->path, err, sizeof err);
    if (z == NULL) {
        logf_(DKD__LOG_ERR, "zone reload failed, keeping the old zone: %s", err);
        return false;
    }
    pthread_rwlock_wrlock(&zh->lock);
    dkd_zone *old = zh->zone;
    zh->zone = z;
    zh->src = dkd_zone_keysrc(z);
    pthread_rwlock_unlock(&zh->lock);
    dkd_zone_free(old);
    return true;
}

static void resolver_stats(void *arg, void (*add)(void *ctx, const char *name, uint64_t v),
                           void *ctx)
{
    struct dkd_resolver_stats st;
    dkd_resolver_stats(arg, &st);
    add(ctx, "keycache.hits", st.hits);
    add(ctx, "keycache.misses", st.misses);
    add(ctx, "keycache.coalesced", st.coalesced);
    add(ctx, "keycache.entries", st.entries);
    add(ctx, "keycache.evictions", st.evictions);
    add(ctx, "keycache.expiries", st.expiries);
    add(ctx, "keycache.stale_served", st.stale_served);
    add(ctx, "dns.queries", st.queries);
    add(ctx, "dns.notfound", st.err_notfound);
    add(ctx, "dns.servfail", st.err_servfail);
    add(ctx, "dns.timeout", st.err_timeout);
    add(ctx, "dns.bogus", st.err_bogus);
    add(ctx, "dns.bad_record", st.err_syntax);
}

/* ---- the socket ---- */

/* systemd_fd returns the socket passed by systemd socket activation, or -1. */
static int systemd_fd(void)
{
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    uint64_t p, n;
    if (pid == NULL || fds == NULL || !parse_u64(pid, INT32_MAX, &p) ||
        !parse_u64(fds, 64, &n) || (pid_t)p != getpid() || n < 1) {
        return -1;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    /* SD_LISTEN_FDS_START is 3; a second socket would be a configuration mistake. */
    int fd = 3;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) {
        return -2;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static int make_socket(const settings *s)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(s->socket_path) >= sizeof sa.sun_path) {
        fprintf(stderr, "dkimd: socket path too long: %s\n", s->socket_path);
        return -1;
    }
    strcpy(sa.sun_path, s->socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "dkimd: socket: %s\n", strerror(errno));
        return -1;
    }
    /* A stale socket file from a previous run is replaced, but a live daemon is not:
     * connecting tells the two apart. */
    struct stat st;
    if (lstat(s->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "dkimd: %s exists and is not a socket\n", s->socket_path);
            close(fd);
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            fprintf(stderr, "dkimd: another daemon is listening on %s\n", s->socket_path);
            close(fd);
            return -1;
        }
        unlink(s->socket_path);
        close(fd);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fprintf(stderr, "dkimd: socket: %s\n", strerror(errno));
            return -1;
        }
    }
    /* The default /run/dkimd/ lives on a tmpfs emptied at boot: create it (one level)
     * when missing, as systemd's RuntimeDirectory= would. */
    char dir[sizeof sa.sun_path];
    snprintf(dir, sizeof dir, "%s", s->socket_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "dkimd: cannot create %s: %s\n", dir, strerror(errno));
        }
    }
    /* Bind under a umask that leaves the socket closed until its mode is set. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0) {
        fprintf(stderr, "dkimd: bind %s: %s\n", s->socket_path, strerror(errno));
        close(fd);
        return -1;
    }
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    if (s->socket_owner != NULL && !parse_uid(s->socket_owner, &uid)) {
        fprintf(stderr, "dkimd: unknown socket owner %s\n", s->socket_owner);
        goto fail;
    }
    if (s->socket_group != NULL && !parse_gid(s->socket_group, &gid)) {
        fprintf(stderr, "dkimd: unknown socket group %s\n", s->socket_group);
        goto fail;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(s->socket_path, uid, gid) != 0) {
        fprintf(stderr, "dkimd: chown %s: %s\n", s->socket_path, strerror(errno));
        goto fail;
    }
    if (chmod(s->socket_path, s->socket_mode) != 0) {
        fprintf(stderr, "dkimd: chmod %s: %s\n", s->socket_path, strerror(errno));
        goto fail;
    }
    /* A deep backlog: an MTA restart opens hundreds of connections at once. */
    if (listen(fd, 4096) != 0) {
        fprintf(stderr, "dkimd: listen: %s\n", strerror(errno));
        goto fail;
    }
    return fd;
fail:
    unlink(s->socket_path);
    close(fd);
    return -1;
}

/* ---- main ---- */

static void settings_free(settings *s)
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
    free(s->log_path);
}

int main(int argc, char **argv)
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
    settings s = {.log_level = DKD__LOG_INFO};
    dkd_config ecfg;
    dkd_config_init(&ecfg);
    s.max_header = ecfg.max_header_bytes;
    s.min_rsa_bits = ecfg.min_rsa_bits;
    s.max_signatures = ecfg.max_signatures;
    if (!apply_text(&s, default_config, "(embedded defaults)", NULL)) {
        return 1;
    }
    /* Pass 1: --config, --help and --print-config, so the file applies before flags. */
    const char *config_path = NULL;
    bool check_only = false;
    int c, idx;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        if (c == 'h') {
            fputs(usage_text, stdout);
            return 0;
        }
        if (c == 0 && !strcmp(longopts[idx].name, "config")) {
            config_path = optarg;
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
    char *config_text = NULL;
    if (config_path != NULL) {
        config_text = slurp(config_path);
        if (config_text == NULL) {
            fprintf(stderr, "dkimd: %s: %s\n", config_path, strerror(errno));
            return 1;
        }
        if (!apply_text(&s, config_text, config_path, NULL)) {
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
        const char *why = apply(&s, name, optarg != NULL ? optarg : "yes");
        if (why != NULL) {
            fprintf(stderr, "dkimd: --%s: %s\n", name, why);
            return 2;
        }
    }
    if (s.zone != NULL && (s.n_resolvers > 0 || s.resolv_conf)) {
        fprintf(stderr, "dkimd: give either a zone or resolvers, not both\n");
        return 2;
    }
    if (check_only) {
        printf("configuration ok\n");
        free(config_text);
        settings_free(&s);
        return 0;
    }
    if (log_open(s.log_path) != 0) {
        fprintf(stderr, "dkimd: cannot open log %s: %s\n", s.log_path, strerror(errno));
        return 1;
    }

    /* Signals: blocked in every thread (the workers inherit the mask) and read here. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "dkimd: signalfd: %s\n", strerror(errno));
        return 1;
    }

    /* The engine: per-request verification time comes through the server's clock. */
    ecfg.max_header_bytes = (size_t)s.max_header;
    ecfg.allow_sha1 = s.allow_sha1;
    ecfg.min_rsa_bits = s.min_rsa_bits;
    ecfg.max_signatures = s.max_signatures;
    dkd_engine *eng = dkd_engine_new(&ecfg);

    char err[512];
    zone_holder zh = {.path = s.zone};
    dkd_resolver *res = NULL;
    dkd_keysrc src;
    unsigned deadline = s.key_deadline;
    if (s.zone != NULL) {
        pthread_rwlock_init(&zh.lock, NULL);
        zh.zone = dkd_zone_load(s.zone, err, sizeof err);
        if (zh.zone == NULL) {
            fprintf(stderr, "dkimd: %s\n", err);
            return 1;
        }
        zh.src = dkd_zone_keysrc(zh.zone);
        src = (dkd_keysrc){zone_lookup, &zh};
    } else {
        dkd_resolver_config rc;
        dkd_resolver_config_init(&rc);
        if (s.n_resolvers > 0) {
            rc.mode = DKD_RESOLVER_FORWARD;
            for (size_t i = 0; i < s.n_resolvers; i++) {
                rc.forwarders[rc.nforwarders++] = s.resolvers[i];
            }
        } else if (s.resolv_conf) {
            rc.mode = DKD_RESOLVER_RESOLV_CONF;
        }
        for (size_t i = 0; i < s.n_resolver_opts; i++) {
            rc.options[rc.noptions++] = s.resolver_opts[i];
        }
        rc.trust_anchor = s.trust_anchor;
        rc.query_timeout_ms = s.dns_timeout;
        rc.message_deadline_ms = s.key_deadline;
        if (s.have_cache_entries) {
            rc.cache_entries = (size_t)s.cache_entries;
        }
        res = dkd_resolver_new(&rc, err, sizeof err);
        if (res == NULL) {
            fprintf(stderr, "dkimd: resolver: %s\n", err);
            return 1;
        }
        src = dkd_resolver_keysrc(res);
        deadline = dkd_resolver_message_deadline_ms(res);
    }

    int lfd = systemd_fd();
    bool own_path = false;
    if (lfd == -2) {
        fprintf(stderr, "dkimd: LISTEN_FDS: fd 3 is not a stream socket\n");
        return 1;
    }
    if (lfd < 0) {
        lfd = make_socket(&s);
        if (lfd < 0) {
            return 1;
        }
        own_path = true;
    }

    dkd__server_config sc;
    dkd__server_config_init(&sc);
    sc.listen_fd = lfd;
    sc.workers = s.workers;
    sc.max_message_bytes = s.max_message;
    sc.max_header_bytes = (size_t)s.max_header;
    sc.max_body_chunk = (size_t)s.max_chunk;
    sc.max_shm_bytes = s.max_shm;
    sc.max_inflight = s.max_inflight;
    sc.max_connections = s.max_connections;
    sc.memory_budget = s.memory_budget;
    sc.key_timeout_ms = deadline;
    sc.shutdown_timeout_ms = s.shutdown_timeout;
    sc.stall_timeout_ms = s.stall_timeout;
    sc.authserv_id = s.authserv_id;
    sc.allow_uids = s.allow_uids;
    sc.n_allow_uids = s.n_uids;
    sc.allow_gids = s.allow_gids;
    sc.n_allow_gids = s.n_gids;
    sc.log = log_line;
    sc.log_level = s.log_level;
    if (res != NULL) {
        sc.extra_stats = resolver_stats;
        sc.extra_stats_arg = res;
    }
    dkd__server *srv = dkd__server_new(&sc, eng, src, err, sizeof err);
    if (srv == NULL || dkd__server_start(srv) != 0) {
        fprintf(stderr, "dkimd: %s\n", srv == NULL ? err : "cannot start the workers");
        if (own_path) {
            unlink(s.socket_path);
        }
        return 1;
    }
    logf_(DKD__LOG_INFO, "listening on %s (%s), keys from %s",
          own_path ? s.socket_path : "fd 3", own_path ? "own socket" : "socket activation",
          s.zone != NULL ? s.zone : (s.n_resolvers > 0 ? "forwarders" : "DNS"));

    for (;;) {
        struct signalfd_siginfo si;
        ssize_t r = read(sfd, &si, sizeof si);
        if (r != (ssize_t)sizeof si) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            logf_(DKD__LOG_ERR, "signalfd read failed: %s", strerror(errno));
            break;
        }
        if (si.ssi_signo == SIGHUP) {
            /* Reload first, reopen the log last: whoever watches for the new log file
             * (logrotate's postrotate, a test) then knows the reload is complete. */
            if (config_text != NULL) {
                char *t = slurp(config_path);
                if (t != NULL && apply_text(&s, t, config_path, "log-level")) {
                    dkd__server_set_log_level(srv, s.log_level);
                }
                free(t);
            }
            bool reloaded = s.zone != NULL && zone_reload(&zh);
            if (log_open(log_path) != 0) {
                logf_(DKD__LOG_ERR, "cannot reopen log %s", log_path);
            }
            if (reloaded) {
                logf_(DKD__LOG_INFO, "SIGHUP: zone %s reloaded", s.zone);
            } else {
                logf_(DKD__LOG_INFO, "SIGHUP: log reopened");
            }
            continue;
        }
        logf_(DKD__LOG_INFO, "signal %u: stopping; answering requests in flight",
              si.ssi_signo);
        break;
    }
    dkd__server_stop(srv);
    dkd__server_join(srv);
    dkd__server_stats st;
    dkd__server_stats_get(srv, &st);
    /* The resolver completes its pending lookups (posting to the workers' stacks, which
     * dkd__server_free drains) before the server goes. */
    dkd_resolver_free(res);
    dkd__server_free(srv);
    if (own_path) {
        unlink(s.socket_path);
    }
    close(lfd);
    close(sfd);
    logf_(DKD__LOG_INFO, "stopped after %llu requests answered",
          (unsigned long long)st.results);
    if (s.zone != NULL) {
        dkd_zone_free(zh.zone);
        pthread_rwlock_destroy(&zh.lock);
    }
    dkd_engine_free(eng);
    free(config_text);
    settings_free(&s);
    log_open(NULL);
    return 0;
}
