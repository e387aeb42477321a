/*
 * corpus-bench - in-process verification throughput over a directory of messages.
 *
 *   corpus-bench DIR [--zone FILE | --resolver ADDR[@PORT]] [--threads N]
 *                [--min-time S] [--min-passes N] [--quiet]
 *                [--canon-impl auto|scalar|sse2|avx2|avx512|neon]
 *                [--sha256 auto|openssl|shani]
 *
 * Loads every DIR/ *.eml into memory (sorted by name), verifies each once and prints
 * "NAME RESULT REASON" (several signatures give comma-joined words, so each column stays
 * one word), then repeats timed passes over the whole set, at least --min-passes (5) and
 * for at least --min-time (2.5 s), and prints
 *
 *   #TIMING best_s=S median_s=S passes=N messages=M bytes=B threads=T msgs_per_s=R
 *
 * where S is the wall time of one pass, excluding start-up and file reading, and R is
 * M / median; then cpu_median_s=C msgs_per_cpu_s=M/C, the same from the process's CPU
 * time per pass, which a busy shared machine disturbs much less than wall time. Keys are warm
 * throughout: the zone source parses every key once at load (a warm key cache), and with --resolver
 * the untimed first pass fills the resolver's cache, so timed passes measure verification, not DNS.
 *
 * Without --zone or --resolver the zone is keys.zone in DIR or one of its two parents
 * (where bench/gen-corpus puts it). With --threads N, N threads share each pass, taking
 * messages from an atomic counter; each owns its dkd_msg, as daemon workers do.
 *
 * --canon-impl and --sha256 set the engine's body canonicalization and body SHA-256
 * (dkd_config.canon_impl, .sha256_impl; default auto, the fastest this CPU runs), for
 * before/after runs of one choice against another; one this CPU cannot run is an error.
 *
 * Workload: a few hundred messages of 2 KB to 250 KB; the passes are CPU-bound.
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dkimd/engine.h>
#ifdef DKD_BENCH_HAVE_RESOLVER
#include <dkimd/resolver.h>
#endif

typedef struct bench {
    dkd_engine *eng;
    dkd_keysrc src;
    bench_message *msgs;
    size_t nmsgs;
    unsigned nthreads;
    pthread_barrier_t start, done;
    atomic_size_t next;
    atomic_bool stop;
    atomic_int errors;
} bench;

/* verify_one runs one message through the engine; false on an engine error (not a
 * verdict: fail and permerror are results). */
static bool verify_one(dkd_msg *m, const dkd_keysrc *src, const bench_message *msg)
{
    dkd_msg_reset(m);
    return dkd_verify_message(m, src, msg->data, msg->len, (int64_t)time(NULL)) == 0;
}

static void *worker(void *arg)
{
    bench *b = arg;
    dkd_msg *m = dkd_msg_new(b->eng);
    if (m == NULL) {
        fprintf(stderr, "corpus-bench: out of memory\n");
        exit(2);
    }
    for (;;) {
        pthread_barrier_wait(&b->start);
        if (atomic_load(&b->stop)) {
            break;
        }
        for (;;) {
            size_t i = atomic_fetch_add_explicit(&b->next, 1, memory_order_relaxed);
            if (i >= b->nmsgs) {
                break;
            }
            if (!verify_one(m, &b->src, &b->msgs[i])) {
                atomic_fetch_add(&b->errors, 1);
            }
        }
        pthread_barrier_wait(&b->done);
    }
    dkd_msg_free(m);
    return NULL;
}

/* find_zone looks for keys.zone in dir, dir/.., dir/../.. */
static char *find_zone(const char *dir)
{
    static const char *const rel[] = {"/keys.zone", "/../keys.zone", "/../../keys.zone"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        size_t n = strlen(dir) + strlen(rel[i]) + 1;
        char *p = bench_xmalloc(n);
        snprintf(p, n, "%s%s", dir, rel[i]);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            fclose(f);
            return p;
        }
        free(p);
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: corpus-bench DIR [--zone FILE | --resolver ADDR[@PORT]] "
                    "[--threads N] [--min-time S] [--min-passes N] [--quiet]\n"
                    "                    [--canon-impl auto|scalar|sse2|avx2|avx512|neon] "
                    "[--sha256 auto|openssl|shani]\n");
    exit(2);
}

