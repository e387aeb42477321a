/*
 * dkimd.c - the DKIM verification daemon's start-up and main loop: the listening sockets
 * (dkimd_listen.c), the milter's settings (dkimd_milter.c), the key source (zone file or DNS resolver), logging and signals around the io_uring
 * worker pool of ipc/server.c. Its settings come from dkimd_config.c.
 *
 * The main thread does no request work: it sets everything up, starts the workers and
 * then waits on a signalfd (blocking here is fine: it is not a worker). SIGTERM/SIGINT
 * stop the server gracefully; SIGHUP reopens the log file, re-reads the log level from
 * the configuration file and reloads the zone file and the signing keys.
 *
 * Configuration (dkimd_config.c): one format, "key = value" lines ('#' comments), the
 * same keys as the long options (see tools/dkimd.conf.example). An embedded default is
 * applied first, then the --config file, then the command line, so a flag always wins.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

#include "dkimd_config.h"
#include "dkimd_listen.h"
#include "dkimd_milter.h"
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
    add(ctx, "resolver.canaries", st.canaries);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    dkimd_settings s;
    int parsed = dkimd_settings_parse(&s, argc, argv);
    if (parsed >= 0) {
        return parsed;
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
    dkd_config ecfg;
    dkd_config_init(&ecfg);
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

    dkimd_milter milter;
    bool have_milter = s.milter != NULL && s.milter[0] != '\0';
    if (have_milter && !dkimd_milter_setup(&milter, &s, deadline)) {
        return 1;
    }
    dkimd_listeners ls;
    if (dkimd_listen(&s, &ls) != 0) {
        return 1;
    }
    if (ls.milter_fd >= 0 && !have_milter) {
        fprintf(stderr, "dkimd: systemd passed a milter socket, but no milter is configured\n");
        return 1;
    }

    dkd__server_config sc;
    dkd__server_config_init(&sc);
    sc.listen_fd = ls.native_fd;
    sc.milter_fd = ls.milter_fd;
    sc.milter_cfg = have_milter ? &milter.cfg : NULL;
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
        dkimd_unlisten(&ls);
        return 1;
    }
    logf_(DKD__LOG_INFO, "listening: %s; keys from %s", ls.describe,
          s.zone != NULL ? s.zone : (s.n_resolvers > 0 ? "forwarders" : "DNS"));
    if (have_milter) {
        logf_(DKD__LOG_INFO, "milter: %zu signing key(s), %s internal hosts", s.n_sign_keys,
              milter.cfg.internal_hosts != NULL ? s.internal_hosts : "no");
    }

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
            if (dkimd_settings_reread_log_level(&s)) {
                dkd__server_set_log_level(srv, s.log_level);
            }
            bool reloaded = s.zone != NULL && zone_reload(&zh);
            if (have_milter && s.n_sign_keys > 0) {
                if (dkimd_milter_reload_keys(&milter, &s, err, sizeof err)) {
                    logf_(DKD__LOG_INFO, "SIGHUP: %zu signing key(s) reloaded", s.n_sign_keys);
                } else {
                    logf_(DKD__LOG_ERR, "SIGHUP: signing keys not reloaded, keeping the old: %s",
                          err);
                }
            }
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
    dkimd_unlisten(&ls);
    if (have_milter) {
        dkimd_milter_free(&milter);
    }
    close(sfd);
    logf_(DKD__LOG_INFO, "stopped after %llu requests answered and %llu milter messages",
          (unsigned long long)st.results, (unsigned long long)st.milter_messages);
    if (s.zone != NULL) {
        dkd_zone_free(zh.zone);
        pthread_rwlock_destroy(&zh.lock);
    }
    dkd_engine_free(eng);
    dkimd_settings_free(&s);
    log_open(NULL);
    return 0;
}
