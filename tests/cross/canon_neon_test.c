/*
 * canon_neon_test.c - the NEON body scanners (engine/core/scan_neon.c) against a byte-loop
 * reference of the scanner contract in engine/core/scan.h, as the SSE2 scanner keeps it.
 *
 * Built for AArch64 with the cross compiler and run under qemu-aarch64-static by
 * run-aarch64.sh; libc only, so a static binary runs with no target root. The same file
 * built on x86-64 with -DDKD_CROSS_HOST_SSE2 checks the reference against the SSE2
 * scanners themselves, so "NEON == reference" here means "NEON == SSE2".
 *
 * The reference: when fewer than 17 bytes lie in [i, n), the scanner returns i (no
 * whole block fits); otherwise it returns the first k in [i, n - 1) that stops the scan
 * (both: LF not after CR, CR not before LF; relaxed: HTAB, SP before SP/HTAB/CR/LF), or
 * else n - 1, stepped back one byte when p[n - 2] is CR (or SP in relaxed).
 *
 * Inputs: random bytes from small alphabets (with bytes that share a low nibble with SP,
 * HTAB, CR and LF, for the relaxed rule's nibble table), ordinary text, long clean runs
 * with one stop planted at every position, every start i for many lengths n. Every call
 * runs twice, with the scanned bytes p[i - 1] .. p[n - 1] copied right before a PROT_NONE
 * page and right after one, so a read past n - 1 or before i - 1 crashes the test.
 *
 * Prints one summary line; exits 1 on any mismatch (the first few are shown). Set
 * DKD_CANON_SEED to replay a random run; the seed is printed.
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

#if defined(DKD_SCAN_HAVE_NEON)
#define IMPL_NAME "neon"
#define SCAN_SIMPLE dkd__scan_body_simple_neon
#define SCAN_RELAXED dkd__scan_body_relaxed_neon
#elif defined(DKD_CROSS_HOST_SSE2)
#define IMPL_NAME "sse2"
#define SCAN_SIMPLE dkd__scan_body_simple_sse2
#define SCAN_RELAXED dkd__scan_body_relaxed_sse2
#else
#error "build for AArch64 with NEON, or for x86-64 with -DDKD_CROSS_HOST_SSE2"
#endif

/* ---- the reference ---- */

/* ref_stops: whether byte k stops the scan, per scan.h; reads p[k - 1 .. k + 1]. */
static bool ref_stops(const uint8_t *p, size_t k, bool relaxed)
{
    uint8_t c = p[k], pv = p[k - 1], nx = p[k + 1];
    if (c == '\n' && pv != '\r') {
        return true; /* bare LF */
    }
    if (c == '\r' && nx != '\n') {
        return true; /* CR not followed by LF */
    }
    if (relaxed) {
        if (c == '\t') {
            return true;
        }
        if (c == ' ' && (nx == ' ' || nx == '\t' || nx == '\r' || nx == '\n')) {
            return true;
        }
    }
    return false;
}

static size_t ref_scan(const uint8_t *p, size_t i, size_t n, bool relaxed)
{
    if (n - i < 17) {
        return i;
    }
    for (size_t k = i; k < n - 1; k++) {
        if (ref_stops(p, k, relaxed)) {
            return k;
        }
    }
    /* the cut must not fall after a CR or (relaxed) a SP: the next byte decides */
    size_t e = n - 1;
    if (p[e - 1] == '\r' || (relaxed && p[e - 1] == ' ')) {
        e--;
    }
    return e;
}

/* ---- guard pages ---- */

/* One mapping: [PROT_NONE page][data pages][PROT_NONE page]. */
static uint8_t *guard_lo; /* first data byte, right after the leading guard */
static uint8_t *guard_hi; /* one past the last data byte: the trailing guard */

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

/* ---- the check ---- */

#define MAX_LEN 8192

static unsigned long long calls, mismatches;

static void show(const char *what, const char *guard, const uint8_t *p, size_t i, size_t n,
                 bool relaxed, size_t got, size_t want)
{
    size_t first = got < want ? got : want;
    size_t from = first >= i + 3 ? first - 4 : i - 1;
    fprintf(stderr, "MISMATCH %s, guard %s, %s_%s: i=%zu n=%zu got=%zu want=%zu\n", what, guard,
            relaxed ? "relaxed" : "simple", IMPL_NAME, i, n, got, want);
    fprintf(stderr, "  bytes from %zu:", from);
    for (size_t k = from; k < n && k < from + 24; k++) {
        fprintf(stderr, " %02x", p[k]);
    }
    fprintf(stderr, "\n");
}

