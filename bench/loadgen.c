/*
 * loadgen - drives a running dkimd through libdkimd and reports throughput, latency
 * percentiles and the daemon's CPU cost per message, for capacity planning.
 *
 *   loadgen --socket PATH --connections C --depth D --duration S [--rate R]
 *           [--warmup S] [--shm BYTES] DIR
 *
 * Closed loop (default): every connection keeps D requests in flight, sending the next
 * message as soon as one completes; latency runs from submission to completion. This
 * finds the capacity.
 *
 * Open loop (--rate R): requests are due at fixed intervals of 1/R seconds in all,
 * whatever the daemon does; each goes out on a connection with fewer than D in flight,
 * or waits locally when all are full. Latency runs from the request's intended send
 * time, so time spent queued behind a slow daemon counts (no coordinated omission).
 *
 * The messages of DIR/ *.eml are sent in turn. The first --warmup seconds (default 1)
 * are not measured. At the end a JSON object goes to stdout:
 *   messages, duration_s, msgs_per_s, offered_rate, latency_ms {p50, p90, p99, p999,
 *   max}, errors, unsent (open loop: due but never sent), not_pass, daemon_cpu_us_per_msg (process
 * CPU time from the stats request, user + system, over the messages it served in the window) and
 *   daemon_max_rss_kib.
 *
 * --shm BYTES gives every connection a shared memory region of that size
 * (dkd_client_use_shm): messages then reach the daemon without a socket copy.
 *
 * Workload: one thread, poll() over C non-blocking clients; it uses much less CPU per
 * message than the daemon, but it shares the machine: see PERFORMANCE.md.
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dkimd/client.h>

typedef struct conn {
    dkd_client *c;
    unsigned inflight;
} conn;

typedef struct request {
    double t0; /* intended send time (open loop) or submission time (closed loop) */
    conn *cn;
    bool measured;
} request;

typedef struct lg {
    bench_message *msgs;
    size_t nmsgs, next_msg;
    conn *conns;
    unsigned nconns, depth;
    double measure_from, measure_to;
    double *lat;
    size_t nlat, cap_lat;
    uint64_t completed, errors, not_pass;
    bool closed_loop;
} lg;

static lg *the_lg; /* completions find the run through this; one run per process */

static void on_done(void *user, int status, dkd_client_result *r)
{
    request *rq = user;
    lg *g = the_lg;
    double t = bench_now_s();
    rq->cn->inflight--;
    if (rq->measured) {
        if (status != 0) {
            g->errors++;
        } else {
            g->completed++;
            for (size_t i = 0; i < r->nsigs; i++) {
                if (r->sigs[i].result != DKD_RESULT_PASS) {
                    g->not_pass++;
                    break;
                }
            }
            if (g->nlat == g->cap_lat) {
                g->cap_lat = g->cap_lat ? 2 * g->cap_lat : 1 << 16;
                double *nl = realloc(g->lat, g->cap_lat * sizeof *nl);
                if (nl == NULL) {
                    exit(2);
                }
                g->lat = nl;
            }
            g->lat[g->nlat++] = t - rq->t0;
        }
    }
    if (r != NULL) {
        dkd_client_result_free(r);
    }
    free(rq);
}

/* submit sends the next message on cn; false when the client refuses it now. */
static bool submit(lg *g, conn *cn, double t0)
{
    const bench_message *m = &g->msgs[g->next_msg];
    request *rq = bench_xmalloc(sizeof *rq);
    *rq = (request){t0, cn, t0 >= g->measure_from && t0 < g->measure_to};
    int rc;
    if (m->len <= dkd_client_max_whole(cn->c, NULL)) {
        rc = dkd_client_submit(cn->c, m->data, m->len, NULL, on_done, rq);
    } else {
        /* Larger than one frame: stream it as an MTA would. */
        size_t hl = 0;
        while (hl + 3 < m->len && memcmp(m->data + hl, "\r\n\r\n", 4) != 0) {
            hl++;
        }
        hl = hl + 3 < m->len ? hl + 4 : m->len;
        uint32_t req;
        rc = dkd_client_begin(cn->c, m->data, hl, NULL, on_done, rq, &req);
        if (rc == 0) {
            dkd_client_body(cn->c, req, m->data + hl, m->len - hl);
            dkd_client_end(cn->c, req);
        }
    }
    if (rc != 0) {
        free(rq);
        if (rc != DKD_CLIENT_ERR_BUSY) {
            g->errors++;
        }
        return false;
    }
    cn->inflight++;
    g->next_msg = (g->next_msg + 1) % g->nmsgs;
    return true;
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    return v[i == 0 ? 0 : i - 1] * 1e3;
}

