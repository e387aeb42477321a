/*
 * opendkim-bench - the same corpus timing as corpus-bench, through OpenDKIM's library
 * (Debian's libopendkim), for the side-by-side figures in PERFORMANCE.md.
 *
 *   opendkim-bench DIR [--zone FILE] [--min-time S] [--min-passes N] [--quiet]
 *
 * Output is corpus-bench's: "NAME RESULT REASON" per message, then
 *   #TIMING best_s=S median_s=S passes=N messages=M ... msgs_per_s=R
 *           cpu_median_s=C msgs_per_cpu_s=M/C
 *
 * Keys are served from memory: the zone (keys.zone in DIR or its two parents, as
 * bench/gen-corpus writes it) is read once into a table and handed to libopendkim
 * through its key-lookup hook (dkim_set_key_lookup), the hook opendkim's own file and
 * DNS sources use. So what is timed is what libopendkim does after one DNS answer:
 * it parses the key record and decodes the public key for every signature, as it
 * normally does; no DNS and no file I/O in the timed passes.
 *
 * Not built by default (it needs libopendkim-dev); bench/compare.sh builds it with
 *   cc -O2 bench/opendkim-bench.c bench/corpus.c $(pkg-config --cflags --libs opendkim) -o ...
 * Single-threaded, like OpenDKIM's per-message work in its milter threads.
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <opendkim/dkim.h>

typedef struct record {
    char *name; /* lowercased, no trailing dot */
    char *txt;  /* the strings concatenated */
} record;

static record *records;
static size_t nrecords;

/* load_zone reads the one-record-per-line TXT zones gen-corpus writes:
 * NAME. TTL IN TXT "part" "part" ... Other lines are skipped. */
static void load_zone(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "opendkim-bench: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == ';' || line[0] == '$' || strstr(line, " TXT ") == NULL) {
            continue;
        }
        size_t nl = strcspn(line, " \t");
        char *name = strndup(line, nl);
        if (name == NULL) {
            exit(2);
        }
        if (nl > 0 && name[nl - 1] == '.') {
            name[nl - 1] = '\0';
        }
        for (char *p = name; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
        char *txt = bench_xmalloc(strlen(line) + 1);
        size_t tl = 0;
        bool in = false;
        for (const char *p = strstr(line, " TXT ") + 5; *p; p++) {
            if (*p == '"') {
                in = !in;
            } else if (in) {
                txt[tl++] = *p;
            }
        }
        txt[tl] = '\0';
        record *nr = realloc(records, (nrecords + 1) * sizeof *records);
        if (nr == NULL) {
            exit(2);
        }
        records = nr;
        records[nrecords++] = (record){name, txt};
    }
    free(line);
    fclose(f);
}

/* key_lookup answers selector._domainkey.domain from the table, copying the record into
 * libopendkim's buffer; libopendkim then parses it as it would a DNS answer. */
static DKIM_CBSTAT key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    (void)dkim;
    char qname[512];
    snprintf(qname, sizeof qname, "%s._domainkey.%s", (const char *)dkim_sig_getselector(sig),
             (const char *)dkim_sig_getdomain(sig));
    for (size_t i = 0; i < nrecords; i++) {
        if (strcasecmp(records[i].name, qname) == 0) {
            size_t n = strlen(records[i].txt);
            if (n >= buflen) {
                return DKIM_STAT_INTERNAL;
            }
            memcpy(buf, records[i].txt, n + 1);
            return DKIM_STAT_OK;
        }
    }
    return DKIM_STAT_NOKEY;
}

/* verify_one runs one message through libopendkim; with print, writes its verdicts.
 * Returns the number of signatures seen. */
