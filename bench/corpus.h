/*
 * corpus.h - what the corpus harnesses share (corpus-bench, opendkim-bench, loadgen):
 * loading a directory of *.eml into memory in name order, and the clocks they time with.
 * One copy so that dkimd and OpenDKIM are loaded and timed the same way.
 */
#ifndef DKD_BENCH_CORPUS_H
#define DKD_BENCH_CORPUS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_message {
    char *name;    /* file name, without the directory */
    uint8_t *data; /* the whole file; one spare byte past len */
    size_t len;
} bench_message;

/* bench_load_dir reads every *.eml of dir, sorted by name. Exits (status 2, message
 * prefixed with prog) when the directory or a file cannot be read. */
size_t bench_load_dir(const char *prog, const char *dir, bench_message **out);
void bench_free_messages(bench_message *msgs, size_t n);

/* bench_xmalloc is malloc that exits on failure: harnesses have nothing to recover. */
void *bench_xmalloc(size_t n);

/* Monotonic wall seconds, and CPU seconds of the whole process: on a shared machine,
 * time spent descheduled shows in the wall time of a pass but not in the CPU time. */
double bench_now_s(void);
double bench_cpu_s(void);

/* qsort comparator for doubles (medians, percentiles). */
int bench_cmp_double(const void *a, const void *b);

#endif