/* The enum value named name (by dkd_canon_impl_name / dkd_sha256_impl_name), or -1. */
static int canon_impl_named(const char *name)
{
    for (int k = DKD_CANON_IMPL_AUTO; k <= DKD_CANON_IMPL_NEON; k++) {
        if (strcmp(name, dkd_canon_impl_name((enum dkd_canon_impl)k)) == 0) {
            return k;
        }
    }
    return -1;
}

static int sha256_impl_named(const char *name)
{
    for (int k = DKD_SHA256_IMPL_AUTO; k <= DKD_SHA256_IMPL_SHANI; k++) {
        if (strcmp(name, dkd_sha256_impl_name((enum dkd_sha256_impl)k)) == 0) {
            return k;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *zone_path = NULL, *resolver_addr = NULL;
    unsigned threads = 1, min_passes = 5;
    double min_time = 2.5;
    bool quiet = false;
    int canon_impl = DKD_CANON_IMPL_AUTO, sha256_impl = DKD_SHA256_IMPL_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--zone") == 0 && has_val) {
            zone_path = argv[++i];
        } else if (strcmp(a, "--resolver") == 0 && has_val) {
            resolver_addr = argv[++i];
        } else if (strcmp(a, "--threads") == 0 && has_val) {
            threads = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--min-time") == 0 && has_val) {
            min_time = strtod(argv[++i], NULL);
        } else if (strcmp(a, "--min-passes") == 0 && has_val) {
            min_passes = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--canon-impl") == 0 && has_val) {
            canon_impl = canon_impl_named(argv[++i]);
        } else if (strcmp(a, "--sha256") == 0 && has_val) {
            sha256_impl = sha256_impl_named(argv[++i]);
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (a[0] != '-' && dir == NULL) {
            dir = a;
        } else {
            usage();
        }
    }
    if (dir == NULL || threads == 0 || threads > 256 || min_passes == 0 ||
        (zone_path != NULL && resolver_addr != NULL) || canon_impl < 0 || sha256_impl < 0) {
        usage();
    }

    bench b = {0};
    b.nthreads = threads;
    dkd_config cfg;
    dkd_config_init(&cfg);
    cfg.canon_impl = (enum dkd_canon_impl)canon_impl;
    cfg.sha256_impl = (enum dkd_sha256_impl)sha256_impl;
    b.eng = dkd_engine_new(&cfg);
    /* The engine falls back to auto's choice for one the CPU cannot run: a measurement
     * of the wrong code would look like a result, so refuse instead. */
    if (canon_impl != DKD_CANON_IMPL_AUTO && dkd_engine_canon_impl(b.eng) != cfg.canon_impl) {
        fprintf(stderr, "corpus-bench: --canon-impl %s: not on this CPU or build\n",
                dkd_canon_impl_name(cfg.canon_impl));
        return 2;
    }
    if (sha256_impl != DKD_SHA256_IMPL_AUTO && dkd_engine_sha256_impl(b.eng) != cfg.sha256_impl) {
        fprintf(stderr, "corpus-bench: --sha256 %s: not on this CPU or build\n",
                dkd_sha256_impl_name(cfg.sha256_impl));
        return 2;
    }

    dkd_zone *zone = NULL;
#ifdef DKD_BENCH_HAVE_RESOLVER
    dkd_resolver *resolver = NULL;
#endif
    char err[256];
    if (resolver_addr != NULL) {
#ifdef DKD_BENCH_HAVE_RESOLVER
        dkd_resolver_config rc;
        dkd_resolver_config_init(&rc);
        rc.mode = DKD_RESOLVER_FORWARD;
        rc.forwarders[rc.nforwarders++] = resolver_addr;
        rc.options[rc.noptions++] = "do-not-query-localhost: no";
        resolver = dkd_resolver_new(&rc, err, sizeof err);
        if (resolver == NULL) {
            fprintf(stderr, "corpus-bench: resolver: %s\n", err);
            return 2;
        }
        b.src = dkd_resolver_keysrc_blocking(resolver);
#else
        fprintf(stderr, "corpus-bench: built without the resolver\n");
        return 2;
#endif
    } else {
        char *found = zone_path == NULL ? find_zone(dir) : NULL;
        if (zone_path == NULL && found == NULL) {
            fprintf(stderr, "corpus-bench: no keys.zone near %s; pass --zone\n", dir);
            return 2;
        }
        zone = dkd_zone_load(zone_path ? zone_path : found, err, sizeof err);
        free(found);
        if (zone == NULL) {
            fprintf(stderr, "corpus-bench: %s\n", err);
            return 2;
        }
        b.src = dkd_zone_keysrc(zone);
    }

    b.nmsgs = bench_load_dir("corpus-bench", dir, &b.msgs);
    if (b.nmsgs == 0) {
        fprintf(stderr, "corpus-bench: no *.eml in %s\n", dir);
        return 2;
    }
    size_t bytes = 0, nsigs = 0;

    /* The untimed first pass prints the verdicts and, with a resolver, warms its cache. */
    dkd_msg *m = dkd_msg_new(b.eng);
    for (size_t i = 0; i < b.nmsgs; i++) {
        bytes += b.msgs[i].len;
        if (!verify_one(m, &b.src, &b.msgs[i])) {
            printf("%s error engine-error\n", b.msgs[i].name);
            continue;
        }
        size_t n;
        const dkd_sig_result *r = dkd_msg_results(m, &n);
        nsigs += n;
        if (quiet) {
            continue;
        }
        if (n == 0) {
            printf("%s none no-signature\n", b.msgs[i].name);
            continue;
        }
        printf("%s ", b.msgs[i].name);
        for (size_t j = 0; j < n; j++) {
            printf("%s%s", j ? "," : "", dkd_result_name(r[j].result));
        }
        putchar(' ');
        for (size_t j = 0; j < n; j++) {
            printf("%s%s", j ? "," : "", dkd_reason_code(r[j].reason));
        }
        putchar('\n');
    }
    dkd_msg_free(m);
    fflush(stdout);

    pthread_barrier_init(&b.start, NULL, threads + 1);
    pthread_barrier_init(&b.done, NULL, threads + 1);
    pthread_t *tids = bench_xmalloc(threads * sizeof *tids);
    for (unsigned t = 0; t < threads; t++) {
        if (pthread_create(&tids[t], NULL, worker, &b) != 0) {
            fprintf(stderr, "corpus-bench: cannot start thread\n");
            return 2;
        }
    }

    size_t cap = 64, passes = 0;
    double *times = bench_xmalloc(cap * sizeof *times), total = 0;
    double *cpus = bench_xmalloc(cap * sizeof *cpus);
    while (passes < min_passes || total < min_time) {
        atomic_store(&b.next, 0);
        double t0 = bench_now_s(), c0 = bench_cpu_s();
        pthread_barrier_wait(&b.start);
        pthread_barrier_wait(&b.done);
        double dt = bench_now_s() - t0, dc = bench_cpu_s() - c0;
        if (passes == cap) {
            cap *= 2;
            double *nt = realloc(times, cap * sizeof *times);
            if (nt == NULL) {
                fprintf(stderr, "corpus-bench: out of memory\n");
                return 2;
            }
            times = nt;
            double *nc = realloc(cpus, cap * sizeof *cpus);
            if (nc == NULL) {
                return 2;
            }
            cpus = nc;
        }
        cpus[passes] = dc;
        times[passes++] = dt;
        total += dt;
    }
    atomic_store(&b.stop, true);
    pthread_barrier_wait(&b.start);
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
    }

    qsort(times, passes, sizeof *times, bench_cmp_double);
    qsort(cpus, passes, sizeof *cpus, bench_cmp_double);
    double median =
        passes % 2 ? times[passes / 2] : (times[passes / 2 - 1] + times[passes / 2]) / 2;
    double cpu_median =
        passes % 2 ? cpus[passes / 2] : (cpus[passes / 2 - 1] + cpus[passes / 2]) / 2;
    printf("#TIMING best_s=%.6f median_s=%.6f passes=%zu messages=%zu bytes=%zu "
           "signatures=%zu threads=%u msgs_per_s=%.1f cpu_median_s=%.6f "
           "msgs_per_cpu_s=%.1f\n",
           times[0], median, passes, b.nmsgs, bytes, nsigs, threads, (double)b.nmsgs / median,
           cpu_median, (double)b.nmsgs / cpu_median);
    int errors = atomic_load(&b.errors);
    if (errors != 0) {
        fprintf(stderr, "corpus-bench: %d engine errors during timed passes\n", errors);
    }

    free(times);
    free(cpus);
    free(tids);
    for (size_t i = 0; i < b.nmsgs; i++) {
        free(b.msgs[i].name);
        free(b.msgs[i].data);
    }
    free(b.msgs);
    dkd_zone_free(zone);
#ifdef DKD_BENCH_HAVE_RESOLVER
    dkd_resolver_free(resolver);
#endif
    dkd_engine_free(b.eng);
    return errors ? 1 : 0;
}
