/*
 * milterload - drives a running dkimd's milter as an MTA would, for the milter's CPU
 * per message against the native protocol's (bench/milter-cpu.sh).
 *
 *   milterload --milter PATH --stats-socket PATH --connections C --duration S DIR
 *
 * Each of C connections negotiates version 6 with Postfix's offer, then sends the
 * messages of DIR/ *.eml in turn, one at a time as a milter allows: MAIL, RCPT, the
 * header fields (values with their leading space, folds joined by LF as Postfix passes
 * them), end of header, the body in 64 KiB chunks and end of message, all in one write
 * (the no-reply flags mean nothing is answered before the end), then it waits for the
 * end-of-message reply. The first second is not measured. JSON to stdout: messages,
 * msgs_per_s, daemon_cpu_us_per_msg (the daemon's process CPU time over the messages
 * its milter handled in the window, from STATS on the native socket) and
 * daemon_max_rss_kib.
 *
 * Workload: one thread, poll() over C blocking-free connections; it shares the machine
 * with the daemon, so the figure that matters is the daemon's CPU, not the rate.
 */
#include "corpus.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dkimd/client.h>
#include <dkimd/engine.h> /* dkd_split_message */

#include "milter.h"

typedef struct mconn {
    int fd;
    dkd__wbuf out;
    size_t out_off;
    uint8_t in[4096];
    size_t in_len;
    bool waiting; /* a message sent; its end-of-message reply not read yet */
} mconn;

static bool opt_measure(double t, double from, double to)
{
    return t >= from && t < to;
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "milterload: connect %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return fd;
}

/* put_message appends a whole message's packets, from MAIL to end of message. */
static void put_message(dkd__wbuf *b, const bench_message *m)
{
    dkd_span mail[] = {dkd__span_str("<load@example.com>")};
    dkd__milter_put_strings(b, DKD__MILTER_C_MAIL, mail, 1);
    dkd_span rcpt[] = {dkd__span_str("<rcpt@example.net>")};
    dkd__milter_put_strings(b, DKD__MILTER_C_RCPT, rcpt, 1);
    size_t hlen = dkd_split_message(m->data, m->len);
    const uint8_t *p = m->data, *end = m->data + hlen;
    char value[65536];
    while (p < end && *p != '\r' && *p != '\n') {
        const uint8_t *colon = memchr(p, ':', (size_t)(end - p));
        if (colon == NULL) {
            break;
        }
        size_t vlen = 0;
        const uint8_t *q = colon + 1;
        /* The value runs to the end of the field: every line until one that does not
         * begin with white space; folds are passed as a bare LF. */
        for (;;) {
            const uint8_t *eol = memchr(q, '\n', (size_t)(end - q));
            const uint8_t *stop = eol != NULL ? eol : end;
            size_t n = (size_t)(stop - q);
            if (n > 0 && q[n - 1] == '\r') {
                n--;
            }
            if (vlen + n + 1 < sizeof value) {
                memcpy(value + vlen, q, n);
                vlen += n;
            }
            q = eol != NULL ? eol + 1 : end;
            if (q >= end || (*q != ' ' && *q != '\t')) {
                break;
            }
            value[vlen++] = '\n';
        }
        dkd_span hv[] = {dkd__span(p, (size_t)(colon - p)), dkd__span(value, vlen)};
        dkd__milter_put_strings(b, DKD__MILTER_C_HEADER, hv, 2);
        p = q;
    }
    dkd__milter_put(b, DKD__MILTER_C_EOH, NULL, 0);
    for (size_t off = hlen; off < m->len; off += DKD__MILTER_CHUNK) {
        size_t n = m->len - off < DKD__MILTER_CHUNK ? m->len - off : DKD__MILTER_CHUNK;
        dkd__milter_put(b, DKD__MILTER_C_BODY, m->data + off, n);
    }
    dkd__milter_put(b, DKD__MILTER_C_BODYEOB, NULL, 0);
}

/* read_final consumes replies (the OPTNEG answer, header changes); true once the
 * end-of-message verdict has come. */
static bool read_final(mconn *c)
{
    for (;;) {
        dkd__milter_packet pkt;
        size_t need = 0;
        long used = dkd__milter_frame(c->in, c->in_len, sizeof c->in, &pkt, &need);
        if (used <= 0) {
            if (used < 0) {
                fprintf(stderr, "milterload: bad reply\n");
                exit(1);
            }
            return false;
        }
        uint8_t cmd = pkt.cmd;
        memmove(c->in, c->in + used, c->in_len - (size_t)used);
        c->in_len -= (size_t)used;
        if (cmd == DKD__MILTER_R_CONTINUE || cmd == DKD__MILTER_R_ACCEPT ||
            cmd == DKD__MILTER_R_TEMPFAIL || cmd == DKD__MILTER_R_REPLYCODE) {
            return true;
        }
    }
}

