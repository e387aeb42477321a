/*
 * buf.h - the byte builder: appends that cannot fail visibly, and one check at the end.
 *
 * A dkd_buf collects output (a wire frame, an Authentication-Results field, a
 * DKIM-Signature header) with a sticky error, in the manner of BoringSSL's CBB: every
 * append returns void, an append that cannot be made sets the error and every later one
 * does nothing, and whoever finishes the buffer asks once (dkd__buf_failed, or
 * dkd__buf_cstr returning NULL). So the code that writes output carries no error branch
 * per append.
 *
 * Memory, chosen at init:
 *  - dkd__buf_init: grows with realloc; the builder owns ptr, dkd__buf_free releases it;
 *  - dkd__buf_init_fixed: writes into caller memory of a fixed size (a registered
 *    io_uring buffer, a stack frame); an append that does not fit sets the error;
 *  - dkd__buf_init_alloc: grows by asking alloc(ctx, n) for a new block and copying, for
 *    allocators with no free (the per-message arena); the allocator owns the blocks.
 *
 * Header-only: the wire codec is compiled into libdkimd, which links no engine library.
 * The fields are public because the transport hands ptr/len to send(2) and trims len
 * after a partial write; only the functions below set err.
 *
 * Threads: a dkd_buf belongs to one thread at a time.
 */
#ifndef DKD_BUF_H
#define DKD_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dkd_buf {
    uint8_t *ptr;
    size_t len, cap;
    void *(*alloc)(void *ctx, size_t n); /* dkd__buf_init_alloc's allocator, else NULL */
    void *alloc_ctx;
    bool fixed; /* caller memory: never reallocated */
    bool err;   /* sticky: an append did not fit */
} dkd_buf;

/* dkd__buf_init: an empty buffer that grows with realloc. Free with dkd__buf_free. */
static inline void dkd__buf_init(dkd_buf *b)
{
    *b = (dkd_buf){0};
}

/* dkd__buf_init_fixed: appends write into mem[0..cap); overflow sets the error. */
static inline void dkd__buf_init_fixed(dkd_buf *b, void *mem, size_t cap)
{
    *b = (dkd_buf){0};
    b->ptr = (uint8_t *)mem;
    b->cap = cap;
    b->fixed = true;
}

/* dkd__buf_init_alloc: grows into blocks from alloc(ctx, n) (NULL = out of memory), which
 * are never freed by the builder. */
static inline void dkd__buf_init_alloc(dkd_buf *b, void *(*alloc)(void *ctx, size_t n), void *ctx)
{
    *b = (dkd_buf){0};
    b->alloc = alloc;
    b->alloc_ctx = ctx;
}

/* dkd__buf_free releases a realloc buffer's memory (no-op for the other kinds) and
 * leaves an empty realloc buffer. */
static inline void dkd__buf_free(dkd_buf *b)
{
    if (!b->fixed && b->alloc == NULL) {
        free(b->ptr);
    }
    *b = (dkd_buf){0};
}

/* dkd__buf_reset empties the buffer and clears the error; memory is kept. */
static inline void dkd__buf_reset(dkd_buf *b)
{
    b->len = 0;
    b->err = false;
}

/* dkd__buf_failed: whether any append since the last init or reset failed. */
static inline bool dkd__buf_failed(const dkd_buf *b)
{
    return b->err;
}

/* dkd__buf_fail sets the error: for callers whose argument cannot be encoded at all. */
static inline void dkd__buf_fail(dkd_buf *b)
{
    b->err = true;
}

/* dkd__buf_grow makes room for n more bytes (the slow path of every append): false,
 * with the error set, when it cannot. Out of line, so that appends inline small;
 * "unused" for the files that include this header and never append. */
static __attribute__((noinline, unused)) bool dkd__buf_grow(dkd_buf *b, size_t n)
{
    if (b->err) {
        return false;
    }
    if (n <= b->cap - b->len) {
        return true;
    }
    if (b->fixed || n > SIZE_MAX / 2 - b->len) {
        b->err = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        cap *= 2;
    }
    uint8_t *p;
    if (b->alloc != NULL) {
        p = (uint8_t *)b->alloc(b->alloc_ctx, cap);
        if (p != NULL && b->len > 0) {
            memcpy(p, b->ptr, b->len);
        }
    } else {
        p = (uint8_t *)realloc(b->ptr, cap);
    }
    if (p == NULL) {
        b->err = true;
        return false;
    }
    b->ptr = p;
    b->cap = cap;
    return true;
}

/*
 * dkd__buf_add_space appends n bytes for the caller to write and returns where they
 * start, or NULL (error set, nothing appended). For encoders that size a record first
 * and then write it through a cursor.
 */
static inline uint8_t *dkd__buf_add_space(dkd_buf *b, size_t n)
{
    if (!(!b->err && n <= b->cap - b->len) && !dkd__buf_grow(b, n)) {
        return NULL;
    }
    uint8_t *p = b->ptr + b->len;
    b->len += n;
    return p;
}

/* dkd__buf_append appends n bytes from p. */
static inline void dkd__buf_append(dkd_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    uint8_t *q = dkd__buf_add_space(b, n);
    if (q != NULL) {
        memcpy(q, p, n);
    }
}

/* dkd__buf_put_str appends a C string without its NUL. */
static inline void dkd__buf_put_str(dkd_buf *b, const char *s)
{
    dkd__buf_append(b, s, strlen(s));
}

static inline void dkd__buf_put_u8(dkd_buf *b, uint8_t v)
{
    uint8_t *q = dkd__buf_add_space(b, 1);
    if (q != NULL) {
        q[0] = v;
    }
}

/* dkd__buf_put_be appends the low n bytes (n <= 8) of v, big-endian. */
static inline void dkd__buf_put_be(dkd_buf *b, uint64_t v, size_t n)
{
    uint8_t *q = n <= 8 ? dkd__buf_add_space(b, n) : NULL;
    if (q == NULL) {
        if (n > 8) {
            b->err = true;
        }
        return;
    }
    for (size_t k = n; k > 0; k--) {
        q[k - 1] = (uint8_t)v;
        v >>= 8;
    }
}

static inline void dkd__buf_put_u16be(dkd_buf *b, uint16_t v)
{
    dkd__buf_put_be(b, v, 2);
}

static inline void dkd__buf_put_u32be(dkd_buf *b, uint32_t v)
{
    dkd__buf_put_be(b, v, 4);
}

static inline void dkd__buf_put_u64be(dkd_buf *b, uint64_t v)
{
    dkd__buf_put_be(b, v, 8);
}

/*
 * dkd__buf_cstr finishes a text buffer: it writes a NUL after the last byte (not counted
 * in len, so appends may go on) and returns ptr as a C string, or NULL if any append
 * failed. The string is owned as the buffer's memory is.
 */
static inline char *dkd__buf_cstr(dkd_buf *b)
{
    uint8_t *q = dkd__buf_add_space(b, 1);
    if (q == NULL) {
        return NULL;
    }
    *q = '\0';
    b->len--;
    return (char *)b->ptr;
}

#ifdef __cplusplus
}
#endif

#endif