/* compare runs both scanners on the copy whose first byte (p[i - 1]) is at copy. The
 * base pointer handed over may lie before the mapping; only base[i - 1 .. n - 1] is
 * read, which is the copy. */
static void compare(const char *what, const char *guard, const uint8_t *copy, const uint8_t *p,
                    size_t i, size_t n)
{
    const uint8_t *base = (const uint8_t *)((uintptr_t)copy - (i - 1));
    for (int r = 0; r < 2; r++) {
        bool relaxed = r == 1;
        size_t want = ref_scan(p, i, n, relaxed);
        size_t got = relaxed ? SCAN_RELAXED(base, i, n) : SCAN_SIMPLE(base, i, n);
        calls++;
        if (got != want && mismatches++ < 10) {
            show(what, guard, p, i, n, relaxed, got, want);
        }
    }
}

/* check compares the scanners with the reference on p[i - 1 .. n - 1] copied right
 * before the trailing guard page, then right after the leading one. */
static void check(const char *what, const uint8_t *p, size_t i, size_t n)
{
    if (i < 1 || i >= n || n > MAX_LEN) {
        return; /* outside the contract: the generators below never ask for it */
    }
    size_t len = n - (i - 1);
    memcpy(guard_hi - len, p + i - 1, len);
    compare(what, "trailing", guard_hi - len, p, i, n);
    memcpy(guard_lo, p + i - 1, len);
    compare(what, "leading", guard_lo, p, i, n);
}

/* ---- inputs ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: enough for test inputs, and reproducible from the seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rnd_below(size_t bound)
{
    return (size_t)(rnd() % bound);
}

/* Alphabets: the scanner's specials, and bytes that alias them by low nibble (0x00, 0x10,
 * 0x30, 0x80, 0xa0 for SP; 0x19, 0x89 for HTAB; 0x1a, 0x8a for LF; 0x1d, 0x2d, 0x8d for
 * CR) or by PSHUFB/TBL quirks (0x01, 0xff). */
static const char *const alphabets[] = {
    " \t\r\na\0\xff",
    "a \r\n",
    "aaaaaaa \r\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \t\r\n",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    "  \t\r\n",
    "a \x00\x10\x30\x80\xa0\x19\x89\x1a\x8a\x1d\x2d\x8d\x01\xff",
    "a \r\n\x00\x10\x30\x80\xa0\x19\x89\x1a\x8a\x1d\x2d\x8d\x01",
    "\r\n",
};
/* their lengths, since some hold NUL */
static const size_t alphabet_len[] = {7, 4, 10, 44, 89, 5, 16, 16, 2};

static void fill_alphabet(uint8_t *buf, size_t len, size_t a)
{
    for (size_t k = 0; k < len; k++) {
        buf[k] = (uint8_t)alphabets[a][rnd_below(alphabet_len[a])];
    }
}

static const char *const words[] = {
    "the",      "message", "body", "is",           "mostly",
    "ordinary", "text,",   "and",  "base64:",      "dGhlIHF1aWNrIGJyb3du",
    "Regards,", "a",       "DKIM", "verification", "=20",
    "--",
};

/* fill_text writes CRLF lines of words with single spaces (canonical in both), with a
 * fault planted now and then when faults is true. */
static void fill_text(uint8_t *buf, size_t len, bool faults)
{
    static const char *const fault[] = {"  ", "\t", " \r\n", "\n", "\r", "\r\n\r\n", " \n"};
    size_t k = 0, col = 0;
    while (k < len) {
        const char *w = words[rnd_below(sizeof words / sizeof words[0])];
        if (faults && rnd_below(40) == 0) {
            w = fault[rnd_below(sizeof fault / sizeof fault[0])];
        }
        for (size_t c = 0; w[c] != '\0' && k < len; c++) {
            buf[k++] = (uint8_t)w[c];
        }
        col += strlen(w) + 1;
        if (k < len) {
            if (col > 70) {
                buf[k++] = '\r';
                if (k < len) {
                    buf[k++] = '\n';
                }
                col = 0;
            } else {
                buf[k++] = ' ';
            }
        }
    }
}

