/*
 * corpus.c - see corpus.h. Start-up only: nothing here runs inside a timed pass.
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = bench_xmalloc(cap + 1);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        cap *= 2;
        uint8_t *nb = realloc(buf, cap + 1);
        if (nb == NULL) {
            free(buf);
            fclose(f);
            return NULL;
        }
        buf = nb;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const bench_message *)a)->name, ((const bench_message *)b)->name);
}

size_t bench_load_dir(const char *prog, const char *dir, bench_message **out)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
        exit(2);
    }
    size_t n = 0, cap = 64;
    bench_message *msgs = bench_xmalloc(cap * sizeof *msgs);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".eml") != 0) {
            continue;
        }
        if (n == cap) {
            cap *= 2;
            bench_message *nm = realloc(msgs, cap * sizeof *msgs);
            if (nm == NULL) {
                fprintf(stderr, "%s: out of memory\n", prog);
                exit(2);
            }
            msgs = nm;
        }
        size_t plen = strlen(dir) + nl + 2;
        char *path = bench_xmalloc(plen);
        snprintf(path, plen, "%s/%s", dir, e->d_name);
        msgs[n].data = read_whole(path, &msgs[n].len);
        if (msgs[n].data == NULL) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
            exit(2);
        }
        free(path);
        msgs[n].name = strdup(e->d_name);
        n++;
    }
    closedir(d);
    qsort(msgs, n, sizeof *msgs, cmp_name);
    *out = msgs;
    return n;
}

void bench_free_messages(bench_message *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].name);
        free(msgs[i].data);
    }
    free(msgs);
}

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
