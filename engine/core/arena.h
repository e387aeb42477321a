/*
 * arena.h - the per-message arena.
 *
 * Each in-flight message owns one arena; everything the message needs beyond the
 * header block it borrowed (decoded signatures, result strings, the folded
 * Authentication-Results) is carved from it, and dkd__arena_reset frees it all at once.
 * One block (the largest up to 256 KiB) is kept across resets so a worker reusing a
 * dkd_msg allocates nothing in the steady state. A hard cap turns hostile input into DKD_ERR_NOMEM
 * instead of unbounded growth.
 */
#ifndef DKD_ARENA_H
#define DKD_ARENA_H

#include <stddef.h>
#include <stdint.h>

typedef struct dkd_arena_block dkd_arena_block;

typedef struct dkd_arena {
    dkd_arena_block *head;  /* current block; older ones chained behind it */
    size_t used;            /* bytes used in head */
    size_t total;           /* bytes in all blocks */
    size_t cap;             /* refuse to grow past this many bytes */
} dkd_arena;

/* dkd__arena_init prepares an empty arena that may grow to cap bytes. */
void dkd__arena_init(dkd_arena *a, size_t cap);

/* dkd__arena_alloc returns n bytes aligned to 16, or NULL past the cap / on OOM. */
void *dkd__arena_alloc(dkd_arena *a, size_t n);

/* dkd__arena_strndup copies n bytes and a NUL; NULL on failure. */
char *dkd__arena_strndup(dkd_arena *a, const void *p, size_t n);

/* dkd__arena_reset frees everything but one block kept for reuse. */
void dkd__arena_reset(dkd_arena *a);

/* dkd__arena_destroy frees every block. */
void dkd__arena_destroy(dkd_arena *a);

#endif