/* random_runs: random i and n over buffers from every alphabet */
static void random_runs(uint8_t *buf, int rounds)
{
    size_t na = sizeof alphabets / sizeof alphabets[0];
    for (int r = 0; r < rounds; r++) {
        size_t len = 34 + rnd_below(rnd_below(4) == 0 ? MAX_LEN - 34 : 600);
        fill_alphabet(buf, len, (size_t)r % na);
        for (int t = 0; t < 16; t++) {
            size_t n = 2 + rnd_below(len - 1);
            size_t i = 1 + rnd_below(n - 1);
            check("alphabet", buf, i, n);
        }
    }
}

/* text_runs: ordinary text, clean and with faults, from random starts */
static void text_runs(uint8_t *buf, int rounds)
{
    for (int r = 0; r < rounds; r++) {
        size_t len = 34 + rnd_below(MAX_LEN - 34);
        fill_text(buf, len, r % 2 == 1);
        for (int t = 0; t < 8; t++) {
            size_t i = 1 + rnd_below(len - 1);
            check("text", buf, i, len);
            check("text", buf, i, i + 1 + rnd_below(len - i));
        }
    }
}

/* planted: a clean run (no stop in either mode) with one stop at every position pos,
 * each kind of stop, scanned from starts near the beginning and near pos, to ends at,
 * just past and well past it, so that the stop falls in every lane of every block kind
 * (64-byte step, 16-byte block, the overlapping last block) and in the cut's back-off. */
static void planted(uint8_t *buf)
{
    static const char *const stops[] = {"\n",  "\r",     "\t",   "  ", " \t",     " \r\n",
                                        " \n", "\r\r\n", "\n\n", " ",  "\r\n\r\n"};
    const size_t len = 300;
    for (size_t s = 0; s < sizeof stops / sizeof stops[0]; s++) {
        size_t sl = strlen(stops[s]);
        for (size_t pos = 1; pos + sl <= len; pos++) {
            for (size_t k = 0; k < len; k++) {
                /* "abc...xyz" lines with CRLF every 50 bytes, single SP inside */
                buf[k] = k % 50 == 48   ? '\r'
                         : k % 50 == 49 ? '\n'
                         : k % 7 == 3   ? ' '
                                        : 'a' + k % 26;
            }
            memcpy(buf + pos, stops[s], sl);
            /* starts 1..18 and pos - 18 .. pos + 1; the ones between add nothing new */
            for (size_t i = 1; i <= pos + 1 && i < len;
                 i = i == 18 && pos > 36 ? pos - 18 : i + 1) {
                size_t ends[] = {len,     pos + sl + 1, pos + sl + 2, pos + 17, pos + 18, pos + 66,
                                 pos + 2, i + 17,       i + 18,       i + 64,   i + 65,   i + 81};
                for (size_t e = 0; e < sizeof ends / sizeof ends[0]; e++) {
                    if (ends[e] <= len) {
                        check("planted", buf, i, ends[e]);
                    }
                }
            }
        }
    }
}

/* every_start: every i for every n from 34 to 700 and some lengths of a few KB, over text
 * with faults and over one small-alphabet buffer */
static void every_start(uint8_t *buf)
{
    fill_text(buf, MAX_LEN, true);
    for (size_t n = 34; n <= 700; n++) {
        for (size_t i = 1; i < n; i++) {
            check("every-start text", buf, i, n);
        }
    }
    static const size_t big[] = {1023, 1024, 1025, 2047, 4096 + 3, MAX_LEN};
    for (size_t b = 0; b < sizeof big / sizeof big[0]; b++) {
        for (size_t i = 1; i < big[b]; i++) {
            check("every-start text", buf, i, big[b]);
        }
    }
    /* sparse stops in a long clean run: the 64-byte step carries most of these */
    for (size_t k = 0; k < MAX_LEN; k++) {
        buf[k] = rnd_below(300) == 0 ? (uint8_t)alphabets[0][rnd_below(7)] : (uint8_t)'x';
    }
    for (size_t n = 34; n <= 400; n += 3) {
        for (size_t i = 1; i < n; i++) {
            check("every-start sparse", buf, i, n);
        }
    }
}

int main(void)
{
    uint64_t seed = 0x6b696d64dULL;
    const char *env = getenv("DKD_CANON_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 0);
    }
    rng_state = seed != 0 ? seed : 1;
    static uint8_t buf[MAX_LEN];
    guard_init(MAX_LEN);

    random_runs(buf, 4000);
    text_runs(buf, 300);
    planted(buf);
    every_start(buf);

    printf("canon_neon_test: %s scanners vs reference: %llu calls, %llu mismatches (seed "
           "0x%llx)\n",
           IMPL_NAME, calls, mismatches, (unsigned long long)seed);
    return mismatches == 0 ? 0 : 1;
}