/* daemon_stats reads the two CPU counters, requests served and peak RSS. */
static bool daemon_stats(dkd_client *sc, uint64_t *cpu_us, uint64_t *served, uint64_t *rss)
{
    dkd_client_counters *s;
    if (dkd_client_stats(sc, &s) != 0) {
        return false;
    }
    *cpu_us = *served = *rss = 0;
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->v[i].name, "process.cpu_user_us") == 0 ||
            strcmp(s->v[i].name, "process.cpu_system_us") == 0) {
            *cpu_us += s->v[i].value;
        } else if (strcmp(s->v[i].name, "requests_served") == 0) {
            *served = s->v[i].value;
        } else if (strcmp(s->v[i].name, "process.max_rss_kib") == 0) {
            *rss = s->v[i].value;
        }
    }
    dkd_client_counters_free(s);
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --socket PATH --connections C --depth D --duration S "
                    "[--rate R] [--warmup S] [--shm BYTES] DIR\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *dir = NULL;
    unsigned nconns = 1, depth = 1;
    double duration = 10, rate = 0, warmup = 1;
    size_t shm = 0;
    for (int i = 1; i < argc; i++) {
        bool v = i + 1 < argc;
        if (strcmp(argv[i], "--socket") == 0 && v) {
            sock = argv[++i];
        } else if (strcmp(argv[i], "--connections") == 0 && v) {
            nconns = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--depth") == 0 && v) {
            depth = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--duration") == 0 && v) {
            duration = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--rate") == 0 && v) {
            rate = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--warmup") == 0 && v) {
            warmup = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--shm") == 0 && v) {
            shm = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (argv[i][0] != '-' && dir == NULL) {
            dir = argv[i];
        } else {
            usage();
        }
    }
    if (sock == NULL || dir == NULL || nconns == 0 || nconns > 4096 || depth == 0 ||
        duration <= 0 || rate < 0 || warmup < 0) {
        usage();
    }

    lg g = {0};
    the_lg = &g;
    g.nmsgs = bench_load_dir("loadgen", dir, &g.msgs);
    if (g.nmsgs == 0) {
        fprintf(stderr, "loadgen: no *.eml in %s\n", dir);
        return 2;
    }
    g.nconns = nconns;
    g.depth = depth;
    g.closed_loop = rate == 0;
    g.conns = calloc(nconns, sizeof *g.conns);
    struct pollfd *pfd = calloc(nconns, sizeof *pfd);
    if (g.conns == NULL || pfd == NULL) {
        return 2;
    }
    dkd_client *statc;
    int rc = dkd_client_connect(sock, &statc);
    for (unsigned i = 0; rc == 0 && i < nconns; i++) {
        rc = dkd_client_connect(sock, &g.conns[i].c);
        if (rc == 0 && shm > 0) {
            rc = dkd_client_use_shm(g.conns[i].c, shm);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", sock, dkd_client_strerror(rc));
        return 2;
    }

    double start = bench_now_s();
    g.measure_from = start + warmup;
    g.measure_to = g.measure_from + duration;
    uint64_t cpu0 = 0, served0 = 0, rss = 0, cpu1 = 0, served1 = 0;
    bool stats_taken = false, stats_ok = true;
    uint64_t k = 0; /* open loop: index of the next due request */
    unsigned rr = 0;
    for (;;) {
        double t = bench_now_s();
        if (!stats_taken && t >= g.measure_from) {
            stats_ok = daemon_stats(statc, &cpu0, &served0, &rss);
            stats_taken = true;
        }
        bool sending = t < g.measure_to;
        double wait_s = 0.1;
        if (sending && g.closed_loop) {
            for (unsigned i = 0; i < nconns; i++) {
                while (g.conns[i].inflight < depth && submit(&g, &g.conns[i], bench_now_s())) {
                }
            }
        } else if (sending) {
            /* Send everything due, round-robin over connections with room; what finds
             * no room stays due and keeps its intended time. */
            for (;;) {
                double due = start + (double)k / rate;
                if (due > t || due >= g.measure_to) {
                    wait_s = due > t ? due - t : 0.1;
                    break;
                }
                bool sent = false;
                for (unsigned j = 0; j < nconns && !sent; j++) {
                    conn *cn = &g.conns[(rr + j) % nconns];
                    if (cn->inflight < depth && submit(&g, cn, due)) {
                        sent = true;
                        rr = (rr + j + 1) % nconns;
                    }
                }
                if (!sent) {
                    break;
                }
                k++;
            }
        }
        unsigned inflight = 0;
        for (unsigned i = 0; i < nconns; i++) {
            inflight += g.conns[i].inflight;
            pfd[i].fd = dkd_client_fd(g.conns[i].c);
            pfd[i].events = dkd_client_events(g.conns[i].c);
            pfd[i].revents = 0;
        }
        if (!sending && inflight == 0) {
            break;
        }
        if (!sending && t > g.measure_to + 30) {
            fprintf(stderr, "loadgen: %u requests still in flight 30 s after the end\n", inflight);
            g.errors += inflight;
            break;
        }
        if (wait_s > 0.1) {
            wait_s = 0.1;
        }
        struct timespec ts = {(time_t)wait_s, (long)((wait_s - floor(wait_s)) * 1e9)};
        if (ppoll(pfd, nconns, &ts, NULL) < 0 && errno != EINTR) {
            perror("loadgen: ppoll");
            return 2;
        }
        for (unsigned i = 0; i < nconns; i++) {
            if (pfd[i].revents != 0 && dkd_client_process(g.conns[i].c) < 0) {
                /* The client has completed its requests with errors; counted there. */
                continue;
            }
        }
    }
    if (stats_ok && !daemon_stats(statc, &cpu1, &served1, &rss)) {
        stats_ok = false;
    }

    /* Open loop: requests that came due in the window but never found room were never
     * sent; they are reported, as a daemon that cannot keep up with the rate. */
    uint64_t due_total = g.closed_loop ? 0 : (uint64_t)ceil((g.measure_to - start) * rate);
    uint64_t unsent = due_total > k ? due_total - k : 0;
    qsort(g.lat, g.nlat, sizeof *g.lat, bench_cmp_double);
    double served = (double)(served1 - served0);
    printf("{\"connections\": %u, \"depth\": %u, \"mode\": \"%s\", \"offered_rate\": %.1f, "
           "\"duration_s\": %.3f, \"messages\": %llu, \"msgs_per_s\": %.1f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
           "\"max\": %.3f}, \"errors\": %llu, \"unsent\": %llu, \"not_pass\": %llu, ",
           nconns, depth, g.closed_loop ? "closed" : "open", rate, duration,
           (unsigned long long)g.completed, (double)g.completed / duration, pct(g.lat, g.nlat, 50),
           pct(g.lat, g.nlat, 90), pct(g.lat, g.nlat, 99), pct(g.lat, g.nlat, 99.9),
           pct(g.lat, g.nlat, 100), (unsigned long long)g.errors, (unsigned long long)unsent,
           (unsigned long long)g.not_pass);
    if (stats_ok && served > 0) {
        printf("\"daemon_cpu_us_per_msg\": %.2f, \"daemon_max_rss_kib\": %llu}\n",
               (double)(cpu1 - cpu0) / served, (unsigned long long)rss);
    } else {
        printf("\"daemon_cpu_us_per_msg\": null, \"daemon_max_rss_kib\": null}\n");
    }
    for (unsigned i = 0; i < nconns; i++) {
        dkd_client_close(g.conns[i].c);
    }
    dkd_client_close(statc);
    /* Freed so a sanitizer build of loadgen reports only real leaks. */
    bench_free_messages(g.msgs, g.nmsgs);
    free(g.lat);
    free(g.conns);
    free(pfd);
    return 0;
}
