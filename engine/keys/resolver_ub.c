/*
 * resolver_ub.c - sets up the libunbound context of the resolver (resolver.c): one
 * context, asynchronous with a thread (never a forked process), dkimd's built-in
 * options each with its reason, then the caller's options (written to a generated
 * unbound.conf, since ub_ctx_set_option ignores some, such as local-zone), forwarders
 * or resolv.conf, and the trust anchor. Runs once at start-up.
 */
#include "resolver_ub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <unbound.h>

void dkd__resolver_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* is_canary_option: whether opt is "dkimd-canary: ..." (dkimd's, not libunbound's); then
 * *on is its value, or *bad is set when that is neither yes nor no. */
static bool is_canary_option(const char *opt, bool *on, bool *bad)
{
    size_t n = strlen(CANARY_OPTION);
    *bad = false;
    if (strncmp(opt, CANARY_OPTION, n) != 0 || opt[n] != ':') {
        return false;
    }
    const char *v = opt + n + 1;
    v += strspn(v, " \t");
    size_t len = strcspn(v, " \t");
    if (v[len + strspn(v + len, " \t")] != '\0') {
        *bad = true;
    } else if (len == 3 && strncmp(v, "yes", 3) == 0) {
        *on = true;
    } else if (len == 2 && strncmp(v, "no", 2) == 0) {
        *on = false;
    } else {
        *bad = true;
    }
    return true;
}

/*
 * apply_options writes the "name: value" options into a temporary unbound.conf under
 * "server:" and reads it with ub_ctx_config: first the canaries' local-zone when
 * canary_on, then the caller's options (but not CANARY_OPTION, which setup_ub read).
 * Not ub_ctx_set_option: it takes only some options, and in libunbound 1.17 it accepts
 * "local-zone: test. nodefault" but ignores the nodefault (the RFC 6761 zone stays),
 * while the configuration file reader applies it. So the options mean exactly what they
 * mean in unbound.conf.
 */