static bool daemon_stats(dkd_client *sc, uint64_t *cpu_us, uint64_t *served, uint64_t *rss)
{
    dkd_client_counters *s = NULL;
    if (dkd_client_stats(sc, &s) != 0) {
        return false;
    }
    *cpu_us = *served = *rss = 0;
    for (size_t i = 0; i < s->count; i++) {
        const char *n = s->v[i].name;
        if (!strcmp(n, "process.cpu_user_us") || !strcmp(n, "process.cpu_system_us")) {
            *cpu_us += s->v[i].value;
        } else if (!strcmp(n, "milter.verified") || !strcmp(n, "milter.signed")) {
            *served += s->v[i].value;
        } else if (!strcmp(n, "process.max_rss_kib")) {
            *rss = s->v[i].value;
        }
    }
    dkd_client_counters_free(s);
    return true;
}

int main(int argc, char **argv)
{
    const char *milter = NULL, *stats = NULL;
    unsigned nconn = 16;
    double duration = 3;
    static const struct option opts[] = {{"milter", required_argument, NULL, 'm'},
                                         {"stats-socket", required_argument, NULL, 's'},
                                         {"connections", required_argument, NULL, 'c'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'm') {
            milter = optarg;
        } else if (o == 's') {
            stats = optarg;
        } else if (o == 'c') {
            nconn = (unsigned)atoi(optarg);
        } else if (o == 'd') {
            duration = atof(optarg);
        } else {
            return 2;
        }
    }
    if (milter == NULL || stats == NULL || optind != argc - 1 || nconn == 0) {
        fprintf(stderr, "usage: milterload --milter PATH --stats-socket PATH "
                        "[--connections C] [--duration S] DIR\n");
        return 2;
    }
    bench_message *msgs;
    size_t nmsgs = bench_load_dir("milterload", argv[optind], &msgs);
    dkd_client *sc = NULL;
    if (dkd_client_connect(stats, &sc) != 0) {
        fprintf(stderr, "milterload: cannot connect to %s\n", stats);
        return 2;
    }
    mconn *cs = bench_xmalloc(nconn * sizeof *cs);
    struct pollfd *pf = bench_xmalloc(nconn * sizeof *pf);
    size_t next = 0;
    for (unsigned i = 0; i < nconn; i++) {
        cs[i] = (mconn){.fd = connect_unix(milter)};
        dkd__wbuf_init(&cs[i].out);
        dkd__milter_optneg offer = {6, 0x1ff, 0x1fffff};
        dkd__milter_put_optneg(&cs[i].out, DKD__MILTER_C_OPTNEG, &offer);
        dkd__milter_connect cn = {dkd__span_str("load.example"), '4', 25,
                                  dkd__span_str("192.0.2.9")};
        dkd__milter_put_connect(&cs[i].out, &cn);
        put_message(&cs[i].out, &msgs[next++ % nmsgs]);
        cs[i].waiting = true;
    }
    double t0 = bench_now_s(), from = t0 + 1, to = from + duration;
    uint64_t cpu0 = 0, served0 = 0, cpu1 = 0, served1 = 0, rss = 0;
    bool taken = false;
    uint64_t done = 0;
    for (;;) {
        double t = bench_now_s();
        if (!taken && t >= from) {
            daemon_stats(sc, &cpu0, &served0, &rss);
            taken = true;
        }
        if (t >= to) {
            break;
        }
        for (unsigned i = 0; i < nconn; i++) {
            pf[i] = (struct pollfd){cs[i].fd, POLLIN | (cs[i].out.len > cs[i].out_off ? POLLOUT : 0), 0};
        }
        if (poll(pf, nconn, 100) < 0 && errno != EINTR) {
            return 1;
        }
        for (unsigned i = 0; i < nconn; i++) {
            mconn *c = &cs[i];
            if (pf[i].revents & POLLOUT) {
                ssize_t w = send(c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                    c->out_off += (size_t)w;
                    if (c->out_off == c->out.len) {
                        c->out_off = 0;
                        dkd__wbuf_reset(&c->out);
                    }
                }
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
                if (r <= 0) {
                    fprintf(stderr, "milterload: connection %u closed by dkimd\n", i);
                    return 1;
                }
                c->in_len += (size_t)r;
                while (c->waiting && read_final(c)) {
                    if (opt_measure(bench_now_s(), from, to)) {
                        done++;
                    }
                    put_message(&c->out, &msgs[next++ % nmsgs]);
                }
            }
        }
    }
    daemon_stats(sc, &cpu1, &served1, &rss);
    uint64_t served = served1 - served0;
    printf("{\"messages\": %llu, \"msgs_per_s\": %.1f, \"daemon_cpu_us_per_msg\": %.2f, "
           "\"daemon_max_rss_kib\": %llu}\n",
           (unsigned long long)done, done / duration,
           served ? (double)(cpu1 - cpu0) / (double)served : 0.0, (unsigned long long)rss);
    for (unsigned i = 0; i < nconn; i++) {
        close(cs[i].fd);
        dkd__wbuf_free(&cs[i].out);
    }
    free(cs);
    free(pf);
    dkd_client_close(sc);
    bench_free_messages(msgs, nmsgs);
    return 0;
}