static int verify_one(DKIM_LIB *lib, const bench_message *m, bool print)
{
    DKIM_STAT st;
    DKIM *dkim = dkim_verify(lib, (const unsigned char *)m->name, NULL, &st);
    if (dkim == NULL) {
        if (print) {
            printf("%s error %s\n", m->name, dkim_getresultstr(st));
        }
        return 0;
    }
    dkim_chunk(dkim, m->data, m->len);
    dkim_chunk(dkim, NULL, 0);
    st = dkim_eom(dkim, NULL);
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK) {
        nsigs = 0;
    }
    if (print) {
        if (nsigs == 0) {
            printf("%s none %s\n", m->name,
                   st == DKIM_STAT_NOSIG ? "no-signature" : dkim_getresultstr(st));
        } else {
            printf("%s ", m->name);
            for (int i = 0; i < nsigs; i++) {
                printf("%s%s", i ? "," : "", DKIM_SIG_CHECK(sigs[i]) ? "pass" : "fail");
            }
            putchar(' ');
            for (int i = 0; i < nsigs; i++) {
                const char *why = dkim_sig_geterrorstr(dkim_sig_geterror(sigs[i]));
                printf("%s%s", i ? "," : "", DKIM_SIG_CHECK(sigs[i]) ? "ok" : "error");
                if (!DKIM_SIG_CHECK(sigs[i]) && why != NULL) {
                    fprintf(stderr, "%s: %s\n", m->name, why);
                }
            }
            putchar('\n');
        }
    }
    dkim_free(dkim);
    return nsigs;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *zone = NULL;
    unsigned min_passes = 5;
    double min_time = 2.5;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--zone") == 0 && i + 1 < argc) {
            zone = argv[++i];
        } else if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc) {
            min_time = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--min-passes") == 0 && i + 1 < argc) {
            min_passes = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (argv[i][0] != '-' && dir == NULL) {
            dir = argv[i];
        } else {
            fprintf(stderr, "usage: opendkim-bench DIR [--zone FILE] [--min-time S] "
                            "[--min-passes N] [--quiet]\n");
            return 2;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "usage: opendkim-bench DIR [--zone FILE]\n");
        return 2;
    }
    char found[4096];
    if (zone == NULL) {
        static const char *const rel[] = {"keys.zone", "../keys.zone", "../../keys.zone"};
        for (size_t i = 0; i < 3 && zone == NULL; i++) {
            snprintf(found, sizeof found, "%s/%s", dir, rel[i]);
            FILE *f = fopen(found, "r");
            if (f != NULL) {
                fclose(f);
                zone = found;
            }
        }
        if (zone == NULL) {
            fprintf(stderr, "opendkim-bench: no keys.zone near %s; pass --zone\n", dir);
            return 2;
        }
    }
    load_zone(zone);

    DKIM_LIB *lib = dkim_init(NULL, NULL);
    if (lib == NULL || dkim_set_key_lookup(lib, key_lookup) != DKIM_STAT_OK) {
        fprintf(stderr, "opendkim-bench: dkim_init failed\n");
        return 2;
    }
    bench_message *msgs;
    size_t n = bench_load_dir("opendkim-bench", dir, &msgs), bytes = 0, nsigs = 0;
    if (n == 0) {
        fprintf(stderr, "opendkim-bench: no *.eml in %s\n", dir);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        bytes += msgs[i].len;
        nsigs += (size_t)verify_one(lib, &msgs[i], !quiet);
    }
    fflush(stdout);

    size_t cap = 64, passes = 0;
    double *times = bench_xmalloc(cap * sizeof *times), total = 0;
    double *cpus = bench_xmalloc(cap * sizeof *cpus);
    while (passes < min_passes || total < min_time) {
        double t0 = bench_now_s(), c0 = bench_cpu_s();
        for (size_t i = 0; i < n; i++) {
            verify_one(lib, &msgs[i], false);
        }
        double dt = bench_now_s() - t0, dc = bench_cpu_s() - c0;
        if (passes == cap) {
            cap *= 2;
            double *nt = realloc(times, cap * sizeof *times);
            if (nt == NULL) {
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
    qsort(times, passes, sizeof *times, bench_cmp_double);
    qsort(cpus, passes, sizeof *cpus, bench_cmp_double);
    double median =
        passes % 2 ? times[passes / 2] : (times[passes / 2 - 1] + times[passes / 2]) / 2;
    double cpu_median =
        passes % 2 ? cpus[passes / 2] : (cpus[passes / 2 - 1] + cpus[passes / 2]) / 2;
    printf("#TIMING best_s=%.6f median_s=%.6f passes=%zu messages=%zu bytes=%zu "
           "signatures=%zu threads=1 msgs_per_s=%.1f cpu_median_s=%.6f "
           "msgs_per_cpu_s=%.1f\n",
           times[0], median, passes, n, bytes, nsigs, (double)n / median, cpu_median,
           (double)n / cpu_median);
    dkim_close(lib);
    return 0;
}