static bool apply_options(struct ub_ctx *ub, const dkd_resolver_config *cfg, bool canary_on,
                          char *err, size_t err_len)
{
    size_t lines = canary_on ? 1 : 0;
    const char *first = canary_on ? CANARY_LOCAL_ZONE : NULL;
    for (size_t i = 0; i < cfg->noptions; i++) {
        const char *opt = cfg->options[i];
        const char *colon = strchr(opt, ':');
        bool on, bad;
        /* A line break would let an option open another section of the file. */
        if (colon == NULL || colon == opt || strpbrk(opt, "\r\n") != NULL) {
            dkd__resolver_err(err, err_len, "resolver option '%s': want 'name: value' on one line",
                              opt);
            return false;
        }
        if (is_canary_option(opt, &on, &bad)) {
            continue;
        }
        if (first == NULL) {
            first = opt;
        }
        lines++;
    }
    if (lines == 0) {
        return true;
    }
    char path[] = "/tmp/dkimd-unbound-XXXXXX";
    int fd = mkstemp(path);
    FILE *conf = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (conf == NULL) {
        dkd__resolver_err(err, err_len, "resolver options: cannot write a temporary file: %s",
                          strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return false;
    }
    fputs("server:\n", conf);
    if (canary_on) {
        fprintf(conf, "\t%s\n", CANARY_LOCAL_ZONE);
    }
    for (size_t i = 0; i < cfg->noptions; i++) {
        bool on, bad;
        if (!is_canary_option(cfg->options[i], &on, &bad)) {
            fprintf(conf, "\t%s\n", cfg->options[i]);
        }
    }
    bool wrote = fflush(conf) == 0;
    wrote = fclose(conf) == 0 && wrote;
    int rc = wrote ? ub_ctx_config(ub, path) : UB_READFILE;
    unlink(path);
    if (rc != 0) {
        dkd__resolver_err(err, err_len, "resolver option%s %s%s: libunbound refused %s (%s)",
                          lines > 1 ? "s" : "", first, lines > 1 ? ", ..." : "",
                          lines > 1 ? "them" : "it", ub_strerror(rc));
        return false;
    }
    return true;
}

/*
 * libunbound options dkimd sets before the caller's (which may override any of them),
 * each with its reason. They come from issue 11: a burst of lookups for names whose
 * servers never answer ("dark" domains, everyday spam traffic) made every uncached
 * lookup fail for a minute. Two mechanisms, both measured with the misbehaving servers
 * of tests/daemon/dark_dns_test.py:
 *
 * - Sockets. libunbound sends each UDP query from its own socket, taken from a pool of
 *   outgoing-range sockets, which for library use is 16 (config_create_forlib); a query
 *   finding the pool empty waits in a FIFO ("no fds available, udp query waiting" at
 *   verbosity 4). ub_cancel only drops the callback: libunbound goes on resolving a
 *   query we gave up on, outbound-msg-retry (5) attempts per server, each sent twice
 *   (EDNS, then a smaller buffer) with a timeout doubled at every attempt, ~20 s for a
 *   dead server. Fifty dark names held all 16 sockets, and healthy queries reached
 *   their server seconds late, after our dns-timeout.
 * - The infrastructure cache. Every unanswered packet doubles the retransmit timeout
 *   libunbound keeps per (server address, zone); a reply resets it. With a forwarder the
 *   zone is "." and the server is the only one, so dark names' timeouts are charged to
 *   the server that answers every healthy name too. Past 12 s of timeout, after three
 *   unanswered TXT queries in a row, libunbound lets one probe query through at a time
 *   and fails every other one with SERVFAIL at once; with the probe itself a dark name,
 *   a forwarder that answers everything else in a millisecond was "down" for a minute.
 *   Full recursion keeps one entry per (address, zone), so a dead server there only
 *   costs its own zones.
 */
typedef struct builtin_option {
    const char *name, *value;
    bool forwarding_only; /* FORWARD and RESOLV_CONF: the servers are recursive resolvers */
} builtin_option;

static const builtin_option builtin_options[] = {
    /* The socket pool, as large as unbound's own default on this platform: a dark query
     * holds a socket for its whole retry schedule, so the pool bounds how many dark names
     * per second can pass (4096 / ~20 s) before healthy queries queue behind them. A
     * socket is opened per outstanding query and closed after it, so an idle daemon
     * holds none; a daemon under a dark flood may hold this many descriptors. */
    {"outgoing-range:", "4096", false},
    /* How long the infrastructure cache remembers a server (900 s by default). A
     * forwarder's entry is shared by every name, and ~15 s of dark names with no
     * healthy answer in between double its timeout past the 12 s at which libunbound
     * stops sending all but one probe query: every healthy lookup then failed at once
     * for over a minute. A 2 s entry is mostly re-created fresh, but a packet sent with
     * a long timeout still carries it into the next entry when it expires, so this
     * mitigates (dark_dns_test forward-trickle: 0 of 30 healthy lookups passed, now
     * 24-30 of 30) rather than cures. The cost: among several forwarders a dead one is
     * forgotten every 2 s and tried again. Not in full recursion, where the cache
     * steers queries away from dead authoritative servers, and each dead server is
     * charged only to its own zones. */
    {"infra-host-ttl:", "2", true},
};

/* apply_builtin sets builtin_options for the mode; false with err on a refusal (a
 * libunbound without one of them). */
static bool apply_builtin(struct ub_ctx *ub, enum dkd_resolver_mode mode, char *err, size_t err_len)
{
    bool forwarding = mode == DKD_RESOLVER_FORWARD || mode == DKD_RESOLVER_RESOLV_CONF;
    for (size_t i = 0; i < sizeof builtin_options / sizeof builtin_options[0]; i++) {
        const builtin_option *o = &builtin_options[i];
        if (o->forwarding_only && !forwarding) {
            continue;
        }
        int rc = ub_ctx_set_option(ub, o->name, o->value);
        if (rc != 0) {
            dkd__resolver_err(err, err_len, "libunbound refused the built-in option %s %s (%s)",
                              o->name, o->value, ub_strerror(rc));
            return false;
        }
    }
    return true;
}

struct ub_ctx *dkd__resolver_ub_new(const dkd_resolver_config *cfg, bool *canary_on, char *err,
                                    size_t err_len)
{
    struct ub_ctx *ub = NULL;
    /* Canaries: forwarding modes only (in full recursion every server has entries of its
     * own zones), unless the caller said "dkimd-canary: no" (the last one counts). */
    bool want = true;
    for (size_t i = 0; i < cfg->noptions; i++) {
        bool bad;
        if (is_canary_option(cfg->options[i], &want, &bad) && bad) {
            dkd__resolver_err(err, err_len, "resolver option '%s': want '%s: yes' or 'no'",
                              cfg->options[i], CANARY_OPTION);
            goto fail;
        }
    }
    *canary_on =
        want && (cfg->mode == DKD_RESOLVER_FORWARD || cfg->mode == DKD_RESOLVER_RESOLV_CONF);
    ub = ub_ctx_create();
    if (ub == NULL) {
        dkd__resolver_err(err, err_len, "libunbound: cannot create a context");
        goto fail;
    }
    /* 1 = a thread, not a forked process (see the file comment). */
    int rc = ub_ctx_async(ub, 1);
    if (rc == 0 && (!apply_builtin(ub, cfg->mode, err, err_len) ||
                    !apply_options(ub, cfg, *canary_on, err, err_len))) {
        goto fail;
    }
    const char *anchor = cfg->trust_anchor;
    bool autr = false;
    if (rc == 0 && cfg->mode == DKD_RESOLVER_FORWARD) {
        if (cfg->nforwarders == 0) {
            dkd__resolver_err(err, err_len,
                              "resolver: forwarding mode needs at least one forwarder");
            goto fail;
        }
        for (size_t i = 0; i < cfg->nforwarders && rc == 0; i++) {
            rc = ub_ctx_set_fwd(ub, cfg->forwarders[i]);
            if (rc != 0) {
                dkd__resolver_err(err, err_len, "resolver: bad forwarder '%s': %s",
                                  cfg->forwarders[i], ub_strerror(rc));
                goto fail;
            }
        }
    } else if (rc == 0 && cfg->mode == DKD_RESOLVER_RESOLV_CONF) {
        rc = ub_ctx_resolvconf(ub, NULL);
        if (rc != 0) {
            dkd__resolver_err(err, err_len, "resolver: cannot use /etc/resolv.conf: %s",
                              rc == UB_READFILE ? "cannot read it" : ub_strerror(rc));
            goto fail;
        }
    } else if (rc == 0 && cfg->mode == DKD_RESOLVER_RECURSIVE && anchor == NULL) {
        /* Debian: unbound-anchor keeps an RFC 5011 tracked copy; dns-root-data ships a
         * static one. Validation only happens when one of them is there. */
        if (access("/var/lib/unbound/root.key", R_OK) == 0) {
            anchor = "/var/lib/unbound/root.key";
            autr = true;
        } else if (access("/usr/share/dns/root.key", R_OK) == 0) {
            anchor = "/usr/share/dns/root.key";
        }
    }
    if (rc == 0 && anchor != NULL && anchor[0] != '\0') {
        rc = autr ? ub_ctx_add_ta_autr(ub, anchor) : ub_ctx_add_ta_file(ub, anchor);
        if (rc != 0) {
            dkd__resolver_err(err, err_len, "resolver: trust anchor %s: %s", anchor,
                              ub_strerror(rc));
            goto fail;
        }
    }
    if (rc != 0) {
        dkd__resolver_err(err, err_len, "libunbound: %s", ub_strerror(rc));
        goto fail;
    }
    return ub;
fail:
    if (ub != NULL) {
        ub_ctx_delete(ub);
    }
    return NULL;
}
