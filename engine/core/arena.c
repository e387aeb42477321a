/*
 * arena.c - the per-message bump allocator (see arena.h).
 *
 * Workload: a few hundred small allocations per message (decoded tags, result strings),
 * all freed together when the message is answered. Blocks double in size from 4 KiB so
 * a large header block costs a handful of mallocs, and one block survives resets.
 */
#include "arena.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct dkd_arena_block {
    dkd_arena_block *next;
    size_t size; /* usable bytes after the header */
    max_align_t data[];
};

enum { ARENA_FIRST_BLOCK = 4096, ARENA_ALIGN = 16, ARENA_KEEP_MAX = 256 * 1024 };

/* align_up masks, and every pointer handed out is data + a multiple of ARENA_ALIGN, so
 * it is aligned for any type only when ARENA_ALIGN is a power-of-two multiple of
 * max_align_t's alignment. */
_Static_assert((ARENA_ALIGN & (ARENA_ALIGN - 1)) == 0, "ARENA_ALIGN is a power of two");
_Static_assert(ARENA_ALIGN % _Alignof(max_align_t) == 0,
               "arena allocations are aligned for any type");

void dkd__arena_init(dkd_arena *a, size_t cap)
{
    a->head = NULL;
    a->used = 0;
    a->total = 0;
    a->cap = cap;
}

static size_t align_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void *dkd__arena_alloc(dkd_arena *a, size_t n)
{
    if (n > a->cap) {
        return NULL;
    }
    n = align_up(n ? n : 1);
    /* used never passes the head block's size: it is set to n only with a block of at
     * least n bytes, and grows only when the room checked below allows. */
    DKD_ASSERT(a->head == NULL || a->used <= a->head->size);
    if (a->head != NULL && a->head->size - a->used >= n) {
        void *p = (uint8_t *)a->head->data + a->used;
        a->used += n;
        return p;
    }
    size_t size = a->head ? a->head->size * 2 : ARENA_FIRST_BLOCK;
    while (size < n) {
        size *= 2;
    }
    if (a->total + size > a->cap) {
        /* Last chance before refusing: a block exactly big enough. */
        size = n;
        if (a->total + size > a->cap) {
            return NULL;
        }
    }
    dkd_arena_block *b = malloc(sizeof *b + size);
    if (b == NULL) {
        return NULL;
    }
    b->next = a->head;
    b->size = size;
    a->head = b;
    a->total += size;
    a->used = n;
    return b->data;
}

char *dkd__arena_strndup(dkd_arena *a, const void *p, size_t n)
{
    if (n == SIZE_MAX) {
        return NULL;
    }
    char *s = dkd__arena_alloc(a, n + 1);
    if (s == NULL) {
        return NULL;
    }
    if (n > 0) {
        memcpy(s, p, n);
    }
    s[n] = '\0';
    return s;
}

void dkd__arena_reset(dkd_arena *a)
{
    /* Keep one block, the largest up to ARENA_KEEP_MAX: a reused message state then
     * needs no malloc for a typical message, while one outlier (a huge header block)
     * does not pin its memory for good. */
    dkd_arena_block *keep = NULL;
    for (dkd_arena_block *b = a->head; b != NULL; b = b->next) {
        if (b->size <= ARENA_KEEP_MAX && (keep == NULL || b->size > keep->size)) {
            keep = b;
        }
    }
    dkd_arena_block *b = a->head;
    while (b != NULL) {
        dkd_arena_block *next = b->next;
        if (b != keep) {
            free(b);
        }
        b = next;
    }
    a->head = keep;
    a->total = keep ? keep->size : 0;
    a->used = 0;
    if (keep != NULL) {
        keep->next = NULL;
    }
}

void dkd__arena_destroy(dkd_arena *a)
{
    dkd_arena_block *b = a->head;
    while (b != NULL) {
        dkd_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
    a->total = 0;
}
