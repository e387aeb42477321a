/*
 * scan_test.c - the scanners of scan.h against their scalar references, on random input
 * placed against guard pages.
 *
 * Every run scanner (dkd__scan_lf, _eol, _ftext, _tag_value, _relaxed_run) must return
 * what its _scalar twin returns, and every body scanner (SSE2, AVX2 where the CPU has it,
 * NEON on AArch64) what dkd__scan_body_*_scalar returns, for every start i. Input is drawn
 * from the bytes the scanners classify (WSP, CR, LF, ':', ';', DEL, NUL, 8-bit bytes)
 * mixed with letters, and is placed right after a PROT_NONE page and right before one,
 * so any read outside p[0 .. n) (or p[i - 1 .. n) for body scanners) crashes.
 *
 * Plain C with no test library, so that tests/cross/run-aarch64.sh can build it for
 * AArch64 and run it under qemu, where the NEON paths are the ones checked.
 * Exit 0 = pass, 1 = a mismatch (printed). DKD_SCAN_SEED picks the random sequence.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scan.h"

enum { MAX_LEN = 300, ROUNDS = 3000 };

static uint8_t *guard_lo; /* first byte after the leading guard page */
static uint8_t *guard_hi; /* the trailing guard page: one past the last data byte */

static void guard_init(size_t max_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (max_len + page - 1) / page * page;
    uint8_t *base =
        mmap(NULL, data + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(base, page, PROT_NONE) != 0 ||
        mprotect(base + page + data, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    guard_lo = base + page;
    guard_hi = base + page + data;
}

static uint64_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift64*: reproducible from DKD_SCAN_SEED on every platform */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static uint8_t rnd_byte(unsigned letters)
{
    static const uint8_t special[] = {' ',  '\t', '\r', '\n', ':',  ';',  '=',  0x7f,
                                      0x00, 0x1f, 0x20, 0x21, 0x80, 0xff, 0x3a, 0x7e};
    uint32_t r = rnd();
    /* letters in 16: long clean runs, so the 16- and 64-byte blocks run too */
    if (r % 16 < letters) {
        return (uint8_t)('a' + (r >> 8) % 26);
    }
    if ((r >> 4) % 4 == 0) {
        return (uint8_t)(r >> 16);
    }
    return special[(r >> 8) % sizeof special];
}

static int failures;

typedef size_t (*scan_fn)(const uint8_t *p, size_t i, size_t n);

/*
 * check_run compares simd with ref for every start i >= i_min (i_min 1: a body scanner,
 * which takes i < n). min_run: the body scanners return i, leaving the chunk to the state
 * machine, when less than one block and the byte after it remain; the reference keeps
 * SSE2's 17, and AVX2's blocks are 32 bytes, so below its 33 it must return i.
 */
static void check_run(const char *name, scan_fn simd, scan_fn ref, const uint8_t *p, size_t n,
                      size_t i_min, size_t min_run)
{
    for (size_t i = i_min; i <= n; i++) {
        if (i_min == 1 && i == n) {
            break;
        }
        size_t a = simd(p, i, n), b = n - i < min_run ? i : ref(p, i, n);
        if (a != b) {
            if (failures++ < 10) {
                fprintf(stderr, "%s: n=%zu i=%zu: simd %zu, scalar %zu; input:", name, n, i, a, b);
                for (size_t k = 0; k < n; k++) {
                    fprintf(stderr, " %02x", p[k]);
                }
                fprintf(stderr, "\n");
            }
            return;
        }
    }
}

static void check(const char *name, scan_fn simd, scan_fn ref, const uint8_t *p, size_t n,
                  size_t i_min)
{
    check_run(name, simd, ref, p, n, i_min, 0);
}

/* The run scanners are static inline: wrap them so they can be passed around. */
#define WRAP(f)                                                                                    \
    static size_t w_##f(const uint8_t *p, size_t i, size_t n)                                      \
    {                                                                                              \
        return f(p, i, n);                                                                         \
    }
WRAP(dkd__scan_lf)
WRAP(dkd__scan_lf_scalar)
WRAP(dkd__scan_eol)
WRAP(dkd__scan_eol_scalar)
WRAP(dkd__scan_ftext)
WRAP(dkd__scan_ftext_scalar)
WRAP(dkd__scan_tag_value)
WRAP(dkd__scan_tag_value_scalar)
WRAP(dkd__scan_relaxed_run)
WRAP(dkd__scan_relaxed_run_scalar)

static void check_all(const uint8_t *p, size_t n)
{
    check("lf", w_dkd__scan_lf, w_dkd__scan_lf_scalar, p, n, 0);
    check("eol", w_dkd__scan_eol, w_dkd__scan_eol_scalar, p, n, 0);
    check("ftext", w_dkd__scan_ftext, w_dkd__scan_ftext_scalar, p, n, 0);
    check("tag_value", w_dkd__scan_tag_value, w_dkd__scan_tag_value_scalar, p, n, 0);
    check("relaxed_run", w_dkd__scan_relaxed_run, w_dkd__scan_relaxed_run_scalar, p, n, 0);
    if (n < 2) {
        return;
    }
#ifdef DKD_SCAN_HAVE_X86
    check("body_simple_sse2", dkd__scan_body_simple_sse2, dkd__scan_body_simple_scalar, p, n, 1);
    check("body_relaxed_sse2", dkd__scan_body_relaxed_sse2, dkd__scan_body_relaxed_scalar, p, n, 1);
    if (__builtin_cpu_supports("avx2")) {
        check_run("body_simple_avx2", dkd__scan_body_simple_avx2, dkd__scan_body_simple_scalar, p,
                  n, 1, 33);
        check_run("body_relaxed_avx2", dkd__scan_body_relaxed_avx2, dkd__scan_body_relaxed_scalar,
                  p, n, 1, 33);
    }
#endif
#ifdef DKD_SCAN_HAVE_NEON
    check("body_simple_neon", dkd__scan_body_simple_neon, dkd__scan_body_simple_scalar, p, n, 1);
    check("body_relaxed_neon", dkd__scan_body_relaxed_neon, dkd__scan_body_relaxed_scalar, p, n, 1);
#endif
}

int main(void)
{
    const char *seed = getenv("DKD_SCAN_SEED");
    rng_state = seed != NULL ? strtoull(seed, NULL, 10) : 0x5eed5ca9ull;
    if (rng_state == 0) {
        rng_state = 1;
    }
    guard_init(MAX_LEN);
    uint8_t buf[MAX_LEN];
    for (unsigned r = 0; r < ROUNDS && failures == 0; r++) {
        size_t n = r < MAX_LEN ? r : rnd() % (MAX_LEN + 1);
        unsigned letters = rnd() % 17;
        for (size_t k = 0; k < n; k++) {
            buf[k] = rnd_byte(letters);
        }
        /* against the trailing guard, then against the leading one */
        uint8_t *hi = guard_hi - n, *lo = guard_lo;
        memcpy(hi, buf, n);
        check_all(hi, n);
        memcpy(lo, buf, n);
        check_all(lo, n);
    }
    if (failures != 0) {
        fprintf(stderr, "scan_test: %d mismatches (DKD_SCAN_SEED=%llu)\n", failures,
                (unsigned long long)(seed != NULL ? strtoull(seed, NULL, 10) : 0x5eed5ca9ull));
        return 1;
    }
    printf("scan_test: %u rounds, SIMD %s, all scanners agree with the scalar references\n",
           (unsigned)ROUNDS,
#ifdef DKD_SCAN_SIMD
           "on"
#else
           "off"
#endif
    );
    return 0;
}
